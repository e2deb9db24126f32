"""The config file's schema (pydantic): every key, its type and range; unknown keys are refused.

`parse_config(path, env)` reads the YAML, validates it, applies the environment's overrides and returns a
`ProductConfig`, or raises a `ConfigError` that lists every problem, each as
`CODE: file: key.path: what is wrong`. Codes: CONFIG_MISSING (no file), CONFIG_YAML (not YAML),
CONFIG_SHAPE (not a mapping), CONFIG_UNKNOWN_KEY, CONFIG_MISSING_KEY, CONFIG_TYPE, CONFIG_RANGE,
CONFIG_TIMEZONE, CONFIG_DIMENSION, CONFIG_FUNNEL, CONFIG_PROPERTY, CONFIG_EVENT, CONFIG_REPORT,
CONFIG_IDENTITY.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from hitcraft_assets.config import (
    DEFAULT_SESSION_PROPERTIES,
    IDENTITY_MODES,
    ConfigError,
    Dimension,
    Funnel,
    ProductConfig,
    Recipient,
    Report,
    name_problem,
    structural_problems,
    timezone_problem,
)


def _name(what: str, code: str):
    def check(value: str) -> str:
        if problem := name_problem(value, what):
            raise ValueError(f"{code}: {problem}")
        return value
    return AfterValidator(check)


def _zone(value: str) -> str:
    if problem := timezone_problem(value):
        raise ValueError(f"CONFIG_TIMEZONE: {problem}")
    return value


EventName = Annotated[str, _name("an event name", "CONFIG_EVENT")]
PropertyName = Annotated[str, _name("a property name", "CONFIG_PROPERTY")]
TimezoneName = Annotated[str, AfterValidator(_zone)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProductModel(_Model):
    name: str = "product"
    description: str = ""
    goals: list[str] = []
    feature_glossary: dict[str, str] = {}
    owners: dict[str, str] = {}
    areas: dict[str, list[str]] = {}
    generic_events: list[EventName] | None = None


class DimensionModel(_Model):
    name: str = Field(min_length=1)
    property: PropertyName


class FunnelModel(_Model):
    name: str = Field(min_length=1)
    steps: list[EventName] = Field(min_length=2)
    window_days: int = Field(default=7, ge=1, le=366)
    exclusions: list[EventName] = []
    hold_constant: list[PropertyName] = []


class RetentionModel(_Model):
    birth_event: EventName | None = None     # None: a user's first event of any kind
    return_event: EventName | None = None    # None: any event


class SessionPropertiesModel(_Model):
    platform: PropertyName | None = DEFAULT_SESSION_PROPERTIES["platform"]
    country: PropertyName | None = DEFAULT_SESSION_PROPERTIES["country"]
    utm_source: PropertyName | None = DEFAULT_SESSION_PROPERTIES["utm_source"]


INSIGHT_KINDS = ("risk", "opportunity", "success", "trend", "anomaly")
CADENCES = ("daily", "weekly", "monthly")


def _kind(value: str) -> str:
    if value not in INSIGHT_KINDS:
        raise ValueError(f"CONFIG_REPORT: unknown insight kind {value!r} (one of {', '.join(INSIGHT_KINDS)})")
    return value


def _email(value: str) -> str:
    local, at, domain = value.strip().rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() or c in "<>,;\"" for c in value.strip()):
        raise ValueError(f"CONFIG_REPORT: {value!r} is not an email address")
    return value.strip()


InsightKind = Annotated[str, AfterValidator(_kind)]
EmailAddress = Annotated[str, AfterValidator(_email)]


class RecipientModel(_Model):
    email: EmailAddress
    name: str = ""
    role: str | None = None                  # product, engineering, marketing, executive, ... (orders insights)
    areas: list[str] = []                    # product.owners / product.areas names: filters and orders insights
    timezone: TimezoneName | None = None     # the greeting and dates; default: the reporting timezone


class ReportModel(_Model):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    cadence: str
    title: str = Field(min_length=1)
    kinds: list[InsightKind] = list(INSIGHT_KINDS)
    areas: list[str] = []                    # optional: only insights of these areas
    top: int = Field(default=5, ge=1, le=20)
    kpis: list[str] = []                     # metric names (dau, new_users, event_count:<event>, ...) or funnel:<name>
    recipients: list[RecipientModel] = Field(min_length=1)

    @field_validator("cadence")
    @classmethod
    def _cadence(cls, value: str) -> str:
        if value not in CADENCES:
            raise ValueError(f"CONFIG_REPORT: cadence must be one of {', '.join(CADENCES)}, got {value!r}")
        return value


class ConfigModel(_Model):
    product: ProductModel = ProductModel()
    timezone: TimezoneName = "UTC"
    session_timeout_minutes: int = Field(default=30, ge=1, le=24 * 60)
    time_tolerance_minutes: int = Field(default=60, ge=0, le=24 * 60)
    dimensions: list[DimensionModel] = []
    funnels: list[FunnelModel] = []
    retention: RetentionModel = RetentionModel()
    metric_importance: dict[str, Annotated[float, Field(ge=0)]] = {}
    session_properties: SessionPropertiesModel = SessionPropertiesModel()
    mixpanel_project_timezone: TimezoneName | None = None
    reports: list[ReportModel] = []
    event_properties: dict[str, str] = {}
    identity: str | None = None              # simplified | original; unset: detected from the data

    @field_validator("identity")
    @classmethod
    def _identity(cls, value: str | None) -> str | None:
        if value is not None and value not in IDENTITY_MODES:
            raise ValueError(f"CONFIG_IDENTITY: identity must be one of {', '.join(IDENTITY_MODES)} (Mixpanel's "
                             f"Simplified or Original ID Merge; leave it out to detect it from the data), got {value!r}")
        return value

    @field_validator("metric_importance", mode="before")
    @classmethod
    def _weights_are_numbers(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            for k, v in value.items():
                if isinstance(v, bool):
                    raise ValueError(f"CONFIG_TYPE: the weight of {k!r} must be a number, got {v!r}")
        return value


_TYPE_WORDS = {"list": "a list", "dict": "a mapping", "model": "a mapping", "int": "a whole number",
               "float": "a number", "string": "text", "bool": "true or false"}


def _key(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _fields_at(loc: tuple) -> list[str]:
    """The known keys of the model that holds `loc` (for "did you mean")."""
    model: Any = ConfigModel
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        ann = info.annotation
        for candidate in (ann, *getattr(ann, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
        else:
            return []
    return list(getattr(model, "model_fields", {}))


def _problem(error: dict, where: str) -> str:
    loc, kind, msg = tuple(error["loc"]), error["type"], error["msg"]
    key = _key(loc)
    value = error.get("input")
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc), n=1)
        hint = f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(_fields_at(loc))})"
        return f"CONFIG_UNKNOWN_KEY: {where}: {key}: unknown key{hint}"
    if kind == "missing":
        return f"CONFIG_MISSING_KEY: {where}: {key}: required key is missing"
    if kind == "value_error":
        text = msg.removeprefix("Value error, ")
        code, _, rest = text.partition(": ")
        if code.startswith("CONFIG_"):
            return f"{code}: {where}: {key}: {rest}"
        return f"CONFIG_VALUE: {where}: {key}: {text}"
    if kind in ("too_short", "too_long"):
        if loc and loc[-1] == "steps":
            return f"CONFIG_FUNNEL: {where}: {key}: a funnel needs at least two steps, got {value!r}"
        return f"CONFIG_RANGE: {where}: {key}: {msg.lower()}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"CONFIG_RANGE: {where}: {key}: {msg.lower().replace('input should be', 'must be')}, got {value!r}"
    expected = next((w for t, w in _TYPE_WORDS.items() if kind.startswith(t)), None)
    if expected:
        got = f"{type(value).__name__} {value!r}" if value is not None else "nothing (null)"
        hint = ""
        if expected == "a list" and isinstance(value, str):
            hint = f" (write [{value}, ...] or one item per line starting with '- ')"
        return f"CONFIG_TYPE: {where}: {key}: must be {expected}, got {got}{hint}"
    return f"CONFIG_VALUE: {where}: {key}: {msg}"


def validate_mapping(raw: Any, where: str) -> ConfigModel:
    """Validate a parsed YAML document; raises ConfigError listing every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"CONFIG_SHAPE: {where}: the file must hold a mapping of keys, got {type(raw).__name__}")
    try:
        return ConfigModel.model_validate(dict(raw))
    except ValidationError as exc:
        problems = [_problem(e, where) for e in exc.errors(include_url=False)]
        raise ConfigError(_summary(problems), problems) from None


def _summary(problems: list[str]) -> str:
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''}: hitcraft check-config lists "
                          "them)" if more else "")


def to_product_config(model: ConfigModel, path: Path, env: Mapping[str, str]) -> ProductConfig:
    where = path.name
    tz = model.timezone
    if env.get("HITCRAFT_TIMEZONE"):
        tz = env["HITCRAFT_TIMEZONE"].strip()
        if problem := timezone_problem(tz):
            raise ConfigError(f"CONFIG_TIMEZONE: HITCRAFT_TIMEZONE (overrides {where}: timezone): {problem}")
    project_tz = model.mixpanel_project_timezone
    if env.get("MIXPANEL_PROJECT_TIMEZONE"):
        project_tz = env["MIXPANEL_PROJECT_TIMEZONE"].strip()
        if problem := timezone_problem(project_tz):
            raise ConfigError(f"CONFIG_TIMEZONE: MIXPANEL_PROJECT_TIMEZONE (overrides {where}: "
                              f"mixpanel_project_timezone): {problem}")
    config = ProductConfig(
        path=path,
        product=model.product.model_dump(),
        timezone=tz,
        session_timeout_minutes=model.session_timeout_minutes,
        time_tolerance_minutes=model.time_tolerance_minutes,
        dimensions=tuple(Dimension(d.name, d.property) for d in model.dimensions),
        funnels=tuple(Funnel(f.name, tuple(f.steps), f.window_days, tuple(f.exclusions), tuple(f.hold_constant))
                      for f in model.funnels),
        retention=model.retention.model_dump(),
        metric_importance=dict(model.metric_importance),
        session_properties=model.session_properties.model_dump(),
        mixpanel_project_timezone=project_tz,
        event_properties=dict(model.event_properties),
        identity=model.identity,
        reports=tuple(Report(r.name, r.cadence, r.title, tuple(r.kinds), tuple(r.areas), r.top, tuple(r.kpis),
                             tuple(Recipient(x.email, x.name, x.role, tuple(x.areas), x.timezone) for x in r.recipients))
                      for r in model.reports),
    )
    problems = structural_problems(config)
    if problems:
        raise ConfigError(_summary(problems), problems)
    return config


def parse_config(path: Path, env: Mapping[str, str]) -> ProductConfig:
    if not path.exists():
        raise ConfigError(f"CONFIG_MISSING: {path}: the config file does not exist (HITCRAFT_CONFIG)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"CONFIG_YAML: {path.name}: not valid YAML{at}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"CONFIG_MISSING: {path}: cannot read the config file: {exc}") from None
    return to_product_config(validate_mapping(raw, path.name), path, env)
