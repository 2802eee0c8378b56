"""Floating-mean Lomb–Scargle power of many light curves with nifty-ls's kernels and shared finufft plans.

``nifty_ls.lombscargle`` builds two finufft plans per call; for a sparse survey light curve on a ~10⁵-frequency
grid that set-up (the spreading kernel's Fourier series on the fine grid) costs more than the transforms. Plans
depend only on the number of frequencies, not on the times or the grid's start and step, so here one pair of
plans serves every light curve of a group with similar grid sizes: each row is run with the group's largest
size on its own ``fmin`` and step, and its own first ``nf`` frequencies are kept. The post-processing is
nifty-ls's own compiled helper and the pre-processing its formulas in numpy (faster: see :func:`_inputs`), so the
power is nifty-ls's to rounding. For a peak search the transforms can run in single precision (``single``), with
a stated error bound (:func:`single_error`) within which the caller settles the highest peak in double.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from stellar.utils.threads import thread_map

#: finufft tolerance: nifty-ls's float64 default; the power then matches astropy's to ~1e-9.
EPS = 1e-9
#: finufft tolerance of the single-precision transforms: their error is set by the float32 points anyway.
EPS_SINGLE = 1e-4
#: With ``single``, the standard-normalised power (0-1) is within ``SINGLE_ERROR × n_modes × 2⁻²⁴`` of the
#: double-precision power, on grids that stay clear of the frequencies where the floating-mean periodogram is
#: ill-conditioned (below ~2 cycles over the baseline, near the sampling rate of regular cadences: there the
#: error grows without bound). The float32 rounding of the points, times the mode index, sets the phase error.
#: Measured at 0.1–2.2 on simulated Kepler and TESS light curves of 1,000–16,000 points (every class); 8 leaves
#: a margin.
SINGLE_ERROR = 8.0
#: nifty-ls versions whose ``cpu_helpers`` signatures this module was written and tested against.
_HELPER_VERSIONS = ("1.1.",)
#: A group's largest grid is at most this many times its smallest (bounds the work spent on padding).
_GROUP_RATIO = 1.3
#: Plan sizes are multiples of this many modes, so that batches whose grids differ by a few frequencies (light
#: curves a few cadences longer or shorter) reuse the cached plans.
_MODE_STEP = 64


def available() -> bool:
    """Whether nifty-ls's finufft backend and compiled helpers can be imported, in a version whose helpers have
    the signature used here (they are not public API); otherwise callers use ``nifty_ls.lombscargle`` per row."""
    try:
        import finufft  # noqa: F401
        import nifty_ls
        from nifty_ls import cpu_helpers  # noqa: F401
    except ImportError:
        return False
    return str(getattr(nifty_ls, "__version__", "")).startswith(_HELPER_VERSIONS)


def _norm_kind(normalization: str) -> object:
    from nifty_ls import cpu_helpers

    kinds = {"standard": "Standard", "model": "Model", "log": "Log", "psd": "PSD"}
    return getattr(cpu_helpers.NormKind, kinds[normalization])


def power_rows(
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    fmin: np.ndarray,
    df: np.ndarray,
    nf: np.ndarray,
    normalization: str = "standard",
    workers: int = 1,
    single: bool = False,
) -> list[np.ndarray]:
    """Power of each row ``(t, y, dy)`` (``dy`` None for equal weights) on its grid ``fmin + df × arange(nf)``.

    Rows need at least one point; times in days need not be sorted. Returns one float64 array per row. With
    ``single`` the transforms run in single precision (inputs and outputs are computed in double), about twice
    as fast, and on a well-conditioned grid (:func:`single_is_safe`) each power is then off by up to
    ``SINGLE_ERROR × n_modes × 2⁻²⁴`` (:func:`single_error`, in standard-normalised power): enough to find the
    candidates for the highest peak, which the caller then checks in double precision. With ``workers`` > 1 each
    thread runs its share of every group on its own plans (finufft releases the GIL)."""
    out: list[np.ndarray] = [np.empty(0)] * len(rows)
    order = np.argsort(nf, kind="stable")
    groups: list[np.ndarray] = []
    start = 0
    while start < order.size:
        stop = start + 1
        while stop < order.size and nf[order[stop]] <= _GROUP_RATIO * nf[order[start]]:
            stop += 1
        groups += [order[start:stop][k::workers] for k in range(min(workers, stop - start))]
        start = stop

    def run(group: np.ndarray) -> None:
        for i, power in zip(group, _power_group([rows[i] for i in group], fmin[group], df[group], nf[group],
                                                normalization, single), strict=True):  # fmt: skip
            out[i] = power

    thread_map(run, groups, workers)
    return out


def _power_group(
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    fmin: np.ndarray,
    df: np.ndarray,
    nf: np.ndarray,
    normalization: str,
    single: bool = False,
) -> list[np.ndarray]:
    """:func:`power_rows` of rows run on one pair of plans sized for the largest grid."""
    from nifty_ls import cpu_helpers

    kind = _norm_kind(normalization)
    psd = normalization == "psd"
    n_modes = -(-int(nf.max()) // _MODE_STEP) * _MODE_STEP  # rounded up: batches of similar grids share plans
    pair, solo = plans = _PLANS.take(n_modes, single)
    cplx = np.complex64 if single else np.complex128
    # buffers reused by every row: fresh (page-faulted) ones cost ~10 % of a row's time
    f1_fw = np.empty((2, n_modes), dtype=cplx)
    f2 = np.empty((1, n_modes), dtype=cplx)
    f1_fw64, f2_64 = (
        (np.empty((2, n_modes), np.complex128), np.empty((1, n_modes), np.complex128)) if single else (f1_fw, f2)
    )
    power = np.empty((1, n_modes))
    out = []
    for i, (t, y, dy) in enumerate(rows):
        t1, yw_w, w2, norm = _inputs(t, y, dy, float(fmin[i]), float(df[i]), n_modes, psd, single)
        pair.run(t1, yw_w, f1_fw)
        solo.run(2 * t1, w2, f2)
        if single:  # the power from float32 sums loses too much in its differences: compute it in double
            np.copyto(f1_fw64, f1_fw)
            np.copyto(f2_64, f2)
        cpu_helpers.process_finufft_outputs(power, f1_fw64[:1], f1_fw64[1:], f2_64, norm, kind, True, 1)
        out.append(power[0, : int(nf[i])].copy())
    _PLANS.give(n_modes, single, plans)  # not on an error: a plan that failed is not reused
    return out


class _Plan:
    """A 1-D type-1 finufft plan (double precision at :data:`EPS`, or single at :data:`EPS_SINGLE`; one thread)
    run row after row.

    ``finufft.Plan.setpts`` and ``execute`` check and convert their arguments in Python (~90 µs a row, as much as
    a 4,000-point transform); where finufft's C library is reachable (finufft 2.x), :meth:`run` calls its
    ``finufft[f]_setpts`` and ``finufft[f]_execute`` directly on C-contiguous arrays of the plan's precision
    (made by this module), and through the public methods otherwise."""

    def __init__(self, n_modes: int, n_trans: int, single: bool = False) -> None:
        import finufft

        self.plan = finufft.Plan(1, (n_modes,), n_trans=n_trans, eps=EPS_SINGLE if single else EPS,
                                 dtype="complex64" if single else "complex128", nthreads=1,
                                 upsampfac=1.25)  # fmt: skip
        self.c_api = _c_api(single)
        self.points: np.ndarray | None = None  # finufft keeps a pointer to the points: keep them alive

    def run(self, x: np.ndarray, strength: np.ndarray, out: np.ndarray) -> None:
        """Modes of ``strength`` (n_trans, N) at points ``x`` (N,) into ``out`` (n_trans, n_modes)."""
        handle = getattr(self.plan, "_inner_plan", None)
        if self.c_api is None or handle is None:
            self.plan.setpts(x)
            self.plan.execute(strength, out=out)
            return
        setpts, execute = self.c_api
        self.points = x
        if setpts(handle, x.size, x.ctypes.data, None, None, 0, None, None, None):
            raise RuntimeError("finufft_setpts failed")
        if execute(handle, strength.ctypes.data, out.ctypes.data):
            raise RuntimeError("finufft_execute failed")


class _PlanPool:
    """Pairs of plans kept for the next call, per size and precision: making a pair (the spreading kernel's
    Fourier series, the FFT plan) costs ~1.5 ms at 8,600 modes, as much as a light curve's transforms. A plan
    runs one transform at a time, so each caller (thread) takes a pair out and puts it back; at most
    ``max_sizes`` sizes are kept, the least recently used dropped first."""

    def __init__(self, max_sizes: int = 16) -> None:
        self.max_sizes = max_sizes
        self.free: dict[tuple[int, bool], list[tuple[_Plan, _Plan]]] = {}
        self.lock = threading.Lock()

    def take(self, n_modes: int, single: bool) -> tuple[_Plan, _Plan]:
        with self.lock:
            pairs = self.free.pop((n_modes, single), [])  # re-inserted last on return: most recently used
            pair = pairs.pop() if pairs else None
            if pairs:
                self.free[(n_modes, single)] = pairs
        return pair or (_Plan(n_modes, 2, single), _Plan(n_modes, 1, single))

    def give(self, n_modes: int, single: bool, pair: tuple[_Plan, _Plan]) -> None:
        with self.lock:
            self.free[(n_modes, single)] = [*self.free.pop((n_modes, single), []), pair]
            while len(self.free) > self.max_sizes:
                del self.free[next(iter(self.free))]


_PLANS = _PlanPool()


def _c_api(single: bool = False) -> tuple[Any, Any] | None:
    """``finufft[f]_setpts`` and ``finufft[f]_execute`` of finufft's C library with plain pointer arguments (``f``:
    single precision), or None."""
    global _C_API
    if _C_API is None:
        _C_API = {}
        try:
            import finufft
            from finufft import _finufft
        except ImportError:
            return None
        if str(getattr(finufft, "__version__", "")).startswith("2.") and hasattr(_finufft, "lib"):
            ptr, ll, lib = ctypes.c_void_p, ctypes.c_longlong, _finufft.lib
            # prototypes of their own (finufft's function objects keep their checked argtypes)
            for prec, pre in ((False, "finufft"), (True, "finufftf")):
                setpts = ctypes.CFUNCTYPE(ctypes.c_int, ptr, ll, ptr, ptr, ptr, ll, ptr, ptr, ptr)(
                    (f"{pre}_setpts", lib)
                )
                execute = ctypes.CFUNCTYPE(ctypes.c_int, ptr, ptr, ptr)((f"{pre}_execute", lib))
                _C_API[prec] = (setpts, execute)
    return _C_API.get(single)


_C_API: dict[bool, tuple[Any, Any]] | None = None


def single_error(nf: np.ndarray | int) -> np.ndarray:
    """Bound on ``|power - exact power|`` (standard normalisation) of :func:`power_rows` with ``single`` for a row
    of ``nf`` frequencies on a well-conditioned grid (:func:`single_is_safe`): :data:`SINGLE_ERROR` × the plan's
    size (up to ``_GROUP_RATIO × nf``, rounded up) × 2⁻²⁴."""
    return SINGLE_ERROR * (_GROUP_RATIO * np.asarray(nf, dtype=float) + _MODE_STEP) * 2.0**-24


def _weighted(
    t: np.ndarray, y: np.ndarray, dy: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, float]:
    """What every floating-mean periodogram of a row starts from: times since the first (the power is
    shift-invariant, and the phases stay small), weights ``w = dy⁻² / Σ dy⁻²`` (equal without ``dy``), ``Σ dy⁻²``,
    the values less their weighted mean, and their weighted variance ``Σ w (y - ȳ)²``."""
    w = np.ones(t.size) if dy is None else 1.0 / np.square(np.asarray(dy, dtype=np.float64))
    wsum = float(w.sum())
    w /= wsum
    yc = y - np.dot(w, y)
    return t - t.min(), w, wsum, yc, float(np.dot(w, yc * yc))


def _inputs(
    t: np.ndarray,
    y: np.ndarray,
    dy: np.ndarray | None,
    fmin: float,
    df: float,
    n_modes: int,
    psd: bool,
    single: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The transforms' inputs for one row, as ``cpu_helpers.process_finufft_inputs`` makes them (floating mean).

    Points ``x = 2π df t`` (``2x`` for the double-frequency sums); weights ``w = dy⁻² / Σ dy⁻²``; strengths
    ``w (y - ȳ) e^{iφ}`` and ``w e^{iφ}`` for the pair of transforms and ``w e^{2iφ}`` for the other, where
    ``φ = (n_modes // 2 + fmin / df) x`` moves mode ``-n_modes // 2`` to ``fmin``; ``norm = Σ w (y - ȳ)²`` (``Σ
    dy⁻²`` for the PSD normalisation). The same formulas as nifty-ls's compiled helper, in a few vectorised
    passes: its complex exponentials per point cost ~4× these on a 4,000-point light curve. With ``single`` the
    points and strengths are float32/complex64 for single-precision plans: φ is reduced to [-π, π] in double
    and its cosine and sine taken in float32 (SIMD, ~4× faster; error ~1e-7)."""
    t, w, wsum, yc, yy = _weighted(t, y, dy)
    x = (2 * np.pi * df) * t
    norm = np.array([wsum if psd else yy])
    phase = (n_modes // 2 + fmin / df) * x
    if single:
        turns = np.round(phase * (0.5 / np.pi))
        phase = (phase - (2 * np.pi) * turns).astype(np.float32)
        x, w, yc = x.astype(np.float32), w.astype(np.float32), yc.astype(np.float32)
    strength = np.empty((3, t.size), dtype=np.complex64 if single else np.complex128)
    np.cos(phase, out=strength.real[1])
    np.sin(phase, out=strength.imag[1])  # e^{iφ}
    np.square(strength[1], out=strength[2])
    strength[2] *= w  # w e^{2iφ}
    strength[1] *= w  # w e^{iφ}
    np.multiply(strength[1], yc, out=strength[0])  # w (y - ȳ) e^{iφ}
    return np.ascontiguousarray(x), strength[:2], strength[2:], norm


def single_is_safe(t: np.ndarray, fmin: float, fmax: float) -> bool:
    """Whether :data:`SINGLE_ERROR` holds for times ``t`` (d) on a grid from ``fmin`` to ``fmax`` (1/d): at least
    2 cycles over the baseline at ``fmin``, and ``fmax`` at most 0.45 of the mean sampling rate (baseline / (N - 1)
    is at least a regular cadence's step, whatever the gaps, so this keeps clear of its sampling rate)."""
    span = float(np.ptp(t)) if t.size > 1 else 0.0
    return bool(span > 0 and fmin * span >= 2.0 and fmax * span / (t.size - 1) <= 0.45)


def exact_power(t: np.ndarray, y: np.ndarray, dy: np.ndarray | None, freq: np.ndarray) -> np.ndarray:
    """Floating-mean Lomb–Scargle power (standard normalisation) at a few arbitrary frequencies, by direct sums.

    The generalised periodogram of Zechmeister & Kürster (2009), astropy's ``method='cython'``; O(N × F), for
    checking a handful of candidate frequencies exactly."""
    t, w, _, yc, yy = _weighted(t, y, dy)
    omega_t = 2 * np.pi * np.outer(freq, t)  # (F, N)
    cos_wt, sin_wt = np.cos(omega_t), np.sin(omega_t)  # the only trigonometric passes: the rest by identities
    s2, c2 = (2 * sin_wt * cos_wt) @ w, (cos_wt * cos_wt - sin_wt * sin_wt) @ w
    s1, c1 = sin_wt @ w, cos_wt @ w
    tau = 0.5 * np.arctan2(s2 - 2 * s1 * c1, c2 - (c1 * c1 - s1 * s1))  # ω τ
    ct, st = np.cos(tau)[:, None], np.sin(tau)[:, None]
    cos, sin = cos_wt * ct + sin_wt * st, sin_wt * ct - cos_wt * st  # cos(ωt - ωτ), sin(ωt - ωτ)
    c, s = cos @ w, sin @ w
    yc_cos, ys_sin = cos @ (w * yc), sin @ (w * yc)
    cc = (cos * cos) @ w - c * c
    ss = (sin * sin) @ w - s * s
    return np.asarray((yc_cos**2 / cc + ys_sin**2 / ss) / yy)
