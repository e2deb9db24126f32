"""The per-day quality gate: which loaded days are good enough to analyse (pure rules, no Dagster).

A day is judged by evidence, not by a bare ratio. Two malformed lines among ten on a product's first day
are 20% of that day, yet say nothing about the export being broken; 3,000 among 5,000 do. A day is
**held** when

- its body could not be read whole (a truncated or corrupt compressed file), or
- its rejected lines show with confidence that it is broken: the one-sided 95% Clopper-Pearson lower bound
  of the rejected share is above `HOLD_SHARE` (5%) and at least `MIN_REJECTED_TO_HOLD` (10) lines were
  rejected.

A held day's rows stay in raw.events (nothing is lost), but no analysis reads them: the analysis, detection
and insight assets skip the local days it overlaps, and `core.identified_events` leaves its events out.
Re-loading the day (after replacing its file) judges it again; a day that passes is analysed as usual.
A day that is not held **warns** when more than `WARN_SHARE` (0.1%) of its lines were rejected, when its
file was present but empty, or when many rows carry a placeholder distinct_id.
"""

from __future__ import annotations

from dataclasses import dataclass

from hitcraft_assets.lazy import lazy

_stats = lazy("scipy.stats")

WARN_SHARE = 0.001
HOLD_SHARE = 0.05
MIN_REJECTED_TO_HOLD = 10
CONFIDENCE = 0.95
PLACEHOLDER_WARN_SHARE = 0.001
MIN_PLACEHOLDERS_TO_WARN = 5

PASS, WARN, HELD = "pass", "warn", "held"


def share_lower_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson lower bound of a binomial share k/n (0 when k = 0)."""
    if n <= 0 or k <= 0:
        return 0.0
    return float(_stats.beta.ppf(1 - confidence, k, n - k + 1))


@dataclass(frozen=True)
class Verdict:
    gate: str               # pass | warn | held
    reason: str | None      # one sentence a person can act on


def judge_day(*, lines: int, rejected: int, source_found: bool, fault: str | None = None,
              rows: int = 0, placeholder_ids: int = 0) -> Verdict:
    """The gate's decision for one loaded day."""
    if fault:
        return Verdict(HELD, f"the file could not be read whole ({fault}); replace it and load the day again")
    share = rejected / lines if lines else 0.0
    # the lower bound is never above the share itself, so it is computed (scipy: about 1 s to import) only
    # for a day whose share could hold it
    lower = share_lower_bound(rejected, lines) if rejected >= MIN_REJECTED_TO_HOLD and share > HOLD_SHARE else 0.0
    if rejected >= MIN_REJECTED_TO_HOLD and lower > HOLD_SHARE:
        return Verdict(HELD, f"{rejected:,} of {lines:,} lines rejected ({share:.1%}; at least {lower:.1%} with "
                             f"{CONFIDENCE:.0%} confidence, above {HOLD_SHARE:.0%}): see raw.rejected_events")
    notes = []
    if rejected and share > WARN_SHARE:
        notes.append(f"{rejected:,} of {lines:,} lines rejected ({share:.1%}, not enough evidence of a broken export)")
    if source_found and lines == 0:
        notes.append("the file is present but empty")
    if placeholder_ids >= MIN_PLACEHOLDERS_TO_WARN and rows and placeholder_ids / rows > PLACEHOLDER_WARN_SHARE:
        notes.append(f"{placeholder_ids:,} of {rows:,} rows have a placeholder distinct_id such as 'undefined'")
    if notes:
        return Verdict(WARN, "; ".join(notes))
    return Verdict(PASS, None)
