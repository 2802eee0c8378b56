"""What a score matrix must be: the one validation helper of the calibration package, and the row softmax.

Scores are logits or probabilities of shape (N, C); labels are integers in ``[0, C)`` (drop unlabelled rows, label
< 0, first).
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np

from stellar.errors import StellarValueError

InputKind = Literal["logits", "probs"]
INPUT_KINDS: tuple[str, ...] = ("logits", "probs")
#: how far a row of probabilities may sum away from 1 and still be accepted
PROB_SUM_TOL = 1e-3
# float noise from a softmax or a renormalisation, not a real excursion outside [0, 1]
_PROB_RANGE_TOL = 1e-6


@overload
def validate_scores(
    scores: Any, y_true: None = None, *, kind: InputKind, name: str = "scores"
) -> tuple[np.ndarray, None]: ...


@overload
def validate_scores(
    scores: Any, y_true: Any, *, kind: InputKind, name: str = "scores"
) -> tuple[np.ndarray, np.ndarray]: ...


def validate_scores(
    scores: Any, y_true: Any = None, *, kind: InputKind, name: str = "scores"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Check and convert a score matrix (and optionally its labels); the one validation helper of calibration.

    Parameters
    ----------
    scores : array-like, shape (N, C)
        Logits or probabilities, one row per object, one column per class.
    y_true : array-like of int, shape (N,), optional
        True class indices in ``[0, C)``.
    kind : {"logits", "probs"}
        ``"probs"`` additionally requires values in [0, 1] with rows summing to 1 within ``PROB_SUM_TOL``.
    name : str
        Argument name used in error messages.

    Returns
    -------
    scores : numpy.ndarray of float64, shape (N, C)
        A new array; the input is never modified.
    y_true : numpy.ndarray of int64, shape (N,), or None
    """
    if kind not in INPUT_KINDS:
        raise StellarValueError(f"kind must be one of {INPUT_KINDS}, found {kind!r}")
    arr = np.array(scores, copy=True)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise StellarValueError(f"{name} must be a real numeric array of {kind}, found dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise StellarValueError(f"{name} must be 2-D of shape (N, C) holding {kind}, found shape {arr.shape}")
    n, c = arr.shape
    if n < 1 or c < 2:
        raise StellarValueError(f"{name} must have at least 1 row and 2 class columns, found shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise StellarValueError(
            f"{name} must be finite, found {int(np.isnan(arr).sum())} NaN and {int(np.isinf(arr).sum())} inf values"
        )
    if kind == "probs":
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -_PROB_RANGE_TOL or hi > 1.0 + _PROB_RANGE_TOL:
            raise StellarValueError(
                f"{name} must hold probabilities in [0, 1] (pass softmaxed probabilities, not logits), "
                f"found values in [{lo:.6g}, {hi:.6g}]"
            )
        sums = arr.sum(axis=1)
        off = np.abs(sums - 1.0) > PROB_SUM_TOL
        if off.any():
            worst = int(np.argmax(np.abs(sums - 1.0)))
            raise StellarValueError(
                f"{name} rows must sum to 1 within {PROB_SUM_TOL:g} (pass softmaxed probabilities, not logits); "
                f"found {int(off.sum())} of {n} rows off, e.g. row {worst} sums to {sums[worst]:.6g}"
            )
        arr = np.clip(arr, 0.0, 1.0)
    if y_true is None:
        return arr, None
    return arr, _validate_labels(y_true, n, c, name)


def _validate_labels(y_true: Any, n: int, c: int, name: str) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise StellarValueError(f"y_true must be 1-D of shape (N,), found shape {y.shape}")
    if len(y) != n:
        raise StellarValueError(f"y_true must have one label per row of {name} ({n}), found {len(y)} labels")
    if np.issubdtype(y.dtype, np.floating):
        # whole-number floats (e.g. from a pandas column with NaN dropped) are accepted; anything else is not
        if not (np.isfinite(y).all() and np.all(y == np.round(y))):
            raise StellarValueError("y_true must hold integer class indices, found non-integer or non-finite floats")
    elif y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise StellarValueError(f"y_true must hold integer class indices, found dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= c:
        raise StellarValueError(
            f"y_true must hold class indices in [0, {c}) (drop unlabelled rows first), "
            f"found values in [{int(y.min())}, {int(y.max())}]"
        )
    return y


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
