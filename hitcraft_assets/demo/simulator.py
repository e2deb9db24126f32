"""A seeded simulator of HitCraft's product analytics, written as Mixpanel raw-export files.

`generate_demo` writes, into one folder:
- `YYYY-MM-DD.jsonl`, one file per UTC day, in Mixpanel's raw-export line format with `time_in_ms=true`:
  `{"event": ..., "properties": {"time": <epoch ms>, "distinct_id": ..., "$insert_id": ...,
  "mp_processing_time_ms": ..., ...}}`. Lines are not time-sorted (Mixpanel's export is not either),
  but every `time` lies inside its file's UTC day: a session that crosses midnight continues in the
  next day's file.
- `profiles.jsonl`: one Engage-format profile per registered user (synthetic names and
  `example.com` addresses only).
- `ground_truth.json`, written last: the files, the missing day, the dirt (duplicate deliveries and
  malformed lines, with exact counts and line numbers) and the five stories planted in the data.

The model. Registered users (some signed up before the window, the rest sign up during it at a
growing rate) each have a first-touch channel, platform, country, role and plan, a daily activity
propensity and a lifetime after which they churn. Each UTC day a user is active with a probability
that follows the week (weekends are quieter); an active user has one to three sessions, started at
their local-time evening-heavy hours, with events seconds to minutes apart and sessions hours apart.
Anonymous visitors browse and some sign up, following Mixpanel's simplified ID merge: before
`Sign Up` events carry only `$device_id` (distinct_id `$device:<id>`), `Sign Up` is the first event
with both ids, later events have distinct_id = `$user_id`. Funnels: Sign Up -> Profile Completed ->
Production Started; Production Started -> Sketch Uploaded -> Production Completed; Lyrics Composition
Started -> Prompt Selected -> Lyrics Completed; free users subscribe and paying users cancel.

The stories (each placed at a fraction of the run, so a shorter run keeps their shape; a story
starting before day 14 or with fewer than 5 days of effect is left out, and then not planted):
1. `sketch_upload_android_break` (risk): from a release date on, 60% of Android users (those on the new
   release) can no longer upload sketches.
2. `tiktok_campaign_spike` (anomaly): five days of TikTok Sign Ups several times the usual, from users
   who rarely complete their profile and churn within days.
3. `stem_separation_adoption` (opportunity): `Feature Used` with feature "Stem Separation" launches;
   the share of active users using it grows linearly each day.
4. `producer_retention_decline` (trend): users acquired through YouTube (producer tutorials, mostly
   producers) return less and less, week over week.
5. `onboarding_success` (success): a redesigned onboarding lifts Sign Up -> Profile Completed from 45%
   to 70%.
A story's `size` is the designed relative effect on its metric and segment: against the same data
without the story, at the end of the story's window (for the campaign, summed over its window).

Determinism: every random draw comes from generators seeded from `seed` (and the day), ids are keyed
hashes of counters, JSON is rendered from fixed templates, and nothing reads the clock (except the
default `end_date`), so the same arguments give byte-identical files. Memory is bounded by the user
population: events are written as they are generated.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import random
import re
from bisect import bisect
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

DEFAULT_USERS = 15_000
DEFAULT_MEDIAN_DAU = 1_894   # the median daily users of the default demo (90 days, seed 42)


def users_for_dau(dau: int) -> int:
    """The user base of a demo whose median daily users is about `dau` (the default demo's proportion)."""
    return max(50, round(dau * DEFAULT_USERS / DEFAULT_MEDIAN_DAU))
GROUND_TRUTH_FILE = "ground_truth.json"
PROFILES_FILE = "profiles.jsonl"

# Tracking plan.
SIGN_UP = "Sign Up"
LOGIN = "Login"
LOGOUT = "Logout"
PROFILE_COMPLETED = "Profile Completed"
PAGE_VIEW = "Page View"
PRODUCTION_STARTED = "Production Started"
SKETCH_UPLOADED = "Sketch Uploaded"
PROMPT_SELECTED = "Prompt Selected"
PRODUCTION_COMPLETED = "Production Completed"
LYRICS_STARTED = "Lyrics Composition Started"
LYRICS_COMPLETED = "Lyrics Completed"
FEATURE_USED = "Feature Used"
FEEDBACK_SUBMITTED = "Feedback Submitted"
MESSAGE_LIKED = "Message Liked"
MESSAGE_DISLIKED = "Message Disliked"
SUBSCRIPTION_STARTED = "Subscription Started"
SUBSCRIPTION_CANCELLED = "Subscription Cancelled"
STEM_SEPARATION = "Stem Separation"

FUNNELS = {
    "Music Production": [PRODUCTION_STARTED, SKETCH_UPLOADED, PRODUCTION_COMPLETED],
    "Onboarding": [SIGN_UP, PROFILE_COMPLETED, PRODUCTION_STARTED],
    "Lyrics Composition": [LYRICS_STARTED, PROMPT_SELECTED, LYRICS_COMPLETED],
}

# Segments: values and shares. (name, share); mobile platforms report "Mobile App" as browser.
OSES = [("iOS", 0.30), ("Android", 0.25), ("Windows", 0.25), ("Mac OS X", 0.20)]
IOS, ANDROID, WINDOWS, MAC = range(4)
MP_LIB = ["swift", "android", "web", "web"]
BROWSERS = ["Mobile App", "Chrome", "Safari", "Firefox", "Edge"]
DESKTOP_BROWSER_P = {WINDOWS: [0, 0.65, 0, 0.15, 0.20], MAC: [0, 0.55, 0.40, 0.05, 0]}
# (country code, share, UTC offset in hours of its main time zone)
COUNTRIES = [("US", 0.33, -6), ("GB", 0.10, 0), ("DE", 0.08, 1), ("BR", 0.10, -3), ("IN", 0.12, 5.5),
             ("FR", 0.05, 1), ("CA", 0.06, -5), ("MX", 0.05, -6), ("NG", 0.05, 1), ("JP", 0.06, 9)]
# (utm_source, share, campaigns)
CHANNELS = [("direct", 0.30, ["none"]), ("google", 0.25, ["brand_search", "ai_music_tools"]),
            ("youtube", 0.15, ["producer_tutorials"]), ("instagram", 0.12, ["reels_beats"]),
            ("tiktok", 0.10, ["creator_collab"]), ("newsletter", 0.08, ["weekly_digest"])]
DIRECT, GOOGLE, YOUTUBE, INSTAGRAM, TIKTOK, NEWSLETTER = range(6)
CAMPAIGNS = [c for _, _, cs in CHANNELS for c in cs] + ["viral_hook_v2"]
SPIKE_CAMPAIGN = len(CAMPAIGNS) - 1
ROLES = ["songwriter", "producer", "artist", "hobbyist"]
ROLE_P = [0.35, 0.30, 0.25, 0.10]
ROLE_P_YOUTUBE = [0.15, 0.65, 0.12, 0.08]
ROLE_P_SPIKE = [0.15, 0.10, 0.45, 0.30]
# (P(production activity), P(lyrics activity)) per role; the rest is browsing.
ROLE_ACTIVITY = [(0.30, 0.45), (0.60, 0.15), (0.40, 0.30), (0.35, 0.25)]
PLANS = ["free", "pro", "studio"]
OTHER_FEATURES = ["Mastering", "Chord Generator", "Drum Patterns", "Vocal Tuning", "Reference Match",
                  "Export WAV"]
PAGES = ["/home", "/studio", "/library", "/explore", "/lyrics", "/pricing", "/settings"]
GENRES = ["pop", "hip hop", "rnb", "edm", "rock", "lofi", "afrobeats", "latin"]

# Weekly rhythm, Monday first: activity of returning users, and sign-ups.
WEEKDAY_ACTIVITY = [1.00, 1.03, 1.04, 1.01, 0.94, 0.78, 0.84]
WEEKDAY_SIGNUPS = [1.08, 1.05, 1.03, 1.00, 0.95, 0.86, 0.97]
# Local hour of session starts (weights, 0h..23h): evenings are busiest.
HOUR_WEIGHTS = [1.2, 0.7, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.5, 3.0, 3.2, 3.3,
                3.5, 3.4, 3.3, 3.4, 3.8, 4.3, 5.0, 5.6, 5.9, 5.5, 4.2, 2.4]

DAY_MS = 86_400_000
MINUTE_MS = 60_000
DUPLICATE_RATE = 0.01
MALFORMED_REASONS = ["truncated_json", "missing_event", "non_numeric_time", "missing_distinct_id",
                     "truncated_json"]
DAILY_GROWTH = math.log(2.5) / 90  # sign-ups grow 2.5x over a default run
MEAN_LIFETIME = 0.35 * 3 + 0.65 * 150  # days a new user stays: 35% leave after a few days, the rest after ~150
EVENTS_PER_ACTIVE_DAY = 13.0  # measured; sizes the events_per_day mode's pool, which is then cut at the target
MIN_BASELINE_DAYS = 14


@dataclass(frozen=True)
class DemoSummary:
    out_dir: Path
    start_date: date
    end_date: date
    days_written: int
    missing_days: list[date]
    events: int  # unique, well-formed events written (duplicates and malformed lines not counted)
    duplicates: int
    malformed: int
    users: int  # registered users, one profile each (anonymous visitors not counted)


@dataclass(frozen=True)
class _Story:
    id: str
    kind: str
    description: str
    metric: str
    funnel: str | None
    step: int | None
    dimension: str
    segment: str
    direction: str
    position: float  # start, as a fraction of the run
    duration: int | None  # days; None = until the end


STORIES = [
    _Story("sketch_upload_android_break", "risk",
           "A new Android release breaks sketch upload: Android users on the release (60%) can no longer "
           "upload a sketch, so Production Started -> Sketch Uploaded falls on Android; other platforms "
           "are unchanged.",
           "funnel_conversion", "Music Production", 2, "platform", "Android", "down", 0.70, None),
    _Story("tiktok_campaign_spike", "anomaly",
           "A viral TikTok campaign (utm_campaign viral_hook_v2) multiplies TikTok sign-ups for five days; "
           "these users rarely complete their profile or start a production, and churn within days.",
           "event_count:Sign Up", None, None, "channel", "tiktok", "up", 0.578, 5),
    _Story("stem_separation_adoption", "opportunity",
           "Stem Separation launches (Feature Used, feature=Stem Separation); the share of active users "
           "using it grows linearly day over day.",
           "event_users:Feature Used", None, None, "all", "all", "up", 0.422, None),
    _Story("producer_retention_decline", "trend",
           "Users acquired through YouTube producer tutorials (mostly producers) return less and less, "
           "week over week, so the channel's active users decline while new sign-ups continue.",
           "dau", None, None, "channel", "youtube", "down", 0.489, None),
    _Story("onboarding_success", "success",
           "A redesigned onboarding lifts Sign Up -> Profile Completed from about 45% to about 70%.",
           "funnel_conversion", "Onboarding", 2, "all", "all", "up", 0.822, None),
]
SPIKE_MULTIPLIERS = [4.0, 7.0, 6.0, 4.0, 2.5]  # TikTok sign-ups vs usual, per campaign day
ANDROID_BROKEN_SHARE = 0.6
STEM_SHARE_AT_END = 0.30
YOUTUBE_RETURN_AT_END = 0.35  # return propensity multiplier reached on the last day
PROFILE_RATE_BEFORE, PROFILE_RATE_AFTER, PROFILE_RATE_SPIKE = 0.45, 0.70, 0.15

_FILE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\.jsonl$")
_M64 = (1 << 64) - 1


# ---------------------------------------------------------------------------------------- helpers

def _mix(x: int) -> int:
    """SplitMix64 finalizer: a bijection on 64-bit ints, so distinct inputs give distinct outputs."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _np_mix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _key(seed: int, *purpose: int) -> int:
    return int(np.random.SeedSequence([seed, *purpose]).generate_state(2, np.uint64)[0])


def _uuid(a: int, b: int) -> str:
    h = f"{a:016x}{b:016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _story_days(days: int) -> dict[str, tuple[int, int]]:
    """Story id -> (first day index, last day index) for the stories that fit a run of `days`."""
    placed = {}
    for s in STORIES:
        start = round(s.position * days)
        if s.duration is None:  # lasts to the end: needs a few days of effect
            end, fits = days - 1, days - start >= 5
        else:  # a window: needs a few quiet days after it
            end = start + (s.duration if days >= 45 else max(2, round(days / 18))) - 1
            fits = end <= days - 3
        if fits and start >= MIN_BASELINE_DAYS:
            placed[s.id] = (start, end)
    return placed


# ---------------------------------------------------------------------------------------- one file

class _DayFile:
    """Writes one day's lines: renders events, plants duplicate deliveries and malformed lines, and
    keeps events that fall after midnight for the next day's file."""

    def __init__(self, path: Path | None, day_idx: int, day_start_ms: int, rnd: random.Random,
                 id_keys: tuple[int, int], delays: list[int], malformed: list[str]):
        self.fh = open(path if path else os.devnull, "w", encoding="ascii", newline="\n")
        self.end_ms = day_start_ms + DAY_MS
        self.rnd, self.delays = rnd, delays
        self.id_keys, self.id_next = id_keys, day_idx << 32
        self.ids: list[str] = []
        self.id_pos = 0
        self.buf: list[str] = []
        self.lines = self.events = self.duplicates = 0
        self.pending: list[tuple[int, int, tuple]] = []  # (line to write at, seq, event parts)
        self.seq = 0
        self.malformed_due = sorted((rnd.randint(1, 400), reason) for reason in malformed)
        self.malformed_written: list[tuple[int, str]] = []
        self.spill: list[tuple] = []
        self.last: tuple = ()
        self.next_check = 0
        self._schedule()

    def _insert_id(self) -> str:
        if self.id_pos == len(self.ids):
            n = 8192
            counters = np.arange(self.id_next, self.id_next + n, dtype=np.uint64)
            self.id_next += n
            pair = np.empty((n, 2), dtype=">u8")
            pair[:, 0] = _np_mix(counters ^ np.uint64(self.id_keys[0]))
            pair[:, 1] = _np_mix(counters ^ np.uint64(self.id_keys[1]))
            text = pair.tobytes().hex()
            self.ids = [text[i:i + 32] for i in range(0, 32 * n, 32)]
            self.id_pos = 0
        self.id_pos += 1
        return self.ids[self.id_pos - 1]

    def emit(self, name: str, t: int, did: str, props: str) -> None:
        """One event. `name` is the JSON-quoted event name, `props` the rendered tail of properties
        (starting with a comma)."""
        if t >= self.end_ms:
            self.spill.append((name, t, did, props))
            return
        iid = self._insert_id()
        pt = t + self.delays[int(self.rnd.random() * 1024)]
        self.buf.append(f'{{"event":{name},"properties":{{"time":{t},"distinct_id":"{did}",'
                        f'"$insert_id":"{iid}","mp_processing_time_ms":{pt}{props}}}}}\n')
        self.lines += 1
        self.events += 1
        if self.rnd.random() < DUPLICATE_RATE:
            self.seq += 1
            heapq.heappush(self.pending, (self.lines + self.rnd.randint(0, 3000), self.seq,
                                          (name, t, did, iid, pt, props)))
            self._schedule()
        self.last = (name, t, did, props)
        if self.lines >= self.next_check:
            self._service()

    def _schedule(self) -> None:
        due = [self.lines + 4096 - len(self.buf)]  # the next flush
        if self.pending:
            due.append(self.pending[0][0])
        if self.malformed_due:
            due.append(self.malformed_due[0][0])
        self.next_check = min(due)

    def _service(self, final: bool = False) -> None:
        while self.pending and (final or self.pending[0][0] <= self.lines):
            self._duplicate(heapq.heappop(self.pending)[2])
        while self.malformed_due and self.last and (final or self.malformed_due[0][0] <= self.lines):
            self._malformed(self.malformed_due.pop(0)[1])
        if len(self.buf) >= 4096 or final:
            self.fh.write("".join(self.buf))
            self.buf.clear()
        self._schedule()

    def _duplicate(self, parts: tuple) -> None:
        name, t, did, iid, pt, props = parts
        rnd = self.rnd
        pt2 = pt if rnd.random() < 0.2 else pt + rnd.randint(1, 20 * MINUTE_MS)
        if rnd.random() < 0.3:  # the same event, with its properties in another order
            line = (f'{{"event":{name},"properties":{{"$insert_id":"{iid}","distinct_id":"{did}",'
                    f'"time":{t}{props},"mp_processing_time_ms":{pt2}}}}}\n')
        else:
            line = (f'{{"event":{name},"properties":{{"time":{t},"distinct_id":"{did}",'
                    f'"$insert_id":"{iid}","mp_processing_time_ms":{pt2}{props}}}}}\n')
        self.buf.append(line)
        self.lines += 1
        self.duplicates += 1

    def _malformed(self, reason: str) -> None:
        """A broken line made from a fresh event (not otherwise written): it never counts as an event."""
        name, t, did, props = self.last
        iid = f"{_mix(self.lines ^ self.id_keys[0] ^ 1 << 63):016x}{_mix(self.id_next ^ self.id_keys[1]):016x}"
        pt = t + 1500
        if reason == "truncated_json":
            full = (f'{{"event":{name},"properties":{{"time":{t},"distinct_id":"{did}",'
                    f'"$insert_id":"{iid}","mp_processing_time_ms":{pt}{props}}}}}')
            line = full[: len(full) * 3 // 5]
        elif reason == "missing_event":
            line = (f'{{"properties":{{"time":{t},"distinct_id":"{did}","$insert_id":"{iid}",'
                    f'"mp_processing_time_ms":{pt}{props}}}}}')
        elif reason == "non_numeric_time":
            line = (f'{{"event":{name},"properties":{{"time":"{_iso(t)}Z","distinct_id":"{did}",'
                    f'"$insert_id":"{iid}","mp_processing_time_ms":{pt}{props}}}}}')
        else:  # missing_distinct_id
            line = (f'{{"event":{name},"properties":{{"time":{t},"$insert_id":"{iid}",'
                    f'"mp_processing_time_ms":{pt}{props}}}}}')
        self.buf.append(line + "\n")
        self.lines += 1
        self.malformed_written.append((self.lines, reason))

    def close(self) -> list[tuple]:
        self._service(final=True)
        self.fh.close()
        return self.spill


# ---------------------------------------------------------------------------------------- simulator

class _Simulator:
    def __init__(self, days: int, start: date, users: int, events_per_day: int | None, seed: int,
                 flat: bool = False):
        self.days, self.start, self.seed, self.epd, self.flat = days, start, seed, events_per_day, flat
        self.start_ms = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() * 1000)
        self.story_days = _story_days(days)
        rng = np.random.default_rng([seed, 0])
        const = np.random.default_rng([seed, 1])
        # tables of 1024 draws (ms), picked with int(random() * 1024) in the hot loop
        gaps = np.clip(const.lognormal(math.log(20_000), 0.8, 1024), 1_500, 10 * MINUTE_MS)
        self.gaps = gaps.astype(int).tolist()  # between events of a session
        self.renders = const.uniform(35_000, 240_000, 1024).astype(int).tolist()  # the AI producing a track
        delays = const.lognormal(math.log(900), 0.7, 1024)
        delays[:30] = const.uniform(MINUTE_MS, 45 * MINUTE_MS, 30)  # mobile clients that were offline
        self.delays = delays.astype(int).tolist()  # time -> mp_processing_time_ms
        cdf = np.cumsum(HOUR_WEIGHTS)
        self.hour_cdf = list(cdf / cdf[-1])
        self.dev_keys = (_key(seed, 2), _key(seed, 3))
        self.uid_key = _key(seed, 4)
        self.visitor_keys = (_key(seed, 5), _key(seed, 6))
        self.id_keys = (_key(seed, 7), _key(seed, 8))
        self._build_population(rng, users)
        self._render_constants()
        self.fu_other_days = self.active_days_registered = 0

    # -- population
    def _build_population(self, rng: np.random.Generator, users: int) -> None:
        days = self.days
        # flat: as many sign-ups every week, and a user base already at the size they keep it at (sign-ups a
        # day x MEAN_LIFETIME; the earlier users' remaining lifetimes are exponential, as a new user's
        # long one is), so that the daily users stay level however long the run
        frac_new = 1 / (1 + MEAN_LIFETIME / days) if self.flat else days / (days + 45)
        if self.epd:  # enough users that a day can reach the requested volume
            users = max(users, math.ceil(1.3 * self.epd / EVENTS_PER_ACTIVE_DAY / (0.8 * (1 - frac_new))))
        n_new = round(users * frac_new)
        n_pre = users - n_new
        w = np.exp((0.0 if self.flat else DAILY_GROWTH) * np.arange(days)) * np.array(
            [WEEKDAY_SIGNUPS[(self.start + timedelta(d)).weekday()] for d in range(days)])
        self.signup_weight = w / w.sum()
        signup = np.concatenate([-rng.integers(1, 365, n_pre), rng.choice(days, n_new, p=self.signup_weight)])
        lifetime_pre = rng.exponential(150, n_pre)
        quick = rng.random(n_new) < 0.35
        lifetime_new = np.where(quick, rng.geometric(1 / 3, n_new), rng.exponential(150, n_new))
        churn = np.concatenate([np.ceil(lifetime_pre), signup[n_pre:] + 1 + np.ceil(lifetime_new)])
        channel = rng.choice(len(CHANNELS), users, p=[c[1] for c in CHANNELS])
        prop = rng.beta(2, 5, users)
        plan = np.concatenate([rng.choice(3, n_pre, p=[0.78, 0.16, 0.06]), np.zeros(n_new, int)])
        spike = np.zeros(users, bool)

        # the TikTok campaign's extra users
        if "tiktok_campaign_spike" in self.story_days:
            a, b = self.story_days["tiktok_campaign_spike"]
            usual = n_new * self.signup_weight[a:b + 1] * CHANNELS[TIKTOK][1]
            extra = np.round(usual * (np.array(SPIKE_MULTIPLIERS[: b - a + 1]) - 1)).astype(int)
            self.spike_usual = float(usual.sum())
            self.spike_extra = int(extra.sum())
            n = self.spike_extra
            s_signup = np.repeat(np.arange(a, b + 1), extra)
            signup = np.concatenate([signup, s_signup])
            churn = np.concatenate([churn, s_signup + 1 + rng.geometric(0.6, n)])
            channel = np.concatenate([channel, np.full(n, TIKTOK)])
            prop = np.concatenate([prop, rng.beta(1, 9, n)])
            plan = np.concatenate([plan, np.zeros(n, int)])
            spike = np.concatenate([spike, np.ones(n, bool)])
        n = len(signup)
        self.n_users = n
        self.signup = signup.astype(np.int64)
        self.churn = churn.astype(np.int64)
        self.prop = prop
        self.youtube = channel == YOUTUBE
        self.channel = channel.tolist()
        self.spike = spike.tolist()
        first_campaign = [CAMPAIGNS.index(cs[0]) for _, _, cs in CHANNELS]
        campaign = [first_campaign[c] + (rng.random() < 0.5 if c == GOOGLE else 0) for c in self.channel]
        self.campaign = [SPIKE_CAMPAIGN if s else c for s, c in zip(self.spike, campaign)]
        os_p = [o[1] for o in OSES]
        mobile_p = [0.55, 0.45, 0, 0]
        oses = np.where(spike, rng.choice(4, n, p=mobile_p), rng.choice(4, n, p=os_p))
        self.os = oses.tolist()
        self.browser = [0 if o in (IOS, ANDROID) else int(rng.choice(5, p=DESKTOP_BROWSER_P[o])) for o in self.os]
        self.country = rng.choice(len(COUNTRIES), n, p=[c[1] for c in COUNTRIES]).tolist()
        role_tables = [np.cumsum(p) for p in (ROLE_P, ROLE_P_YOUTUBE, ROLE_P_SPIKE)]
        u = rng.random(n)
        self.role = [int(np.searchsorted(role_tables[2 if s else 1 if c == YOUTUBE else 0], x, side="right"))
                     for x, s, c in zip(u, self.spike, self.channel)]
        self.plan = plan.tolist()
        android = rng.permutation(np.flatnonzero(oses == ANDROID))
        broken = np.zeros(n, bool)
        broken[android[: round(ANDROID_BROKEN_SHARE * len(android))]] = True
        self.android_broken = broken.tolist()
        pre_created = self.start_ms + signup * DAY_MS + rng.integers(0, DAY_MS, n)
        self.created = np.where(signup < 0, pre_created, 0).tolist()
        self.last_seen = np.where(signup < 0, pre_created + (
            rng.random(n) * np.minimum(-signup, 30) * DAY_MS).astype(np.int64), 0).tolist()
        self.name_draw = rng.integers(0, 1 << 30, n).tolist()

    def _render_constants(self) -> None:
        self.ev = {e: json.dumps(e) for e in (
            SIGN_UP, LOGIN, LOGOUT, PROFILE_COMPLETED, PAGE_VIEW, PRODUCTION_STARTED, SKETCH_UPLOADED,
            PROMPT_SELECTED, PRODUCTION_COMPLETED, LYRICS_STARTED, LYRICS_COMPLETED, FEATURE_USED,
            FEEDBACK_SUBMITTED, MESSAGE_LIKED, MESSAGE_DISLIKED, SUBSCRIPTION_STARTED,
            SUBSCRIPTION_CANCELLED)}
        self.page_props = [f',"page":"{p}"' for p in PAGES]
        self.page_cdf = list(np.cumsum([0.30, 0.25, 0.15, 0.12, 0.08, 0.05, 0.05]))
        self.genre_props = [f',"genre":"{g}"' for g in GENRES]
        self.feature_props = [f',"feature":"{f}"' for f in OTHER_FEATURES]
        self.stem_props = f',"feature":"{STEM_SEPARATION}"'
        self.os_cdf = np.cumsum([o[1] for o in OSES])[:-1].tolist()
        self.country_cdf = np.cumsum([c[1] for c in COUNTRIES])[:-1].tolist()
        self.channel_cdf = np.cumsum([c[1] for c in CHANNELS])[:-1].tolist()

    def device_id(self, u: int) -> str:
        return _uuid(_mix(u ^ self.dev_keys[0]), _mix(u ^ self.dev_keys[1]))

    def user_id(self, u: int) -> str:
        return f"hc_{_mix(u ^ self.uid_key):016x}"

    def _anon_props(self, o: int, b: int, c: int, ch: int, cp: int, dev: str) -> str:
        return (f',"$os":"{OSES[o][0]}","$browser":"{BROWSERS[b]}","mp_country_code":"{COUNTRIES[c][0]}",'
                f'"utm_source":"{CHANNELS[ch][0]}","utm_campaign":"{CAMPAIGNS[cp]}","mp_lib":"{MP_LIB[o]}",'
                f'"$device_id":"{dev}"')

    def _user_props(self, u: int, anon: str) -> str:
        return (f'{anon},"$user_id":"{self.user_id(u)}","plan":"{PLANS[self.plan[u]]}",'
                f'"role":"{ROLES[self.role[u]]}"')

    # -- one day
    def day_activity(self, d: int) -> tuple[np.ndarray, np.ndarray, float]:
        """The users signing up on day d, the returning users active on day d (both in random order),
        and the YouTube story's designed effect on that day's expected YouTube DAU."""
        rng = np.random.default_rng([self.seed, 10, d])
        age = d - self.signup
        p = self.prop * WEEKDAY_ACTIVITY[(self.start + timedelta(d)).weekday()]
        p = np.minimum(np.where((age > 0) & (age < 7), p * 1.5, p), 0.95)
        alive = (age > 0) & (d < self.churn)
        p = np.where(alive, p, 0.0)
        if self.epd:
            target = 1.15 * self.epd / EVENTS_PER_ACTIVE_DAY
            lo, hi = 0.0, 1.0 / max(float(p[p > 0].min(initial=1.0)), 1e-9)
            for _ in range(40):
                c = (lo + hi) / 2
                lo, hi = (c, hi) if np.minimum(p * c, 1.0).sum() < target else (lo, c)
            p = np.minimum(p * hi, 1.0)
        effect = 0.0
        if "producer_retention_decline" in self.story_days:
            a, b = self.story_days["producer_retention_decline"]
            if d >= a:
                m = 1 - (1 - YOUTUBE_RETURN_AT_END) * (d - a + 1) / (b - a + 1)
                yt = self.youtube & alive
                base = float(p[yt].sum()) + float((self.youtube & (age == 0)).sum())
                p = np.where(yt, p * m, p)
                effect = (float(p[yt].sum()) + float((self.youtube & (age == 0)).sum())) / max(base, 1e-9) - 1
        returning = np.flatnonzero(rng.random(self.n_users) < p)
        new = np.flatnonzero(age == 0)
        return rng.permutation(new), rng.permutation(returning), effect

    def run_day(self, f: _DayFile, d: int, rnd: random.Random, carried: list[tuple]) -> float:
        for name, t, did, props in carried:
            f.emit(name, t, did, props)
        busy = {}
        for _, t, did, _ in carried:
            busy[did] = max(busy.get(did, 0), t)
        new, returning, effect = self.day_activity(d)
        day_ms = self.start_ms + d * DAY_MS
        stem = self.story_days.get("stem_separation_adoption")
        stem_share = STEM_SHARE_AT_END * (d - stem[0] + 1) / (stem[1] - stem[0] + 1) if stem and d >= stem[0] else 0.0
        spike_extra_visitors = int(sum(self.spike[u] for u in new.tolist()) * 1.5)
        n_visitors = int(np.random.default_rng([self.seed, 11, d]).poisson(0.9 * len(new)))
        # visitors and sign-ups interleaved, then returning users
        order = [("v", i) for i in range(n_visitors + spike_extra_visitors)] + [("n", int(u)) for u in new]
        rnd.shuffle(order)
        for i, (kind, x) in enumerate(order):
            if self.epd and f.events >= self.epd:  # the day is full: the remaining sign-ups never happen
                for kind_left, u in order[i:]:
                    if kind_left == "n":
                        self.churn[u] = self.signup[u]
                break
            if kind == "v":
                self._visitor(f, d, x, x >= n_visitors, day_ms, rnd)
            else:
                self._user_day(f, x, d, True, day_ms, rnd, stem_share, busy)
        for u in returning.tolist():
            if self.epd and f.events >= self.epd:
                break
            self._user_day(f, u, d, False, day_ms, rnd, stem_share, busy)
        return effect

    def _start_times(self, c: int, n: int, day_ms: int, rnd: random.Random) -> list[int]:
        offset = int(COUNTRIES[c][2] * 3600)
        starts = []
        for _ in range(n):
            local = bisect(self.hour_cdf, rnd.random()) * 3600 + int(rnd.random() * 3600)
            starts.append(day_ms + ((local - offset) % 86400) * 1000 + int(rnd.random() * 1000))
        starts.sort()
        return starts

    def _visitor(self, f: _DayFile, d: int, i: int, campaign: bool, day_ms: int, rnd: random.Random) -> None:
        """An anonymous visitor who browses and leaves without signing up."""
        h1, h2 = _mix((d << 32 | i) ^ self.visitor_keys[0]), _mix((d << 32 | i) ^ self.visitor_keys[1])
        dev = _uuid(h1, h2)
        o = bisect(self.os_cdf, (h1 & 0xFFFF) / 65536)
        b = 0 if o in (IOS, ANDROID) else (1 if o == WINDOWS else 2)
        c = bisect(self.country_cdf, ((h1 >> 16) & 0xFFFF) / 65536)
        ch = TIKTOK if campaign else bisect(self.channel_cdf, ((h1 >> 32) & 0xFFFF) / 65536)
        cp = SPIKE_CAMPAIGN if campaign else CAMPAIGNS.index(CHANNELS[ch][2][0])
        props = self._anon_props(o, b, c, ch, cp, dev)
        t = self._start_times(c, 1, day_ms, rnd)[0]
        did = "$device:" + dev
        for _ in range(1 + (rnd.random() < 0.5) + (rnd.random() < 0.25) + (rnd.random() < 0.1)):
            f.emit(self.ev[PAGE_VIEW], t, did, props + self._page(rnd))
            t += self.gaps[int(rnd.random() * 1024)]

    def _page(self, rnd: random.Random) -> str:
        return self.page_props[min(bisect(self.page_cdf, rnd.random()), len(PAGES) - 1)]

    def _user_day(self, f: _DayFile, u: int, d: int, signing_up: bool, day_ms: int, rnd: random.Random,
                  stem_share: float, busy: dict) -> None:
        o, c = self.os[u], self.country[u]
        dev = self.device_id(u)
        anon = self._anon_props(o, self.browser[u], c, self.channel[u], self.campaign[u], dev)
        uid = self.user_id(u)
        props = self._user_props(u, anon)
        n_sessions = 1 + (rnd.random() < 0.5) + (rnd.random() < 0.2)
        prev_end = busy.get(uid, -DAY_MS)
        stem_today = stem_share > 0 and not signing_up and rnd.random() < stem_share
        used_other = False
        t_last = 0
        for k, t in enumerate(self._start_times(c, n_sessions, day_ms, rnd)):
            if t < prev_end + 30 * MINUTE_MS:
                t = prev_end + 30 * MINUTE_MS + int(rnd.random() * 3 * 3600_000)
            if t >= day_ms + DAY_MS:
                break
            if signing_up and k == 0:
                t = self._signup_session(f, u, d, t, anon, dev, uid, props, rnd)
            else:
                if o >= WINDOWS and rnd.random() < 0.3:
                    f.emit(self.ev[LOGIN], t, uid, props)
                    t += self.gaps[int(rnd.random() * 1024)]
            t, other = self._session(f, u, d, t, uid, props, rnd, stem_today and k == 0)
            used_other |= other
            if k == n_sessions - 1 and not self.spike[u]:
                t, props = self._billing(f, u, t, uid, anon, props, rnd)
            if rnd.random() < 0.12:
                f.emit(self.ev[LOGOUT], t, uid, props)
            prev_end = t_last = t
        if t_last:
            self.last_seen[u] = max(self.last_seen[u], t_last)
        if not signing_up:
            self.active_days_registered += 1
            self.fu_other_days += used_other

    def _signup_session(self, f, u, d, t, anon, dev, uid, props, rnd) -> int:
        """Anonymous browsing, Sign Up (the first event with both ids), then onboarding."""
        ev, gaps = self.ev, self.gaps
        did = "$device:" + dev
        for _ in range(1 + (rnd.random() < 0.6) + (rnd.random() < 0.3)):
            f.emit(ev[PAGE_VIEW], t, did, anon + self._page(rnd))
            t += gaps[int(rnd.random() * 1024)]
        f.emit(ev[SIGN_UP], t, uid, props + ',"signup_method":"' + ("google" if rnd.random() < 0.6 else "email") + '"')
        self.created[u] = t
        onboarding = self.story_days.get("onboarding_success")
        rate = (PROFILE_RATE_SPIKE if self.spike[u] else
                PROFILE_RATE_AFTER if onboarding and d >= onboarding[0] else PROFILE_RATE_BEFORE)
        if rnd.random() < rate:
            t += 30_000 + int(rnd.random() * 90_000)
            f.emit(ev[PROFILE_COMPLETED], t, uid, props)
            if rnd.random() < (0.25 if self.spike[u] else 0.65):
                t += gaps[int(rnd.random() * 1024)]
                t = self._production(f, u, d, t, uid, props, rnd)
        return t + gaps[int(rnd.random() * 1024)]

    def _sketch_broken(self, u: int, d: int) -> bool:
        br = self.story_days.get("sketch_upload_android_break")
        return bool(br and d >= br[0] and self.android_broken[u])

    def _production(self, f, u, d, t, uid, props, rnd) -> int:
        ev, gaps = self.ev, self.gaps
        f.emit(ev[PRODUCTION_STARTED], t, uid, props + self.genre_props[int(rnd.random() * len(GENRES))])
        t += gaps[int(rnd.random() * 1024)]
        if rnd.random() < 0.8 and not self._sketch_broken(u, d):
            f.emit(ev[SKETCH_UPLOADED], t, uid, props)
            if rnd.random() < 0.6:
                t += gaps[int(rnd.random() * 1024)]
                f.emit(ev[PROMPT_SELECTED], t, uid, props + ',"prompt_type":"production"')
            if rnd.random() < 0.78:
                t += self.renders[int(rnd.random() * 1024)]
                f.emit(ev[PRODUCTION_COMPLETED], t, uid, props)
                t = self._reaction(f, t, uid, props, rnd)
        return t + gaps[int(rnd.random() * 1024)]

    def _lyrics(self, f, t, uid, props, rnd) -> int:
        ev, gaps = self.ev, self.gaps
        f.emit(ev[LYRICS_STARTED], t, uid, props)
        t += gaps[int(rnd.random() * 1024)]
        if rnd.random() < 0.75:
            f.emit(ev[PROMPT_SELECTED], t, uid, props + ',"prompt_type":"lyrics"')
            t += gaps[int(rnd.random() * 1024)]
            if rnd.random() < 0.8:
                t += gaps[int(rnd.random() * 1024)]
                f.emit(ev[LYRICS_COMPLETED], t, uid, props)
                t = self._reaction(f, t, uid, props, rnd)
        return t + gaps[int(rnd.random() * 1024)]

    def _reaction(self, f, t, uid, props, rnd) -> int:
        x = rnd.random()
        if x < 0.45:
            t += self.gaps[int(rnd.random() * 1024)]
            f.emit(self.ev[MESSAGE_LIKED if x < 0.33 else MESSAGE_DISLIKED], t, uid, props)
        if rnd.random() < 0.06:
            t += self.gaps[int(rnd.random() * 1024)]
            f.emit(self.ev[FEEDBACK_SUBMITTED], t, uid, props + f',"rating":{1 + int(rnd.random() * 5)}')
        return t

    def _session(self, f, u, d, t, uid, props, rnd, stem_now) -> tuple[int, bool]:
        ev, gaps = self.ev, self.gaps
        p_prod, p_lyrics = ROLE_ACTIVITY[self.role[u]]
        f.emit(ev[PAGE_VIEW], t, uid, props + self._page(rnd))
        t += gaps[int(rnd.random() * 1024)]
        used_other = False
        for k in range(1 + (rnd.random() < 0.7) + (rnd.random() < 0.4) + (rnd.random() < 0.15)):
            if rnd.random() < 0.5:
                f.emit(ev[PAGE_VIEW], t, uid, props + self._page(rnd))
                t += gaps[int(rnd.random() * 1024)]
            x = rnd.random()
            if x < p_prod:
                t = self._production(f, u, d, t, uid, props, rnd)
            elif x < p_prod + p_lyrics:
                t = self._lyrics(f, t, uid, props, rnd)
            else:
                f.emit(ev[PAGE_VIEW], t, uid, props + self._page(rnd))
                t += gaps[int(rnd.random() * 1024)]
            if rnd.random() < 0.14:
                f.emit(ev[FEATURE_USED], t, uid, props + self.feature_props[int(rnd.random() * len(OTHER_FEATURES))])
                t += gaps[int(rnd.random() * 1024)]
                used_other = True
            if stem_now and k == 0:
                for _ in range(1 + (rnd.random() < 0.3)):
                    f.emit(ev[FEATURE_USED], t, uid, props + self.stem_props)
                    t += gaps[int(rnd.random() * 1024)]
        return t, used_other

    def _billing(self, f, u, t, uid, anon, props, rnd) -> tuple[int, str]:
        plan = self.plan[u]
        if plan == 0 and rnd.random() < 0.006:
            f.emit(self.ev[PAGE_VIEW], t, uid, props + ',"page":"/pricing"')
            t += self.gaps[int(rnd.random() * 1024)]
            self.plan[u] = 1 if rnd.random() < 0.75 else 2
            props = self._user_props(u, anon)
            f.emit(self.ev[SUBSCRIPTION_STARTED], t, uid, props + ',"billing_period":"monthly"')
            t += self.gaps[int(rnd.random() * 1024)]
        elif plan and rnd.random() < 0.006:
            f.emit(self.ev[SUBSCRIPTION_CANCELLED], t, uid, props)
            self.plan[u] = 0
            props = self._user_props(u, anon)
            t += self.gaps[int(rnd.random() * 1024)]
        return t, props

    # -- profiles
    def write_profiles(self, path: Path, end_ms: int) -> int:
        """One Engage profile per user who signed up before the end; returns how many."""
        first = ["Alex", "Sam", "Jordan", "Taylor", "Riley", "Casey", "Morgan", "Jamie", "Avery", "Quinn",
                 "Rowan", "Skyler", "Devon", "Reese", "Parker", "Emery"]
        last = ["Demo", "Sample", "Synth", "Tester", "Example", "Placeholder", "Fixture", "Mock"]
        written = 0
        with open(path, "w", encoding="ascii", newline="\n") as fh:
            for u in range(self.n_users):
                if not self.created[u] or self.created[u] >= end_ms:
                    continue  # no Sign Up before the end (or one cut by the events_per_day cap)
                draw = self.name_draw[u]
                props: dict = {}
                uid = self.user_id(u)
                if draw % 100 < 92:
                    props["$email"] = f"{uid}@example.com"
                if draw % 97 < 85:
                    props["$name"] = f"{first[(draw >> 8) % len(first)]} {last[(draw >> 12) % len(last)]}"
                props.update({
                    "plan": PLANS[self.plan[u]], "role": ROLES[self.role[u]],
                    "$country_code": COUNTRIES[self.country[u]][0],
                    "$created": _iso(self.created[u]), "$last_seen": _iso(self.last_seen[u]),
                    "$os": OSES[self.os[u]][0], "utm_source": CHANNELS[self.channel[u]][0],
                })
                fh.write(json.dumps({"$distinct_id": uid, "$properties": props}, separators=(",", ":")) + "\n")
                written += 1
        return written


# ---------------------------------------------------------------------------------------- public API

def _clear(out: Path) -> None:
    """Remove a previous demo's files, so no stale day survives (the missing day must have no file)."""
    for p in out.iterdir():
        if p.is_file() and (_FILE_RE.match(p.name) or p.name in (GROUND_TRUTH_FILE, PROFILES_FILE)):
            p.unlink()


def generate_demo(out_dir: Path | str, *, days: int = 90, end_date: date | None = None,
                  users: int = DEFAULT_USERS, events_per_day: int | None = None, seed: int = 42,
                  flat: bool = False) -> DemoSummary:
    """Write `days` UTC days of simulated HitCraft export ending on `end_date` (default: yesterday,
    UTC) into `out_dir`, with `profiles.jsonl` and `ground_truth.json`, replacing a previous demo's
    files there (other files are left alone). With `events_per_day`, each day holds about that many
    events (the population grows if needed) instead of the organic volume. `flat`: the same sign-ups
    every week and a user base at its steady size from the first day, so the daily users stay level
    (the stories still happen); default: a product growing 2.5x in sign-ups over 90 days."""
    if days < 1 or users < 1 or (events_per_day is not None and events_per_day < 1):
        raise ValueError("days, users and events_per_day must be positive")
    if end_date is None:
        end_date = datetime.now(UTC).date() - timedelta(days=1)
    start = end_date - timedelta(days=days - 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    sim = _Simulator(days, start, users, events_per_day, seed, flat)
    plan_rng = random.Random(_key(seed, 20))
    story_starts = {a for a, _ in sim.story_days.values()}
    spike = sim.story_days.get("tiktok_campaign_spike", (-9, -9))
    candidates = [d for d in range(1, days - 1) if not ({d - 1, d, d + 1} & story_starts)
                  and not spike[0] - 1 <= d <= spike[1] + 1 and days * 0.15 <= d <= days * 0.85]
    missing = plan_rng.choice(candidates) if days >= 3 and candidates else None
    written_days = [d for d in range(days) if d != missing]
    malformed_days = sorted(plan_rng.sample(written_days, min(3, len(written_days))))
    malformed_by_day: dict[int, list[str]] = {d: [] for d in malformed_days}
    for i, reason in enumerate(MALFORMED_REASONS):
        malformed_by_day[malformed_days[i % len(malformed_days)]].append(reason)

    files, dup_by_day, events_by_day, malformed_rows = [], {}, {}, []
    youtube_effect = 0.0
    carried: list[tuple] = []
    for d in range(days):
        day = start + timedelta(days=d)
        name = f"{day.isoformat()}.jsonl"
        rnd = random.Random(_key(seed, 30, d))
        f = _DayFile(None if d == missing else out / name, d, sim.start_ms + d * DAY_MS, rnd, sim.id_keys,
                     sim.delays, malformed_by_day.get(d, []))
        youtube_effect = sim.run_day(f, d, rnd, carried)
        carried = f.close()
        if d == missing:
            continue
        files.append(name)
        dup_by_day[day.isoformat()] = f.duplicates
        events_by_day[day.isoformat()] = f.events
        malformed_rows += [{"date": day.isoformat(), "line_no": n, "reason": r} for n, r in f.malformed_written]
    end_ms = sim.start_ms + days * DAY_MS
    n_users = sim.write_profiles(out / PROFILES_FILE, end_ms)

    sizes = {
        "sketch_upload_android_break": -ANDROID_BROKEN_SHARE,
        "onboarding_success": PROFILE_RATE_AFTER / PROFILE_RATE_BEFORE - 1,
        "producer_retention_decline": youtube_effect,
    }
    if "tiktok_campaign_spike" in sim.story_days:
        sizes["tiktok_campaign_spike"] = sim.spike_extra / max(sim.spike_usual, 1e-9)
    if sim.active_days_registered:
        q = sim.fu_other_days / sim.active_days_registered
        sizes["stem_separation_adoption"] = (1 - (1 - q) * (1 - STEM_SHARE_AT_END)) / max(q, 1e-9) - 1
    stories = []
    for s in STORIES:
        if s.id not in sim.story_days:
            continue
        a, b = sim.story_days[s.id]
        story = {"id": s.id, "kind": s.kind, "description": s.description, "metric": s.metric,
                 "funnel": s.funnel, "step": s.step, "dimension": s.dimension, "segment": s.segment,
                 "start_date": (start + timedelta(a)).isoformat(), "end_date": (start + timedelta(b)).isoformat(),
                 "direction": s.direction, "size": round(sizes[s.id], 3)}
        if s.funnel:
            story["funnel_steps"] = FUNNELS[s.funnel]
        if s.id == "stem_separation_adoption":
            story["event_filter"] = {"feature": STEM_SEPARATION}
        if s.id == "tiktok_campaign_spike":
            story["utm_campaign"] = CAMPAIGNS[SPIKE_CAMPAIGN]
        stories.append(story)
    missing_days = [] if missing is None else [start + timedelta(missing)]
    truth = {
        "seed": seed, "start_date": start.isoformat(), "end_date": end_date.isoformat(),
        "files": files, "profiles_file": PROFILES_FILE,
        "missing_days": [m.isoformat() for m in missing_days],
        "users": n_users, "user_base": users, "growth": "flat" if flat else "growing", "events": events_by_day,
        "dirt": {"duplicates": dup_by_day, "malformed": malformed_rows},
        "stories": stories,
    }
    tmp = out / (GROUND_TRUTH_FILE + ".tmp")
    tmp.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / GROUND_TRUTH_FILE)
    return DemoSummary(out_dir=out, start_date=start, end_date=end_date, days_written=len(files),
                       missing_days=missing_days, events=sum(events_by_day.values()),
                       duplicates=sum(dup_by_day.values()), malformed=len(malformed_rows), users=n_users)


def demo_exists(out_dir: Path | str) -> bool:
    """True when `out_dir` holds a complete demo: its ground truth and every file that lists."""
    out = Path(out_dir)
    try:
        truth = json.loads((out / GROUND_TRUTH_FILE).read_text(encoding="utf-8"))
        names = list(truth["files"]) + [truth.get("profiles_file", PROFILES_FILE)]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(truth["files"]) and all((out / n).is_file() for n in names)
