"""The `hitcraft` command: what a person does most, driven through a real Dagster instance.

    hitcraft generate-demo [--days N --users N --events-per-day N --seed S --out DIR --end-date D]
    hitcraft run [--from YYYY-MM-DD] [--to YYYY-MM-DD]
    hitcraft evaluate [--out DIR] [--days N] [--end-date D] [--seed S | --seeds S,S] [--sizes DAU,DAU]
    hitcraft check-config [FILE] [--warehouse PATH]
    hitcraft send-reports --profile NAME [--period D] [--dry-run]
    hitcraft insights [--date D] [--kind K] [--limit N] [--all] [--json]
    hitcraft serve [--host 127.0.0.1] [--port 8000]
    hitcraft api-keys create NAME [--scope read|admin] | list | revoke NAME
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from hitcraft_assets import settings


def existing_tables(conn) -> set[str]:
    """Every table of a DuckDB database as `schema.table` (here, not from warehouse.py, so that commands
    such as `hitcraft serve` and `hitcraft --help` do not load Dagster)."""
    return {r[0] for r in conn.execute("select schema_name || '.' || table_name from duckdb_tables()").fetchall()}

# the instance config: a copy of the repository's dagster.yaml, packaged so that an installed wheel has it
INSTANCE_CONFIG = Path(__file__).resolve().parent / "dagster.yaml"
EXIT_HELD_DAYS = 3   # the run finished, but the quality gate held some days back from analysis
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl(\.gz)?$")


# With DAGSTER_PG_URL set, a new DAGSTER_HOME's instance keeps its runs, events, schedules and pools in
# that Postgres database (dagster-postgres), so that a webserver, the daemon and workers on other machines
# share one instance; the URL is read from the environment when the instance starts, never written down.
POSTGRES_STORAGE = """
# DAGSTER_PG_URL was set when hitcraft created this file: runs, event logs, schedules and concurrency pools
# live in that Postgres database (read from the environment at each start).
storage:
  postgres:
    postgres_url:
      env: DAGSTER_PG_URL
"""


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME (default .dagster_home/), holding the project's dagster.yaml (with Postgres storage when
    DAGSTER_PG_URL is set and the folder has no dagster.yaml yet)."""
    pg_url = os.environ.get("DAGSTER_PG_URL", "")
    if pg_url.split("://")[0] in ("postgres", "postgresql"):
        # the URL itself is never printed: it may hold a password
        raise SystemExit("DAGSTER_PG_URL: write the URL as postgresql+psycopg2://user:password@host:port/db "
                         "(SQLAlchemy 2.1 takes a bare postgresql:// URL to psycopg 3, whose SQL dagster-postgres "
                         "0.29 does not support)")
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        text = INSTANCE_CONFIG.read_text()
        if pg_url:
            text += POSTGRES_STORAGE
        (home / "dagster.yaml").write_text(text)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def export_days(directory: Path) -> list[date]:
    """The days that have an export file in `directory`, in order."""
    found = sorted(date.fromisoformat(m.group(1)) for p in directory.glob("*.jsonl*")
                   if (m := _DAY_FILE.match(p.name)))
    return found


def cmd_generate_demo(args: argparse.Namespace) -> int:
    from hitcraft_assets.demo.simulator import generate_demo

    out = Path(args.out) if args.out else settings.demo_dir()
    t0 = time.monotonic()
    options = {k: v for k, v in {"users": args.users, "events_per_day": args.events_per_day,
                                 "end_date": args.end_date}.items() if v is not None}
    if getattr(args, "flat", False):
        options["flat"] = True
    summary = generate_demo(out, days=args.days, seed=args.seed, **options)
    print(f"wrote {summary.days_written} day files ({summary.start_date} .. {summary.end_date}), "
          f"{summary.events:,} events, {summary.users:,} users, {summary.duplicates:,} duplicate deliveries, "
          f"{summary.malformed} malformed lines, missing days: "
          f"{', '.join(d.isoformat() for d in summary.missing_days) or 'none'} "
          f"to {out} in {time.monotonic() - t0:.1f} s")
    return 0


def _progress_printer(asset: str, done: int, total: int, unit: str, meta: dict) -> None:
    width = len(str(total))
    if asset == "raw_events":
        detail = (f"{meta.get('rows', 0):>9,} events  {meta.get('rejected', 0):>4} rejected  "
                  f"{meta.get('duplicates_removed', 0):>5} duplicates")
        if not meta.get("source_found", True):
            detail += "  (no file: empty day)"
    else:
        detail = ", ".join(f"{k}={v}" for k, v in meta.items() if isinstance(v, (int, float)))
    print(f"  [{done:>{width}}/{total}] {asset:<12} {unit}  {detail}", flush=True)


def resolve_range(args: argparse.Namespace, first_partition: date) -> tuple[date, date]:
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    if settings.source_mode() == "files":
        days = export_days(settings.export_dir())
        if not days and not (args.from_date and args.to_date):
            raise SystemExit(f"hitcraft: no export files (YYYY-MM-DD.jsonl[.gz]) in {settings.export_dir()}")
        default_from, default_to = (days[0], days[-1]) if days else (first_partition, yesterday)
    else:
        default_from, default_to = first_partition, yesterday
    start = args.from_date or max(default_from, first_partition)
    end = args.to_date or min(default_to, yesterday)
    if start < first_partition:
        raise SystemExit(f"hitcraft: --from {start} is before the first partition {first_partition} "
                         f"(set HITCRAFT_START_DATE)")
    if end < start:
        raise SystemExit(f"hitcraft: empty range {start} .. {end}")
    return start, end


def cmd_run(args: argparse.Namespace) -> int:
    from hitcraft_assets.config import load_config

    load_config()   # a mistake in the config stops the command here, before anything runs
    home = ensure_dagster_home()
    if settings.source_mode() == "files" and not os.environ.get("HITCRAFT_EXPORT_DIR"):
        from hitcraft_assets.demo.simulator import demo_exists

        if not demo_exists(settings.demo_dir()):
            print(f"no demo export in {settings.demo_dir()}: generating it (hitcraft generate-demo)")
            cmd_generate_demo(argparse.Namespace(days=90, users=None, events_per_day=None, seed=42,
                                                 out=None, end_date=None))

    import dagster as dg

    from hitcraft_assets import progress
    from hitcraft_assets.definitions import defs
    from hitcraft_assets.partitions import first_partition
    from hitcraft_assets.schedules import RANGE_END, RANGE_START

    first = first_partition()
    if settings.start_date() < first:
        # the partitions were built when the package was imported, before a demo was generated here
        raise SystemExit(f"hitcraft: the source starts on {settings.start_date()}, before the first partition "
                         f"{first}; run the command again (or set HITCRAFT_START_DATE)")
    start, end = resolve_range(args, first)
    n_days = (end - start).days + 1
    print(f"hitcraft run: {start} .. {end} ({n_days} days), source={settings.source_mode()}, "
          f"warehouse={settings.duckdb_path()}, DAGSTER_HOME={home}")
    settings.duckdb_path().parent.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("all_assets_job")
    from hitcraft_assets import runs

    for reaped in runs.reap_dead_runs(instance):   # runs whose process died (kill -9): failed, slots freed
        print(f"hitcraft run: {reaped.message}", flush=True)
    progress.add_listener(_progress_printer)
    t0 = time.monotonic()
    try:
        # in a worker thread: SIGINT/SIGTERM cancel the run (exit 130/143), a pool wait is reported
        outcome = runs.execute_interruptibly(instance, lambda owner_tags: job.execute_in_process(
            instance=instance,
            tags={RANGE_START: start.isoformat(), RANGE_END: end.isoformat(), "hitcraft/command": "run",
                  **owner_tags},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        ), command="run")
    finally:
        progress.remove_listener(_progress_printer)
    if outcome.interrupted:
        return outcome.exit_code
    result = outcome.result
    elapsed = time.monotonic() - t0
    if not result.success:
        print(f"hitcraft run: FAILED (run {result.run_id}) after {elapsed:.1f} s\n{failure_reason(result)}",
              file=sys.stderr)
        return 1
    held = print_summary(start, end, result.run_id, elapsed)
    print_top_insights(end)
    print_deliveries(result)
    if held:
        print(f"hitcraft run: {len(held)} day(s) held back from analysis by the quality gate: "
              f"{', '.join(d.isoformat() for d in held)} (see above; fix the file and run those days again)",
              file=sys.stderr)
        return EXIT_HELD_DAYS
    return 0


def print_deliveries(result) -> None:
    """Where the run's email reports went (the email_reports materializations' metadata)."""
    lines = []
    for mat in result.asset_materializations_for_node("email_reports"):
        deliveries = mat.metadata.get("deliveries")
        if deliveries is not None:
            lines.append(deliveries.value)
    if lines:
        print("\nemail reports:")
        for block in lines:
            for line in block.splitlines():
                print("  " + line.removeprefix("- ").replace("**", ""))


def cmd_send_reports(args: argparse.Namespace) -> int:
    """Render and send one report profile's digest for one period, through Dagster (email_reports_job)."""
    from hitcraft_assets.config import load_config

    config = load_config()
    report = next((r for r in config.reports if r.name == args.profile), None)
    if report is None:
        names = ", ".join(r.name for r in config.reports) or "none"
        print(f"hitcraft: REPORT_UNKNOWN: no report profile {args.profile!r} in {config.path.name} (profiles: {names})",
              file=sys.stderr)
        return 2
    ensure_dagster_home()
    import dagster as dg
    import duckdb

    from hitcraft_assets.definitions import defs
    from hitcraft_assets.delivery.periods import period_ending
    from hitcraft_assets.delivery.schedules import email_run_config

    day = args.period
    if day is None:
        with duckdb.connect(str(settings.duckdb_path()), read_only=True) as conn:
            if "insights.insights" not in existing_tables(conn):
                print("hitcraft: NO_INSIGHTS: the warehouse has no insights yet (hitcraft run)", file=sys.stderr)
                return 2
            day = conn.execute("select max(as_of_date) from insights.insights").fetchall()[0][0]
            if report.cadence != "daily":   # the latest period that is over
                period = period_ending(report.cadence, day)
                if period.end > day:
                    day = period.start - timedelta(days=1)
    period = period_ending(report.cadence, day)
    with duckdb.connect(str(settings.duckdb_path()), read_only=True) as conn:
        has = "insights.insights" in existing_tables(conn) and conn.execute(
            "select count(*) from insights.insights where as_of_date = ?", [period.end]).fetchall()[0][0] > 0
    if not has:
        print(f"hitcraft: REPORT_PERIOD_NOT_READY: {period.label} ends on {period.end}, and there are no insights "
              f"as of that day yet (run the pipeline through it, or choose an earlier --period)", file=sys.stderr)
        return 2
    run_config = email_run_config([report.cadence], [report.name])
    run_config["ops"]["email_reports"]["config"]["send"] = not args.dry_run
    run_config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
    print(f"hitcraft send-reports: {report.name} ({report.cadence}), {period.label} "
          f"({period.start} .. {period.end}){', dry run' if args.dry_run else ''}")
    result = defs.resolve_job_def("email_reports_job").execute_in_process(
        instance=dg.DagsterInstance.get(), partition_key=period.end.isoformat(), run_config=run_config,
        tags={"hitcraft/command": "send-reports"}, raise_on_error=False)
    if not result.success:
        print(f"hitcraft send-reports: FAILED (run {result.run_id})\n{failure_reason(result)}", file=sys.stderr)
        return 1
    print_deliveries(result)
    return 0


def failure_reason(result) -> str:
    """The failed step and the real cause: Dagster's own message ("Error occurred while executing op ...")
    followed by the message of the innermost exception that caused it."""
    failure = next((e for e in result.all_events if e.is_step_failure), None)
    if failure is None or failure.step_failure_data.error is None:
        return ""
    error = failure.step_failure_data.error
    lines = [f"step {failure.step_key}: {error.message.strip()}"]
    while error.cause is not None:
        error = error.cause
        lines.append(f"  caused by {error.message.strip()}")
    return "\n".join(lines)


INSIGHT_FIELDS = ("insight_id", "as_of_date", "kind", "status", "title", "summary", "impact_score", "confidence",
                  "priority_rank", "recommendation", "generated_by", "metric", "dimension", "segment", "evidence",
                  "context")


def read_insights(conn, day: date | None, *, kinds: list[str] | None = None, limit: int = 10,
                  open_only: bool = True) -> tuple[date | None, list[dict]]:
    """The ranked insights of the last as-of day up to `day` (default: the latest) that has data (a day whose
    export file was missing or that the quality gate holds back has nothing to say), as the REST API's
    insight objects (with `evidence` and `context`): (the day, rows)."""
    if "insights.insights" not in existing_tables(conn):
        return None, []
    no_data = ("select event_date from raw.load_log where not source_found or rows_loaded = 0 or gate = 'held'"
               if "raw.load_log" in existing_tables(conn) else "select null::date where false")
    as_of = conn.execute(f"select max(as_of_date) from insights.insights where as_of_date <= coalesce(?, "
                         f"as_of_date) and as_of_date not in ({no_data})", [day]).fetchone()[0]
    if as_of is None:
        return None, []
    rows = conn.execute(
        "select insight_id, as_of_date, kind, status, title, summary, impact_score, confidence, priority_rank, "
        "recommendation, generated_by, evidence->>'metric', evidence->>'dimension', evidence->>'segment', "
        "evidence, context from insights.insights where as_of_date = ? "
        "and (not ? or status <> 'resolved') and (? is null or list_contains(?::varchar[], kind)) "
        "order by priority_rank, insight_id limit ?",
        [as_of, open_only, kinds or None, kinds or [], limit]).fetchall()
    out = []
    for r in rows:
        item = dict(zip(INSIGHT_FIELDS, r))
        for k in ("evidence", "context"):
            item[k] = json.loads(item[k]) if isinstance(item[k], str) else (item[k] or {})
        out.append(item)
    return as_of, out


def insight_lines(rows: list[dict]) -> list[str]:
    """How a terminal shows ranked insights: the title (the same text as the email, the API and the
    dashboard), then the recommendation."""
    lines = []
    for i in rows:
        lines.append(f"{i['priority_rank']:>3}. [{i['kind']}, {i['status']}] {i['title']}")
        lines.append(f"     -> {i['recommendation']}  ({i['generated_by']})")
    return lines


def print_top_insights(day: date, limit: int = 10) -> None:
    """The closing list of `hitcraft run`: the top open insights of the last day up to `day` with data."""
    import duckdb

    with duckdb.connect(str(settings.duckdb_path()), read_only=True) as conn:
        as_of, rows = read_insights(conn, day, limit=limit)
    if as_of is None:
        return
    if not rows:
        print("\nno insights")
        return
    print(f"\ntop insights as of {as_of}:")
    print("\n".join(insight_lines(rows)))


def cmd_insights(args: argparse.Namespace) -> int:
    """A day's ranked insights from the warehouse, read-only, at any time (while a run writes, it waits)."""
    import duckdb

    path = settings.duckdb_path()
    if not path.exists():
        print(f"hitcraft insights: no warehouse at {path}: run `hitcraft run` first", file=sys.stderr)
        return 2
    try:
        with duckdb.connect(str(path), read_only=True) as conn:
            as_of, rows = read_insights(conn, args.date, kinds=args.kind, limit=args.limit,
                                        open_only=not args.all)
    except duckdb.IOException as exc:
        print(f"hitcraft insights: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        from hitcraft_assets.app.models import Insight

        items = [Insight.model_validate({k: v for k, v in r.items() if k not in ("evidence", "context")})
                 .model_dump(mode="json") | {"evidence": r["evidence"], "context": r["context"]} for r in rows]
        print(json.dumps(items, indent=2, ensure_ascii=False))
        return 0
    if as_of is None:
        when = f" up to {args.date}" if args.date else ""
        print(f"no insights{when}: run `hitcraft run` (or the daily schedule) first")
        return 0
    kinds = f" ({', '.join(args.kind)})" if args.kind else ""
    print(f"insights as of {as_of}{kinds}:" if rows else f"no insights as of {as_of}{kinds}")
    if rows:
        print("\n".join(insight_lines(rows)))
    return 0


def _seeds_and_sizes(args: argparse.Namespace) -> list[tuple[int, int | None]]:
    seeds = [int(x) for x in str(args.seeds).split(",")] if args.seeds else [args.seed]
    sizes = [int(x) for x in str(args.sizes).split(",")] if args.sizes else [None]
    if any(x <= 0 for x in sizes):
        raise SystemExit("hitcraft: --sizes are median daily users, positive numbers (e.g. 300,3000,30000)")
    return [(seed, size) for size in sizes for seed in seeds]


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run the whole pipeline on a demo in its own folder and score detection against its ground truth;
    with several seeds or sizes, one folder each (`<out>/dau<size>-seed<seed>`) and a summary table."""
    from hitcraft_assets.demo.simulator import users_for_dau

    runs_ = _seeds_and_sizes(args)
    base = Path(args.out).resolve()
    results = []
    for seed, size in runs_:
        out = base if len(runs_) == 1 else base / f"dau{size or 'demo'}-seed{seed}"
        users = users_for_dau(size) if size else None
        code, result = _evaluate_one(out, args.days, seed, users, args.end_date)
        if code:
            return code
        results.append((size, seed, *result))
    if len(results) > 1:
        from hitcraft_assets.detection.evaluate import format_summary

        summary = format_summary(results)
        print("\n" + summary)
        (base / "evaluation.txt").write_text(summary + "\n")
    return 0


def demo_mismatch(export: Path, days: int, seed: int, users: int | None, end_date: date | None) -> str | None:
    """Why the demo in `export` is not the one asked for (its seed, length, size or last day), or None when
    it is (a missing or incomplete demo: "no complete demo")."""
    from hitcraft_assets.demo.simulator import DEFAULT_USERS, GROUND_TRUTH_FILE, demo_exists

    if not demo_exists(export):
        return "no complete demo"
    truth = json.loads((export / GROUND_TRUTH_FILE).read_text(encoding="utf-8"))
    start, end = date.fromisoformat(truth["start_date"]), date.fromisoformat(truth["end_date"])
    base, length = truth.get("user_base"), (end - start).days + 1
    found = (f"seed {truth['seed']}, {length} days to {end}, a base of {base or '?'} users"
             + (", flat" if truth.get("growth") == "flat" else ""))
    if (truth["seed"] != seed or length != days or (end_date is not None and end != end_date)
            or base != (users or DEFAULT_USERS) or truth.get("growth", "growing") != "growing"):
        return f"it holds {found}"
    return None


def _evaluate_one(out: Path, days: int, seed: int, users: int | None,
                  end_date: date | None = None) -> tuple[int, tuple]:
    """One demo (generated in `out` unless the one asked for is there) through the pipeline, scored; (exit
    code, (evaluation, coverage))."""
    from hitcraft_assets.config import load_config

    load_config()
    os.environ["HITCRAFT_SOURCE"] = "files"
    os.environ["HITCRAFT_EXPORT_DIR"] = str(out / "export")
    os.environ["HITCRAFT_DUCKDB_PATH"] = str(out / "warehouse.duckdb")
    home = ensure_dagster_home()
    why = demo_mismatch(out / "export", days, seed, users, end_date)
    if why is not None:
        if why != "no complete demo":
            print(f"hitcraft evaluate: regenerating the demo in {out / 'export'} ({why})")
        cmd_generate_demo(argparse.Namespace(days=days, users=users, events_per_day=None, seed=seed,
                                             out=str(out / "export"), end_date=end_date))
    import json

    import dagster as dg
    import duckdb

    from hitcraft_assets import progress
    from hitcraft_assets.config import load_config
    from hitcraft_assets.definitions import all_assets, build_resources
    from hitcraft_assets.detection.evaluate import format_coverage, format_report, score, top_insight_coverage
    from hitcraft_assets.partitions import first_partition
    from hitcraft_assets.schedules import RANGE_END, RANGE_START

    truth = json.loads((out / "export" / "ground_truth.json").read_text())
    start, end = date.fromisoformat(truth["start_date"]), date.fromisoformat(truth["end_date"])
    first = first_partition()
    if start < first:
        raise SystemExit(f"hitcraft: the demo starts on {start}, before the first partition {first}: "
                         f"set HITCRAFT_START_DATE={start}")
    for stale in out.glob("warehouse.duckdb*"):
        stale.unlink()
    print(f"hitcraft evaluate: {start} .. {end}, warehouse={out / 'warehouse.duckdb'}, DAGSTER_HOME={home}")
    assets = all_assets
    from hitcraft_assets import runs

    instance = dg.DagsterInstance.get()
    for reaped in runs.reap_dead_runs(instance):
        print(f"hitcraft evaluate: {reaped.message}", flush=True)
    progress.add_listener(_progress_printer)
    t0 = time.monotonic()
    try:
        outcome = runs.execute_interruptibly(instance, lambda owner_tags: dg.materialize(
            assets, resources=build_resources(), instance=instance,
            tags={RANGE_START: start.isoformat(), RANGE_END: end.isoformat(), "hitcraft/command": "evaluate",
                  **owner_tags}, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}}), command="evaluate")
    finally:
        progress.remove_listener(_progress_printer)
    if outcome.interrupted:
        return outcome.exit_code, ()
    result = outcome.result
    if not result.success:
        print(f"hitcraft evaluate: the pipeline FAILED (run {result.run_id})\n{failure_reason(result)}",
              file=sys.stderr)
        return 1, ()
    print(f"pipeline: {time.monotonic() - t0:.1f} s")
    with duckdb.connect(str(out / "warehouse.duckdb"), read_only=True) as conn:
        anomalies = [dict(zip(("metric_date", "metric", "dimension", "segment", "direction"), r)) for r in
                     conn.execute("select metric_date, metric, dimension, segment, direction "
                                  "from analytics.anomalies where status = 'new'").fetchall()]
        trends = [dict(zip(("as_of_date", "metric", "dimension", "segment", "trend", "q_value", "change_points"),
                           r[:6] + (json.loads(r[6]),)))
                  for r in conn.execute("select as_of_date, metric, dimension, segment, trend, q_value, "
                                        "change_points from analytics.trends").fetchall()]
        returns = [dict(zip(("metric_date", "metric", "dimension", "segment", "direction", "significant"), r))
                   for r in conn.execute("select metric_date, metric, dimension, segment, direction, "
                                         "coalesce(significant, false) from analytics.return_rates").fetchall()]
        insight_rows = [dict(zip(("as_of_date", "priority_rank", "status"), r[:3]), evidence=json.loads(r[3]))
                        for r in conn.execute("select as_of_date, priority_rank, status, evidence "
                                              "from insights.insights").fetchall()]
        tested = {d: (t or 0, n - (t or 0)) for d, n, t in conn.execute(
            "select as_of_date, series_tested, totals_tested from analytics.detection_log "
            "where kind = 'anomalies'").fetchall()}
    funnel_steps = {f.name: f.steps for f in load_config().funnels}
    evaluation = score(truth, anomalies, trends, funnel_steps, first_scored_day=start + timedelta(days=14),
                       last_day=end, tested=tested, return_rates=returns)
    coverage = top_insight_coverage(truth, insight_rows, end, funnel_steps=funnel_steps)
    report = format_report(evaluation) + "\n" + format_coverage(coverage)
    print("\n" + report)
    (out / "evaluation.txt").write_text(report + "\n")
    return 0, (evaluation, coverage)


def print_summary(start: date, end: date, run_id: str, elapsed: float) -> list[date]:
    """The run's figures; returns the raw days of the range that the quality gate held back."""
    import duckdb

    with duckdb.connect(str(settings.duckdb_path()), read_only=True) as conn:
        days, lines, rejected, dups, empty = conn.execute(
            "select count(*), coalesce(sum(lines), 0), coalesce(sum(rejected), 0), "
            "coalesce(sum(duplicates_removed), 0), count(*) filter (where not source_found) "
            "from raw.load_log where event_date between ? and ?", [start, end]).fetchall()[0]
        held = conn.execute("select event_date, gate_reason from raw.load_log where event_date between ? and ? "
                            "and gate = 'held' order by 1", [start, end]).fetchall()
        warned = conn.execute("select count(*) from raw.load_log where event_date between ? and ? "
                              "and gate = 'warn'", [start, end]).fetchall()[0][0]
        events, users = conn.execute(
            "select count(*), count(distinct distinct_id) from raw.events where event_date between ? and ?",
            [start, end]).fetchall()[0]
        profiles = conn.execute("select count(*) from raw.user_profiles").fetchall()[0][0]
        tables = existing_tables(conn)
        analysis = []
        for table, label, where in ANALYSIS_SUMMARY:
            if table in tables:
                sql = f"select count(*) from {table}" + (f" where {where}" if where else "")
                params = [start, end] if where and "?" in where else []
                analysis.append((label, conn.execute(sql, params).fetchall()[0][0]))
    print(f"\nrun {run_id} succeeded in {elapsed:.1f} s")
    print(f"  days            {days:>12,}  ({empty} without a file, {warned} with warnings, {len(held)} held)")
    print(f"  events          {events:>12,}")
    print(f"  rejected lines  {rejected:>12,}  (raw.rejected_events)")
    print(f"  duplicates      {dups:>12,}  (removed)")
    print(f"  users           {users:>12,}  distinct ids, anonymous devices included ({profiles:,} profiles)")
    for label, n in analysis:
        print(f"  {label:<15} {n:>12,}")
    if held:
        print("  held back from analysis (raw.load_log.gate = 'held'):")
        for day, reason in held:
            print(f"    {day}: {reason}")
    return [d for d, _ in held]


# (table, label, filter): what the summary counts once the analysis tables exist
ANALYSIS_SUMMARY = [
    ("core.sessions", "sessions", "session_date between ? and ?"),
    ("analytics.daily_metrics", "metric points", "metric_date between ? and ?"),
    ("analytics.funnel_steps", "funnel rows", "cohort_date between ? and ?"),
    ("analytics.retention", "retention rows", None),
    ("analytics.segment_comparisons", "significant", "metric_date between ? and ? and significant"),
    ("analytics.anomalies", "anomalies", "metric_date between ? and ? and status = 'new'"),
    ("analytics.trends", "trend rows", "as_of_date between ? and ?"),
]


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date as YYYY-MM-DD: {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hitcraft", description="HitCraft Analytics Engine")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate-demo", help="write the demo product's export files and ground truth")
    gen.add_argument("--days", type=int, default=90)
    gen.add_argument("--users", type=int, default=None, help="size of the user base (default: the demo's)")
    gen.add_argument("--events-per-day", type=int, default=None, help="scale each day to about N events")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--out", default=None, help="folder (default: data/demo_export)")
    gen.add_argument("--end-date", type=_day, default=None, help="last day (default: yesterday, UTC)")
    gen.add_argument("--flat", action="store_true",
                     help="as many daily users on the last day as on the first (default: a growing product)")
    gen.set_defaults(func=cmd_generate_demo)
    run = sub.add_parser("run", help="materialize every asset for a range of days through Dagster")
    run.add_argument("--from", dest="from_date", type=_day, default=None)
    run.add_argument("--to", dest="to_date", type=_day, default=None)
    run.set_defaults(func=cmd_run)
    ev = sub.add_parser("evaluate", help="run the pipeline on the demo and score detection against its ground truth")
    ev.add_argument("--out", default=str(settings.data_dir() / "evaluate"))
    ev.add_argument("--days", type=int, default=90)
    ev.add_argument("--seed", type=int, default=42)
    ev.add_argument("--seeds", default=None, help="several seeds, comma-separated (e.g. 42,7,2027)")
    ev.add_argument("--end-date", type=_day, default=None,
                    help="the demo's last day (default: yesterday, UTC; a fixed day gives the same demo every day)")
    ev.add_argument("--sizes", default=None,
                    help="demo sizes as median daily users, comma-separated (e.g. 300,3000,30000; default: the demo's)")
    ev.set_defaults(func=cmd_evaluate)
    cc = sub.add_parser("check-config", help="validate a config file (and its names against a warehouse's events)")
    cc.add_argument("file", nargs="?", default=None, help="the config file (default: HITCRAFT_CONFIG or the bundled one)")
    cc.add_argument("--warehouse", default=None, help="a DuckDB warehouse to check names against "
                                                       "(default: HITCRAFT_DUCKDB_PATH if it exists)")
    cc.set_defaults(func=cmd_check_config)
    sr = sub.add_parser("send-reports", help="render and send one report profile's email digest")
    sr.add_argument("--profile", required=True, help="a report profile name (config reports[].name)")
    sr.add_argument("--period", type=_day, default=None,
                    help="a day of the period (default: the latest period with insights that is over)")
    sr.add_argument("--dry-run", action="store_true", help="render only: .eml files in data/outbox/preview/")
    sr.set_defaults(func=cmd_send_reports)
    ins = sub.add_parser("insights", help="print a day's ranked insights from the warehouse (read-only)")
    ins.add_argument("--date", type=_day, default=None, help="the as-of day (default: the latest with data)")
    ins.add_argument("--kind", action="append", choices=["risk", "opportunity", "success", "trend", "anomaly"],
                     help="only these kinds (repeatable)")
    ins.add_argument("--limit", type=int, default=10)
    ins.add_argument("--all", action="store_true", help="include the findings resolved that day")
    ins.add_argument("--json", action="store_true", help="a JSON array of the REST API's insight objects")
    ins.set_defaults(func=cmd_insights)
    add_app_commands(sub)
    return parser


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file; with a warehouse, warn about configured names its events never use."""
    from hitcraft_assets.config import ConfigError, config_path, load_config

    path = Path(args.file) if args.file else config_path()
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"hitcraft check-config: {path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    print(f"{path}: valid ({len(config.funnels)} funnels, {len(config.dimensions)} dimensions, "
          f"timezone {config.timezone}"
          + (f", Mixpanel project timezone {config.mixpanel_project_timezone}" if config.mixpanel_project_timezone
             else "") + ")")
    warehouse = Path(args.warehouse) if args.warehouse else settings.duckdb_path()
    if not warehouse.exists():
        print(f"no warehouse at {warehouse}: event and property names not checked (--warehouse PATH)")
        return 0
    import duckdb

    from hitcraft_assets.config.check import check_against_warehouse

    with duckdb.connect(str(warehouse), read_only=True) as conn:
        warnings, seen = check_against_warehouse(conn, config)
    print(f"checked against {warehouse}: {seen.get('events', 0):,} events, {seen.get('event_names', 0)} event names"
          + (f", last day {seen['last_day']}" if seen.get("last_day") else ""))
    for warning in warnings:
        print(f"  warning {warning}")
    return 0


# -- the app: `hitcraft serve` and `hitcraft api-keys` ---------------------------------------------

SERVE_LOG_CONFIG = {
    # uvicorn's own access log is off: its line carries the query string (unsubscribe tokens) and no timing;
    # the app writes one line per request itself (hitcraft_assets.access, see app/main.py)
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        "hitcraft_assets": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "hitcraft": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
GRACEFUL_SHUTDOWN_S = 5


def snapshot_summary(path: Path) -> str:
    """What a serving snapshot holds, from its meta table: `built ..., last day ..., N insights`."""
    import json

    import duckdb

    if not path.exists():
        return "not built yet (hitcraft run publishes it): the data endpoints answer 503 NO_SNAPSHOT until then"
    try:
        # attached to an in-memory database, not duckdb.connect(path): DuckDB caches instances by path
        with duckdb.connect(":memory:") as conn:
            conn.execute("attach ? as snap (read_only)", [str(path)])
            meta = {k: json.loads(v) for k, v in conn.execute("select key, value from snap.main.meta").fetchall()}
    except duckdb.Error as exc:
        return f"unreadable ({str(exc).splitlines()[0]})"
    tables = meta.get("tables") or {}
    return (f"built {meta.get('built_at', '?')}, last day {meta.get('last_day') or 'none'}, "
            f"{tables.get('insights', 0):,} insights, {len(tables)} tables")


def _listen(host: str, port: int):
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        raise settings.SettingsError(f"SERVE_ADDRESS: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    """The API and the dashboard, one ASGI app under uvicorn, until SIGINT or SIGTERM (then exit 0)."""
    import gc
    import signal

    import uvicorn

    from hitcraft_assets.app.ratelimit import limits_from_env
    from hitcraft_assets.delivery.unsubscribe import SecretKeyError, app_db_path, secret_key

    limits = limits_from_env()             # a bad value stops the command here, not the first request
    try:
        secret_key()                       # the unsubscribe links need it; generated once if missing
    except SecretKeyError as exc:
        print(f"hitcraft: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    serving = settings.serving_path()
    summary = snapshot_summary(serving)
    from hitcraft_assets.app.main import create_app

    # built here rather than by uvicorn's factory=True, so that a mistake in the settings it reads is one line
    # and exit 2 (main()), not a traceback from inside uvicorn
    app = create_app()

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                print(f"hitcraft serve: {url}  (API {url}/v1, docs {url}/docs; Ctrl-C stops)\n"
                      f"  snapshot  {serving}: {summary}\n"
                      f"  app db    {app_db_path()}  (API keys, unsubscribes)\n"
                      f"  rate      {limits.rate_per_s:g} requests/s per key, bursts of {limits.burst}", flush=True)

    config = uvicorn.Config(app, log_config=SERVE_LOG_CONFIG, access_log=False, server_header=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, lifespan="on")
    server = Server(config)
    # uvicorn handles SIGINT/SIGTERM (a graceful shutdown) and afterwards raises the signal again for the
    # handler it found: a no-op one here, so that a stopped server exits 0 instead of dying of the signal
    stopped: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, _frame: stopped.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    # what is loaded now (the app, FastAPI, pydantic, and Dagster, which this module's imports bring in) lives as
    # long as the process: keep it out of the garbage collector's full passes, which otherwise walk ~140k
    # objects (~40 ms, a request's whole p99 budget) every so often under load
    gc.collect()
    gc.freeze()
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:              # uvicorn's exit on a failed startup (it has logged why)
        print(f"hitcraft: SERVE_FAILED: the server did not start (exit {exc.code}; see the log above)",
              file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if stopped:
        print(f"hitcraft serve: stopped ({signal.Signals(stopped[0]).name})", flush=True)
    return 0


def _when(value: datetime | None) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%MZ") if value else "-"


def _app_db_error(exc: Exception) -> int:
    from hitcraft_assets.delivery.unsubscribe import app_db_path

    print(f"hitcraft: APP_DB: cannot use the app database {app_db_path()}: {exc}", file=sys.stderr)
    return 2


def cmd_api_keys_create(args: argparse.Namespace) -> int:
    import sqlite3

    from hitcraft_assets.app.auth import AuthError, create_key
    from hitcraft_assets.delivery.unsubscribe import app_db_path

    try:
        key = create_key(None, args.name, args.scope)
    except AuthError as exc:
        print(f"hitcraft: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except (sqlite3.Error, OSError) as exc:
        return _app_db_error(exc)
    # the key alone on stdout (KEY=$(hitcraft api-keys create ci) works); the words on stderr
    print(f"created API key {args.name!r} (scope {args.scope}) in {app_db_path()}:", file=sys.stderr)
    print(key, flush=True)
    print("This key will not be shown again: store it now. Send it as `Authorization: Bearer <key>`.",
          file=sys.stderr)
    return 0


def cmd_api_keys_list(args: argparse.Namespace) -> int:
    import sqlite3

    from hitcraft_assets.app.auth import list_keys
    from hitcraft_assets.delivery.unsubscribe import app_db_path

    try:
        rows = list_keys(None)
    except (sqlite3.Error, OSError) as exc:
        return _app_db_error(exc)
    if not rows:
        print(f"no API keys in {app_db_path()} (hitcraft api-keys create NAME)")
        return 0
    width = max(4, *(len(r.name) for r in rows))
    print(f"{'name':<{width}}  scope  {'key':<14}  {'created':<17}  {'last used':<17}  revoked")
    for r in rows:
        # the key's public id only: the secret part was never stored
        print(f"{r.name:<{width}}  {r.scope:<5}  {'hc_' + r.key_id + '_…':<14}  {_when(r.created_at):<17}  "
              f"{_when(r.last_used_at):<17}  {_when(r.revoked_at)}")
    return 0


def cmd_api_keys_revoke(args: argparse.Namespace) -> int:
    import sqlite3

    from hitcraft_assets.app.auth import list_keys, revoke_key

    try:
        if revoke_key(None, args.name):
            print(f"revoked API key {args.name!r}: it stops working now (no server restart needed)")
            return 0
        known = next((r for r in list_keys(None) if r.name == args.name), None)
    except (sqlite3.Error, OSError) as exc:
        return _app_db_error(exc)
    if known is not None:
        print(f"API key {args.name!r} was already revoked on {_when(known.revoked_at)}")
        return 0
    print(f"hitcraft: KEY_UNKNOWN: no API key named {args.name!r} (hitcraft api-keys list)", file=sys.stderr)
    return 2


def _port(value: str) -> int:
    try:
        port = int(value)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535; 0 picks a free one): {value!r}") from None
    return port


def add_app_commands(sub) -> None:
    """`serve` and `api-keys` (issue 10)."""
    sv = sub.add_parser("serve", help="run the API (/v1, /docs) and the dashboard (/) on the serving snapshot")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    sv.set_defaults(func=cmd_serve)
    keys = sub.add_parser("api-keys", help="create, list and revoke API keys (stored hashed in HITCRAFT_APP_DB)")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="create a key and print it, once")
    kc.add_argument("name", help="a name for whoever uses the key (letters, digits, . _ - @)")
    kc.add_argument("--scope", choices=["read", "admin"], default="read",
                    help="read: every GET of the API; admin: read and more (default read)")
    kc.set_defaults(func=cmd_api_keys_create)
    kl = ksub.add_parser("list", help="the keys: name, scope, created, last used, revoked (never the key)")
    kl.set_defaults(func=cmd_api_keys_list)
    kr = ksub.add_parser("revoke", help="revoke a key; the running server refuses it from the next request")
    kr.add_argument("name")
    kr.set_defaults(func=cmd_api_keys_revoke)


def main(argv: list[str] | None = None) -> int:
    from hitcraft_assets.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (settings.SettingsError, ConfigError) as exc:
        print(f"hitcraft: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
