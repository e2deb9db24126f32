"""Why this exists: an LLM writes the recommendation a product team reads first, and a model that
invents a number ("expect a 17% lift") or a prompt that leaks a user id would be worse than no LLM at
all. These tests drive the real ``openai`` SDK against a real local server (``fake_openai``) and
check the contract of ``LLMResource``: accepted answers are grounded in the evidence, bad answers get
one corrective retry and then fall back to the rules, timeouts, errors and the token budget never fail
the run, identifiers never reach the prompt, and the API key never reaches a log or an error.
"""

import json
import logging
import socket
import time

import dagster as dg
import pytest

from hitcraft_assets.insights.llm import (
    RESPONSE_FORMAT,
    LLMResource,
    is_grounded,
    is_identifier_key,
    numbers_in,
    sanitize,
    ungrounded_numbers,
)
from hitcraft_assets_tests.fake_openai import (
    Content,
    Delay,
    FakeOpenAI,
    Good,
    Invented,
    Raw,
    Refusal,
    Status,
    malformed,
)

KEY = "sk-test-7c1d9e0f2a4b6c8d"
MODEL = "gpt-4o-mini"
CONTEXT = {
    "product": "HitCraft",
    "description": "An AI music-production app for songwriters and producers.",
    "goals": ["Grow weekly active producers", "Grow paid subscriptions"],
    "owners": {"production": "studio-team@hitcraft.example", "onboarding": "growth@hitcraft.example"},
}


def insight(insight_id: str = "ins-android", **evidence_overrides) -> dict:
    """The demo's planted Android break as the insights stage would hand it over."""
    evidence = {
        "segment_value": 0.4012,
        "rest_value": 0.98,
        "metric": "funnel:Music Production:step2",
        "dimension": "platform",
        "segment": "Android",
        "segment_n": 1520,
        "rest_n": 6210,
        "q_value": 1e-179,
        "since": "2026-03-05",
        **evidence_overrides,
    }
    return {
        "insight_id": insight_id,
        "kind": "risk",
        "title": "Sketch Uploaded conversion fell on Android",
        "summary": "Production Started to Sketch Uploaded converts 0.40 on Android against 0.98 elsewhere.",
        "evidence": evidence,
    }


@pytest.fixture
def fake():
    with FakeOpenAI(api_key=KEY) as server:
        yield server


def resource(fake: FakeOpenAI, **overrides) -> LLMResource:
    settings = {"api_key": KEY, "base_url": fake.base_url, "model": MODEL, "timeout_s": 5.0, "max_retries": 0}
    return LLMResource(**(settings | overrides))


def corrective(request) -> str:
    return request.messages[-1]["content"]


# -- accepted answers -------------------------------------------------------------------------------


def test_good_answer_is_accepted_and_request_is_what_the_api_expects(fake):
    [result] = resource(fake).write_recommendations([insight()], CONTEXT)

    assert result["insight_id"] == "ins-android"
    assert result["generated_by"] == f"llm:{MODEL}"
    assert "40.12%" in result["recommendation"] and "2026-03-05" in result["explanation"]
    [request] = fake.requests
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["model"] == MODEL
    assert request.body["response_format"] == RESPONSE_FORMAT
    schema = request.body["response_format"]["json_schema"]
    assert schema["strict"] is True
    assert set(schema["schema"]["properties"]) == {"recommendation", "explanation"}
    assert [m["role"] for m in request.messages] == ["system", "user"]


def test_malformed_json_then_good_is_accepted_after_one_retry(fake):
    fake.script(malformed(), Good())

    [result] = resource(fake).write_recommendations([insight()], CONTEXT)

    assert result["generated_by"] == f"llm:{MODEL}"
    first, second = fake.requests
    assert "not valid JSON" in corrective(second)
    assert second.messages[-2] == {"role": "assistant", "content": first.behaviour.text}


def test_invented_number_then_good_is_accepted_and_the_retry_names_the_number(fake):
    fake.script(Invented("17%"), Good())

    [result] = resource(fake).write_recommendations([insight()], CONTEXT)

    assert result["generated_by"] == f"llm:{MODEL}"
    assert len(fake.requests) == 2
    assert "do not appear in the finding: 17%" in corrective(fake.requests[1])


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param([malformed(), malformed()], id="malformed-twice"),
        pytest.param([Invented("17%"), Invented("17%")], id="invented-number-twice"),
        pytest.param([Content('{"recommendation": "Roll back."}')] * 2, id="missing-field"),
        pytest.param([Content('{"recommendation": 5, "explanation": "Because."}')] * 2, id="wrong-type"),
        pytest.param(
            [Content('{"recommendation": "Roll back.", "explanation": "Bad.", "extra": "x"}')] * 2, id="extra-field"
        ),
        pytest.param([Content('{"recommendation": " ", "explanation": "Because."}')] * 2, id="blank"),
        pytest.param([Content('{"recommendation": "Roll', finish_reason="length")] * 2, id="cut-off"),
        pytest.param([Refusal(), Refusal()], id="refusal"),
        # the language rules: no statistic and no share written as a decimal, even when grounded
        pytest.param([Content('{"recommendation": "Roll back the Android release.", "explanation": '
                              '"Android converts 40.12% (q=1e-179)."}')] * 2, id="statistic"),
        pytest.param([Content('{"recommendation": "Roll back the Android release.", "explanation": '
                              '"Android converts 0.4012 against 98%."}')] * 2, id="decimal-share"),
    ],
)
def test_invalid_twice_falls_back_to_rules(fake, answers):
    fake.script(*answers)

    [result] = resource(fake).write_recommendations([insight()], CONTEXT)

    assert result == {"insight_id": "ins-android", "recommendation": None, "explanation": None, "generated_by": None}
    assert len(fake.requests) == 2  # one corrective retry, no more


# -- failures never fail the run --------------------------------------------------------------------


def test_timeout_falls_back_quickly_and_the_next_insight_still_gets_text(fake):
    fake.script(Delay(5.0))
    started = time.monotonic()

    first, second = resource(fake, timeout_s=0.3).write_recommendations(
        [insight("slow"), insight("fast")], CONTEXT
    )

    assert time.monotonic() - started < 2.5
    assert first["generated_by"] is None and second["generated_by"] == f"llm:{MODEL}"


def test_server_error_after_the_sdk_retries_falls_back_and_the_run_goes_on(fake):
    fast_retry = {"retry-after-ms": "10"}
    fake.script(*[Status(500, headers=fast_retry)] * 3)

    first, second = resource(fake, max_retries=2).write_recommendations([insight("a"), insight("b")], CONTEXT)

    assert first["generated_by"] is None and second["generated_by"] == f"llm:{MODEL}"
    assert [r.status for r in fake.requests] == [500, 500, 500, 200]  # the SDK's own two retries first


def test_rate_limit_is_retried_by_the_sdk(fake):
    fake.script(Status(429, code="rate_limit_exceeded", headers={"retry-after-ms": "10"}))

    [result] = resource(fake, max_retries=1).write_recommendations([insight()], CONTEXT)

    assert result["generated_by"] == f"llm:{MODEL}"
    assert [r.status for r in fake.requests] == [429, 200]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(Raw(), id="html-page"),
        pytest.param(Raw('{"object": "list", "data": []}', "application/json"), id="other-json"),
        pytest.param(Raw("[1, 2]", "application/json"), id="json-array"),
    ],
)
def test_a_200_that_is_not_a_chat_completion_falls_back(fake, answer):
    fake.script(answer)

    first, second = resource(fake).write_recommendations([insight("a"), insight("b")], CONTEXT)

    assert first["generated_by"] is None and second["generated_by"] == f"llm:{MODEL}"
    assert len(fake.requests) == 2  # a broken server gets no corrective retry


def test_repeated_failures_stop_asking(fake):
    fake.script(*[Status(500)] * 10)

    results = resource(fake).write_recommendations([insight(str(i)) for i in range(5)], CONTEXT)

    assert [r["generated_by"] for r in results] == [None] * 5
    assert len(fake.requests) == 3  # three failures in a row, then no more calls this run


def test_wrong_key_stops_at_once_and_is_never_logged(fake, caplog):
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logs too
    wrong_key = "sk-wrong-0a1b2c3d4e5f"

    results = resource(fake, api_key=wrong_key).write_recommendations([insight("a"), insight("b")], CONTEXT)

    assert [r["generated_by"] for r in results] == [None, None]
    [request] = fake.requests
    assert request.status == 401 and request.headers["authorization"] == f"Bearer {wrong_key}"
    assert "AuthenticationError, status 401, code invalid_api_key" in caplog.text
    assert wrong_key not in caplog.text


def test_the_api_key_never_appears_in_logs_results_or_errors(fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.script(
        Status(500, echo_key=True),  # a server that quotes the key in its error message
        Delay(5.0),
        Invented("17%"),
        Invented("17%"),
    )
    items = [insight(name) for name in ("echo", "timeout", "invented", "good")]
    llm = resource(fake, timeout_s=0.3)

    results = llm.write_recommendations(items, CONTEXT)

    assert [r["generated_by"] for r in results] == [None, None, None, f"llm:{MODEL}"]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in fake.requests)  # the key was sent
    assert KEY in json.dumps(fake.requests[0].response)  # ... and the server quoted it back
    logged = caplog.text + "".join(f"{r.args!r}{r.exc_text or ''}" for r in caplog.records)
    assert "InternalServerError, status 500" in logged
    assert KEY not in logged
    assert KEY not in json.dumps(results)
    assert KEY not in repr(llm) and KEY not in str(llm)


def test_unreachable_server_falls_back_without_raising_or_leaking_the_key(caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    llm = LLMResource(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout_s=1.0)

    results = llm.write_recommendations([insight()], CONTEXT)

    assert results[0]["generated_by"] is None
    assert "APIConnectionError" in caplog.text and KEY not in caplog.text


# -- no key, limits and budget ----------------------------------------------------------------------


@pytest.mark.parametrize("api_key", [None, ""])
def test_disabled_resource_makes_no_request(fake, api_key):
    llm = resource(fake, api_key=api_key)

    results = llm.write_recommendations([insight("a"), insight("b")], CONTEXT)

    assert not llm.enabled()
    assert [r["generated_by"] for r in results] == [None, None]
    assert [r["insight_id"] for r in results] == ["a", "b"]
    assert fake.requests == []


def test_token_budget_stops_further_calls(fake):
    fake.default = Good(usage=(500, 100))  # 600 tokens an answer

    results = resource(fake, token_budget=1000).write_recommendations([insight(str(i)) for i in range(4)], CONTEXT)

    # 600 spent < 1000: ask again; 1200 >= 1000: stop
    assert [r["generated_by"] for r in results] == [f"llm:{MODEL}"] * 2 + [None] * 2
    assert len(fake.requests) == 2
    assert fake.requests[1].body["max_completion_tokens"] == 400  # never more than the budget left


def test_only_the_first_max_insights_are_sent(fake):
    results = resource(fake, max_insights=2).write_recommendations([insight(str(i)) for i in range(3)], CONTEXT)

    assert [r["generated_by"] is not None for r in results] == [True, True, False]
    assert len(fake.requests) == 2


# -- what the prompt holds --------------------------------------------------------------------------


def test_prompt_holds_aggregates_and_no_identifiers(fake):
    item = insight(
        user_key="user-8812",
        distinct_id="$device:7f3e2b9a-1c4d",
        **{"$user_id": "producer-77", "deviceId": "dev-31337", "email": "fan@example.com"},
        examples=[{"userId": "u-4242", "sessions": 3}, "$device:abc-998877", "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"],
        top_users=["u-5150", "u-6160"],
        properties={"plan": "pro", "role": "producer"},
        users=1520,
    )

    [result] = resource(fake).write_recommendations([item], CONTEXT)

    assert result["generated_by"] == f"llm:{MODEL}"
    prompt = fake.requests[0].prompt
    for leaked in ("user-8812", "7f3e2b9a", "producer-77", "dev-31337", "fan@example.com", "u-4242",
                   "abc-998877", "3f2a9c1e", "u-5150", "user_key", "distinct_id", "deviceId", "top_users",
                   "properties", "hitcraft.example"):
        assert leaked not in prompt, leaked
    finding = json.loads(prompt[prompt.index("{"):])["finding"]
    assert finding["evidence"]["segment_value"] == 0.4012 and finding["evidence"]["users"] == 1520
    assert finding["evidence"]["examples"] == [{"sessions": 3}]
    assert finding["title"] == item["title"]
    product = json.loads(prompt[prompt.index("{"):])["product"]
    assert product["owners"] == ["onboarding", "production"] and product["product"] == "HitCraft"


@pytest.mark.parametrize(
    ("key", "value", "identifier"),
    [
        ("user_key", "u1", True),
        ("distinct_id", "x", True),
        ("$device_id", "d", True),
        ("userId", "u", True),
        ("anon_id", "a", True),
        ("session_id", "s", True),
        ("email", "a@b.c", True),
        ("$email", "a@b.c", True),
        ("properties", {}, True),
        ("users", ["u1"], True),
        ("users", 1520, False),
        ("new_users", 30, False),
        ("users_by_step", [5000, 2000], False),
        ("insight_id", "ins-1", False),
        ("segment", "Android", False),
        ("q_value", 0.001, False),
    ],
)
def test_identifier_keys(key, value, identifier):
    assert is_identifier_key(key, value) is identifier


def test_sanitize_drops_identifier_shaped_values_at_any_depth():
    assert sanitize({"segments": ["Android", "a@b.co", "$device:x1"], "nested": {"ids": {"user_id": 1}}}) == {
        "segments": ["Android"],
        "nested": {"ids": {}},
    }


# -- numbers and grounding --------------------------------------------------------------------------

EVIDENCE = {
    "metric": "funnel:Music Production:step2",
    "segment_value": 0.4012,
    "rest_value": 0.98,
    "effect": -0.58,
    "segment_n": 1520,
    "mean_events": 2.7,
    "duration_s": 1234.5,
    "q_value": 1e-179,
    "since": "2026-03-05",
    "share": "12%",
}


@pytest.mark.parametrize(
    ("text", "grounded"),
    [
        ("converts 40% on Android", True),  # a fraction as a percentage, 0 decimals
        ("converts 40.1% on Android", True),  # ... or 1
        ("converts 0.40", True),  # rounded to the decimals shown, within 1%
        ("converts 0.4", True),
        ("converts 0.4012", True),
        ("against 98 percent elsewhere", True),
        ("a gap of 58 percentage points", True),  # the sign is told in words
        ("since 2026-03-05", True),
        ("1,520 Android users", True),
        ("about 1,235 seconds", True),
        ("q = 1e-179", True),
        ("step 2 of the funnel", True),  # digits of the evidence's own names count
        ("a share of 0.12", True),  # "12%" in the evidence also grounds its fraction
        ("after the v2 release on gpt-4o", True),  # digits glued to names are not numbers
        ("a 17% lift", False),  # invented
        ("since 2026-03-06", False),  # a date the evidence lacks
        ("converts 0.5", False),  # 0.4012 rounded to 0.5 is off by more than a rounding
        ("about 3 events per user", False),  # 2.7 -> 3 is more than 1% away
        ("0% on Android", False),  # never a zero for a non-zero value
        ("in 3 steps", False),  # no counting numerals
        ("converts 40 on Android", False),  # 40 without a percent sign is not 0.4
        ("1e999999999 times more", False),  # absurd magnitudes match nothing and raise nothing
    ],
)
def test_is_grounded(text, grounded):
    assert is_grounded(text, EVIDENCE) is grounded


def test_numbers_in_normalizes_and_skips_names():
    text = "0.40 vs 98% since 2026-03-05 for 1,520 users (v2, step2, gpt-4o), 58 percentage points, q 1e-179."
    assert numbers_in(text) == ["0.40", "98%", "2026-03-05", "1520", "58%", "1e-179"]


def test_ungrounded_numbers_lists_the_offenders():
    assert ungrounded_numbers("40% now, 17% lift, 3 steps from 2026-01-01", EVIDENCE) == ["17%", "3", "2026-01-01"]


# -- as a Dagster resource --------------------------------------------------------------------------


def test_resource_reads_the_key_from_the_environment_inside_dagster(fake, monkeypatch, instance):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    seen = {}

    @dg.asset
    def recommendations(context: dg.AssetExecutionContext, llm: LLMResource) -> None:
        seen["results"] = llm.write_recommendations([insight()], CONTEXT, log=context.log)

    llm = LLMResource(api_key=dg.EnvVar("OPENAI_API_KEY"), base_url=fake.base_url, max_retries=0)
    assert dg.materialize([recommendations], resources={"llm": llm}, instance=instance).success
    assert seen["results"][0]["generated_by"] == "llm:gpt-4o-mini"
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("text,problem", [
    ("Android converts 40% against 98% (very strong evidence).", None),
    ("Android converts 40% (q=1e-179).", "statistic"),
    ("The p-value is tiny.", "statistic"),
    ("A Mann-Kendall trend.", "statistic"),
    ("Android converts 0.40 against 0.98.", "decimal"),
    ("Sessions last 2.5 minutes longer.", None),          # a decimal that is not a share
    ("Release v0.4.2 broke it.", None),                  # a version, not a number
])
def test_language_rules_of_an_answer(text, problem):
    from hitcraft_assets.insights.llm import language_problem

    found = language_problem(text)
    assert (found is None) if problem is None else (problem in found)
