"""Rule-based recommendations, and the number check every recommendation (rules or LLM) must pass.

**Numbers come only from evidence.** An insight's title, summary and recommendation may quote a number
only if it is in the insight's evidence, as stored or rounded the way a person writes it:

- :func:`numbers_in` lists the numbers of a text as canonical tokens (sign and thousands separators
  dropped, exponents normalized: ``-1,234.5`` -> ``1234.5``, ``3E-05`` -> ``3e-5``, ``64 %`` -> ``64%``;
  dates ``YYYY-MM-DD`` stay whole).
- :func:`numbers_allowed` is the set of tokens an evidence dict permits: each number as stored; rounded to
  0-4 decimals, 1-4 significant digits or scientific notation with 0-2 decimals, when the rounding is
  within 1% of the number (``0.40`` for 0.397, never ``0`` for it; ``1e-179`` for a q-value of 1.004e-179,
  ``1.4e-179`` for 1.4e-179), the tolerance of the LLM check in ``llm.py``; as a percentage of the number,
  within 5% (``40%`` or ``39.7%`` for 0.397; ``64%`` for 64); the numbers written inside evidence strings
  (a root cause's "64% of the rise"); every date of the evidence, and its year, month and day.

A text passes when ``set(numbers_in(text)) <= numbers_allowed(evidence)``. The formatters below
(:func:`fmt_number`, :func:`fmt_percent`, :func:`fmt_change`, :func:`fmt_p`) always produce allowed tokens,
so the generators' summaries and these recommendations pass by construction (the tests check it).

**Recommendations** (:func:`rule_recommendation`): one deterministic text per kind and leading piece of
evidence, naming the segment, step, dates and owner, so that the person who receives it knows what to look
at first. An LLM may replace the text later (``generated_by = 'llm:<model>'``); the same number check
applies to it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from hitcraft_assets.insights.novelty import failure_like, trouble_like
from hitcraft_assets.numbers import ROUNDING_TOLERANCE, fmt_number
from hitcraft_assets.numbers import canon as _canon
from hitcraft_assets.numbers import close as _close
from hitcraft_assets.numbers import first_close as _first_close

if TYPE_CHECKING:
    from hitcraft_assets.insights.generators import Insight

PERCENT_TOLERANCE = 0.05    # ... and a percentage (40% for 0.397) by this much

_DATE = r"\d{4}-\d{2}-\d{2}"
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
_TOKEN = re.compile(rf"(?<![\w.])(?:(?P<date>{_DATE})(?!\d)|(?P<num>{_NUM})(?P<pct>\s?%)?)")
_DATE_PREFIX = re.compile(rf"^({_DATE})")


# ---------------------------------------------------------------------------------------- the check


def numbers_in(text: str) -> list[str]:
    """The numbers of a text as canonical tokens, in order (see the module docstring)."""
    out = []
    for m in _TOKEN.finditer(text or ""):
        if m.group("date"):
            out.append(m.group("date"))
        else:
            out.append(_canon(m.group("num"), bool(m.group("pct"))))
    return out


def _number_forms(x: float) -> set[str]:
    a = abs(float(x))
    if not math.isfinite(a):
        return set()
    forms = {_canon(repr(a))}
    if a.is_integer():
        forms.add(str(int(a)))
    for d in range(5):
        s = f"{a:.{d}f}"
        if _close(s, a):
            forms.add(s)
    for s_digits in range(1, 5):
        s = f"{a:.{s_digits}g}"
        if _close(s, a):
            forms.add(_canon(s))
    for d in range(3):
        s = f"{a:.{d}e}"
        if _close(s, a):
            forms.add(_canon(s))
    pct = a * 100
    for value in (pct, a):                     # a fraction as a percentage, or a number already in percent
        for d in range(3):
            s = f"{value:.{d}f}"
            if _close(s, value, PERCENT_TOLERANCE):
                forms.add(s + "%")
        for s_digits in range(1, 4):
            s = f"{value:.{s_digits}g}"
            if _close(s, value, PERCENT_TOLERANCE) and "e" not in s:
                forms.add(s + "%")
    return forms


def _date_forms(iso: str) -> set[str]:
    y, m, d = iso.split("-")
    return {iso, y, m, d, str(int(m)), str(int(d))}


def _walk(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            yield from _walk(v)
    else:
        yield value


def numbers_allowed(evidence: dict) -> set[str]:
    """Every number token a text about this evidence may contain (see the module docstring)."""
    allowed: set[str] = set()
    for v in _walk(evidence):
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)):
            allowed |= _number_forms(v)
        elif isinstance(v, (date, datetime)):
            allowed |= _date_forms(v.isoformat()[:10])
        elif isinstance(v, str):
            m = _DATE_PREFIX.match(v)
            if m:
                allowed |= _date_forms(m.group(1))
            allowed.update(numbers_in(v))
    return allowed


def unsupported_numbers(text: str, evidence: dict) -> list[str]:
    """The numbers of `text` that its evidence does not support (empty: the text passes)."""
    allowed = numbers_allowed(evidence)
    return [t for t in numbers_in(text) if t not in allowed]


# ---------------------------------------------------------------------------------------- formatting


def fmt_percent(x: float | None) -> str:
    """A fraction as a percentage: 0.397 -> 40%, 0.042 -> 4.2% (within 5% of the value)."""
    if x is None:
        return "n/a"
    p = abs(float(x)) * 100
    if p >= 10:
        return f"{p:.0f}%"
    if p >= 1:
        return f"{p:.1f}%"
    return f"{p:.2g}%"


def fmt_change(x: float | None) -> str:
    """A relative change with its sign: +46%, -12%."""
    if x is None:
        return "n/a"
    return ("+" if x >= 0 else "-") + fmt_percent(x)


def fmt_p(x: float | None) -> str:
    """A p- or q-value: 1e-179, 2.7e-5, 0.0012, 0.03 (within 1% of the value)."""
    if x is None:
        return "n/a"
    x = float(x)
    if x == 0:
        return "0"
    if x < 0.001:
        return _first_close([_canon(f"{x:.{d}e}") for d in (0, 1, 2)], x)
    if x < 0.1:
        return _first_close([f"{x:.{s}g}" for s in (2, 3, 4)], x)
    return _first_close([f"{x:.2f}", f"{x:.3f}"], x)


# ---------------------------------------------------------------------------------------- language
#
# What a product manager reads: percentages for conversions and retention (never 0.40), counts with
# separators, dates as "4 Nov", the strength of the evidence in words ("very strong evidence"), one headline
# number per title, and no statistic (q, p, z, test names, effect sizes, slopes) in any text: those stay
# in the evidence, where the dashboard and the email show them as a table.

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
CHANNEL_DIMENSIONS = ("channel", "source", "utm_source", "utm_medium", "utm_campaign", "referrer", "campaign")


def fmt_day(value: Any) -> str:
    """A day as people write it: ``4 Nov`` (the numbers are the date's own, so the number check allows them)."""
    if value is None:
        return "n/a"
    iso = value.isoformat()[:10] if isinstance(value, (date, datetime)) else str(value)[:10]
    try:
        d = date.fromisoformat(iso)
    except ValueError:
        return iso
    return f"{d.day} {_MONTHS[d.month - 1]}"


def strength_words(q: float | None) -> str:
    """The strength of the evidence behind a q-value, in words (the q-value itself stays in the evidence)."""
    if q is None:
        return "some"
    q = float(q)
    return ("very strong" if q < 1e-6 else "strong" if q < 1e-3 else "moderate" if q < 0.01 else
            "some" if q <= 0.05 else "weak")


def _v(ev: dict, x: float | None) -> str:
    """A value of the insight's metric: a percentage for a conversion or retention, else a number."""
    return fmt_percent(x) if ev.get("conversion") else fmt_number(x)


def _gap(ev: dict, new: float | None, old: float | None) -> str:
    """How far a value moved: percentage points for a conversion, a relative change otherwise."""
    if new is None or old is None:
        return "n/a"
    if ev.get("conversion"):
        return f"{fmt_percent(new)} from {fmt_percent(old)}"
    return f"{fmt_number(new)} from {fmt_number(old)}"


def segment_label(evidence: dict) -> str:
    """Who a finding is about: ``all users``, ``Android users``, ``users from tiktok``."""
    dimension, segment = evidence.get("dimension", "all"), evidence.get("segment")
    if dimension == "all":
        return "all users"
    if any(dimension.lower().startswith(c) or c in dimension.lower() for c in CHANNEL_DIMENSIONS):
        return f"users from {segment}"
    return f"{segment} users"


def _pooled_days(anomaly: dict) -> int:
    """How many days an anomaly judged together: > 1 for a conversion on few entrants a day, that many days'
    entrants pooled (detection/rates.py)."""
    return int(anomaly.get("window_days") or 1)


def _upper_first(text: str) -> str:
    """The text with a capital first letter, unless its first word is a name with capitals of its own or
    an identifier: 'iOS users', 'eBay sellers', 'macOS users', 'payment_error events' and '$identify
    users' stay as they are."""
    first = text.split(" ", 1)[0]
    if not text or any(c.isupper() for c in first[1:]) or any(c in first for c in "_$.:"):
        return text
    return text[0].upper() + text[1:]


def _who(ev: dict) -> str:
    return _upper_first(segment_label(ev))


def _what(ev: dict) -> str:
    """The thing measured, short: ``Sketch Uploaded conversion (Music Production)``, ``Sign Up users``."""
    if ev.get("funnel") and ev.get("step_event"):
        return f"{ev['step_event']} conversion ({ev['funnel']})"
    return str(ev.get("label") or ev.get("metric"))


def _step_words(ev: dict) -> str:
    if ev.get("funnel") and ev.get("prev_event"):
        return f"{ev['prev_event']} → {ev['step_event']} (step {ev['step']} of {ev['funnel']})"
    return str(ev.get("label") or ev.get("metric"))


def _since(evidence: dict) -> str | None:
    """The day the finding's change began: the generator's `since` (the anomaly episode's first day, or the
    change point), else the leading facet's own day."""
    if evidence.get("since"):
        return str(evidence["since"])
    for facet, key in (("change_point", "date"), ("persisted", "anomaly_date"), ("anomaly", "metric_date")):
        if facet in evidence and evidence[facet].get(key):
            return str(evidence[facet][key])
    return None


def _drivers(block: dict, limit: int = 2) -> str:
    causes = [c.get("summary") for c in block.get("root_cause") or [] if c.get("summary")]
    return f"Driven by {'; '.join(causes[:limit])}." if causes else ""


def _look_first(block: dict) -> str:
    """Where a recommendation sends the reader first: the segment that carried most of the move (the
    summary already says by how much: "Driven by ...", which the recommendation does not repeat)."""
    for c in block.get("root_cause") or []:
        if c.get("segment") and (c.get("contribution") is None or c["contribution"] > 0):
            name = f"{c['dimension']} = {c['segment']}" if c.get("dimension") else c["segment"]
            return f"Start with {name}, where most of the change is."
    return ""


def _total_sentence(ev: dict) -> str:
    """The whole product's move that this segment explains (merged into it), in one sentence."""
    t = ev.get("total")
    if not t:
        return ""
    if t.get("facet") == "retention" and t.get("recent_rate") is not None:
        share = (f"; {fmt_percent(t['contribution'])} of the users it loses are {segment_label(ev)}"
                 if t.get("contribution") is not None else ", most of the fall from this segment")
        return f"For all users, {t['label'][0].lower() + t['label'][1:]} is {fmt_percent(t['recent_rate'])}, from " \
               f"{fmt_percent(t['baseline_rate'])}{share}."
    if t.get("mean_before") is not None and t.get("mean_after") is not None:
        return (f"It pulls {t['label']} for all users down to {_gap(ev, t['mean_after'], t['mean_before'])}."
                if t["mean_after"] < t["mean_before"] else
                f"It lifts {t['label']} for all users to {_gap(ev, t['mean_after'], t['mean_before'])}.")
    return f"It shows in {t['label']} for all users too."


def _facet_sentence(name: str, ev: dict) -> str:
    b, who, what = ev[name], segment_label(ev), _what(ev)
    if name == "comparison":
        rest = f"other {ev['dimension']} values" if ev.get("dimension") != "all" else "the rest"
        if ev.get("conversion") and ev.get("prev_event") and b.get("cohort_date"):
            head = (f"Of {who} who entered {ev['funnel']} on {fmt_day(b['cohort_date'])} and reached "
                    f"{ev['prev_event']}, {fmt_percent(b['segment_value'])} went on to {ev['step_event']} within "
                    f"{b['conversion_within']}, against {fmt_percent(b['rest_value'])} for {rest}")
        elif ev.get("conversion") and ev.get("prev_event"):
            head = (f"On {fmt_day(b['metric_date'])}, {fmt_percent(b['segment_value'])} of {who} who reached "
                    f"{ev['prev_event']} went on to {ev['step_event']}, against {fmt_percent(b['rest_value'])} for "
                    f"{rest}")
        else:
            head = (f"On {fmt_day(b['metric_date'])}, {who} had {_v(ev, b['segment_value'])} on {what}, against "
                    f"{_v(ev, b['rest_value'])} for {rest}")
        return (f"{head} ({fmt_number(b['segment_n'])} users, {fmt_percent(b['share_of_users'])} of those "
                f"compared; {strength_words(b.get('q_value'))} evidence).")
    if name == "dropoff":
        window = f" within its {b['window_days']}-day window" if b.get("window_days") else ""
        return (f"Of {fmt_number(b['users_prev'])} users who reached {b['prev_event']} after entering "
                f"{b['funnel']} on {fmt_day(b['cohort_date'])}, {fmt_number(b['users_lost'])} "
                f"({fmt_percent(b['drop_rate'])}) did not reach {b['step_event']}{window}, the funnel's "
                f"largest leak.")
    if name == "anomaly":
        when = fmt_day(b["metric_date"])
        up = b.get("direction") == "up"
        bound = (f"above its usual high of {_v(ev, b['upper'])}" if up else
                 f"below its usual low of {_v(ev, b['lower'])}")
        days = _pooled_days(b)
        if b.get("cohort_date") and b.get("conversion_within") and ev.get("prev_event"):
            # a funnel step: the cohort it rests on, and the time its users had
            entered = (f"in the {days} days to {fmt_day(b['cohort_date'])}" if days > 1
                       else f"on {fmt_day(b['cohort_date'])}")
            text = (f"Of {who} who entered {ev['funnel']} {entered} and reached "
                    f"{ev['prev_event']}, {_v(ev, b['observed'])} went on to {ev['step_event']} within "
                    f"{b['conversion_within']}, {bound} (about {_v(ev, b['expected'])} expected; "
                    f"{strength_words(b.get('q_value'))} evidence).")
        else:
            on = f"In the {days} days to {when}" if days > 1 else f"On {when}"
            text = (f"{on}, {what} for {who} was {_v(ev, b['observed'])}, {bound} (about "
                    f"{_v(ev, b['expected'])} expected; {strength_words(b.get('q_value'))} evidence).")
        return f"{text} {_drivers(b, limit=2)}".strip()
    if name == "change_point":
        verb = "rose" if (b.get("relative_shift") or 0) > 0 else "fell"
        return (f"{_upper_first(what)} for {who} {verb} from {_v(ev, b['mean_before'])} to "
                f"{_v(ev, b['mean_after'])} on average around {fmt_day(b['date'])}. {_drivers(b)}").strip()
    if name == "new":
        return _new_sentence(ev, b)
    if name == "retention":
        return _retention_sentence(ev, b)
    if name == "persisted":
        return (f"It jumped on {fmt_day(b['anomaly_date'])} ({_v(ev, b['observed'])} against "
                f"{_v(ev, b['expected'])} expected) and has held: {_v(ev, b['current_7d'])} on average over the "
                f"last week.")
    short, long = b["window_days"]
    rising = b["trend"] == "increasing"
    line = b.get("trend_change")
    moved = (f"{fmt_change(line)} along its trend line over {long} days" if line is not None
             else f"{fmt_change(b['pct_change_28d'])} over {long} days")
    since = b.get("significant_since")
    course = (f"has been {'rising' if rising else 'falling'} since {fmt_day(since)}"
              if since and str(since)[:10] != str(b.get("as_of_date"))[:10] else f"is {'rising' if rising else 'falling'}")
    return (f"{_upper_first(what)} for {who} {course}: {_v(ev, b['current_7d'])} on average over the last "
            f"{short} days "
            f"({fmt_change(b['pct_change_7d'])} on the {short} before), {moved} "
            f"({strength_words(b.get('q_value'))} evidence).")


def insight_summary(evidence: dict) -> str:
    """Plain language from the evidence alone: the leading facet, one more facet at most, the total this
    segment explains, then where else the same move shows and what moves with it."""
    ev = evidence
    facets = ev.get("facets") or [ev["lead"]]
    shown = [facets[0]] + [f for f in facets[1:] if f in ("change_point", "persisted", "anomaly")][:1]
    if ev["lead"] == "comparison" and "change_point" in facets and "change_point" not in shown:
        shown.append("change_point")
    sentences = [_named_sentence(ev)] + [_facet_sentence(name, ev) for name in shown]
    if ev.get("total"):
        sentences.append(_total_sentence(ev))
    if ev.get("segments"):
        names = [segment_label(s) for s in ev["segments"]]
        more = f" and {len(names) - 4} more segments" if len(names) > 4 else ""
        sentences.append("The same move shows among " + ", ".join(names[:4]) + more + ".")
    related = ev.get("related_metrics") or []
    if related:
        seen = {ev["metric"]} | {r["metric"] for r in related}
        names = sorted({r["label"] for r in related if not (
            r["metric"].startswith("event_count:") and "event_users:" + r["metric"][12:] in seen)})
        sentences.append("Moving with it: " + ", ".join(names[:4] or [related[0]["label"]]) + ".")
    return " ".join(s for s in sentences if s)


def insight_title(kind: str, evidence: dict) -> str:
    """A one-line headline with one number, from the leading facet of the evidence."""
    ev = evidence
    name = ev["lead"]
    b, what, who = ev[name], _what(ev), _who(ev)
    since = _since(ev)
    today = str(b.get("metric_date") or "")[:10]
    when = (f" since {fmt_day(since)}" if since and str(since)[:10] != today
            and name in ("comparison", "change_point", "persisted") else "")
    if name == "comparison":
        if kind == "risk":
            if ev.get("conversion") and ev.get("step_event"):
                return (f"{who}: only {fmt_percent(b['segment_value'])} get through {ev['step_event']} "
                        f"({ev['funnel']}){when}, against {fmt_percent(b['rest_value'])} for others")
            return f"{who} lag on {what}{when}: {_v(ev, b['segment_value'])} against {_v(ev, b['rest_value'])}"
        if b.get("underused"):
            return (f"{who} do better on {what} ({_v(ev, b['segment_value'])} against "
                    f"{_v(ev, b['rest_value'])}), yet they are only {fmt_percent(b['share_of_users'])} of users")
        return f"{who} do better on {what}: {_v(ev, b['segment_value'])} against {_v(ev, b['rest_value'])}"
    if name == "dropoff":
        return (f"{b['funnel']}: {fmt_percent(b['drop_rate'])} of users stop between {b['prev_event']} and "
                f"{b['step_event']}")
    if name == "new":
        return _new_title(ev, b)
    if name == "retention":
        return _retention_title(ev, b)
    scope = "" if ev.get("dimension", "all") == "all" else f" among {segment_label(ev)}"
    if ev.get("named") and name in ("trend", "change_point", "persisted"):
        return _named_title(ev)
    if name == "anomaly":
        days = _pooled_days(b)
        if days > 1:
            # a conversion on few entrants a day, judged over its last days pooled (detection/rates.py)
            verb = "rose" if b["direction"] == "up" else "fell"
            last = b.get("cohort_date") or b["metric_date"]   # a funnel step: its last entry day
            return (f"{_upper_first(what)}{scope} {verb} to {_v(ev, b['observed'])} in the {days} days "
                    f"to {fmt_day(last)}")
        verb = "spiked" if b["direction"] == "up" else "dropped"
        return (f"{_upper_first(what)}{scope} {verb} to {_v(ev, b['observed'])} on "
                f"{fmt_day(b['metric_date'])}")
    if name == "change_point":
        verb = "rose" if (b.get("relative_shift") or 0) > 0 else "fell"
        return (f"{_upper_first(what)}{scope} {verb} to {_v(ev, b['mean_after'])}{when} "
                f"(from {_v(ev, b['mean_before'])})")
    if name == "persisted":
        return (f"{_upper_first(what)}{scope} up and holding at {_v(ev, b['current_7d'])}{when}")
    if ev.get("named"):
        return _named_title(ev)
    verb = "up" if b["trend"] == "increasing" else "down"
    change = b.get("trend_change")
    change = b["pct_change_28d"] if change is None else change
    return f"{_upper_first(what)}{scope} {verb} {fmt_percent(change)} in {b['window_days'][1]} days"


def _span(a: Any, b: Any) -> str:
    return fmt_day(a) if str(a)[:10] == str(b)[:10] else f"{fmt_day(a)}–{fmt_day(b)}"


def _retention_title(ev: dict, b: dict) -> str:
    """``Users from youtube: first-week return down to 31% for those who joined since 21 Oct (from 44%)``."""
    since = fmt_day(_since(ev) or b.get("recent_from"))
    if ev.get("metric") == "weekly_return":
        who = "users" if ev.get("dimension", "all") == "all" else segment_label(ev)
        return (f"Returning {who} come back less since {since}: {fmt_percent(b['recent_rate'])} "
                f"were back the following week (from {fmt_percent(b['baseline_rate'])})")
    return (f"{_who(ev)}: first-week return down to {fmt_percent(b['recent_rate'])} for those who joined since "
            f"{since} (from {fmt_percent(b['baseline_rate'])})")


def _retention_sentence(ev: dict, b: dict) -> str:
    who, strength = segment_label(ev), strength_words(b.get("q_value"))
    if ev.get("metric") == "weekly_return":
        who = "users" if ev.get("dimension", "all") == "all" else who
        return (f"Of the {fmt_number(b['recent_trials'])} returning {who} active "
                f"{_span(b['recent_from'], b['recent_to'])}, {fmt_number(b['recent_successes'])} "
                f"({fmt_percent(b['recent_rate'])}) were active again the following week, against "
                f"{fmt_percent(b['baseline_rate'])} in the weeks from {_span(b['baseline_from'], b['baseline_to'])} "
                f"({strength} evidence).")
    return (f"Of the {fmt_number(b['recent_trials'])} {who} who joined {_span(b['recent_from'], b['recent_to'])}, "
            f"{fmt_number(b['recent_successes'])} ({fmt_percent(b['recent_rate'])}) came back within a week of "
            f"joining, against {fmt_percent(b['baseline_rate'])} of the {fmt_number(b['baseline_trials'])} who joined "
            f"{_span(b['baseline_from'], b['baseline_to'])} ({strength} evidence).")


def _new_thing(ev: dict, b: dict) -> str:
    """What is new: ``payment_error``, ``Stem Separation (Feature Used)``, ``platform Linux``."""
    if b.get("new") == "event":
        return str(ev.get("event") or ev.get("metric"))
    if b.get("new") == "feature":
        return f"{ev.get('segment')} ({ev.get('event')})"
    return f"{ev.get('dimension')} {ev.get('segment')}"


def _new_title(ev: dict, b: dict) -> str:
    thing, day = _new_thing(ev, b), fmt_day(b["first_seen"])
    if b.get("new") == "event":
        return (f"New event {thing} since {day}: {fmt_number(b['events'])} events from "
                f"{fmt_number(b['users'])} users")
    return f"New: {thing} since {day}, {fmt_number(b['users_a_day'])} users a day"


def _new_sentence(ev: dict, b: dict) -> str:
    thing, day = _new_thing(ev, b), fmt_day(b["first_seen"])
    quiet = f"after {fmt_number(b['days_before'])} days without it"
    strength = strength_words(b.get("q_value"))
    if b.get("new") == "event":
        text = (f"{thing} was first seen on {day}, {quiet}: {fmt_number(b['events'])} events from "
                f"{fmt_number(b['users'])} users so far ({strength} evidence).")
        where = [f"{fmt_percent(w['share'])} of them among {w['segment']} ({w['dimension']}; "
                 f"{fmt_percent(w['share_of_users'])} of users)" for w in b.get("where") or []
                 if w.get("share_of_users") is not None]
        return text + (" " + "; ".join(where) + "." if where else "")
    share = (f", {fmt_percent(b['share_of_users'])} of active users" if b.get("share_of_users") is not None
             else "")
    return (f"{thing} was first seen on {day}, {quiet}: {fmt_number(b['users_a_day'])} users a day since"
            f"{share} ({strength} evidence).")


def _named_title(ev: dict) -> str:
    """A finding on an event whose key property names what moved: ``Stem Separation (Feature Used): 1,244
    users a day, from 0 at its launch on 11 Oct``."""
    n = ev["named"]
    scope = "" if ev.get("dimension", "all") == "all" else f" among {segment_label(ev)}"
    head = f"{n['value']} ({ev.get('event')}){scope}: {fmt_number(n['users_7d'])} users a day"
    if n.get("launched"):
        return f"{head}, from 0 at its launch on {fmt_day(n['launched'])}"
    return f"{head}, from {fmt_number(n['users_7d_before'])} four weeks earlier"


def _named_sentence(ev: dict) -> str:
    n = ev.get("named")
    if not n:
        return ""
    verb = "rise" if (n.get("users_7d") or 0) >= (n.get("users_7d_before") or 0) else "fall"
    when = (f"; it was first seen on {fmt_day(n['launched'])}" if n.get("launched") else "")
    return (f"{n['property']} = {n['value']} carries most of the {verb}: {fmt_number(n['users_7d'])} users a day "
            f"over the last 7 days against {fmt_number(n['users_7d_before'])} four weeks earlier{when}.")


# ---------------------------------------------------------------------------------------- recommendations
#
# Two or three sentences, specific to the evidence: what to check first, where (the segment, the step, the
# day), then the owner. The numbers are in the title and summary; a recommendation repeats at most one.


def _owner(insight: Insight) -> str:
    owner = (insight.context or {}).get("owner")
    area = (insight.context or {}).get("area")
    if owner and area:
        return f" Owner: {owner} ({area})."
    return f" Owner: {owner}." if owner else ""


def _risk(ev: dict) -> str:
    lead, since, where = ev.get("lead"), _since(ev), _step_words(ev)
    day = fmt_day(since) if since else "the last few days"
    if lead == "comparison":
        step = ev.get("step_event") or "this step"
        return (f"Check what changed for {segment_label(ev)} around {day}: a release, an SDK or a tracking change "
                f"on the {step} screen first. Reproduce {where} as one of them and compare the error logs with "
                f"other {ev['dimension']} values.")
    if lead == "new":
        b = ev["new"]
        where = (b.get("where") or [{}])[0]
        start = (f" Start with {where['segment']} ({where['dimension']}), where most of it happens."
                 if where.get("segment") else "")
        return (f"Find what started sending {_new_thing(ev, b)} on {fmt_day(b['first_seen'])} (a release, a new "
                f"integration, a provider's outage) and read a few of its events' properties.{start}")
    if lead == "retention":
        return (f"Find what changed for {segment_label(ev)} around {day}: the campaigns and content that bring "
                f"them, and what they meet in their first sessions. Compare what those who joined since then did in "
                f"their first days with earlier ones, and ask a few who did not come back why.")
    if lead == "dropoff":
        d = ev["dropoff"]
        return (f"Watch recordings of users who stop after {d['prev_event']} in {d['funnel']} and ask them why "
                f"with a one-question exit survey; then test a shorter {d['step_event']} step.")
    if _trouble(ev):
        read = (f"read a few {ev['event']} events since {day} (their error codes, step and platform)"
                if failure_like(str(ev["event"])) else
                f"read the {ev['event']} conversations since {day}: what users ask about, on which step and platform")
        return (f"Treat it as an incident: {read}, and check the releases and third-party changes (payments, "
                f"login, hosting) of that day. {_look_first(ev.get(lead) or {})} Fix or roll back first, then tell "
                f"the users it hit.").replace("  ", " ")
    if lead == "anomaly":
        a = ev["anomaly"]
        return (f"Check the releases, experiments and tracking changes of {fmt_day(a['metric_date'])} that touch "
                f"{where}. {_look_first(a)} If the next day stays low, treat it as a regression and roll back."
                ).replace("  ", " ")
    if lead == "change_point":
        cp = ev["change_point"]
        return (f"Find what shipped on or just before {fmt_day(since or cp['date'])} that touches {where}, and "
                f"fix or revert it. {_look_first(cp)}").strip()
    if ev.get("metric") == "stickiness":
        return (f"{_who(ev)} come back less often: compare the "
                f"first-week retention of those who joined in the last month with earlier ones, and ask a few "
                f"who stopped returning what they came for and did not find.")
    if ev.get("metric") in ("dau", "wau", "mau", "new_users"):
        return (f"Find out whether fewer {segment_label(ev)} arrive or fewer come back: compare their new users "
                f"and their first-week retention with a month ago, and talk to a few who stopped coming.")
    return (f"Look for a gradual cause at {where}: slower pages, a competitor, or more users from "
            f"worse-converting sources; compare {segment_label(ev)} with a month ago.")


def _trouble(ev: dict) -> bool:
    """More of an event that reads as a failure or a request for help (novelty.trouble_like)."""
    lead = ev.get(ev.get("lead") or "") or {}
    up = lead.get("direction") == "up" or lead.get("trend") == "increasing"
    return bool(ev.get("event")) and up and trouble_like(str(ev["event"]))


def _opportunity(ev: dict) -> str:
    lead = ev.get("lead")
    if lead == "new":
        b = ev["new"]
        return (f"{_new_thing(ev, b)} is new since {fmt_day(b['first_seen'])}: tell the users who have not found "
                f"it yet (onboarding, the home screen, an email) and check in a week whether those who use it "
                f"come back more often.")
    if lead == "comparison":
        c = ev["comparison"]
        grow = ("They are a small share of users, so bringing more of them pays too: put acquisition budget "
                f"behind {ev['dimension']} = {ev['segment']}." if c.get("underused") else
                "Bring what works for them to everyone else.")
        return (f"Find what {segment_label(ev)} do differently on {_what(ev)} (onboarding choices, content, "
                f"device). {grow}")
    if lead == "trend":
        if ev.get("named"):
            n = ev["named"]
            return (f"{n['value']} is what users come for now: put it in front of the users who have not tried it "
                    f"(onboarding, the home screen, an email), and check that those who use it come back more "
                    f"often than those who do not.")
        event = ev.get("event") or _what(ev)
        return (f"Find what drives the rise (a release, a campaign, word of mouth) and make {event} easier to "
                f"reach for users who have not tried it; check that those who do come back.")
    return f"Find out what drives {_what(ev)} for {segment_label(ev)} and invest where it works."


def _success(ev: dict) -> str:
    since = _since(ev)
    if ev.get("funnel"):
        where, next_step = f"at {_step_words(ev)}", "the next weakest step"
    else:
        where, next_step = f"that lifted {_what(ev)}", "a similar feature"
    if since:
        return (f"Write down what shipped on {fmt_day(since)} {where} and keep it. Check that it holds for "
                f"every platform, then try the same idea on {next_step}.")
    return f"Find the change {where}, keep it, and try the same idea on {next_step}."


def _anomaly(ev: dict) -> str:
    if ev.get("lead") == "new":
        b = ev["new"]
        return (f"Check that {_new_thing(ev, b)} is expected (a release, a campaign, new tracking) and, if it "
                f"is, add it to the tracking plan; if not, find what started sending it on "
                f"{fmt_day(b['first_seen'])}.")
    a = ev["anomaly"]
    up = a.get("direction") == "up"
    day = fmt_day(a["metric_date"])
    if up and ev.get("conversion"):
        return (f"Find what changed on {day} at {_step_words(ev)}: a release, an experiment, or a campaign "
                f"bringing better-suited users. If it holds for a few days, keep it and write it down.")
    if up:
        cause = (a.get("root_cause") or [{}])[0]
        source = (f"{cause['dimension']} = {cause['segment']}" if cause.get("dimension") else "the new traffic")
        return (f"Rule out bots and duplicate tracking in {source} first. If it is real (a campaign, a press "
                f"mention), check whether these users go on to the product's key steps before investing more.")
    return (f"Check that tracking worked on {day}; if it did, look for an outage, a release or a lost "
            f"acquisition source that day.")


def _trend(ev: dict) -> str:
    t = ev["trend"]
    if t.get("trend") == "increasing":
        return ("Find which users or features carry the growth (the segments listed with it), and plan capacity "
                "and follow-up for them.")
    return (f"Compare {segment_label(ev)} with a month ago (channel mix, retention, feature use) and talk to a "
            f"few of them before the decline compounds.")


def rule_recommendation(insight: Insight) -> str:
    """A short, specific recommendation for the insight, quoting only numbers of its evidence."""
    ev = insight.evidence
    if insight.status == "resolved":
        return ("No longer detected: confirm the fix or the end of the cause, and close the related ticket."
                + _owner(insight))
    builders = {"risk": _risk, "opportunity": _opportunity, "success": _success, "anomaly": _anomaly,
                "trend": _trend}
    text = builders[insight.kind](ev)
    return " ".join(text.split()) + _owner(insight)
