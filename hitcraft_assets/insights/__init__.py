"""Insights stage: findings from the analysis and detection tables, ranked, with rule-based
recommendations (generators.py, ranking.py, rules.py; the SQL in sql/insights/insights.sql)."""

from hitcraft_assets.insights.generators import (
    Insight,
    generate_insights,
    previous_state,
    with_status,
    write_insights,
)
from hitcraft_assets.insights.ranking import rank_insights
from hitcraft_assets.insights.rules import numbers_allowed, numbers_in, rule_recommendation

__all__ = [
    "Insight",
    "generate_insights",
    "numbers_allowed",
    "numbers_in",
    "previous_state",
    "rank_insights",
    "rule_recommendation",
    "with_status",
    "write_insights",
]
