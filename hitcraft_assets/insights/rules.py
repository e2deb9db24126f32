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

if TYPE_CHECKING:
    from hitcraft_assets.insights.generators import Insight

ROUNDING_TOLERANCE = 0.01   # a rounded number may differ from the evidence's by this relative amount
PERCENT_TOLERANCE = 0.05    # ... and a percentage (40% for 0.397) by this much

_DATE = r"\d{4}-\d{2}-\d{2}"
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
_TOKEN = re.compile(rf"(?<![\w.])(?:(?P<date>{_DATE})(?!\d)|(?P<num>{_NUM})(?P<pct>\s?%)?)")
_DATE_PREFIX = re.compile(rf"^({_DATE})")


# ---------------------------------------------------------------------------------------- the check


def _canon(number: str, percent: bool = False) -> str:
    text = number.replace(",", "").lower().lstrip("+-")
    if "e" in text:
        mantissa, exponent = text.split("e", 1)
        text = f"{mantissa}e{int(exponent)}"
    return text + ("%" if percent else "")


def numbers_in(text: str) -> list[str]:
    """The numbers of a text as canonical tokens, in order (see the module docstring)."""
    out = []
    for m in _TOKEN.finditer(text or ""):
        if m.group("date"):
            out.append(m.group("date"))
        else:
            out.append(_canon(m.group("num"), bool(m.group("pct"))))
    return out


def _close(rounded: str, value: float, tolerance: float = ROUNDING_TOLERANCE) -> bool:
    try:
        r = float(rounded)
    except ValueError:
        return False
    if value == 0:
        return r == 0
    return abs(r - value) <= tolerance * abs(value)


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


def _first_close(candidates: list[str], x: float, tolerance: float = ROUNDING_TOLERANCE) -> str:
    """The first (shortest) rendering within `tolerance` of x, else the last (most precise) one."""
    for c in candidates:
        if _close(c.replace(",", "").lstrip("-"), abs(x), tolerance):
            return c
    return candidates[-1]


def fmt_number(x: float | int | None) -> str:
    """A number as a person writes it, within 1% of the value: integers with separators, rates with two
    decimals (three when two would be more than 1% off), small numbers with 2-4 significant digits."""
    if x is None:
        return "n/a"
    x = float(x)
    a = abs(x)
    if x.is_integer() and a < 1e15:
        return f"{int(x):,}"
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return _first_close([f"{x:.1f}", f"{x:.2f}"], x)
    if a >= 0.1:
        return _first_close([f"{x:.2f}", f"{x:.3f}", f"{x:.4f}"], x)
    return _first_close([_canon_signed(f"{x:.{s}g}") for s in (2, 3, 4)], x)


def _canon_signed(text: str) -> str:
    return ("-" if text.startswith("-") else "") + _canon(text)


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


# ---------------------------------------------------------------------------------------- titles, summaries


def _facet_sentence(name: str, ev: dict) -> str:
    b, who, label = ev[name], segment_label(ev), ev["label"]
    if name == "comparison":
        h = f", effect size {fmt_number(b['effect_size'])}" if b.get("effect_size") is not None else ""
        verb = "converted at" if ev.get("conversion") else "averaged"
        return (f"On {b['metric_date']}, {who} {verb} {fmt_number(b['segment_value'])} on {label} against "
                f"{fmt_number(b['rest_value'])} for the rest of {ev['dimension']} ({fmt_number(b['segment_n'])} vs "
                f"{fmt_number(b['rest_n'])} users, {b['test']} test{h}, p={fmt_p(b['p_value'])}, "
                f"q={fmt_p(b['q_value'])}); they are {fmt_percent(b['share_of_users'])} of the users compared."
                + (f" Significant on {fmt_number(b['days_significant'])} days since {b['significant_since']}."
                   if (b.get("days_significant") or 1) > 1 else ""))
    if name == "dropoff":
        return (f"Of {fmt_number(b['users_prev'])} users who reached {b['prev_event']} after entering {b['funnel']} "
                f"on {b['cohort_date']}, {fmt_number(b['users_lost'])} ({fmt_percent(b['drop_rate'])}) did not "
                f"reach {b['step_event']}: its largest drop-off"
                + (f" ({fmt_number(b['entrants'])} entrants that day)." if b["step"] > 2 else "."))
    if name == "anomaly":
        return (f"On {b['metric_date']}, {label} for {who} was {fmt_number(b['observed'])} against an expected "
                f"{fmt_number(b['expected'])} (band {fmt_number(b['lower'])} to {fmt_number(b['upper'])}, "
                f"z={fmt_number(b['score'])}, q={fmt_p(b['q_value'])}). {_drivers(b, limit=3)}").strip()
    if name == "change_point":
        return (f"A level shift on {b['date']}: from {fmt_number(b['mean_before'])} to {fmt_number(b['mean_after'])} "
                f"on average ({fmt_change(b['relative_shift'])}). {_drivers(b, limit=3)}").strip()
    if name == "persisted":
        return (f"It jumped on {b['anomaly_date']} ({fmt_number(b['observed'])} vs {fmt_number(b['expected'])} "
                f"expected) and has stayed above the band's upper edge of {fmt_number(b['upper'])}: "
                f"{fmt_number(b['current_7d'])} on average over the last week.")
    short, long = b["window_days"]
    return (f"{label} for {who} is {b['trend']} by {fmt_number(abs(b['slope'] or 0.0))} a day over "
            f"{fmt_number(b['n'])} days (Mann-Kendall q={fmt_p(b['q_value'])}); the last {short} days average "
            f"{fmt_number(b['current_7d'])} ({fmt_change(b['pct_change_7d'])} on the {short} before), the last "
            f"{long} days {fmt_number(b['current_28d'])} ({fmt_change(b['pct_change_28d'])}).")


def insight_summary(evidence: dict) -> str:
    """Plain language from the evidence alone: one sentence per facet (leading one first), then the segments
    showing the same move and the other metrics moving with it."""
    ev = evidence
    sentences = [_facet_sentence(name, ev) for name in ev.get("facets") or [ev["lead"]]]
    if ev.get("segments"):
        sentences.append("The same move shows in " + ", ".join(
            f"{s['dimension']} = {s['segment']}" for s in ev["segments"]) + ".")
    related = ev.get("related_metrics") or []
    if related:
        shown = {ev["metric"]} | {r["metric"] for r in related}
        names = sorted({r["label"] for r in related if not (
            r["metric"].startswith("event_count:") and "event_users:" + r["metric"][12:] in shown)})
        sentences.append(f"Also moving the same way for {segment_label(ev)}: "
                         + ", ".join(names or [related[0]["label"]]) + ".")
    return " ".join(sentences)


def insight_title(kind: str, evidence: dict) -> str:
    """A one-line headline from the leading facet of the evidence."""
    ev = evidence
    name = ev["lead"]
    b, label, who = ev[name], ev["label"], segment_label(ev)
    seg = f"{ev['segment']} ({ev['dimension']})"
    if name == "comparison":
        vs = f"{fmt_number(b['segment_value'])} vs {fmt_number(b['rest_value'])}"
        where = f"at {ev['step_event']} ({ev['funnel']})" if "step_event" in ev else f"on {label}"
        if kind == "risk":
            return f"{seg} converts {vs} {where}" if ev.get("conversion") else f"{seg} lags {where}: {vs}"
        if b.get("underused"):
            what = "High-converting path" if ev.get("conversion") else "Highly engaged segment"
            return f"{what} few users take: {seg} {where}, {vs}"
        return f"{seg} does better {where}: {vs}"
    if name == "dropoff":
        return (f"{b['funnel']}: {fmt_percent(b['drop_rate'])} of users drop between {b['prev_event']} and "
                f"{b['step_event']}")
    if name == "anomaly":
        verb = "spiked" if b["direction"] == "up" else "dropped"
        return f"{label} {verb} to {fmt_number(b['observed'])} (expected {fmt_number(b['expected'])}) for {who}"
    if name == "change_point":
        verb = "rose" if b["relative_shift"] > 0 else "fell"
        return (f"{label} {verb} from {fmt_number(b['mean_before'])} to {fmt_number(b['mean_after'])} since "
                f"{b['date']} ({who})")
    if name == "persisted":
        return f"{label} up and holding: {fmt_number(b['current_7d'])} vs {fmt_number(b['expected'])} before ({who})"
    verb = "up" if b["trend"] == "increasing" else "down"
    return f"{label} {verb} {fmt_percent(b['pct_change_28d'])} in {b['window_days'][1]} days ({who})"


# ---------------------------------------------------------------------------------------- recommendations


def segment_label(evidence: dict) -> str:
    if evidence.get("dimension", "all") == "all":
        return "all users"
    return f"{evidence.get('dimension')} = {evidence.get('segment')}"


def _owner(insight: Insight) -> str:
    owner = (insight.context or {}).get("owner")
    area = (insight.context or {}).get("area")
    if owner and area:
        return f" Owner: {owner} ({area})."
    return f" Owner: {owner}." if owner else ""


def _since(evidence: dict) -> str | None:
    """The earliest date the evidence ties the change to: a change point, else an anomaly's day."""
    for facet, key in (("change_point", "date"), ("persisted", "anomaly_date"), ("anomaly", "metric_date")):
        if facet in evidence and evidence[facet].get(key):
            return str(evidence[facet][key])
    return None


def _step_words(ev: dict) -> str:
    if ev.get("funnel"):
        return f"{ev['prev_event']} -> {ev['step_event']} (step {ev['step']} of {ev['funnel']})"
    return str(ev.get("label") or ev.get("metric"))


def _risk(ev: dict) -> str:
    lead = ev.get("lead")
    since = _since(ev)
    where = _step_words(ev)
    if lead == "comparison":
        c = ev["comparison"]
        seg = ev["segment"]
        if (c.get("days_significant") or 1) > 1:
            since = str(c["significant_since"])
        text = (f"{seg} users ({ev['dimension']}) convert {fmt_number(c['segment_value'])} vs "
                f"{fmt_number(c['rest_value'])} for everyone else at {where}"
                f"{' since ' + since if since else ' on ' + str(c['metric_date'])} "
                f"(n={fmt_number(c['segment_n'])}, q={fmt_p(c['q_value'])}). ")
        text += (f"Check what changed for {ev['dimension']} = {seg} {'around ' + since if since else 'recently'}: "
                 f"a release, an SDK or tracking change, or a broken {ev.get('step_event') or 'flow'} screen for "
                 f"these users; reproduce {ev.get('prev_event') or 'the previous step'} -> "
                 f"{ev.get('step_event') or 'this step'} as one of them and compare error logs with the other "
                 f"{ev['dimension']} values.")
        return text
    if lead == "dropoff":
        d = ev["dropoff"]
        return (f"{fmt_number(d['users_lost'])} of {fmt_number(d['users_prev'])} users who reached "
                f"{d['prev_event']} on {d['cohort_date']} did not reach {d['step_event']} "
                f"({fmt_percent(d['drop_rate'])} lost, the largest leak of {d['funnel']}). Watch session "
                f"recordings of users who stop after {d['prev_event']}, ask them why with a short exit survey, "
                f"and A/B test a simpler {d['step_event']} step.")
    if lead == "anomaly":
        a = ev["anomaly"]
        return (f"{ev['label']} for {segment_label(ev)} fell to {fmt_number(a['observed'])} on {a['metric_date']} "
                f"against {fmt_number(a['expected'])} expected (z={fmt_number(a['score'])}). "
                f"{_drivers(a)}Check releases, experiments and tracking changes of {a['metric_date']} on "
                f"{where}; if tomorrow stays low, treat it as a regression and roll back.")
    if lead == "change_point":
        cp = ev["change_point"]
        return (f"{ev['label']} for {segment_label(ev)} moved from {fmt_number(cp['mean_before'])} to "
                f"{fmt_number(cp['mean_after'])} ({fmt_change(cp['relative_shift'])}) from {cp['date']} on. "
                f"{_drivers(cp)}Find what shipped or changed on {cp['date']} affecting {where} and fix or revert it.")
    t = ev["trend"]
    return (f"{ev['label']} for {segment_label(ev)} has been falling for {fmt_number(t['n'])} days "
            f"({fmt_number(abs(t['slope'] or 0.0))} a day, {fmt_change(t['pct_change_28d'])} over the last "
            f"{fmt_number(t['window_days'][1])} days, q={fmt_p(t['q_value'])}). Look for a gradual cause at "
            f"{where}: slower pages, a competitor, or a mix shift toward worse-converting users.")


def _drivers(anomaly: dict, limit: int = 2) -> str:
    causes = [c.get("summary") for c in anomaly.get("root_cause") or [] if c.get("summary")]
    return f"Driven by {'; '.join(causes[:limit])}. " if causes else ""


def _opportunity(ev: dict) -> str:
    lead = ev.get("lead")
    if lead == "comparison":
        c = ev["comparison"]
        seg = ev["segment"]
        what = "convert" if ev.get("conversion") else "average"
        text = (f"{seg} users ({ev['dimension']}) {what} {fmt_number(c['segment_value'])} vs "
                f"{fmt_number(c['rest_value'])} for the rest on {ev['label']} (q={fmt_p(c['q_value'])}), "
                f"{'yet they are only' if c.get('underused') else 'and they are'} "
                f"{fmt_percent(c['share_of_users'])} of the users compared. ")
        text += (f"Grow this path: put more acquisition budget behind {ev['dimension']} = {seg}, and find what "
                 f"those users do differently (onboarding choices, content, device) to bring it to everyone.")
        return text
    if lead == "trend":
        t = ev["trend"]
        return (f"{ev['label']} for {segment_label(ev)} is rising: {fmt_number(t['current_7d'])} a day this "
                f"week, {fmt_change(t['pct_change_7d'])} on the week before and {fmt_change(t['pct_change_28d'])} "
                f"over {fmt_number(t['window_days'][1])} days (q={fmt_p(t['q_value'])}). Find what drives the rise "
                f"(a release, a campaign, word of mouth) and build on it: make {ev.get('event') or 'it'} easier to "
                f"reach for users who have not done it yet, and check that those who do come back.")
    return (f"{ev['label']} for {segment_label(ev)} is up. Find out what drives it and invest where it works.")


def _success(ev: dict) -> str:
    lead = ev.get("lead")
    where = _step_words(ev)
    if lead == "persisted":
        p = ev["persisted"]
        return (f"{ev['label']} for {segment_label(ev)} jumped on {p['anomaly_date']} ({fmt_number(p['observed'])} "
                f"vs {fmt_number(p['expected'])} expected) and has held: {fmt_number(p['current_7d'])} on average "
                f"over the last week. Record what shipped on {p['anomaly_date']} at {where}, keep it, and apply "
                f"the same change to the next weakest step.")
    if lead == "change_point":
        cp = ev["change_point"]
        return (f"{ev['label']} for {segment_label(ev)} rose from {fmt_number(cp['mean_before'])} to "
                f"{fmt_number(cp['mean_after'])} ({fmt_change(cp['relative_shift'])}) from {cp['date']} on. "
                f"{_drivers(cp)}Record what shipped on {cp['date']} at {where}, keep it, and check that it holds for every "
                f"segment before rolling the idea out to similar steps.")
    if lead == "trend":
        t = ev["trend"]
        return (f"{ev['label']} for {segment_label(ev)} keeps improving ({fmt_change(t['pct_change_28d'])} over "
                f"{fmt_number(t['window_days'][1])} days, q={fmt_p(t['q_value'])}). Find the change behind it "
                f"at {where} and do more of it.")
    return f"{ev['label']} for {segment_label(ev)} improved. Find the change behind it and keep it."


def _anomaly(ev: dict) -> str:
    a = ev["anomaly"]
    up = a.get("direction") == "up"
    text = (f"{ev['label']} for {segment_label(ev)} was {fmt_number(a['observed'])} on {a['metric_date']} "
            f"against {fmt_number(a['expected'])} expected (z={fmt_number(a['score'])}, q={fmt_p(a['q_value'])}). "
            f"{_drivers(a)}")
    if up and ev.get("conversion"):
        text += (f"Find what changed on {a['metric_date']} at {_step_words(ev)} (a release, an experiment, a "
                 f"campaign bringing better-suited users); if it holds over the coming days, keep it and write it "
                 f"down.")
    elif up:
        text += ("First rule out duplicate or bot traffic; if it is real (a campaign, a press mention), check "
                 "whether these users go on to complete the product's key steps before investing more in it.")
    else:
        text += ("First check that tracking and data collection worked that day; if they did, look for an "
                 "outage, a release or a lost acquisition source on that day.")
    return text


def _trend(ev: dict) -> str:
    t = ev["trend"]
    rising = t.get("trend") == "increasing"
    text = (f"{ev['label']} for {segment_label(ev)} is {'rising' if rising else 'falling'}: "
            f"{fmt_number(abs(t['slope'] or 0.0))} a day over {fmt_number(t['n'])} days, "
            f"{fmt_change(t['pct_change_7d'])} "
            f"week on week and {fmt_change(t['pct_change_28d'])} over {fmt_number(t['window_days'][1])} days "
            f"(q={fmt_p(t['q_value'])}). ")
    if rising:
        text += "Find which users or features carry the growth and plan capacity and follow-up for them."
    else:
        text += ("Compare these users' journeys with a month ago (channel mix, retention, feature use) and talk "
                 "to a few of them before the decline compounds.")
    return text


def rule_recommendation(insight: Insight) -> str:
    """A deterministic, actionable recommendation for the insight, quoting only numbers of its evidence."""
    ev = insight.evidence
    if insight.status == "resolved":
        return ("No longer detected: confirm the fix or the end of the cause, and close the related ticket."
                + _owner(insight))
    builders = {"risk": _risk, "opportunity": _opportunity, "success": _success, "anomaly": _anomaly,
                "trend": _trend}
    text = builders[insight.kind](ev)
    return text.strip() + _owner(insight)
