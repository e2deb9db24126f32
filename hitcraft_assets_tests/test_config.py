"""The config file is the only place the engine learns about a product, so a typo in it must stop the
engine with a clear message instead of being silently ignored (`session_timout_minutes` falling back to
30, `steps: Sign Up` becoming the funnel S, i, g, n ...). Each kind of mistake is written to a real file
and must fail with its stable code, the file name and the key's path; the CLI reports it as one line,
before any run starts, and `hitcraft check-config` lists every problem and, given a warehouse, warns
about names its events never use."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest
import yaml

from hitcraft_assets.config import BUNDLED_CONFIG, ConfigError, load_config, property_path
from hitcraft_assets.ingestion.loader import load_day
from hitcraft_assets_tests.conftest import event_line, ms, write_day

HITCRAFT = [sys.executable, "-m", "hitcraft_assets.cli"]
GOOD = {
    "product": {"name": "Shop"},
    "timezone": "Europe/Berlin",
    "dimensions": [{"name": "platform", "property": "$os"}],
    "funnels": [{"name": "Checkout", "steps": ["Cart Viewed", "Order Placed"], "window_days": 3}],
    "retention": {"birth_event": "Sign Up", "return_event": None},
}


def write_config(tmp_path: Path, doc, name: str = "shop.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def with_(**changes) -> dict:
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in GOOD.items()}
    doc.update(changes)
    return doc


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(info.value.problems[0])
    return info.value.problems


def test_a_good_file_and_the_bundled_one_load():
    config = load_config(BUNDLED_CONFIG)
    assert [f.name for f in config.funnels] == ["Music Production", "Onboarding", "Lyrics Composition"]
    assert config.session_properties == {"platform": "$os", "country": "mp_country_code", "utm_source": "utm_source"}


def test_good_file_values(tmp_path):
    config = load_config(write_config(tmp_path, GOOD))
    assert config.timezone == "Europe/Berlin" and config.session_timeout_minutes == 30
    assert config.funnels[0].steps == ("Cart Viewed", "Order Placed") and config.funnels[0].window_days == 3
    assert config.retention == {"birth_event": "Sign Up", "return_event": None}
    assert config.mixpanel_project_timezone is None


@pytest.mark.parametrize("doc, code, key, words", [
    (with_(session_timout_minutes=45), "CONFIG_UNKNOWN_KEY", "session_timout_minutes", "did you mean session_timeout_minutes"),
    (with_(funnels=[{"name": "Signup", "steps": "Sign Up"}]), "CONFIG_TYPE", "funnels[0].steps", "must be a list"),
    (with_(retention={"birth_even": "Sign Up"}), "CONFIG_UNKNOWN_KEY", "retention.birth_even", "did you mean birth_event"),
    (with_(funnels=["Sign Up -> Order"]), "CONFIG_TYPE", "funnels[0]", "must be a mapping"),
    (with_(funnels=[{"name": "One", "steps": ["Sign Up"]}]), "CONFIG_FUNNEL", "funnels[0].steps", "at least two steps"),
    (with_(funnels=[{"name": "W", "steps": ["A", "B"], "window_days": 0}]), "CONFIG_RANGE", "funnels[0].window_days", "greater than or equal to 1"),
    (with_(timezone="Europe/Berln"), "CONFIG_TIMEZONE", "timezone", "unknown timezone 'Europe/Berln'"),
    (with_(timezone="+02:00"), "CONFIG_TIMEZONE", "timezone", "unknown timezone"),
    (with_(time_tolerance_minutes=-5), "CONFIG_RANGE", "time_tolerance_minutes", "greater than or equal to 0"),
    (with_(session_timeout_minutes="thirty"), "CONFIG_TYPE", "session_timeout_minutes", "whole number"),
    (with_(dimensions=[{"name": "all", "property": "$os"}]), "CONFIG_DIMENSION", "dimensions[0].name", "reserved"),
    (with_(dimensions=[{"name": "p", "property": "$os"}, {"name": "p", "property": "$browser"}]), "CONFIG_DIMENSION", "dimensions[1].name", "repeated"),
    (with_(dimensions=[{"name": "p", "property": ""}]), "CONFIG_PROPERTY", "dimensions[0].property", "must not be empty"),
    (with_(dimensions=[{"name": "p"}]), "CONFIG_MISSING_KEY", "dimensions[0].property", "missing"),
    (with_(funnels=[{"name": "F", "steps": ["A", "B"]}, {"name": "F", "steps": ["C", "D"]}]), "CONFIG_FUNNEL", "funnels[1].name", "repeated"),
    (with_(funnels=[{"name": "F", "steps": ["A", "B\x00"]}]), "CONFIG_EVENT", "funnels[0].steps[1]", "control character"),
    (with_(metric_importance={"Order Placed": True}), "CONFIG_TYPE", "metric_importance", "must be a number"),
    (with_(metric_importance={"Order Placed": -1}), "CONFIG_RANGE", "metric_importance.Order Placed", "greater than or equal to 0"),
    (with_(product={"name": "Shop", "owner": {"a": "b"}}), "CONFIG_UNKNOWN_KEY", "product.owner", "did you mean owners"),
    (with_(mixpanel_project_timezone="Pacific"), "CONFIG_TIMEZONE", "mixpanel_project_timezone", "unknown timezone"),
    (with_(dimensions=[{"name": "plan", "property": "plan"}], event_properties={"Order Placed": "plan"}),
     "CONFIG_EVENT_PROPERTY", "event_properties.Order Placed", "also a dimension's name"),
    (with_(event_properties={"Order Placed": ""}), "CONFIG_EVENT_PROPERTY", "event_properties.Order Placed",
     "must not be empty"),
])
def test_each_kind_of_mistake_has_its_code_file_and_key(tmp_path, doc, code, key, words):
    problems = problems_of(write_config(tmp_path, doc))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{code}: shop.yaml: {key}: "), problems[0]
    assert words in problems[0]


def test_every_problem_is_listed(tmp_path):
    problems = problems_of(write_config(tmp_path, with_(session_timout_minutes=1, timezone="Mars/Base",
                                                         retention={"birth_even": "x"})))
    assert sorted(p.split(":")[0] for p in problems) == ["CONFIG_TIMEZONE", "CONFIG_UNKNOWN_KEY", "CONFIG_UNKNOWN_KEY"]


@pytest.mark.parametrize("text, code", [
    ("funnels: [", "CONFIG_YAML: shop.yaml: not valid YAML at line"),
    ("- a\n- b\n", "CONFIG_SHAPE: shop.yaml"),
])
def test_not_yaml_or_not_a_mapping(tmp_path, text, code):
    assert problems_of(write_config(tmp_path, text))[0].startswith(code)


def test_missing_file_and_environment_overrides(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="CONFIG_MISSING"):
        load_config(tmp_path / "nope.yaml")
    path = write_config(tmp_path, GOOD)
    monkeypatch.setenv("HITCRAFT_TIMEZONE", "America/New_York")
    monkeypatch.setenv("MIXPANEL_PROJECT_TIMEZONE", "America/Los_Angeles")
    config = load_config(path)
    assert (config.timezone, config.mixpanel_project_timezone) == ("America/New_York", "America/Los_Angeles")
    monkeypatch.setenv("HITCRAFT_TIMEZONE", "New York")
    with pytest.raises(ConfigError, match=r"^CONFIG_TIMEZONE: HITCRAFT_TIMEZONE \(overrides shop.yaml: timezone\)"):
        load_config(path)


@pytest.mark.parametrize("name, pointer", [("$os", "/$os"), ("a/b", "/a~1b"), ("x~y", "/x~0y"), ('q"', '/q"')])
def test_one_rule_turns_a_property_name_into_a_path(name, pointer):
    assert property_path(name) == pointer
    with duckdb.connect() as conn:
        assert conn.execute("select json_extract_string(?::json, ?)", [f'{{{_json(name)}: "v"}}', pointer]
                            ).fetchall() == [("v",)]


def _json(text: str) -> str:
    import json

    return json.dumps(text)


def cli_env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HITCRAFT_", "MIXPANEL_"))}
    env.update({"DAGSTER_HOME": str(tmp_path / "home"), "HITCRAFT_DATA_DIR": str(tmp_path / "data"),
                "HITCRAFT_EXPORT_DIR": str(tmp_path / "export"), "PYTHONWARNINGS": "ignore"}, **extra)
    return env


def test_a_bad_config_is_one_line_from_the_command_that_needs_it(tmp_path):
    bad = write_config(tmp_path, with_(session_timout_minutes=45))
    env = cli_env(tmp_path, HITCRAFT_CONFIG=str(bad))
    helped = subprocess.run([*HITCRAFT, "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "check-config" in helped.stdout
    run = subprocess.run([*HITCRAFT, "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "hitcraft: CONFIG_UNKNOWN_KEY: shop.yaml: session_timout_minutes: unknown key "
        "(did you mean session_timeout_minutes?)"]
    assert run.stdout == "" and not (tmp_path / "data").exists()   # failed before anything ran


def test_check_config_lists_problems_and_warns_about_unseen_names(tmp_path):
    bad = write_config(tmp_path, with_(session_timout_minutes=45, timezone="Europe/Berln"), "bad.yaml")
    env = cli_env(tmp_path)
    checked = subprocess.run([*HITCRAFT, "check-config", str(bad)], env=env, capture_output=True, text=True,
                             timeout=120)
    assert checked.returncode == 2
    assert "2 problem(s)" in checked.stderr and "CONFIG_TIMEZONE: bad.yaml: timezone" in checked.stderr

    warehouse = tmp_path / "w.duckdb"
    day = date(2026, 3, 2)
    lines = [event_line("Cart Viewed", "u1", ms(day, 9), "a", **{"$os": "iOS"}),
             event_line("Order Placed", "u1", ms(day, 10), "b"),
             event_line("Sign Up", "u2", ms(day, 11), "c")]
    with duckdb.connect(str(warehouse)) as conn:
        load_day(conn, day, write_day(tmp_path / "export", day, lines), source="test")
    typo = write_config(tmp_path, with_(
        funnels=[{"name": "Checkout", "steps": ["Cart Viewed", "Order Placd"]}],
        dimensions=[{"name": "platform", "property": "$os"}, {"name": "channel", "property": "utm_sorce"}]))
    checked = subprocess.run([*HITCRAFT, "check-config", str(typo), "--warehouse", str(warehouse)], env=env,
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    warnings = [line.strip() for line in checked.stdout.splitlines() if line.strip().startswith("warning")]
    assert ("warning CONFIG_UNSEEN_EVENT: funnels[0].steps[1]: event 'Order Placd' never occurs in raw.events "
            "(did you mean 'Order Placed'?)") in warnings
    assert any("dimensions[1].property: property 'utm_sorce'" in w for w in warnings)
    assert not any("'Cart Viewed'" in w or "'$os'" in w or "'Sign Up'" in w for w in warnings)
    assert "3 events" in checked.stdout


def test_env_example_lists_only_variables_the_code_reads():
    import re

    repo = Path(__file__).resolve().parent.parent
    names = re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (repo / ".env.example").read_text(), flags=re.M)
    source = "\n".join(p.read_text() for p in (repo / "hitcraft_assets").rglob("*.py"))
    assert names and "MIXPANEL_PROJECT_TIMEZONE" in names
    assert [n for n in names if f'"{n}"' not in source] == []


REPORT = {"name": "daily", "cadence": "daily", "title": "Daily", "kpis": ["dau", "funnel:Checkout"],
          "recipients": [{"email": "ana@shop.example", "name": "Ana", "timezone": "Europe/Berlin"}]}


@pytest.mark.parametrize("change, code, key, words", [
    ({"cadence": "hourly"}, "CONFIG_REPORT", "reports[0].cadence", "cadence must be one of daily, weekly, monthly"),
    ({"recipients": [{"email": "ana at shop"}]}, "CONFIG_REPORT", "reports[0].recipients[0].email", "not an email address"),
    ({"recipients": [{"email": "a@shop.example", "timezone": "Berlin"}]}, "CONFIG_TIMEZONE",
     "reports[0].recipients[0].timezone", "unknown timezone"),
    ({"kinds": ["risks"]}, "CONFIG_REPORT", "reports[0].kinds[0]", "unknown insight kind 'risks'"),
    ({"kpis": ["funnel:Checkotu"]}, "CONFIG_REPORT", "reports[0].kpis[0]", "no funnel named 'Checkotu'"),
    ({"areas": ["billing"]}, "CONFIG_REPORT", "reports[0].areas[0]", "unknown area 'billing'"),
    ({"recipients": []}, "CONFIG_RANGE", "reports[0].recipients", "at least 1 item"),
    ({"top": 0}, "CONFIG_RANGE", "reports[0].top", "greater than or equal to 1"),
    ({"recipient": []}, "CONFIG_UNKNOWN_KEY", "reports[0].recipient", "did you mean recipients"),
    ({"recipients": [{"email": "a@shop.example"}, {"email": "A@shop.example"}]}, "CONFIG_REPORT",
     "reports[0].recipients[1].email", "listed twice"),
])
def test_report_profiles_are_validated(tmp_path, change, code, key, words):
    doc = with_(product={"name": "Shop", "owners": {"checkout": "c@shop.example"}}, reports=[{**REPORT, **change}])
    problems = problems_of(write_config(tmp_path, doc))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{code}: shop.yaml: {key}: "), problems[0]
    assert words in problems[0]


def test_a_good_report_profile_loads(tmp_path):
    config = load_config(write_config(tmp_path, with_(reports=[REPORT])))
    [report] = config.reports
    assert (report.cadence, report.top, report.kinds[0]) == ("daily", 5, "risk")
    assert report.recipients[0].timezone == "Europe/Berlin" and report.recipients[0].areas == ()
