"""Change-point benchmark: the detector's defaults against baselines on labelled series that look like
product metrics, scored as TCPDBench scores (van den Burg & Williams 2020).

Series (seeded, deterministic; ``--series N``, ``--seed S``): lengths 60-500 (a few 20-59), 0-4 level
shifts of several sizes (1.5-6 noise sigma, at least 10 days apart and from the ends), Gaussian levels
or Poisson-like counts at low (3-30 a day) and high (200-5000) levels, and, each with its own
probability, a linear trend, a weekly pattern, AR(1) noise (phi 0.2-0.8), one-day spikes and missing
days (NaN). A third of the series have no change point at all (pure noise, a trend only, weekly only, AR
noise), so that "report nothing" is a meaningful baseline and the false-alarm rate (share of those
series with any change point) is measured.

Metrics, as TCPDBench's ``analysis/scripts/metrics.py`` defines them (reimplemented): F1 with a margin
of 5 points, each true change point matched to at most one prediction and each prediction to at most
one true change point, precision against the union of the annotators' sets and recall averaged over
annotators; segmentation covering (Arbelaez et al. 2010, eq. 8) averaged over annotators. Index 0 is a
change point in every prediction and annotation set, as TCPDBench counts it. The synthetic series have
one annotator (the truth).

Methods, all in the same run: ``zero`` (no change point), ``binseg_bic`` (ruptures Binseg, L2 cost,
``min_size=2``, ``jump=1``, penalty ``sigma^2 * log(n)`` with sigma the series' standard deviation: the
published-default stand-in; TCPDBench standardises every series before the default methods run, which
makes this the changepoint package's BIC-penalised binary segmentation), ``binseg_mbic`` (:func:`binseg_mbic`:
at most 5 change points chosen by the modified BIC, our reading of TCPDBench's default ``binseg``),
``engine`` (the package's ``detect_change_points`` with its defaults).

``--tcpd DIR``: also score on a folder of TCPD dataset JSON files (``DIR/**/<name>.json`` with
``series[0].raw``, and ``DIR/annotations.json``: name -> annotator -> indices); univariate series only.
Usage: ``PYTHONPATH=. python bench/changepoints.py [--series 400] [--seed 7] [--tcpd DIR]``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ruptures as rpt

from hitcraft_assets.detection.changepoints import detect_change_points

MARGIN = 5


# --- metrics (TCPDBench definitions) ------------------------------------------------------------------

def true_positives(truth: Iterable[int], predicted: Iterable[int], margin: int = MARGIN) -> set[int]:
    """True change points matched by a prediction within ``margin``; a prediction matches at most once
    (the closest unused one is taken, true points in increasing order)."""
    free = set(predicted)
    hits = set()
    for tau in sorted(set(truth)):
        near = sorted((abs(tau - x), x) for x in free if abs(tau - x) <= margin)
        if near:
            hits.add(tau)
            free.discard(near[0][1])
    return hits


def f1_score(annotations: dict[str, Sequence[int]], predicted: Iterable[int], margin: int = MARGIN) -> float:
    """F1 of ``predicted`` against the annotators' sets, 0 added to every set."""
    sets = [set(a) | {0} for a in annotations.values()]
    x = set(predicted) | {0}
    union = set().union(*sets)
    precision = len(true_positives(union, x, margin)) / len(x)
    recall = sum(len(true_positives(t, x, margin)) / len(t) for t in sets) / len(sets)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _segments(cps: Iterable[int], n: int) -> list[tuple[int, int]]:
    """[start, end) segments of 0..n-1 starting at each change point (0 always starts one)."""
    starts = sorted({0, *(c for c in cps if 0 < c < n)})
    return list(zip(starts, [*starts[1:], n]))


def _cover(predicted: list[tuple[int, int]], truth: list[tuple[int, int]], n: int) -> float:
    """Covering of the true segmentation by the predicted one: sum over true segments of their length
    times the best Jaccard overlap with a predicted segment, over n."""
    total = 0.0
    for a, b in truth:
        best = 0.0
        for c, d in predicted:
            inter = max(0, min(b, d) - max(a, c))
            if inter:
                best = max(best, inter / (max(b, d) - min(a, c)))
        total += (b - a) * best
    return total / n


def covering(annotations: dict[str, Sequence[int]], predicted: Iterable[int], n: int) -> float:
    """Segmentation covering averaged over annotators."""
    p = _segments(predicted, n)
    return sum(_cover(p, _segments(a, n), n) for a in annotations.values()) / len(annotations)


def _self_check() -> None:
    """The metrics reproduce the examples in TCPDBench's docstrings."""
    assert true_positives({1, 10, 20, 23}, {3, 8, 20}) == {1, 10, 20}
    assert true_positives({1, 10, 20, 23}, {1, 3, 5, 8, 20}) == {1, 10, 20}
    assert true_positives(set(), {1, 2, 3}) == set() and true_positives({1, 2, 3}, set()) == set()
    assert f1_score({"1": [10, 20], "2": [11, 20], "3": [10], "4": [0, 5]}, [10, 20]) == 1.0
    assert math.isclose(f1_score({"1": [], "2": [10], "3": [50]}, [10]), 0.9090909090909091)
    assert math.isclose(f1_score({"1": [], "2": [10], "3": [50]}, []), 0.8)
    assert math.isclose(covering({"1": [10, 20], "2": [10], "3": [0, 5]}, [10, 20], 45), 0.7962962962962963)
    assert math.isclose(covering({"1": [], "2": [10], "3": [40]}, [10], 45), 0.7954144620811286)
    assert math.isclose(covering({"1": [], "2": [10], "3": [40]}, [], 45), 0.8189300411522634)
    for pred, truth, expected in (([3, 5], [3], 0.8333333333333334), ([4], [], 0.6666666666666666),
                                  ([2, 4], [3], 0.6666666666666666), ([], [1, 2, 3], 0.3333333333333333)):
        assert math.isclose(_cover(_segments(pred, 6), _segments(truth, 6), 6), expected)


# --- labelled series ----------------------------------------------------------------------------------

@dataclass
class Labelled:
    name: str
    values: np.ndarray
    cps: list[int]
    tags: list[str] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """Unit-marginal-variance AR(1) noise."""
    e = rng.normal(size=n) * math.sqrt(1 - phi * phi)
    out = np.empty(n)
    out[0] = rng.normal()
    for t in range(1, n):
        out[t] = phi * out[t - 1] + e[t]
    return out


def _cut_points(rng: np.random.Generator, n: int, k: int, gap: int = 10) -> list[int]:
    for _ in range(200):
        cps = sorted(rng.choice(np.arange(gap, n - gap), size=k, replace=False).tolist())
        if all(b - a >= gap for a, b in zip(cps, cps[1:])):
            return cps
    return []


def make_series(seed: int, count: int) -> list[Labelled]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        n = int(rng.integers(20, 60)) if rng.random() < 0.1 else int(rng.integers(60, 501))
        k = 0 if rng.random() < 1 / 3 else int(rng.integers(1, 5))
        k = min(k, max(0, (n - 20) // 15))
        cps = _cut_points(rng, n, k) if k else []
        tags = []
        kind = rng.choice(["gauss", "gauss", "count_low", "count_high"])
        tags.append(str(kind))
        phi = float(rng.uniform(0.2, 0.8)) if rng.random() < 0.5 else 0.0
        if phi:
            tags.append("ar")
        noise = _ar1(rng, n, phi) if phi else rng.normal(size=n)
        t = np.arange(n)
        # the mean path, in units of the noise sigma: shifts, a trend (up to 3 sigma over the series)
        shift_sizes = [float(rng.choice([1.5, 2.0, 3.0, 4.0, 6.0])) * rng.choice([-1, 1]) for _ in cps]
        path = np.zeros(n)
        for c, s in zip(cps, shift_sizes):
            path[c:] += s
        if rng.random() < 0.3:
            tags.append("trend")
            path += rng.uniform(-3, 3) * t / n
        weekly = rng.random() < 0.4
        if weekly:
            tags.append("weekly")
        weekend = ((t + int(rng.integers(0, 7))) % 7) >= 5
        if kind == "gauss":
            sigma = float(rng.uniform(1, 50))
            level = float(rng.uniform(-100, 1000))
            x = level + sigma * (path + noise)
            if weekly:
                x -= sigma * rng.uniform(1, 4) * weekend
        else:
            base = float(rng.uniform(3, 30) if kind == "count_low" else rng.uniform(200, 5000))
            od = float(rng.uniform(0.0, 0.1))  # extra multiplicative noise (overdispersion), AR if phi
            sd = math.sqrt(base + (base * od) ** 2)  # the noise sigma at the base level
            mean = np.maximum(base + sd * path, 0.5) * np.exp(od * noise)
            if weekly:
                mean *= np.where(weekend, rng.uniform(0.6, 0.85), 1.0)
            x = rng.poisson(mean).astype(float)
        if rng.random() < 0.3:
            tags.append("spikes")
            scale = sigma if kind == "gauss" else math.sqrt(base + (base * od) ** 2)
            for d in rng.choice(n, size=int(rng.integers(1, 4)), replace=False):
                x[d] += rng.choice([-1, 1]) * rng.uniform(5, 10) * scale
            if kind != "gauss":
                x = np.maximum(x, 0)
        if rng.random() < 0.2:
            tags.append("missing")
            x[rng.choice(n, size=max(1, n // 30), replace=False)] = np.nan
        out.append(Labelled(f"s{i:04d}", x, cps, tags, [abs(s) for s in shift_sizes]))
    return out


# --- methods ------------------------------------------------------------------------------------------

def _on_finite(fn: Callable[[np.ndarray], list[int]], x: np.ndarray) -> list[int]:
    """Run ``fn`` on the finite values and map its indices back to positions in ``x``."""
    pos = np.flatnonzero(np.isfinite(x))
    return [int(pos[c]) for c in fn(x[pos]) if 0 < c < pos.size]


def binseg_bic(x: np.ndarray) -> list[int]:
    def run(y: np.ndarray) -> list[int]:
        sd = float(np.std(y))
        if y.size < 4 or sd == 0:
            return []
        z = (y - y.mean()) / sd
        return rpt.Binseg(model="l2", min_size=2, jump=1).fit(z).predict(pen=math.log(z.size))[:-1]
    return _on_finite(run, x)


def binseg_mbic(x: np.ndarray, max_cp: int = 5) -> list[int]:
    """Binary segmentation of the standardised series with a Gaussian mean cost (sum of squares), at most
    ``max_cp`` change points, the number chosen by the modified BIC (Zhang & Siegmund 2007: 3 log n a change
    point plus the sum of log(segment length / n)): our reading of TCPDBench's default ``binseg``, the
    changepoint package's ``cpt.mean(penalty="MBIC", method="BinSeg", Q=5)``."""
    def run(y: np.ndarray) -> list[int]:
        n, sd = y.size, float(np.std(y))
        if n < 2 or sd == 0:
            return []
        z = (y - y.mean()) / sd
        c1, c2 = np.concatenate([[0.0], np.cumsum(z)]), np.concatenate([[0.0], np.cumsum(z * z)])

        def cost(a, b):
            return c2[b] - c2[a] - (c1[b] - c1[a]) ** 2 / (b - a)

        segments, order = [(0, n)], []
        for _ in range(max_cp):
            best = None
            for a, b in segments:
                if b - a < 2:
                    continue
                t = np.arange(a + 1, b)
                gain = cost(a, b) - cost(a, t) - cost(t, b)
                k = int(np.argmax(gain))
                if best is None or gain[k] > best[0]:
                    best = (float(gain[k]), a, b, int(t[k]))
            if best is None:
                break
            gain, a, b, t = best
            segments.remove((a, b))
            segments += [(a, t), (t, b)]
            order.append((t, gain))
        chosen, best_value, total = [], 0.0, 0.0
        for k, (_, gain) in enumerate(order, start=1):
            total -= gain
            cuts = sorted([0, n, *(c for c, _ in order[:k])])
            value = total + 3 * k * math.log(n) + sum(math.log((b - a) / n) for a, b in zip(cuts, cuts[1:]))
            if value < best_value:
                best_value, chosen = value, sorted(c for c, _ in order[:k])
        return chosen
    return _on_finite(run, x)


METHODS: dict[str, Callable[[np.ndarray], list[int]]] = {
    "zero": lambda x: [],
    "binseg_bic": binseg_bic,
    "binseg_mbic": binseg_mbic,
    "engine": lambda x: detect_change_points(x),
}


# --- scoring ------------------------------------------------------------------------------------------

def score(method: Callable[[np.ndarray], list[int]], data: list[tuple[str, np.ndarray, dict]]) -> dict:
    f1s, covs, alarms, quiet = [], [], 0, 0
    for _, x, ann in data:
        pred = method(x)
        f1s.append(f1_score(ann, pred))
        covs.append(covering(ann, pred, x.size))
        if all(len(a) == 0 for a in ann.values()):
            quiet += 1
            alarms += bool(pred)
    return {"f1": float(np.mean(f1s)), "cover": float(np.mean(covs)),
            "false_alarm": alarms / quiet if quiet else float("nan"), "quiet": quiet, "n": len(data)}


def table(results: dict[str, dict], title: str) -> str:
    z, b = results["zero"], results["binseg_bic"]
    lines = [f"## {title}", "",
             "| method | F1 | covering | false alarms | F1 / zero | cover / zero | F1 / binseg | cover / binseg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        fa = "-" if math.isnan(r["false_alarm"]) else f"{r['false_alarm']:.0%} of {r['quiet']}"
        lines.append(f"| {name} | {r['f1']:.3f} | {r['cover']:.3f} | {fa} | {r['f1'] / z['f1']:.2f} | "
                     f"{r['cover'] / z['cover']:.2f} | {r['f1'] / b['f1']:.2f} | {r['cover'] / b['cover']:.2f} |")
    return "\n".join(lines)


def recall_by(method: Callable[[np.ndarray], list[int]], series: list[Labelled]) -> dict[str, str]:
    """Share of true change points found within the margin, by shift size and by AR or not."""
    found: dict[str, list[int]] = {}
    for s in series:
        pred = method(s.values)
        for c, size in zip(s.cps, s.sizes):
            hit = any(abs(c - p) <= MARGIN for p in pred)
            for key in (f"{size:g} sigma", "ar" if "ar" in s.tags else "iid"):
                found.setdefault(key, []).append(hit)
    return {k: f"{np.mean(v):.0%} of {len(v)}" for k, v in sorted(found.items())}


# --- the figures in the module docstring ---------------------------------------------------------------

def _weekend(n: int) -> np.ndarray:
    return (np.arange(n) % 7) >= 5


def scenarios(n: int = 90) -> dict[str, tuple[Callable[[np.random.Generator], np.ndarray], int | None]]:
    """Named generators of unit-noise series of ``n`` days: (make(rng), the planted step's day or None).
    "AR" noise has unit marginal variance."""
    t = np.arange(n)
    step = lambda day, size: np.where(t >= day, size, 0.0)  # noqa: E731
    return {
        "noise": (lambda r: r.normal(size=n), None),
        "trend 0.1/day": (lambda r: 0.1 * t + r.normal(size=n), None),
        "trend 0.3/day": (lambda r: 0.3 * t + r.normal(size=n), None),
        "flat 45 days, then +0.2/day": (lambda r: 0.2 * np.maximum(t - 45, 0) + r.normal(size=n), None),
        "weekends 3 lower": (lambda r: -3.0 * _weekend(n) + r.normal(size=n), None),
        "12-sigma spike at day 45": (lambda r: 12.0 * (t == 45) + r.normal(size=n), None),
        "AR(1) phi 0.5": (lambda r: _ar1(r, n, 0.5), None),
        "AR(1) phi 0.8": (lambda r: _ar1(r, n, 0.8), None),
        "Poisson(3) counts": (lambda r: r.poisson(3.0, n).astype(float), None),
        "step 1.5 at day 60": (lambda r: step(60, 1.5) + r.normal(size=n), 60),
        "step 2 at day 60": (lambda r: step(60, 2.0) + r.normal(size=n), 60),
        "step 3 at day 60": (lambda r: step(60, 3.0) + r.normal(size=n), 60),
        "step 3 at day 60 on a 0.1/day trend": (lambda r: step(60, 3.0) + 0.1 * t + r.normal(size=n), 60),
        "step 3 at day 45, weekends 3 lower": (lambda r: step(45, 3.0) - 3.0 * _weekend(n) + r.normal(size=n), 45),
        "step 3 at day 45, AR(1) phi 0.5": (lambda r: step(45, 3.0) + _ar1(r, n, 0.5), 45),
        "step 3 at day 45, AR(1) phi 0.8": (lambda r: step(45, 3.0) + _ar1(r, n, 0.8), 45),
    }


def scenario_rates(method: Callable[[np.ndarray], list[int]], reps: int = 200, seed: int = 1) -> dict[str, float]:
    """Per scenario: the share of series with any change point (no step planted) or with one within 1
    day of the step."""
    out = {}
    for k, (name, (make, day)) in enumerate(scenarios().items()):
        rng = np.random.default_rng(seed * 1000 + k)
        hits = 0
        for _ in range(reps):
            pred = method(make(rng))
            hits += bool(pred) if day is None else any(abs(p - day) <= 1 for p in pred)
        out[name] = hits / reps
    return out


def load_module(rev: str):
    """The change-point module as it was at git revision ``rev`` (to measure "before" in the same run)."""
    import importlib.util
    import subprocess
    import tempfile
    src = subprocess.run(["git", "show", f"{rev}:hitcraft_assets/detection/changepoints.py"], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parent).stdout
    path = Path(tempfile.mkdtemp()) / f"changepoints_{rev}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load_tcpd(folder: Path) -> list[tuple[str, np.ndarray, dict]]:
    annotations = json.loads((folder / "annotations.json").read_text())
    out = []
    for path in sorted(folder.rglob("*.json")):
        name = path.stem
        if name not in annotations:
            continue
        d = json.loads(path.read_text())
        if len(d["series"]) != 1:
            continue
        raw = np.array([np.nan if v is None else v for v in d["series"][0]["raw"]], dtype=float)
        out.append((name, raw, {str(k): list(v) for k, v in annotations[name].items()}))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tcpd", type=Path, default=None)
    parser.add_argument("--by-size", action="store_true", help="recall of each method by shift size")
    parser.add_argument("--before", metavar="REV", default=None,
                        help="also run the defaults of the module as it was at this git revision")
    parser.add_argument("--scenarios", action="store_true",
                        help="the docstring's false-alarm and recall figures (200 series of 90 days each)")
    args = parser.parse_args()
    _self_check()
    if args.before:
        old = load_module(args.before)
        METHODS[f"engine@{args.before}"] = lambda x: old.detect_change_points(x)
    series = make_series(args.seed, args.series)
    data = [(s.name, s.values, {"truth": s.cps}) for s in series]
    sets = [("synthetic", f"synthetic: {len(data)} series, seed {args.seed}", data)] if data else []
    if args.tcpd:
        tcpd = load_tcpd(args.tcpd)
        sets.append(("tcpd", f"TCPD: {len(tcpd)} univariate series from {args.tcpd}", tcpd))
    for _, title, d in sets:
        results = {}
        for name, fn in METHODS.items():
            t0 = time.perf_counter()
            results[name] = score(fn, d)
            results[name]["seconds"] = time.perf_counter() - t0
        print(table(results, title))
        print("seconds: " + ", ".join(f"{k} {r['seconds']:.1f}" for k, r in results.items()))
        print()
    if args.scenarios:
        engines = {k: v for k, v in METHODS.items() if k.startswith("engine")}
        rates = {k: scenario_rates(v) for k, v in engines.items()}
        print("| series (90 days, unit noise, 200 each) | " + " | ".join(engines) + " |")
        print("|---|" + "---:|" * len(engines))
        for name, (_, day) in scenarios().items():
            what = "any change point" if day is None else "step found (within 1 day)"
            print(f"| {name}: {what} | " + " | ".join(f"{rates[k][name]:.0%}" for k in engines) + " |")
        print()
    if args.by_size:
        for name, fn in METHODS.items():
            if name != "zero":
                print(name, recall_by(fn, series))
    return 0


if __name__ == "__main__":
    sys.exit(main())
