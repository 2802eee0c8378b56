"""Performance of a batch: estimated from calibrated probabilities alone, and measured where labels exist.

**Without labels** (confidence-based performance estimation, as in NannyML's CBPE): if the probabilities are
calibrated, object *i* is right with probability ``max_c p_ic``, so the expected accuracy is their mean and its
standard deviation, from the Poisson-binomial distribution of the number right, is ``sqrt(Σ p(1−p)) / n``; expected
per-class true positives, false positives and false negatives give the expected F1 of each class. The estimate is
only as good as the calibration on the new data: under concept shift (the same inputs meaning other classes) it
cannot see the drop.

**With labels**: accuracy, macro F1 and ECE, and per regression target MAE, median absolute error and calibrated
68% coverage, each with a bootstrap interval over objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from stellar.evaluation.calibration import expected_calibration_error, inside_interval

__all__ = ["bootstrap", "estimate_performance", "measured_classification", "measured_regression"]


def estimate_performance(probs: np.ndarray, class_names: Sequence[str], level: float = 0.95) -> dict[str, Any]:
    """Expected accuracy (with a ``level`` interval) and per-class F1 of a batch from its calibrated probabilities."""
    from scipy import stats

    p = np.asarray(probs, np.float64)
    p = p[np.isfinite(p).all(axis=1)]
    n = len(p)
    if n == 0:
        return {"n": 0}
    conf = p.max(axis=1)
    acc = float(conf.mean())
    sd = float(np.sqrt(np.sum(conf * (1.0 - conf))) / n)
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    pred = p.argmax(axis=1)
    f1: dict[str, float] = {}
    for c, name in enumerate(class_names):
        mine = pred == c
        tp = float(p[mine, c].sum())
        fp = float((1.0 - p[mine, c]).sum())
        fn = float(p[~mine, c].sum())
        denom = 2.0 * tp + fp + fn
        f1[str(name)] = 2.0 * tp / denom if denom > 0 else float("nan")
    finite = [v for v in f1.values() if np.isfinite(v)]
    return {
        "n": n,
        "accuracy": acc,
        "accuracy_std": sd,
        "accuracy_interval": [acc - z * sd, acc + z * sd],
        "macro_f1": float(np.mean(finite)) if finite else float("nan"),
        "per_class_f1": f1,
    }


def bootstrap(
    stat: Callable[[np.ndarray], float], n: int, n_boot: int, level: float, seed: int
) -> tuple[float, list[float]]:
    """``stat`` over all ``n`` rows and its percentile interval over ``n_boot`` resamples of row indices."""
    rng = np.random.default_rng(seed)
    full = float(stat(np.arange(n)))
    values = np.array([stat(rng.integers(0, n, n)) for _ in range(int(n_boot))], np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return full, [float("nan"), float("nan")]
    lo, hi = np.quantile(values, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return full, [float(lo), float(hi)]


def measured_classification(
    probs: np.ndarray, labels: np.ndarray, n_boot: int = 200, level: float = 0.95, seed: int = 0, n_bins: int = 15
) -> dict[str, Any]:
    """Accuracy, macro F1 and ECE of the labelled rows (label ≥ 0), each with a bootstrap interval."""
    ok = (np.asarray(labels) >= 0) & np.isfinite(probs).all(axis=1)
    p, y = np.asarray(probs, np.float64)[ok], np.asarray(labels)[ok]
    if len(y) < 2:
        return {"n": len(y)}
    pred = p.argmax(axis=1)

    def macro_f1(ix: np.ndarray) -> float:
        f1 = []
        for c in np.unique(y[ix]):
            tp = np.sum((pred[ix] == c) & (y[ix] == c))
            denom = np.sum(pred[ix] == c) + np.sum(y[ix] == c)
            f1.append(2.0 * tp / denom if denom else 0.0)
        return float(np.mean(f1))

    out: dict[str, Any] = {"n": len(y)}
    stats: dict[str, Callable[[np.ndarray], float]] = {
        "accuracy": lambda ix: float(np.mean(pred[ix] == y[ix])),
        "macro_f1": macro_f1,
        "ece": lambda ix: float(expected_calibration_error(p[ix], y[ix], n_bins=n_bins)),
    }
    for name, fn in stats.items():
        value, interval = bootstrap(fn, len(y), n_boot, level, seed)
        out[name], out[f"{name}_interval"] = value, interval
    return out


def measured_regression(
    outputs: Mapping[str, np.ndarray],
    truths: Mapping[str, np.ndarray],
    factors68: Mapping[str, Any] | None = None,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    log_targets: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Per target with truths: MAE, median absolute error and 68% coverage (of ``mean ± k σ``, ``k`` from
    ``factors68``, 1 without, taken in log10 for ``log_targets`` as the calibrator takes it), each with a
    bootstrap interval."""
    out: dict[str, dict[str, Any]] = {}
    for t, truth in truths.items():
        ok = np.isfinite(truth) & np.isfinite(outputs[f"{t}_mean"])
        if ok.sum() < 2:
            continue
        err = np.abs(outputs[f"{t}_mean"][ok] - truth[ok])
        k = np.broadcast_to(np.asarray((factors68 or {}).get(t, 1.0), np.float64), truth.shape)[ok]
        inside = inside_interval(outputs[f"{t}_mean"][ok], outputs[f"{t}_logvar"][ok], truth[ok], k, t in log_targets)
        row: dict[str, Any] = {"n": int(ok.sum())}
        stats = _error_stats(err, inside)
        for name, fn in stats.items():
            value, interval = bootstrap(fn, int(ok.sum()), n_boot, level, seed)
            row[name], row[f"{name}_interval"] = value, interval
        out[t] = row
    return out


def _error_stats(err: np.ndarray, inside: np.ndarray) -> dict[str, Callable[[np.ndarray], float]]:
    """Statistics of absolute errors and interval hits over a row selection (for :func:`bootstrap`)."""

    def mae(ix: np.ndarray) -> float:
        return float(np.mean(err[ix]))

    def median_ae(ix: np.ndarray) -> float:
        return float(np.median(err[ix]))

    def coverage(ix: np.ndarray) -> float:
        return float(np.mean(inside[ix]))

    return {"mae": mae, "median_ae": median_ae, "coverage_68": coverage}
