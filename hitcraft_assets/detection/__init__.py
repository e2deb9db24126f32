"""Detection stage: the statistics behind alerts and insights, as plain functions on arrays.

No Dagster and no DuckDB here: the assets read series from the warehouse, call these functions and
write what they return. One module per method, each documenting its defaults and the pitfalls it
guards against (analytics-methods.md §2c-2h, §3):

- :mod:`.anomalies`: day-by-day anomalies with a weekly baseline, robust scale, count awareness, one
  alert per level shift, no look-ahead; FDR control over a day's scan.
- :mod:`.trends`: Mann-Kendall with Sen's slope and a Hamed-Rao autocorrelation correction; 7/28-day
  changes.
- :mod:`.changepoints`: PELT level shifts with a robust BIC penalty and a trend-aware confirmation.
- :mod:`.rootcause`: ThirdEye-style contribution of segments to a change.
"""

from hitcraft_assets.detection.anomalies import (
    AnomalyOptions,
    FdrDecision,
    PointAssessment,
    assess_latest,
    assess_series,
    detect_anomalies,
    fdr_decision,
    z_to_p_value,
)
from hitcraft_assets.detection.changepoints import (
    ChangePoint,
    NoiseScale,
    WeeklyProfile,
    deseasonalize,
    detect_change_points,
    find_change_points,
    mad_scale,
    noise_scale,
    robust_sigma,
    weekly_is_significant,
    weekly_profile,
)
from hitcraft_assets.detection.rootcause import Contribution, rank_contributors, segment_contributions
from hitcraft_assets.detection.trends import (
    MannKendallResult,
    WindowChange,
    line_change,
    mann_kendall,
    sens_slope,
    trend_summary,
    window_change,
)

__all__ = [
    "AnomalyOptions",
    "ChangePoint",
    "Contribution",
    "FdrDecision",
    "MannKendallResult",
    "NoiseScale",
    "PointAssessment",
    "WeeklyProfile",
    "WindowChange",
    "assess_latest",
    "assess_series",
    "deseasonalize",
    "detect_anomalies",
    "detect_change_points",
    "fdr_decision",
    "find_change_points",
    "line_change",
    "mad_scale",
    "mann_kendall",
    "noise_scale",
    "rank_contributors",
    "robust_sigma",
    "segment_contributions",
    "sens_slope",
    "trend_summary",
    "weekly_is_significant",
    "weekly_profile",
    "window_change",
    "z_to_p_value",
]
