"""Light-curve pipeline benchmark: our detrend + periodogram + features against lightkurve and astropy.

Usage::

    python benchmarks/lightcurve_pipeline.py            # 20 Kepler-like and 100 EROS-like light curves, 3 rounds
    python benchmarks/lightcurve_pipeline.py --quick    # 10 and 50

Inputs come from :class:`stellar.data.simulate.lightcurve.LightCurveSimulator` (seeded), so every pipeline's
period is scored against the injected one in the same run:

- Kepler-like: 29.4-min cadence with downlink gaps, ~4,000 points (82 d), short-period classes (RRab, RRc,
  delta Scuti, contact binaries, P < 0.8 d) and a slow instrumental trend multiplied in (0.3 % sinusoid of 15 d
  plus a 0.2 % ramp), so that detrending matters. Both pipelines detrend with a 101-cadence (2.06 d) window.
- EROS-like: sparse ground sampling, one band, ~120 points over 7 seasons, RRab, RRc, Cepheids, semi-detached and
  contact binaries. Survey magnitudes carry no instrumental trend: no detrending on either side.

Paths, each timed over the whole set, in ``--rounds`` rounds; within a round the paths take turns, call by call,
each until it has made ``--repeats`` calls or spent ``--budget`` seconds, and its best call counts (the same rule
for ours and the anchors, over the same stretch of time); the median over rounds is reported, and each ratio is
taken within a round. BLAS runs on one thread (``--blas-threads``):

- ours: ``detrend_biweight`` (Kepler; errors divided by the same trend) → ``sigma_clip`` → ``features`` (nine
  features, period by nifty-ls Lomb–Scargle), batched over all light curves, on one thread and with
  ``workers=2`` (two threads for the biweight blocks and the periodograms); and with
  ``period_method='multiharmonic'``.
- lightkurve: per light curve ``LightCurve`` → ``flatten(window_length=101)`` (Kepler) → ``to_periodogram(
  method='lombscargle', minimum_period, maximum_period, oversample_factor=5)`` → ``period_at_max_power``.
- periodogram only, same input and grids (each light curve's ``frequency_grid``): our ``peak_period`` (nifty-ls,
  batched) against astropy ``LombScargle.power`` per light curve (its default ``method='auto'``, i.e. the fast
  Press–Rybicki method on this grid).

A period is recovered when ``|P - P_true| / P_true < 1e-3``. Results also go to
``benchmarks/results/lightcurve_pipeline.json``. Timings on a shared machine are noisy: compare one run's figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from stellar.data.preprocess import lightcurve as pl
from stellar.data.simulate.lightcurve import KEPLER_CADENCE_D, LightCurveSimulator

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "lightcurve_pipeline.json"
WINDOW_CADENCES = 101  # lightkurve's default flatten window
KEPLER_CLASSES = ("rr_lyrae_ab", "rr_lyrae_c", "delta_scuti", "eclipsing_contact")
EROS_CLASSES = ("rr_lyrae_ab", "rr_lyrae_c", "cepheid", "eclipsing_semidetached", "eclipsing_contact")
SETS: dict[str, dict[str, Any]] = {
    "kepler_like": {"cadence": "kepler", "n_points": 4000, "bands": ("kepler",), "classes": KEPLER_CLASSES,
                    "min_period": 0.05, "max_period": 10.0, "detrend": True},
    "eros_like": {"cadence": "ground", "n_points": 120, "bands": ("eros_r",), "classes": EROS_CLASSES,
                  "min_period": 0.1, "max_period": 100.0, "detrend": False, "baseline": 2500.0, "min_fill": 0.9},
}  # fmt: skip


def _round(paths: dict[str, Callable[[], Any]], repeats: int, budget_s: float) -> dict[str, tuple[float, float, Any]]:
    """One round: the paths' calls in turn (round-robin), each path until it has made ``repeats`` calls or spent
    ``budget_s`` (at least one call). Returns each path's best wall and CPU (this process) time and its result.

    Every path, ours and the anchors, is timed the same way and over the same stretch of time, so a slow spell of
    the shared machine hits them alike; the best of a few calls (timeit's convention) is the figure least moved
    by other work on the machine."""
    wall: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[float]] = {k: [] for k in paths}
    out: dict[str, Any] = {}
    while True:
        todo = [k for k in paths if len(wall[k]) < repeats and sum(wall[k]) <= budget_s]
        if not todo:
            break
        for k in todo:
            t0, c0 = time.perf_counter(), time.process_time()
            out[k] = paths[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: (min(wall[k]), min(cpu[k]), out[k]) for k in paths}


def make_set(name: str, n: int, seed: int) -> dict[str, Any]:
    """Simulated light curves as relative flux (Kepler-like, with a slow trend) or magnitudes (EROS-like)."""
    cfg = SETS[name]
    keys = ("cadence", "n_points", "bands", "classes", "baseline", "min_fill")
    sim = LightCurveSimulator(**{k: cfg[k] for k in keys if k in cfg})
    lc = sim.simulate(n, seed=seed)
    if cfg["detrend"]:
        rng = np.random.default_rng(seed + 1)
        t0 = np.where(lc.mask, np.inf, lc.time).min(axis=1)[:, None]
        trend = 1 + 0.003 * np.sin(2 * np.pi * lc.time / 15.0 + rng.uniform(0, 6.3, (n, 1)))
        trend += 0.002 * (lc.time - t0) / 80.0
        values, err = lc.flux * trend, lc.flux_err * trend
    else:
        values, err = lc.mag, lc.mag_err
    return {"time": lc.time, "values": values, "err": err, "mask": lc.mask, "period": lc.labels.period.to_numpy(),
            "var_class": lc.labels.var_class.to_numpy()}  # fmt: skip


def ours(data: dict[str, Any], cfg: dict[str, Any], method: str, workers: int = 1) -> np.ndarray:
    t, x, e, m = data["time"], data["values"], data["err"], data["mask"]
    if cfg["detrend"]:  # relative flux, and its errors by the same trend
        x, trend, m = pl.detrend_biweight(t, x, m, window=WINDOW_CADENCES * KEPLER_CADENCE_D, workers=workers)
        e = e / trend
    m = pl.sigma_clip(x, m, sigma=5.0)
    kw = {"min_period": cfg["min_period"], "max_period": cfg["max_period"], "oversampling": 5.0}
    feats = pl.features(t, x, e, m, period_method=method, workers=workers, **kw)  # type: ignore[arg-type]
    return np.asarray(feats["period"])


def lightkurve_pipeline(data: dict[str, Any], cfg: dict[str, Any]) -> np.ndarray:
    import lightkurve as lk

    out = np.full(len(data["time"]), np.nan)
    for i in range(len(out)):
        ok = ~data["mask"][i]
        curve = lk.LightCurve(time=data["time"][i, ok], flux=data["values"][i, ok], flux_err=data["err"][i, ok])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if cfg["detrend"]:
                curve = curve.flatten(window_length=WINDOW_CADENCES)
            pg = curve.to_periodogram(method="lombscargle", minimum_period=cfg["min_period"],
                                      maximum_period=cfg["max_period"], oversample_factor=5)  # fmt: skip
        out[i] = pg.period_at_max_power.value
    return out


def periodograms(data: dict[str, Any], cfg: dict[str, Any], which: str) -> np.ndarray:
    """Highest peak of our batched ``peak_period`` (nifty-ls) or of astropy's ``LombScargle`` per light curve, each
    on the light curve's own ``frequency_grid``."""
    from astropy.timeseries import LombScargle

    t, x, e, m = data["time"], data["values"], data["err"], data["mask"]
    if which == "ours":
        return np.asarray(pl.peak_period(t, x, e, m, cfg["min_period"], cfg["max_period"], 5.0))
    out = np.full(len(t), np.nan)
    for i in range(len(out)):
        ok = ~m[i]
        grid = pl.frequency_grid(t[i, ok], cfg["min_period"], cfg["max_period"], 5.0)
        p = LombScargle(t[i, ok], x[i, ok], e[i, ok]).power(grid)
        out[i] = 1 / grid[int(np.argmax(p))]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version(), "sets": {}}
    for name, n in (("kepler_like", args.n_kepler), ("eros_like", args.n_eros)):
        cfg = SETS[name]
        data = make_set(name, n, args.seed)
        flat = data
        if cfg["detrend"]:  # the periodograms alone run on the same detrended input
            x, trend, m = pl.detrend_biweight(data["time"], data["values"], data["mask"],
                                              window=WINDOW_CADENCES * KEPLER_CADENCE_D)  # fmt: skip
            flat = data | {"values": x, "err": data["err"] / trend, "mask": m}
        paths: dict[str, Callable[[], np.ndarray]] = {
            "ours": partial(ours, data, cfg, "lomb_scargle"),
            "ours_2threads": partial(ours, data, cfg, "lomb_scargle", 2),
            "ours_multiharmonic": partial(ours, data, cfg, "multiharmonic"),
            "lightkurve": partial(lightkurve_pipeline, data, cfg),
            "ls_ours": partial(periodograms, flat, cfg, "ours"),
            "ls_astropy": partial(periodograms, flat, cfg, "astropy"),
        }
        entry: dict[str, Any] = {"n": n, "median_points": float(np.median((~data["mask"]).sum(axis=1)))}
        for fn in paths.values():  # warm-up
            fn()
        for r in range(args.rounds):
            for key, (secs, cpu, period) in _round(paths, args.repeats, args.budget).items():
                rel = np.abs(period / data["period"] - 1)
                e = entry.setdefault(key, {"wall_ms": [], "cpu_ms": [], "recovered": float(np.mean(rel < 1e-3)),
                                           "recovered_1pct": float(np.mean(rel < 1e-2))})  # fmt: skip
                e["wall_ms"].append(1e3 * secs / n)
                e["cpu_ms"].append(1e3 * cpu / n)
                print(f"  round {r + 1} {name:<12} {key:<20} {1e3 * secs / n:9.2f} ms/LC   "
                      f"recovered {np.mean(rel < 1e-3):6.1%}")  # fmt: skip
        for e in entry.values():
            if isinstance(e, dict):
                e["per_lc_ms"], e["cpu_per_lc_ms"] = float(np.median(e["wall_ms"])), float(np.median(e["cpu_ms"]))
        result["sets"][name] = entry
    return result


def _ratios(anchor: dict[str, Any], ours: dict[str, Any], unit: str) -> np.ndarray:
    """Anchor time over ours, round by round."""
    return np.asarray(anchor[unit]) / np.asarray(ours[unit])


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{'set':<12}{'path':<31}{'ms / LC':>9}{'CPU ms':>8}{'recovered':>11}{'<1%':>7}{'ratio (range)':>19}{'CPU':>7}",
    ]
    for name, e in result["sets"].items():
        rows = [
            ("ours (detrend+clip+features)", "ours", "lightkurve"),
            ("ours, workers=2 (two threads)", "ours_2threads", "lightkurve"),
            ("ours, multi-harmonic period", "ours_multiharmonic", "lightkurve"),
            ("lightkurve flatten+periodogram", "lightkurve", None),
            ("periodogram: ours (nifty-ls)", "ls_ours", "ls_astropy"),
            ("periodogram: astropy", "ls_astropy", None),
        ]
        for label, key, anchor in rows:
            r = e[key]
            ratio, cpu_ratio = "", ""
            if anchor:
                wall = _ratios(e[anchor], r, "wall_ms")
                ratio = f"{np.median(wall):6.1f}x ({wall.min():.1f}-{wall.max():.1f})"
                cpu_ratio = f"{np.median(_ratios(e[anchor], r, 'cpu_ms')):6.1f}x"
            lines.append(
                f"{name:<12}{label:<31}{r['per_lc_ms']:>9.2f}{r['cpu_per_lc_ms']:>8.2f}{r['recovered']:>11.1%}"
                f"{r['recovered_1pct']:>7.1%}{ratio:>19}{cpu_ratio:>7}"
            )
        lines.append(f"{'':<12}({e['n']} light curves, median {e['median_points']:.0f} valid points)")
    rounds = len(next(iter(result["sets"].values()))["ours"]["wall_ms"])
    lines.append(f"times: median over {rounds} rounds of each round's best call (paths called in turn); "
                 "ratio = anchor time / our time within a round (median, range over rounds); "
                 "wall, and CPU = this process's CPU time; "
                 f"BLAS threads: {result['blas_threads']}; recovered: |P - P_true| / P_true < 1e-3")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-kepler", type=int, default=None, help="Kepler-like light curves (default 20)")
    parser.add_argument("--n-eros", type=int, default=None, help="EROS-like light curves (default 100)")
    parser.add_argument("--quick", action="store_true", help="10 Kepler-like and 50 EROS-like light curves")
    parser.add_argument("--repeats", type=int, default=10, help="calls per path per round (best kept)")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per path per round: fewer calls after")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all paths (median kept)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads for every path (default 1: lightkurve's and astropy's second BLAS thread "
                             "only spins, doubling their CPU time, not lowering their wall time)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.n_kepler = args.n_kepler or (10 if args.quick else 20)
    args.n_eros = args.n_eros or (50 if args.quick else 100)
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    with threadpool_limits(limits=args.blas_threads):
        result = run(args)
    result["blas_threads"] = args.blas_threads
    result["wall_s"] = time.perf_counter() - t0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(report(result))
    print(f"total wall time {result['wall_s']:.0f} s; JSON in {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
