"""The insights asset: the day's findings, ranked, with a recommendation each (rules, or an LLM)."""

import dataclasses
from datetime import date

import dagster as dg

from hitcraft_assets.analysis.assets import daily_metrics, funnels, held_metadata, segments
from hitcraft_assets.analysis.days import held_local_days
from hitcraft_assets.config import load_config
from hitcraft_assets.detection.assets import anomalies, trends
from hitcraft_assets.insights import (
    generate_insights,
    previous_state,
    rank_insights,
    rule_recommendation,
    with_status,
    write_insights,
)
from hitcraft_assets.insights.llm import LLMResource
from hitcraft_assets.partitions import DAILY
from hitcraft_assets.progress import report_progress
from hitcraft_assets.retries import NETWORK_RETRY, only_transient_retries
from hitcraft_assets.warehouse import WarehouseResource


def with_llm_text(ranked: list, llm: LLMResource, config, log) -> list:
    """Rule text for every insight; for the top `llm.max_insights` open ones, the LLM's recommendation and
    plain-language explanation when its answer was accepted (every number grounded in the evidence)."""
    out = [dataclasses.replace(i, recommendation=rule_recommendation(i), generated_by="rules") for i in ranked]
    if not llm.enabled():
        return out
    top = [i for i in out if i.status != "resolved"][: llm.max_insights]
    items = [{"insight_id": i.insight_id, "kind": i.kind, "title": i.title, "summary": i.summary,
              "evidence": i.evidence} for i in top]
    context = {"product": config.product_name, "goals": config.product.get("goals", []),
               "owners": sorted((config.product.get("owners") or {}).keys())}
    answers = {a["insight_id"]: a for a in llm.write_recommendations(items, context, log=log)}
    final = []
    for i in out:
        a = answers.get(i.insight_id)
        if a and a.get("generated_by"):
            i = dataclasses.replace(i, recommendation=a["recommendation"], summary=a["explanation"] or i.summary,
                                    generated_by=a["generated_by"])
        final.append(i)
    return final


@dg.asset(
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=NETWORK_RETRY,
    pool="duckdb",
    group_name="insights",
    kinds={"duckdb", "python", "openai"},
    owners=["team:product-analytics"],
    tags={"stage": "insights"},
    deps=[anomalies, trends, segments, funnels, daily_metrics],
)
def insights(context: dg.AssetExecutionContext, duckdb: WarehouseResource, llm: LLMResource) -> dg.MaterializeResult:
    """What matters today, ranked by business impact: risks (drop-offs, worsening steps, segments converting
    worse), opportunities, successes, trends and anomalies (with their root cause), each with the evidence
    it rests on, a stable id (new / ongoing / resolved across days) and a concrete recommendation.

    Grain: one row per finding and day in `insights.insights`. Recommendations come from deterministic
    rules, or, with OPENAI_API_KEY set, from an LLM for the top insights of the run's last day, accepted
    only when every number it writes is in the evidence. The config's business context travels with each.
    """
    return _insights(context, duckdb, llm)


def _insights(context, duckdb: WarehouseResource, llm: LLMResource) -> dg.MaterializeResult:
    """The body of `insights`; only transient faults may be retried (the LLM falls back to rules by itself)."""
    with only_transient_retries("computing insights"):
        config = load_config()
        days = sorted(date.fromisoformat(k) for k in context.partition_keys)
        with duckdb.get_connection() as conn:
            held = held_local_days(conn, days, config)
        readable = [d for d in days if d not in held]
        for n, day in enumerate(days, start=1):
            if day in held:
                context.add_asset_metadata(held_metadata(held[day]), partition_key=day.isoformat())
                context.log.warning(f"insights {day}: not computed, {held[day]}")
                report_progress("insights", n, len(days), day.isoformat(), {"held": 1})
                continue
            with duckdb.get_connection() as conn:
                previous_ids, previous_open = previous_state(conn, day)
                found = generate_insights(conn, day, config)
            ranked = rank_insights(with_status(found, previous_ids, previous_open, day=day), config)
            # the LLM writes for the day people read (the last of the run): a backfill stays within budget
            final = with_llm_text(ranked, llm if day == readable[-1] else LLMResource(), config, context.log)
            with duckdb.get_connection() as conn:
                written = write_insights(conn, day, final)
            top = [i for i in final if i.status != "resolved"][:5]
            meta = {"insights": written, "new": sum(i.status == "new" for i in final),
                    "ongoing": sum(i.status == "ongoing" for i in final),
                    "resolved": sum(i.status == "resolved" for i in final),
                    "llm_written": sum(i.generated_by.startswith("llm:") for i in final),
                    "top": dg.MetadataValue.md("\n".join(f"{i.priority_rank}. [{i.kind}] {i.title}" for i in top) or "none")}
            context.add_asset_metadata(meta, partition_key=day.isoformat())
            report_progress("insights", n, len(days), day.isoformat(),
                            {k: v for k, v in meta.items() if isinstance(v, int)})
        return dg.MaterializeResult()


insight_assets = [insights]
