"""The product config file (HITCRAFT_CONFIG): the only place the engine learns about a product."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

BUNDLED_CONFIG = Path(__file__).resolve().parent / "hitcraft.yaml"


class ConfigError(ValueError):
    """The config file is missing or invalid; the message says which key and why."""


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

    @property
    def max_window_days(self) -> int:
        """The longest funnel conversion window (7 days with no funnel): how long entry days stay open."""
        return max((f.window_days for f in self.funnels), default=7)

    @property
    def product_name(self) -> str:
        return str(self.product.get("name", "product"))


def config_path() -> Path:
    return Path(os.environ.get("HITCRAFT_CONFIG") or BUNDLED_CONFIG)


def load_config(path: Path | str | None = None) -> ProductConfig:
    """Read and validate the config; HITCRAFT_TIMEZONE overrides its `timezone`."""
    path = Path(path) if path else config_path()
    if not path.exists():
        raise ConfigError(f"CONFIG_MISSING: config file {path} does not exist (HITCRAFT_CONFIG)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"CONFIG_YAML: {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"CONFIG_SHAPE: {path} must hold a mapping of keys")
    tz = os.environ.get("HITCRAFT_TIMEZONE") or raw.get("timezone") or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"CONFIG_TIMEZONE: unknown timezone {tz!r} (config `timezone` or HITCRAFT_TIMEZONE)") from None
    dims = []
    for d in raw.get("dimensions") or []:
        if not isinstance(d, dict) or not d.get("name") or not d.get("property"):
            raise ConfigError(f"CONFIG_DIMENSION: each dimension needs a name and a property, got {d!r}")
        dims.append(Dimension(str(d["name"]), str(d["property"])))
    funnels = []
    for f in raw.get("funnels") or []:
        steps = tuple(f.get("steps") or ())
        if not f.get("name") or len(steps) < 2:
            raise ConfigError(f"CONFIG_FUNNEL: a funnel needs a name and at least two steps, got {f!r}")
        window = int(f.get("window_days", 7))
        if not 1 <= window <= 366:
            raise ConfigError(f"CONFIG_FUNNEL: window_days of {f['name']!r} must be 1..366, got {window}")
        funnels.append(Funnel(str(f["name"]), steps, window, tuple(f.get("exclusions") or ()),
                              tuple(f.get("hold_constant") or ())))
    timeout = int(raw.get("session_timeout_minutes", 30))
    if not 1 <= timeout <= 24 * 60:
        raise ConfigError(f"CONFIG_SESSION_TIMEOUT: session_timeout_minutes must be 1..1440, got {timeout}")
    return ProductConfig(
        path=path,
        product=dict(raw.get("product") or {}),
        timezone=tz,
        session_timeout_minutes=timeout,
        time_tolerance_minutes=int(raw.get("time_tolerance_minutes", 60)),
        dimensions=tuple(dims),
        funnels=tuple(funnels),
        retention=dict(raw.get("retention") or {}),
        metric_importance={str(k): float(v) for k, v in (raw.get("metric_importance") or {}).items()},
    )
