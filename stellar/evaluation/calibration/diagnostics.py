"""Calibration diagnostics on probabilities and labels: reliability curve, ECE, Brier score, NLL."""

from __future__ import annotations

from typing import Any

import numpy as np

from stellar.errors import StellarValueError
from stellar.evaluation.calibration.scores import validate_scores

# floor on the probability of the true class in the NLL, so a confident miss costs ~34.5 nats instead of inf
_NLL_FLOOR = 1e-15


def _check_n_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise StellarValueError(f"n_bins must be a positive integer, found {n_bins!r}")
    return int(n_bins)


def _bin_sums(probs: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin count, number correct and summed confidence of the top label; bins are (k/B, (k+1)/B], 0 in the first."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    return counts, np.bincount(idx, weights=correct, minlength=n_bins), np.bincount(idx, weights=conf, minlength=n_bins)


def reliability_curve(
    probs: Any, y_true: Any, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-label reliability diagram data on equal-width confidence bins.

    Parameters
    ----------
    probs : array-like, shape (N, C)
        Class probabilities (rows sum to 1).
    y_true : array-like of int, shape (N,)
        True class indices.
    n_bins : int
        Number of equal-width bins on [0, 1].

    Returns
    -------
    centers : numpy.ndarray, shape (n_bins,)
        Bin midpoints.
    acc, conf : numpy.ndarray, shape (n_bins,)
        Accuracy and mean top-label confidence per bin; NaN where a bin is empty.
    counts : numpy.ndarray of int, shape (n_bins,)
        Rows per bin (sums to N).
    """
    p, y = validate_scores(probs, y_true, kind="probs", name="probs")
    n_bins = _check_n_bins(n_bins)
    counts, n_correct, sum_conf = _bin_sums(p, y, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(counts > 0, n_correct / counts, np.nan)
        conf = np.where(counts > 0, sum_conf / counts, np.nan)
    centers = (np.arange(n_bins) + 0.5) / n_bins
    return centers, acc, conf, counts


def expected_calibration_error(probs: Any, y_true: Any, n_bins: int = 15) -> float:
    """Top-label expected calibration error: ``sum_b (n_b / N) |acc_b - conf_b|`` over equal-width bins.

    Examples
    --------
    >>> import numpy as np
    >>> ece = expected_calibration_error(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 1]), n_bins=10)
    >>> round(ece, 6)  # (|1 - 0.9| + |0 - 0.8|) / 2
    0.45
    """
    p, y = validate_scores(probs, y_true, kind="probs", name="probs")
    _, n_correct, sum_conf = _bin_sums(p, y, _check_n_bins(n_bins))
    return float(np.abs(n_correct - sum_conf).sum() / len(y))


def brier_score(probs: Any, y_true: Any) -> float:
    """Multi-class Brier score: mean over rows of ``sum_k (p_k - [y == k])**2`` (0 is perfect, 2 is worst)."""
    p, y = validate_scores(probs, y_true, kind="probs", name="probs")
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def log_loss_per_row(probs: Any, y_true: Any) -> np.ndarray:
    """``-log p[y]`` of each row in nats; the true-class probability is floored at 1e-15 so a confident miss stays
    finite."""
    p, y = validate_scores(probs, y_true, kind="probs", name="probs")
    return -np.log(np.maximum(p[np.arange(len(y)), y], _NLL_FLOOR))


def negative_log_likelihood(probs: Any, y_true: Any) -> float:
    """Mean ``-log p[y]`` in nats (:func:`log_loss_per_row`)."""
    return float(np.mean(log_loss_per_row(probs, y_true)))
