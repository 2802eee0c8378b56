"""Two-sample tests of a batch against the training reference, and the multiple-testing correction.

Each test returns a :class:`Check`: the statistic, its p-value, an effect size with the minimum that matters, and the
verdict. A check alerts only when it is both significant after the correction (Holm's step-down over every p-value
of one monitor run, so the family-wise false-alarm rate stays at ``alpha``) and large enough to matter
(``effect >= min_effect``): with thousands of objects a KS test finds differences no model would notice, and
objects of one sky patch or one observing season share their cadence and depth, so a held-out part never looks
exactly like the reference.

- continuous summaries: Kolmogorov–Smirnov on the finite values (effect: the KS distance D; the Wasserstein
  distance in units of the reference's standard deviation is reported beside it), and a χ² test of the missing
  fraction when either side has missing values (effect: the difference of the fractions);
- categorical summaries, predicted classes: χ² on the category counts (effect: total-variation distance);
- embeddings: the maximum mean discrepancy with a Gaussian kernel (median-distance bandwidth on the pooled sample)
  and a permutation p-value (effect: MMD, the square root of the biased MMD²);
- the fraction of objects flagged out of distribution: a one-sided Fisher exact test against the held-out reference
  rows its threshold was set on (a binomial test against ``alpha`` for references that do not keep them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from stellar.monitoring.summaries import is_categorical

__all__ = [
    "Check",
    "binomial_excess",
    "chi2_counts",
    "feature_checks",
    "flagged_excess",
    "holm",
    "ks_check",
    "mmd_check",
]

#: fewest finite values on each side for a KS test, or counts for a χ² test
MIN_SAMPLES = 5


@dataclasses.dataclass
class Check:
    """One test of the batch against the reference."""

    name: str
    test: str
    statistic: float
    p_value: float
    effect: float
    min_effect: float
    n_batch: int
    n_reference: int
    #: the p-value after the multiple-testing correction (set by :func:`holm`)
    p_adjusted: float = float("nan")
    alpha: float = 0.05
    alert: bool = False
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        return {**{k: _plain(v) for k, v in d.items()}, **{k: _plain(v) for k, v in extra.items()}}


def _plain(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


def holm(checks: Sequence[Check], alpha: float) -> None:
    """Holm's step-down adjustment over ``checks`` (in place), then each verdict: adjusted p < ``alpha`` and
    ``effect >= min_effect``."""
    tested = [c for c in checks if np.isfinite(c.p_value)]
    m = len(tested)
    running = 0.0
    for rank, c in enumerate(sorted(tested, key=lambda c: c.p_value)):
        running = max(running, min(1.0, (m - rank) * c.p_value))
        c.p_adjusted = running
    for c in checks:
        c.alpha = float(alpha)
        c.alert = bool(np.isfinite(c.p_adjusted) and c.p_adjusted < alpha and c.effect >= c.min_effect)


def _as_saved(values: Any) -> np.ndarray:
    """``values`` rounded to float32 (how a reference saves them), as float64."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def ks_check(name: str, ref: np.ndarray, batch: np.ndarray, min_effect: float) -> Check | None:
    """KS test of the finite values of a continuous quantity (``None`` with too few values on a side), both sides
    in float32, the precision of a saved reference (see :func:`feature_checks`: confidences that round to 1.0 in
    float32 are below 1.0 in float64)."""
    ref, batch = _as_saved(ref), _as_saved(batch)
    r, b = ref[np.isfinite(ref)], batch[np.isfinite(batch)]
    if len(r) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        return None
    res = stats.ks_2samp(r, b)
    scale = float(np.std(r)) or 1.0
    w = float(stats.wasserstein_distance(r, b)) / scale
    extra = {"wasserstein_over_std": w, "reference_median": float(np.median(r)), "batch_median": float(np.median(b))}
    return Check(
        name,
        "ks",
        float(res.statistic),
        float(res.pvalue),
        float(res.statistic),
        min_effect,
        len(b),
        len(r),
        extra=extra,
    )


def chi2_counts(
    name: str,
    ref_counts: np.ndarray,
    batch_counts: np.ndarray,
    min_effect: float,
    categories: Sequence[Any] | None = None,
    test: str = "chi2",
) -> Check | None:
    """χ² test that the batch's category counts follow the reference's (``None`` when there is nothing to test).

    Categories empty on both sides are dropped; the effect is the total-variation distance of the two
    distributions.
    """
    ref_counts, batch_counts = np.asarray(ref_counts, float), np.asarray(batch_counts, float)
    keep = (ref_counts + batch_counts) > 0
    r, b = ref_counts[keep], batch_counts[keep]
    if keep.sum() < 2 or r.sum() < MIN_SAMPLES or b.sum() < MIN_SAMPLES:
        return None
    chi2, p, _, _ = stats.chi2_contingency(np.stack([r, b]))
    tvd = 0.5 * float(np.abs(r / r.sum() - b / b.sum()).sum())
    extra: dict[str, Any] = {}
    if categories is not None:
        cats = [c for c, k in zip(categories, keep, strict=True) if k]
        extra = {
            "categories": [str(c) for c in cats],
            "reference_fraction": (r / r.sum()).round(4).tolist(),
            "batch_fraction": (b / b.sum()).round(4).tolist(),
        }
    return Check(name, test, float(chi2), float(p), tvd, min_effect, int(b.sum()), int(r.sum()), extra=extra)


def feature_checks(ref: pd.DataFrame, batch: pd.DataFrame, min_effect: float) -> list[Check]:
    """One check per summary column present on both sides (χ² for categories, KS for values), plus a χ² of the
    missing fraction of a continuous column when either side has missing values; values are compared in float32,
    the precision of a saved reference."""
    checks: list[Check] = []
    for col in [c for c in ref.columns if c in batch.columns]:
        # both at the precision the reference is stored in (float32): a float64 batch value beside its float32
        # twin in the reference is a different number, and a column that is constant (a spectral grid edge) or
        # has ties would show a KS distance up to 1 between identical data
        r, b = _as_saved(ref[col].to_numpy()), _as_saved(batch[col].to_numpy())
        if is_categorical(col):
            cats = np.unique(np.concatenate([r, b]).round(6).astype(str))
            rc = np.array([(r.round(6).astype(str) == c).sum() for c in cats])
            bc = np.array([(b.round(6).astype(str) == c).sum() for c in cats])
            check = chi2_counts(col, rc, bc, min_effect, list(cats))
            if check is not None:
                checks.append(check)
            continue
        miss_r, miss_b = ~np.isfinite(r), ~np.isfinite(b)
        if miss_r.any() or miss_b.any():
            check = chi2_counts(
                f"{col}:missing",
                np.array([(~miss_r).sum(), miss_r.sum()]),
                np.array([(~miss_b).sum(), miss_b.sum()]),
                min_effect,
                ["present", "missing"],
            )
            if check is not None:
                checks.append(check)
        check_ks = ks_check(col, r, b, min_effect)
        if check_ks is not None:
            checks.append(check_ks)
    return checks


def mmd_check(
    name: str,
    ref: np.ndarray,
    batch: np.ndarray,
    min_effect: float,
    n_permutations: int = 500,
    max_reference: int = 1000,
    seed: int = 0,
    max_batch: int = 2000,
) -> Check | None:
    """Maximum mean discrepancy between two samples of vectors, with a permutation p-value.

    ``ref`` and ``batch`` are subsampled to ``max_reference`` and ``max_batch`` rows (seeded) to bound the kernel
    matrix, of (reference + batch)² entries; the p-value is ``(1 + #{permuted MMD² ≥ observed}) / (1 +
    n_permutations)``.
    """
    rng = np.random.default_rng(seed)
    x, y = np.asarray(ref, np.float64), np.asarray(batch, np.float64)
    x, y = x[np.isfinite(x).all(axis=1)], y[np.isfinite(y).all(axis=1)]
    if len(x) < MIN_SAMPLES or len(y) < MIN_SAMPLES:
        return None
    batch_rows = len(y)
    if len(x) > max_reference:
        x = x[rng.choice(len(x), max_reference, replace=False)]
    if len(y) > max_batch:
        y = y[rng.choice(len(y), max_batch, replace=False)]
    z = np.vstack([x, y])
    sq = np.einsum("ij,ij->i", z, z)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    iu = np.triu_indices(len(z), 1)
    h2 = float(np.median(d2[iu])) or 1.0
    k = np.exp(-d2 / h2)
    nx, ny = len(x), len(y)
    a = np.concatenate([np.full(nx, 1.0 / nx), np.full(ny, -1.0 / ny)])
    observed = float(a @ k @ a)
    perms = np.stack([rng.permutation(a) for _ in range(int(n_permutations))], axis=1)
    null = np.einsum("ij,ij->j", perms, k @ perms)
    p = (1.0 + float((null >= observed).sum())) / (1.0 + n_permutations)
    mmd = float(np.sqrt(max(observed, 0.0)))
    null_mmd = float(np.sqrt(max(float(np.median(null)), 0.0)))
    return Check(
        name,
        "mmd",
        observed,
        p,
        mmd,
        min_effect,
        ny,
        nx,
        extra={
            "null_median_mmd": null_mmd,
            "n_permutations": int(n_permutations),
            "dims": int(z.shape[1]),
            "batch_rows": batch_rows,
        },
    )


def binomial_excess(name: str, flagged: int, n: int, rate: float, min_effect: float) -> Check | None:
    """One-sided binomial test that more than ``rate`` of the batch is flagged (effect: observed − expected
    fraction)."""
    if n < MIN_SAMPLES or not 0.0 < rate < 1.0:
        return None
    p = float(stats.binomtest(int(flagged), int(n), rate, alternative="greater").pvalue)
    frac = flagged / n
    return Check(name, "binomial", frac, p, frac - rate, min_effect, int(n), 0, extra={"expected_fraction": rate})


def flagged_excess(name: str, flagged: int, n: int, ref_flagged: int, ref_n: int, min_effect: float) -> Check | None:
    """One-sided Fisher exact test that a larger fraction of the batch is flagged than of the ``ref_n`` reference
    rows the threshold was set on (``ref_flagged`` of them flagged); effect: the difference of the fractions.

    A threshold set at the ``1 - alpha`` quantile of a few dozen rows flags new in-distribution objects at a rate
    that is itself uncertain (the quantile of 59 stars is set by the most extreme one); comparing with the counts
    it was set on, rather than with an exact ``alpha``, carries that uncertainty into the p-value.
    """
    if n < MIN_SAMPLES or ref_n < MIN_SAMPLES:
        return None
    table = [[int(flagged), int(n - flagged)], [int(ref_flagged), int(ref_n - ref_flagged)]]
    p = float(stats.fisher_exact(table, alternative="greater").pvalue)
    frac, ref_frac = flagged / n, ref_flagged / ref_n
    return Check(
        name, "fisher", frac, p, frac - ref_frac, min_effect, int(n), int(ref_n), extra={"reference_fraction": ref_frac}
    )
