"""Array kernels of :func:`stellar.data.preprocess.lightcurve.detrend_biweight`, vectorised over all light curves.

The valid points of every row are packed, in time order, into one array with a monotonic *key*: time within
its gap-free segment plus the segment's index times a stride longer than any segment and a window. A window
found by ``searchsorted`` on the key therefore never reaches into another segment or another light curve, so
one set of fixed-width 2-D blocks (``knots × widest window``) serves the whole batch: one sort gives the
medians, one the MADs, and a few vectorised passes the biweight locations.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from stellar.utils.threads import thread_map

#: Value of the padding slots of a window (float32 offsets): far outside any flux, so its biweight weight is 0.
_PAD = np.float32(1e30)
#: Elements per 2-D block (bounds memory to ~50 MB whatever the batch size).
_BLOCK = 1 << 21


def segment_keys(t: np.ndarray, row: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monotonic keys of packed, per-row sorted times; a gap wider than ``window`` or a new row starts a segment.

    Returns ``(key, seg, t_local)``: the key (d), each point's segment index and its time since the segment's
    first point (d)."""
    new_seg = np.ones(t.size, dtype=bool)
    new_seg[1:] = (np.diff(t) > window) | (row[1:] != row[:-1])
    seg = np.cumsum(new_seg) - 1
    t_local = t - t[new_seg][seg]
    stride = float(t_local.max()) + 2.0 * window + 1.0
    return t_local + seg * stride, seg, t_local


def knot_index(seg: np.ndarray, t_local: np.ndarray, spacing: float | None) -> np.ndarray:
    """The first point of every ``spacing``-wide bin of each segment and each segment's last point."""
    if spacing is None:
        return np.arange(seg.size)
    bucket = np.floor(t_local / spacing)
    edge = np.ones(seg.size, dtype=bool)
    edge[1:] = (bucket[1:] != bucket[:-1]) | (seg[1:] != seg[:-1])
    edge[:-1] |= seg[1:] != seg[:-1]
    edge[-1] = True
    return np.flatnonzero(edge)


def window_bounds(key: np.ndarray, at: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Index range ``[lo, hi)`` of the points within ``±window/2`` of each key in ``at``."""
    return np.searchsorted(key, at - window / 2, side="left"), np.searchsorted(key, at + window / 2, side="right")


def biweight_location(
    y: np.ndarray,
    lo: np.ndarray,
    count: np.ndarray,
    c: float,
    n_iter: int,
    ftol: float,
    workers: int = 1,
    ref: np.ndarray | None = None,
) -> np.ndarray:
    """Tukey biweight location of each window ``y[lo : lo + count]`` (every count ≥ 1; ``y`` finite).

    Start at the median, scale fixed at the MAD about it (Mosteller & Tukey's estimator; wotan iterates the same
    way), then solve ``Σ u (1 - u²)² = 0``, ``u = (y - loc) / (c MAD)`` (the reweighted-mean fixed point with
    weights ``(1 - u²)²``) by safeguarded Newton steps until the location moves by at most ``ftol × |median|``
    or after ``n_iter`` passes. A window whose MAD is 0 keeps its median.

    The values are carried in float32 as offsets from ``ref`` (a reference level per point, constant within
    every window; by default the median of ``y``), which halves the memory traffic: the rounding, ~6e-8 of a
    flux's level, is far below any photometric noise. Give each light curve its own level (its mean), so that
    its trend does not depend on the other rows of the batch, to the last bit. Each block of windows is
    gathered as rows of one strided view, and the window slots past a window's count hold a huge value, so that
    they sort last and get weight 0. Blocks of windows run on up to ``workers`` threads.
    """
    loc = np.empty(lo.size)
    if lo.size == 0:
        return loc
    width = int(count.max())
    ref = np.full(y.size, np.median(y)) if ref is None else ref
    y32 = np.empty(y.size + width, dtype=np.float32)
    y32[: y.size] = y - ref
    y32[y.size :] = _PAD  # a window's tail may run past the last point
    rows_of = sliding_window_view(y32, width)  # row i: y32[i : i + width], without a copy
    beyond = np.arange(width)[None, :]
    step = max(1, min(_BLOCK // width, -(-lo.size // workers)))

    def block(s: int) -> None:
        n = count[s : s + step]
        level = ref[lo[s : s + step]]
        rows = np.arange(n.size)
        mid_lo, mid_hi = (n - 1) // 2, n // 2
        w = rows_of[lo[s : s + step]]
        if n.min() < width:
            np.putmask(w, beyond >= n[:, None], _PAD)  # other windows' points
        part = np.sort(w, axis=1)  # numpy's SIMD sort: faster than a partition at per-row positions
        med = 0.5 * (part[rows, mid_lo] + part[rows, mid_hi])
        dev = np.subtract(w, med[:, None], out=w)  # padding stays ~_PAD: |u| >> 1, weight 0
        part = np.abs(dev, out=part)
        part.sort(axis=1)
        mad = 0.5 * (part[rows, mid_lo] + part[rows, mid_hi])
        shift = np.zeros(n.size, dtype=np.float32)
        inv = np.zeros(n.size, dtype=np.float32)
        act = np.flatnonzero(mad > 0)
        inv[act] = 1.0 / (c * mad[act])
        tol = (ftol * np.abs(level + med)).astype(np.float32)
        with np.errstate(over="ignore"):  # (PAD / scale)² overflows to inf: weight 0, as intended
            for it in range(n_iter):
                if act.size == 0:
                    break
                every = act.size == n.size  # skip the gathers while no window has converged
                sa = shift if every else shift[act]
                d = dev if every else dev[act]
                if it:  # the shift starts at 0: the first pass reads the deviations as they are
                    d = d - sa[:, None]
                wt = d * (inv if every else inv[act])[:, None]
                np.square(wt, out=wt)
                np.subtract(np.float32(1.0), wt, out=wt)
                np.maximum(wt, np.float32(0.0), out=wt)  # 1 - u² inside the window, else 0
                sum_t = wt.sum(axis=1)
                np.square(wt, out=wt)  # the weights (1 - u²)²
                sum_w = wt.sum(axis=1)
                # Newton on Σψ(u) = 0, ψ(u) = u(1 - u²)², has Σψ'(u) = 5Σ(1 - u²)² - 4Σ(1 - u²) where the
                # reweighted mean has Σ(1 - u²)²: same fixed point, quadratic convergence; taken only while it
                # is at most twice the reweighted-mean step, the reweighted mean otherwise
                slope = 5 * sum_w - 4 * sum_t
                move = np.einsum("ij,ij->i", wt, d) / np.where(slope >= 0.5 * sum_w, slope, sum_w)
                shift[act] = sa + move
                act = act[np.abs(move) > (tol if every else tol[act])]
        loc[s : s + step] = level + (med + shift).astype(np.float64)

    thread_map(block, range(0, lo.size, step), workers)
    return loc


def interpolate_in_segments(
    key: np.ndarray, seg: np.ndarray, knots: np.ndarray, value: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Values at every point from the knots (``knots``: increasing point indices, ``value`` there), per segment.

    A cubic through 4 knots of the point's own segment (the two bracketing it and one on each side where the
    segment has them), linear in segments with fewer than 4 knots; NaN where the point is not between two
    knots of its segment. Returns the values and, per point, the index of the knot at or before it (0 before
    the first)."""
    nk = knots.size
    out = np.full(key.size, np.nan)
    if nk == 0:
        return out, np.zeros(key.size, dtype=np.intp)
    at, at_seg = key[knots], seg[knots]
    idx = np.arange(nk)
    first = np.ones(nk, dtype=bool)
    first[1:] = at_seg[1:] != at_seg[:-1]
    last = np.ones(nk, dtype=bool)
    last[:-1] = first[1:]
    lo = np.maximum.accumulate(np.where(first, idx, 0))
    hi = np.minimum.accumulate(np.where(last, idx, nk)[::-1])[::-1]
    # Newton form of the cubic of each interval [k, k + 1]: nodes x0..x3 starting at k - 1, clipped into the
    # segment; segments of 2-3 knots use their straight line (nodes k, k + 1 and zero higher terms)
    cubic = hi - lo >= 3
    start = np.where(cubic, np.clip(idx - 1, lo, hi - 3), idx)
    nodes = np.minimum(start[:, None] + np.arange(4)[None, :], nk - 1)
    x, v = at[nodes], value[nodes]
    with np.errstate(all="ignore"):
        d1 = (v[:, 1:] - v[:, :-1]) / (x[:, 1:] - x[:, :-1])
        d2 = (d1[:, 1:] - d1[:, :-1]) / (x[:, 2:] - x[:, :-2])
        d3 = (d2[:, 1] - d2[:, 0]) / (x[:, 3] - x[:, 0])
    # one row per interval, gathered once per point: x0, x1, x2, v0 and the Newton coefficients
    table = np.stack([x[:, 0], x[:, 1], x[:, 2], v[:, 0], d1[:, 0], np.where(cubic, d2[:, 0], 0.0),
                      np.where(cubic, d3, 0.0)], axis=1)  # fmt: skip
    is_knot = np.zeros(key.size, dtype=bool)
    is_knot[knots] = True
    j = np.maximum(np.cumsum(is_knot) - 1, 0)  # the knot at or before each point (points and knots share order)
    inside = (knots[j] <= np.arange(key.size)) & (at_seg[j] == seg) & (is_knot | (j < hi[j]))
    c = np.take(table, j, axis=0)  # several times faster than table[j] for narrow rows
    with np.errstate(all="ignore"):
        val = c[:, 3] + (key - c[:, 0]) * (c[:, 4] + (key - c[:, 1]) * (c[:, 5] + (key - c[:, 2]) * c[:, 6]))
    val = np.where(is_knot, value[j], val)  # knots (and one-knot segments) keep their own value
    out[inside] = val[inside]
    return out, j
