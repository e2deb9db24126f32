"""The product config file (HITCRAFT_CONFIG): the only place the engine learns about a product.

The file is validated by a pydantic schema (`schema.py`: unknown keys are refused, types and ranges
checked) before any run starts; a mistake is a `ConfigError` whose message starts with a stable code and
names the file and the key (`CONFIG_UNKNOWN_KEY: my.yaml: session_timout_minutes: unknown key (did you
mean session_timeout_minutes?)`). The validated file becomes the frozen dataclasses below, which the
engine passes around; `ProductConfig.check()` applies the structural rules again to a config built in code.

Property names from the config (dimensions, hold-constant properties, the session columns) reach SQL
through one rule only: `property_path`, JSON pointers passed as DuckDB parameters (the literal key, and the
nested path of a dotted name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BUNDLED_CONFIG = Path(__file__).resolve().parent / "hitcraft.yaml"
RESERVED_SEGMENT_NAMES = ("all",)
MAX_NAME_LENGTH = 255
# The core.sessions columns that hold a session's first event's value of a property, and the Mixpanel
# property each reads unless the config's `session_properties` says otherwise.
DEFAULT_SESSION_PROPERTIES = {"platform": "$os", "country": "mp_country_code", "utm_source": "utm_source"}
# Mixpanel's ID merge systems (config `identity`): Simplified ID Merge, or the legacy Original ID Merge.
IDENTITY_MODES = ("simplified", "original")


class ConfigError(ValueError):
    """The config file (or a setting that overrides it) is missing or invalid. The message starts with a
    stable code (`CONFIG_...`) and names the file and the key; `problems` lists every problem found."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.code = message.split(":", 1)[0]
        self.problems = problems or [message]


def name_problem(value: Any, what: str) -> str | None:
    """Why `value` cannot be an event or property name, or None: names are non-empty text of at most 255
    characters without control characters (a NUL or a line break in a name is a typo, not a name)."""
    if not isinstance(value, str):
        return f"{what} must be text, got {type(value).__name__} {value!r}"
    if not value.strip():
        return f"{what} must not be empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"{what} is longer than {MAX_NAME_LENGTH} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{what} {value!r} contains a control character"
    return None


def property_path(name: str, *, nested: bool = False) -> str:
    """The JSON pointer (RFC 6901) of an event property, for DuckDB's json_extract functions.

    The one rule by which a configured property name reaches SQL (always as a parameter): any name is
    safe, `$os`, `utm source`, `a"b` and `a/b` included. By default the pointer of the top-level key named
    exactly `name`; with `nested=True` the pointer of the nested path its dots spell (`plan.tier` ->
    `/plan/tier`, reading `{"plan": {"tier": "pro"}}`), the same pointer for a name without a dot. SQL gets
    both, as a pair [literal, nested] per property, and reads the literal key when the event has it (any
    value, null included: Mixpanel names may contain dots), else the nested path."""
    parts = name.split(".") if nested else [name]
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def timezone_problem(name: Any) -> str | None:
    """Why `name` is not an IANA timezone (e.g. `Europe/Berlin`, `UTC`), or None."""
    if not isinstance(name, str) or not name.strip():
        return f"must be an IANA timezone name such as Europe/Berlin, got {name!r}"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):   # OSError: a folder such as 'Pacific'
        return f"unknown timezone {name!r} (an IANA name such as Europe/Berlin or America/New_York)"
    return None


@dataclass(frozen=True)
class Dimension:
    name: str
    property: str


@dataclass(frozen=True)
class Funnel:
    name: str
    steps: tuple[str, ...]
    window_days: int = 7
    exclusions: tuple[str, ...] = ()
    hold_constant: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str = ""
    role: str | None = None
    areas: tuple[str, ...] = ()
    timezone: str | None = None      # None: the reporting timezone


@dataclass(frozen=True)
class Report:
    """A report profile (config `reports:`): who gets which digest, how often."""

    name: str
    cadence: str                     # daily | weekly | monthly
    title: str
    kinds: tuple[str, ...]
    areas: tuple[str, ...] = ()
    top: int = 5
    kpis: tuple[str, ...] = ()
    recipients: tuple[Recipient, ...] = ()


@dataclass(frozen=True)
class ProductConfig:
    path: Path
    product: dict[str, Any]
    timezone: str
    session_timeout_minutes: int
    time_tolerance_minutes: int
    dimensions: tuple[Dimension, ...]
    funnels: tuple[Funnel, ...]
    retention: dict[str, Any]
    metric_importance: dict[str, float] = field(default_factory=dict)
    session_properties: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_SESSION_PROPERTIES))
    mixpanel_project_timezone: str | None = None
    reports: tuple[Report, ...] = ()
    # an event's key property ({"Feature Used": "feature"}): its metrics are also broken down by the
    # property's values (dimension = the property's name), so an insight can name the feature
    event_properties: dict[str, str] = field(default_factory=dict)
    # Mixpanel's ID merge system (config `identity`): simplified | original; None: detected from the data
    identity: str | None = None

    @property
    def max_window_days(self) -> int:
        """The longest funnel conversion window (7 days with no funnel): how long entry days stay open."""
        return max((f.window_days for f in self.funnels), default=7)

    @property
    def product_name(self) -> str:
        return str(self.product.get("name", "product"))

    def check(self) -> None:
        """The structural rules of the schema, for a config built in code; raises ConfigError."""
        problems = structural_problems(self)
        if problems:
            raise ConfigError(problems[0], problems)


def structural_problems(config: ProductConfig) -> list[str]:
    """Rules across keys that every SQL builder relies on: unique dimension names that are not `all`,
    valid property names, unique funnel names with at least two steps and a window of at least a day."""
    where = config.path.name if config.path else "config"
    out: list[str] = []
    names = [d.name for d in config.dimensions]
    for i, dim in enumerate(config.dimensions):
        key = f"dimensions[{i}]"
        if problem := name_problem(dim.name, "the dimension name"):
            out.append(f"CONFIG_DIMENSION: {where}: {key}.name: {problem}")
        elif dim.name in RESERVED_SEGMENT_NAMES:
            out.append(f"CONFIG_DIMENSION: {where}: {key}.name: {dim.name!r} is reserved (it labels totals)")
        elif dim.name in names[:i]:
            out.append(f"CONFIG_DIMENSION: {where}: {key}.name: dimension name {dim.name!r} is repeated")
        if problem := name_problem(dim.property, "the property"):
            out.append(f"CONFIG_DIMENSION: {where}: {key}.property: {problem}")
    funnel_names = [f.name for f in config.funnels]
    for i, funnel in enumerate(config.funnels):
        key = f"funnels[{i}]"
        if funnel.name in funnel_names[:i]:
            out.append(f"CONFIG_FUNNEL: {where}: {key}.name: funnel name {funnel.name!r} is repeated")
        if len(funnel.steps) < 2:
            out.append(f"CONFIG_FUNNEL: {where}: {key}.steps: funnel {funnel.name!r} needs at least two steps")
        for j, step in enumerate(funnel.steps):
            if problem := name_problem(step, "the step's event name"):
                out.append(f"CONFIG_FUNNEL: {where}: {key}.steps[{j}]: {problem}")
        if not 1 <= funnel.window_days <= 366:
            out.append(f"CONFIG_FUNNEL: {where}: {key}.window_days: must be 1..366 days, got {funnel.window_days}")
        for j, prop in enumerate(funnel.hold_constant):
            if problem := name_problem(prop, "the property"):
                out.append(f"CONFIG_FUNNEL: {where}: {key}.hold_constant[{j}]: {problem}")
    report_names = [r.name for r in config.reports]
    funnels = {f.name for f in config.funnels}
    known_areas = set((config.product.get("owners") or {})) | set((config.product.get("areas") or {}))
    for i, report in enumerate(config.reports):
        key = f"reports[{i}]"
        if report.name in report_names[:i]:
            out.append(f"CONFIG_REPORT: {where}: {key}.name: report name {report.name!r} is repeated")
        for j, kpi in enumerate(report.kpis):
            if kpi.startswith("funnel:") and kpi.removeprefix("funnel:") not in funnels:
                out.append(f"CONFIG_REPORT: {where}: {key}.kpis[{j}]: no funnel named {kpi.removeprefix('funnel:')!r}")
        areas = [(f"{key}.areas[{j}]", a) for j, a in enumerate(report.areas)]
        areas += [(f"{key}.recipients[{k}].areas[{j}]", a) for k, r in enumerate(report.recipients)
                  for j, a in enumerate(r.areas)]
        for where_key, area in areas:
            if known_areas and area not in known_areas:
                out.append(f"CONFIG_REPORT: {where}: {where_key}: unknown area {area!r} (areas are the names in "
                           f"product.owners or product.areas: {', '.join(sorted(known_areas))})")
        emails = [r.email.lower() for r in report.recipients]
        for k, email in enumerate(emails):
            if email in emails[:k]:
                out.append(f"CONFIG_REPORT: {where}: {key}.recipients[{k}].email: {email!r} is listed twice")
    for event, prop in config.event_properties.items():
        key = f"event_properties.{event}"
        if problem := name_problem(event, "the event name"):
            out.append(f"CONFIG_EVENT_PROPERTY: {where}: {key}: {problem}")
        if problem := name_problem(prop, "the property"):
            out.append(f"CONFIG_EVENT_PROPERTY: {where}: {key}: {problem}")
        elif prop in names or prop in RESERVED_SEGMENT_NAMES:
            out.append(f"CONFIG_EVENT_PROPERTY: {where}: {key}: {prop!r} is also a dimension's name (or reserved); "
                       f"the breakdown by an event's property is named after the property, so rename one")
    for column, prop in config.session_properties.items():
        if column not in DEFAULT_SESSION_PROPERTIES:
            out.append(f"CONFIG_UNKNOWN_KEY: {where}: session_properties.{column}: unknown session column "
                       f"(one of {', '.join(DEFAULT_SESSION_PROPERTIES)})")
        elif prop is not None and (problem := name_problem(prop, "the property")):
            out.append(f"CONFIG_PROPERTY: {where}: session_properties.{column}: {problem}")
    return out


def config_path() -> Path:
    return Path(os.environ.get("HITCRAFT_CONFIG") or BUNDLED_CONFIG)


def load_config(path: Path | str | None = None) -> ProductConfig:
    """Read and validate the config file; HITCRAFT_TIMEZONE overrides its `timezone` and
    MIXPANEL_PROJECT_TIMEZONE its `mixpanel_project_timezone`. Raises ConfigError."""
    from hitcraft_assets.config.schema import parse_config

    return parse_config(Path(path) if path else config_path(), os.environ)
