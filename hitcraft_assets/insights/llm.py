"""LLM-written recommendations for the top insights, which never state a number the evidence lacks.

``LLMResource`` asks any OpenAI-compatible server (the ``openai`` SDK's chat completions with a strict
JSON schema) for a ``recommendation`` and an ``explanation`` per insight, one request per insight, so
that each answer is validated, retried and budgeted on its own and one bad answer costs one insight.

What reaches the model: the insight's kind, title, summary and evidence, and the product context
(name, description, goals, feature glossary, the names of the owning teams), after ``sanitize`` has
dropped every identifier-looking key (user_key, distinct_id, device_id, user_id, email, ...), profile
properties and identifier-shaped values (email addresses, ``$device:`` ids, UUIDs, long opaque tokens).
Owners' addresses never go out, only the team names.

An answer is accepted only when it is a JSON object with exactly the two non-empty string fields and
every number in its text is grounded (``is_grounded``) in what the model was shown: the title,
summary and sanitized evidence. Otherwise the model gets one corrective message naming the problem
(the offending numbers, for instance); a second invalid answer means no LLM text for that insight
(``generated_by`` None: the caller keeps its rule text).

Failures never fail the run: a timeout, connection error or error status (after the SDK's own
retries) leaves that insight to the rules and the next one is tried; 401/403/404 (key or model wrong,
the same for every insight) or three failures in a row stop asking. Calls stop once the reported
``usage.total_tokens`` reach ``token_budget``. The API key never appears in a log line or a raised
error: failures are logged by type, status and the server's error code, never the server's message
(OpenAI's 401 message echoes part of the key), and every line is also scrubbed of the key.
"""

import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import dagster as dg
from pydantic import Field

from hitcraft_assets.lazy import lazy

openai = lazy("openai")
_logger = logging.getLogger(__name__)

SCHEMA_NAME = "insight_recommendation"
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "recommendation": {
            "type": "string",
            "description": "The next action for the owning team, one or two sentences.",
        },
        "explanation": {
            "type": "string",
            "description": "Why, in two to four sentences, citing the finding's own numbers.",
        },
    },
    "required": ["recommendation", "explanation"],
    "additionalProperties": False,
}
RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": ANSWER_SCHEMA},
}
MAX_CHARS = {"recommendation": 600, "explanation": 1500}
MAX_ANSWER_TOKENS = 800  # per request; capped further by what is left of the run's budget
STOP_AFTER_FAILURES = 3  # consecutive API failures before the run stops asking
STOP_AT_ONCE_STATUSES = frozenset({401, 403, 404})  # wrong key, no access, unknown model: same for all
PREVIOUS_ANSWER_CHARS = 2000  # how much of a rejected answer goes back with the corrective message

SYSTEM_PROMPT = """\
You turn one finding of a product-analytics engine into advice for the product team that owns it.
Answer with a JSON object holding two strings:
- "recommendation": the next action for the team, two or three short imperative sentences, specific to this finding: the segment, the funnel step, the day, what to check first, and the owning team.
- "explanation": why, in two to four sentences of plain language a product manager would forward.

How people read it: conversions and retention as percentages (40%, never 0.40); the strength of the evidence in words ("very strong evidence"); no statistics: never write a q-value, a p-value, a z-score, a test's name, an effect size or a slope (they stay in the evidence).

A program checks every number in your answer and rejects the answer if one breaks these rules:
- Use only numbers and dates that appear in the finding (its title, summary and evidence). Copy them \
as written, or write a fraction from the evidence as a percentage (0.4 as 40%).
- Do not compute new numbers: no differences, ratios, relative changes, projections, targets or estimates.
- Use no other numeral, not even to count steps or number a list. Write dates as YYYY-MM-DD.

Base the explanation on the evidence and present causes as hypotheses to check, not as facts. The \
product context (goals, features, owning teams) is for framing only: quote no numbers from it. Name \
the owning team when one fits."""

CORRECTION = (
    "Your answer was rejected: {reason}. Answer again with the JSON object holding only "
    '"recommendation" and "explanation". Use only numbers and dates that appear in the finding, '
    "copied as written or as percentages of its fractions, and no other numerals."
)


# -- numbers and grounding ---------------------------------------------------------------------------

_DATE = r"\d{4}-\d{2}-\d{2}(?!\d)"
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+"
_PERCENT = r"\s?(?:%|percent\b|per\s+cent\b|percentage\s+points?\b|pp\b|pts?\b|points?\b)"
# In prose a digit glued to a word ("v2", "step2", "gpt-4o", "Q3") is part of a name, not a number.
_PROSE_TOKEN = re.compile(
    rf"(?<![\w.])(?<![^\W\d]-)(?:(?P<date>{_DATE})|(?P<num>{_NUMBER})(?P<pct>{_PERCENT})?)", re.IGNORECASE
)
# In evidence every digit run counts, names included ("funnel:...:step2" grounds "step 2").
_EVIDENCE_TOKEN = re.compile(rf"(?P<date>{_DATE})|(?P<num>{_NUMBER})(?P<pct>{_PERCENT})?", re.IGNORECASE)


@dataclass(frozen=True)
class _Number:
    value: Decimal  # absolute: direction is told in words, so the sign is not compared
    places: int  # decimals as written: the precision a rounding must match
    percent: bool


def _tokens(text: str, pattern: re.Pattern[str]) -> Iterator[tuple[str, _Number | None]]:
    """(normalized token, parsed number) per number or ISO date in ``text``; dates parse to None."""
    for m in pattern.finditer(text):
        if m.group("date"):
            yield m.group("date"), None
            continue
        digits = m.group("num").replace(",", "")
        value = Decimal(digits)
        places = max(0, -int(value.as_tuple().exponent))
        percent = bool(m.group("pct"))
        yield digits + ("%" if percent else ""), _Number(value.copy_abs(), places, percent)


def numbers_in(text: str) -> list[str]:
    """Every number and ISO date in prose, in order, normalized: thousands separators dropped, a
    percent-like unit (%, percent, percentage points, pp, points) written as a trailing ``%``, no sign.
    Digits glued to a word (``v2``, ``step2``, ``gpt-4o``) are names, not numbers."""
    return [token for token, _ in _tokens(text, _PROSE_TOKEN)]


@dataclass
class _Grounds:
    dates: set[str] = field(default_factory=set)
    values: set[Decimal] = field(default_factory=set)

    def add_number(self, value: Decimal) -> None:
        if value.is_finite():
            self.values.add(value.copy_abs())

    def add_text(self, text: str) -> None:
        for token, number in _tokens(text, _EVIDENCE_TOKEN):
            if number is None:
                self.dates.add(token)
            else:
                self.add_number(number.value)
                if number.percent:  # "40%" in the evidence also grounds 0.4
                    self.add_number(number.value / 100)

    def walk(self, obj: Any) -> None:
        if isinstance(obj, dict):
            for key, value in obj.items():
                self.add_text(str(key))
                self.walk(value)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for value in obj:
                self.walk(value)
        elif isinstance(obj, bool) or obj is None:
            return
        elif isinstance(obj, int):
            self.add_number(Decimal(obj))
        elif isinstance(obj, float):
            if math.isfinite(obj):
                self.add_number(Decimal(repr(obj)))
        elif isinstance(obj, Decimal):
            self.add_number(obj)
        elif isinstance(obj, datetime):
            self.dates.add(obj.date().isoformat())
        elif isinstance(obj, date):
            self.dates.add(obj.isoformat())
        else:
            self.add_text(str(obj))


def _rounds_to(shown: Decimal, places: int, exact: Decimal, max_relative_error: Decimal | None) -> bool:
    """``shown`` is ``exact`` rounded to ``places`` decimals (either way at a tie), and not zero."""
    if shown == exact:
        return True
    if shown == 0:
        return False
    error = abs(shown - exact)
    if error > Decimal("0.5") * Decimal(10) ** -places * Decimal("1.000000001"):
        return False
    return max_relative_error is None or error <= max_relative_error * exact


def _is_grounded_number(number: _Number, grounds: _Grounds) -> bool:
    return any(_matches(number, value) for value in grounds.values)


def _matches(number: _Number, value: Decimal) -> bool:
    try:
        # the value as written or rounded, keeping it within 1% (2.7 may not become 3)
        if _rounds_to(number.value, number.places, value, Decimal("0.01")):
            return True
        # a fraction as a percentage, rounded to any number of decimals (0.4012 -> 40% or 40.1%)
        return number.percent and _rounds_to(number.value, number.places, value * 100, None)
    except ArithmeticError:  # "1e999999999" from a model overflows; it matches nothing
        return False


def ungrounded_numbers(text: str, evidence: Any) -> list[str]:
    """The numbers and dates of ``text`` (see ``numbers_in``) that ``evidence`` does not hold."""
    grounds = _Grounds()
    grounds.walk(evidence)
    return [
        token
        for token, number in _tokens(text, _PROSE_TOKEN)
        if (token not in grounds.dates if number is None else not _is_grounded_number(number, grounds))
    ]


def is_grounded(text: str, evidence: Any) -> bool:
    """True when every number and ISO date in ``text`` comes from ``evidence`` (any nesting of dicts,
    lists, numbers, strings and dates; keys count too). A number is grounded when it equals an evidence
    number (0.4 = 0.40), is one rounded to the decimals shown and within 1% of it (0.3987 -> 0.40;
    2.7 -> 3 is not), or, written as a percentage, is an evidence fraction times 100 rounded to the
    decimals shown (0.4012 -> 40% or 40.1%; never a 0% for a non-zero value). Dates must appear as
    ISO dates in the evidence. Signs are ignored; number words ("two") are not checked."""
    return not ungrounded_numbers(text, evidence)


# -- sanitizing what goes to the model ---------------------------------------------------------------

# "<word>_id" / "<word>_key" with one of these words names a person-level identifier
_ID_OWNER_WORDS = frozenset(
    "user users distinct device person people profile customer account member anon anonymous visitor "
    "session insert install installation advertising idfa idfv gaid client cookie external".split()
)
_ID_SUFFIXES = frozenset({"id", "ids", "key", "keys", "uuid", "uuids"})
_PII_KEYS = frozenset(
    "email emails e_mail email_address phone phone_number ip ip_address first_name last_name full_name "
    "username user_name idfa gaid properties profile profiles profile_properties "
    "user_properties person_properties".split()
)
# a key with one of these words is about people: kept only when it holds numbers (counts)
_PEOPLE_WORDS = frozenset(
    "user users person persons people member members visitor visitors customer customers device devices "
    "account accounts".split()
)

_IDENTIFIER_VALUE = re.compile(
    r"""^(?:[^@\s]+@[^@\s]+\.[^@\s]+                          # an email address
        |\$device:.*                                         # a Mixpanel device distinct_id
        |(?=[0-9a-fA-F-]*[0-9])(?=[0-9a-fA-F-]*[a-fA-F])[0-9a-fA-F-]{16,}   # a UUID or hex id
        |(?=\w*[0-9])(?=\w*[a-z])(?=\w*[A-Z])[A-Za-z0-9]{20,}  # a long mixed-case opaque token
    )$""",
    re.VERBOSE,
)


def _snake(key: str) -> str:
    key = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key.lstrip("$"))
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def is_identifier_key(key: str, value: Any = None) -> bool:
    """A key naming a person-level identifier or profile data (``user_key``, ``distinct_id``,
    ``$device_id``, ``userId``, ``email``, ``properties``...), or a key about people (``users``,
    ``top_users``) whose value is not a number or a list of numbers (a count of users is an aggregate,
    a list of users is not)."""
    name = _snake(str(key))
    parts = [re.sub(r"[0-9]+", "", part) for part in name.split("_")]
    if name in _PII_KEYS:
        return True
    if parts[-1] in _ID_SUFFIXES and _ID_OWNER_WORDS.intersection(parts[:-1]):
        return True
    return bool(_PEOPLE_WORDS.intersection(parts)) and not _numbers_only(value)


def _numbers_only(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_numbers_only(v) for v in value)
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def sanitize(obj: Any) -> Any:
    """A copy of ``obj`` without identifier keys (``is_identifier_key``) and without identifier-shaped
    strings (emails, ``$device:`` ids, UUIDs, long opaque tokens), at any depth."""
    if isinstance(obj, dict):
        return {
            str(k): sanitize(v)
            for k, v in obj.items()
            if not is_identifier_key(str(k), v) and not _is_identifier_value(v)
        }
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [sanitize(v) for v in obj if not _is_identifier_value(v)]
    return obj


def _is_identifier_value(value: Any) -> bool:
    return isinstance(value, str) and bool(_IDENTIFIER_VALUE.match(value.strip()))


def build_messages(item: dict[str, Any], context: dict[str, Any]) -> tuple[list[dict[str, str]], dict]:
    """The chat messages for one insight, and what its answer's numbers may come from (title,
    summary and the sanitized evidence: exactly what the model is shown)."""
    product = dict(context or {})
    owners = product.get("owners")
    if isinstance(owners, dict):  # team -> address: the team names frame the advice, addresses stay home
        product["owners"] = sorted(str(team) for team in owners)
    finding = {
        "kind": item.get("kind"),
        "title": item.get("title"),
        "summary": item.get("summary"),
        "evidence": sanitize(item.get("evidence") or {}),
    }
    grounds = {"title": finding["title"], "summary": finding["summary"], "evidence": finding["evidence"]}
    payload = json.dumps({"product": sanitize(product), "finding": finding}, ensure_ascii=False, default=str)
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Product context and finding, as JSON:\n{payload}"},
    ]
    return messages, grounds


_STATISTIC = re.compile(r"\b(?:[pqz]\s?[=<>≤]|p-value|q-value|z-score|effect size|mann-kendall|two_proportion|"
                        r"chi-square|t-test)", re.IGNORECASE)
_DECIMAL_SHARE = re.compile(r"(?<![\w.])0\.\d+(?![\d%])")


def language_problem(text: str) -> str | None:
    """Why a text breaks the language rules (a statistic, a share written as 0.40), or None."""
    if m := _STATISTIC.search(text):
        return f"it quotes a statistic ({m.group(0)!r}); describe the strength of the evidence in words"
    if m := _DECIMAL_SHARE.search(text):
        return f"it writes {m.group(0)} as a decimal; write shares and conversions as percentages"
    return None


def check_answer(content: str | None, grounds: Any) -> tuple[dict[str, str] | None, str | None]:
    """(answer, None) when ``content`` is valid, else (None, the reason, worded for the model)."""
    if content is None:
        return None, "the answer was empty"
    try:
        answer = json.loads(content)
    except (ValueError, RecursionError):
        return None, "it is not valid JSON"
    if not isinstance(answer, dict) or set(answer) != set(MAX_CHARS):
        return None, 'it is not a JSON object with exactly the fields "recommendation" and "explanation"'
    for name, limit in MAX_CHARS.items():
        value = answer[name]
        if not isinstance(value, str) or not value.strip():
            return None, f'"{name}" is not a non-empty string'
        if len(value) > limit:
            return None, f'"{name}" is longer than {limit} characters'
    if problem := language_problem(f"{answer['recommendation']}\n{answer['explanation']}"):
        return None, problem
    invented = ungrounded_numbers(f"{answer['recommendation']}\n{answer['explanation']}", grounds)
    if invented:
        return None, f"these numbers do not appear in the finding: {', '.join(dict.fromkeys(invented))}"
    return {name: answer[name].strip() for name in MAX_CHARS}, None


# -- the resource ----------------------------------------------------------------------------------


class LLMResource(dg.ConfigurableResource):
    """An OpenAI-compatible chat model that writes recommendations; without ``api_key`` it is
    disabled and every insight keeps its rule-based text."""

    api_key: str | None = Field(default=None, repr=False, description="OPENAI_API_KEY; unset: disabled")
    base_url: str | None = Field(default=None, description="OPENAI_BASE_URL; any OpenAI-compatible server")
    model: str = Field(default="gpt-4o-mini", description="HITCRAFT_LLM_MODEL")
    timeout_s: float = 30.0
    max_retries: int = Field(default=2, description="the SDK's own retries of 408/409/429/5xx/timeouts")
    max_insights: int = Field(default=10, description="the first N items get LLM text; the rest keep rules")
    token_budget: int = Field(default=20000, description="usage.total_tokens per run; no calls once spent")

    def enabled(self) -> bool:
        return bool(self.api_key)

    def write_recommendations(
        self, items: list[dict], context: dict, log: logging.Logger | None = None
    ) -> list[dict]:
        """One dict per item, in order: ``insight_id``, ``recommendation``, ``explanation`` and
        ``generated_by`` (``llm:<model>`` when the model's answer was accepted; otherwise None and
        the two texts None). Never raises for the run's sake; see the module docstring."""
        log = log or _logger
        results = [_no_text(item) for item in items]
        if not self.enabled():
            log.info("LLM disabled (no api key): every insight keeps its rule text")
            return results
        if not items:
            return results
        writer = _Writer(self, log)
        try:
            client = openai.OpenAI(
                api_key=self.api_key, base_url=self.base_url, timeout=self.timeout_s, max_retries=self.max_retries
            )
        except Exception as err:  # a bad base_url, say: no LLM text this run, but no failed run
            log.warning(writer.redact(f"LLM client could not be created ({type(err).__name__}); rules only"))
            return results
        with client:
            for index, item in enumerate(items[: self.max_insights]):
                if writer.stopped:
                    break
                answer = writer.recommend(client, item, context)
                if answer is not None:
                    results[index] = {
                        "insight_id": item.get("insight_id"),
                        **answer,
                        "generated_by": f"llm:{self.model}",
                    }
        accepted = sum(r["generated_by"] is not None for r in results)
        log.info(
            f"LLM {self.model}: {accepted} of {len(items)} insights got LLM text "
            f"({writer.requests} requests, {writer.tokens} tokens of {self.token_budget}"
            f"{'; ' + writer.stopped if writer.stopped else ''})"
        )
        return results


def _no_text(item: dict) -> dict:
    return {"insight_id": item.get("insight_id"), "recommendation": None, "explanation": None, "generated_by": None}


class _Writer:
    """One run's conversation state: the token count, consecutive failures and why it stopped."""

    def __init__(self, settings: LLMResource, log: logging.Logger) -> None:
        self.s = settings
        self.log = log
        self.tokens = 0
        self.requests = 0
        self.failures = 0
        self.stopped = ""  # why no more requests are made this run ("" while they are)

    def redact(self, text: str) -> str:
        return text.replace(self.s.api_key, "***") if self.s.api_key else text

    def recommend(self, client: "openai.OpenAI", item: dict, context: dict) -> dict[str, str] | None:
        """The accepted answer for one insight, or None (after at most one corrective retry)."""
        insight = item.get("insight_id")
        messages, grounds = build_messages(item, context)
        for attempt in (1, 2):
            choice = self._ask(client, messages, insight)
            if choice is None:
                return None
            content = choice.message.content
            if choice.message.refusal:
                answer, reason = None, "the model refused"
            elif choice.finish_reason == "length":
                answer, reason = None, "the answer was cut off; keep it shorter"
            else:
                answer, reason = check_answer(content, grounds)
            if answer is not None:
                return answer
            self.log.info(self.redact(f"LLM answer for insight {insight} rejected (attempt {attempt}): {reason}"))
            if content:
                messages = [*messages, {"role": "assistant", "content": content[:PREVIOUS_ANSWER_CHARS]}]
            messages = [*messages, {"role": "user", "content": CORRECTION.format(reason=reason)}]
        return None

    def _ask(self, client: "openai.OpenAI", messages: list[dict[str, str]], insight: Any) -> Any:
        """The first choice of one chat completion, or None (logged) on an API failure, an answer that
        is not a chat completion, or when the budget is spent."""
        remaining = self.s.token_budget - self.tokens
        if remaining <= 0:
            self.stopped = self.stopped or f"token budget of {self.s.token_budget} spent"
            return None
        self.requests += 1
        try:
            completion = client.chat.completions.create(
                model=self.s.model,
                messages=messages,  # type: ignore[arg-type]
                response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
                max_completion_tokens=min(MAX_ANSWER_TOKENS, remaining),
            )
        except openai.OpenAIError as err:
            self._failed(insight, _describe(err), getattr(err, "status_code", None))
            return None
        total = getattr(getattr(completion, "usage", None), "total_tokens", None)
        if isinstance(total, int):
            self.tokens += total
        else:  # a server that reports no usage: count about four characters a token
            self.tokens += math.ceil(len(json.dumps(messages, default=str)) / 4) + MAX_ANSWER_TOKENS // 4
        # the SDK does not validate a 200 body: a proxy's HTML page arrives as a str, a wrong shape as
        # a ChatCompletion whose fields are None
        choices = getattr(completion, "choices", None)
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = getattr(choice, "message", None)
        if not isinstance(getattr(message, "content", None), (str, type(None))) or message is None:
            self._failed(insight, "the response is not a chat completion", None)
            return None
        self.failures = 0
        return choice

    def _failed(self, insight: Any, what: str, status: int | None) -> None:
        self.failures += 1
        self.log.warning(self.redact(f"LLM request for insight {insight} failed ({what}); it keeps its rule text"))
        if status in STOP_AT_ONCE_STATUSES:
            self.stopped = f"status {status}: the same for every insight"
        elif self.failures >= STOP_AFTER_FAILURES:
            self.stopped = f"{self.failures} failures in a row"


def _describe(err: "openai.OpenAIError") -> str:
    """Type, status and the server's error code: never the message, which may quote the key."""
    parts = [type(err).__name__]
    if isinstance(err, openai.APIStatusError):
        parts.append(f"status {err.status_code}")
    code = getattr(err, "code", None)
    if code:
        parts.append(f"code {str(code)[:60]}")
    return ", ".join(parts)
