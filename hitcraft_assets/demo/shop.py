"""A second demo world: a small web shop (5-15 daily users, 100-300 events a day) that ramps up from its
launch, with three planted incidents, in Mixpanel's export format. It is issue 14's small shop rebuilt on
simulated data (the real clickstream is held out): ``bench/small_shop.py`` scores the engine on six months
of it, and the test suite runs a shorter one end to end.

| incident | days | what the data shows |
|---|---|---|
| viral article | 3 from ``viral_day`` | a burst of new visitors from ``utm_source=article`` (45, 25, 10) who rarely buy and never return |
| payment failures | 4 from ``payment_day`` | a new event ``payment_error`` (30-80% of payments fail; a failing user retries 1-3 times and opens ``support_chat`` 1-3 times), fewer orders |
| mobile checkout loop | 10 from ``loop_day`` | on mobile, users go from Shipping Details back to the cart 1-3 times, a ``checkout_bug`` event appears on most loops, and 80% of those checkouts are abandoned |

Everything else is steady: the same funnel rates, support chats in 12% of sessions, and returning users
who come back at random (nothing about a user's country, platform or channel changes how often).
"""

from __future__ import annotations

import json
import math
import random
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

START = date(2026, 5, 1)
CONFIG = """\
product:
  name: Little Shop
  description: A small online shop for handmade ceramics.
  goals: [Grow orders, Keep checkout working]
timezone: UTC
session_timeout_minutes: 30
dimensions:
  - {name: platform, property: platform}
  - {name: channel, property: utm_source}
  - {name: country, property: mp_country_code}
funnels:
  - name: Checkout
    steps: [Add to Cart, Checkout Started, Shipping Details, Payment Submitted, Order Completed]
    window_days: 1
retention: {birth_event: null, return_event: null}
metric_importance:
  Order Completed: 5
  Payment Submitted: 3
"""


def _weekday_factor(d: date) -> float:
    return 0.75 if d.weekday() >= 5 else 1.0


class Shop:
    def __init__(self, days: int, seed: int, payment_day: int, loop_day: int, viral_day: int):
        self.days, self.rng = days, random.Random(seed)
        self.payment = range(payment_day, payment_day + 4)
        self.loop = range(loop_day, loop_day + 10)
        self.viral = range(viral_day, viral_day + 3)
        self.users: list[dict] = []
        self.alive: list[dict] = []
        self.seq = 0

    def _new_user(self, d: int, source: str | None = None) -> dict:
        r = self.rng
        u = {"id": f"u{len(self.users) + 1:05d}", "born": d,
             "platform": "mobile" if r.random() < 0.55 else "desktop",
             "source": source or r.choices(["google", "direct", "instagram", "newsletter"], [4, 3, 2, 1])[0],
             "country": r.choices(["US", "GB", "DE", "CA"], [5, 2, 2, 1])[0],
             "loyal": r.random(), "until": d + int(r.expovariate(1 / 12))}
        self.users.append(u)
        return u

    def _emit(self, out: list[tuple[int, str]], name: str, t: float, u: dict, **props) -> float:
        self.seq += 1
        p = {"time": int(t * 1000), "distinct_id": u["id"], "$insert_id": f"ins{self.seq:09d}",
             "platform": u["platform"], "utm_source": u["source"], "mp_country_code": u["country"],
             "$os": ("iOS" if u["loyal"] < 0.3 else "Android") if u["platform"] == "mobile" else "Windows",
             **props}
        out.append((p["time"], json.dumps({"event": name, "properties": p}, separators=(",", ":"))))
        return t + self.rng.uniform(8, 90)

    def _session(self, out: list[tuple[int, str]], d: int, day_start: float, u: dict, buyer: float) -> None:
        r = self.rng
        t = day_start + r.uniform(7, 22) * 3600
        for _ in range(r.randint(1, 4)):
            t = self._emit(out, "$mp_web_page_view", t, u, page=r.choice(["/", "/shop", "/about", "/blog"]))
        for _ in range(r.randint(1, 6)):
            t = self._emit(out, "Product Viewed", t, u, product=f"p{r.randint(1, 40)}")
        if r.random() < 0.12:
            t = self._emit(out, "support_chat", t, u, topic="question")
        if r.random() >= 0.5 * buyer:
            return
        t = self._emit(out, "Add to Cart", t, u)
        if r.random() >= 0.7:
            return
        t = self._emit(out, "Checkout Started", t, u)
        if r.random() >= 0.9:
            return
        t = self._emit(out, "Shipping Details", t, u)
        if d in self.loop and u["platform"] == "mobile":
            for _ in range(r.randint(1, 3)):   # back to the cart, and again
                if r.random() < 0.6:
                    t = self._emit(out, "checkout_bug", t, u, step="shipping")
                t = self._emit(out, "Add to Cart", t, u)
                t = self._emit(out, "Checkout Started", t, u)
                t = self._emit(out, "Shipping Details", t, u)
            if r.random() >= 0.2:
                return
        if r.random() >= 0.92:
            return
        t = self._emit(out, "Payment Submitted", t, u)
        fail = {0: 0.3, 1: 0.8, 2: 0.7, 3: 0.6}.get(d - self.payment.start, 0.0) if d in self.payment else 0.0
        if r.random() < fail:
            for _ in range(r.randint(1, 3)):
                t = self._emit(out, "payment_error", t, u, code="card_declined")
            for _ in range(r.randint(1, 3)):
                t = self._emit(out, "support_chat", t, u, topic="payment")
            return
        self._emit(out, "Order Completed", t, u, amount=round(r.uniform(15, 120), 2))

    def day(self, d: int) -> list[str]:
        r = self.rng
        when = START + timedelta(days=d)
        day_start = datetime(when.year, when.month, when.day, tzinfo=timezone.utc).timestamp()
        out: list[tuple[int, str]] = []     # (time in ms, line)
        ramp = 1.5 + 4.5 * (1 - math.exp(-d / 45))   # a young shop: new visitors 1.5 -> 6 a day
        returning = [u for u in self.alive if u["until"] >= d and r.random() < (0.1 + 0.3 * u["loyal"] ** 2)
                     * _weekday_factor(when)]
        self.alive = [u for u in self.alive if u["until"] >= d]
        new = sum(r.random() < ramp * _weekday_factor(when) / 10 for _ in range(10))
        actives = returning + [self._new_user(d) for _ in range(new)]
        self.alive += actives[len(returning):]
        for u in actives:
            for _ in range(1 if r.random() < 0.8 else 2):
                self._session(out, d, day_start, u, buyer=1.0)
        if d in self.viral:
            for _ in range((45, 25, 10)[d - self.viral.start]):
                self._session(out, d, day_start, self._new_user(d, "article"), buyer=0.08)
        out.sort(key=lambda event: event[0])
        return [line for _, line in out]


def write_shop(out: Path, shop: Shop) -> Path:
    """The export (``out/export/YYYY-MM-DD.jsonl``) and the shop's config (``out/shop.yaml``); the export
    folder."""
    export = out / "export"
    export.mkdir(parents=True, exist_ok=True)
    for d in range(shop.days):
        lines = shop.day(d)
        (export / f"{START + timedelta(days=d)}.jsonl").write_text("\n".join(lines) + "\n")
    (out / "shop.yaml").write_text(CONFIG)
    return export


