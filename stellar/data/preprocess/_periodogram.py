"""The periodogram core that the light-curve functions and the period search share: the frequency grid, one
light curve's Lomb–Scargle power, and the one peak finder.

Times in days, frequencies in 1/day (``Quantity`` accepted at the public :func:`frequency_grid`).
"""

from __future__ import annotations

from typing import Any

import astropy.units as u
import numpy as np

from stellar.data.preprocess._lc_rows import as_time
from stellar.errors import StellarValueError
from stellar.utils.units import to_value


def frequency_grid(time: Any, min_period: Any = 0.1, max_period: Any = None, oversampling: float = 5.0) -> np.ndarray:
    """Uniform frequency grid, 1/day, for periodograms of light curves sampled at ``time``.

    Parameters
    ----------
    time : array-like, Quantity or Time, d
        Sample times (masked points may be NaN); the baseline ``T`` sets the step ``1 / (oversampling T)``.
    min_period, max_period : float or Quantity, d
        Period range (bare floats are days); ``max_period`` defaults to the baseline.
    oversampling : float
        Samples per peak width ``1/T``.

    Returns
    -------
    numpy.ndarray, 1/day
        Increasing, uniformly spaced frequencies from ``1/max_period`` to ``1/min_period``.

    Examples
    --------
    >>> f = frequency_grid(np.linspace(0, 100, 50), min_period=1.0, max_period=10.0, oversampling=5)
    >>> round(float(f[0]), 3), round(float(f[-1]), 3), len(f)
    (0.1, 1.0, 451)
    """
    t = as_time(time)
    baseline = float(np.nanmax(t) - np.nanmin(t)) if np.isfinite(t).any() else 0.0
    fmin, _, n = grid_params(np.array([baseline]), min_period, max_period, oversampling)
    return np.linspace(fmin[0], 1.0 / float(to_value(min_period, u.day, "min_period")), n[0])


def grid_params(
    baseline: np.ndarray, min_period: Any, max_period: Any, oversampling: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start (1/d), step (1/d) and size of :func:`frequency_grid` for each baseline (d), validated."""
    if not np.all(baseline > 0):
        raise StellarValueError("time must span a positive baseline (d)")
    pmin = float(to_value(min_period, u.day, "min_period"))
    fixed = None if max_period is None else float(to_value(max_period, u.day, "max_period"))
    pmax = baseline if fixed is None else np.full(baseline.shape, fixed)
    if not (pmin > 0 and np.all(pmin < pmax)) or not oversampling > 0:
        bad = float(np.min(pmax))
        raise StellarValueError(
            f"need 0 < min_period < max_period (d) and oversampling > 0; got {pmin}, {bad}, {oversampling}"
        )
    fmin, fmax = 1.0 / pmax, 1.0 / pmin
    n = np.maximum(np.ceil((fmax - fmin) * oversampling * baseline).astype(np.int64) + 1, 2)
    return fmin, (fmax - fmin) / (n - 1), n


def uniform(f: np.ndarray) -> bool:
    """Whether the frequencies ``f`` are increasing and evenly spaced (to 1e-9), as the transforms need."""
    if f.size < 2:
        return False
    d = np.diff(f)
    return bool(np.all(d > 0) and np.allclose(d, d.mean(), rtol=1e-9, atol=0))


def ls_row(t: np.ndarray, y: np.ndarray, e: np.ndarray | None, f: np.ndarray, normalization: str) -> np.ndarray:
    """Floating-mean Lomb–Scargle power of one light curve's valid points at frequencies ``f``: nifty-ls on a
    uniform grid where it is installed, astropy's ``LombScargle`` otherwise."""
    if uniform(f):
        try:
            import nifty_ls
        except ImportError:  # optional fast path; astropy's Press & Rybicki "fast" method is the fallback
            nifty_ls = None
        if nifty_ls is not None:
            order = np.argsort(t, kind="stable")
            res = nifty_ls.lombscargle(
                t[order], y[order], None if e is None else e[order],
                fmin=float(f[0]), fmax=float(f[-1]), Nf=f.size, normalization=normalization, nthreads=1,
            )  # fmt: skip  # one thread: light curves are the parallel axis (finufft threads cost more here)
            return np.asarray(res.power, dtype=float)
    from astropy.timeseries import LombScargle

    method = "fast" if uniform(f) else "cython"
    return np.asarray(LombScargle(t, y, e, normalization=normalization).power(f, method=method), dtype=float)


def top_peaks(
    p: np.ndarray, k: int, within: float | None = None, *, ends: bool = True, lo: int = 0, hi: int | None = None
) -> np.ndarray:
    """Indices of the highest local maxima of ``p[lo:hi]``, highest first, at most ``k`` of them.

    A local maximum is at least as high as both its neighbours in ``p`` (a NaN is none, nor are its neighbours);
    ``p``'s first and last points count, against their one neighbour, only with ``ends``. With ``within``, only
    maxima at least ``within`` × the highest value of ``p`` count. Where no point counts (a monotonic stretch),
    the highest point of ``p[lo:hi]`` stands in.

    Parameters
    ----------
    p : numpy.ndarray, (F,)
        A periodogram (any normalisation).
    k : int
        Most indices returned.
    within : float, optional
        Keep maxima at least this fraction of ``nanmax(p)``.
    ends : bool
        Whether ``p[0]`` and ``p[-1]`` may be maxima.
    lo, hi : int
        The stretch searched (``hi`` None: to the end); neighbours outside it are still compared.

    Returns
    -------
    numpy.ndarray of int, (≤ k,)
        Indices into ``p``.

    Examples
    --------
    >>> p = np.array([4.0, 0, 3, 0, 1, 0, 5, 0, 2])
    >>> top_peaks(p, 3).tolist(), top_peaks(p, 3, ends=False).tolist(), top_peaks(p, 9, within=0.7).tolist()
    ([6, 0, 2], [6, 2, 4], [6, 0])
    >>> top_peaks(np.arange(5.0), 2, ends=False).tolist()  # no interior maximum: the highest point
    [4]
    """
    hi = p.size if hi is None else hi
    i0, i1 = max(lo, 1), min(hi, p.size - 1)  # the points with two neighbours
    mid = p[i0:i1]
    keep = (mid >= p[i0 - 1 : i1 - 1]) & (mid >= p[i0 + 1 : i1 + 1])
    low = -np.inf if within is None else within * np.nanmax(p)
    if within is not None:
        keep &= mid >= low
    peaks = i0 + np.flatnonzero(keep)
    if ends:  # p's first and last points, against their one neighbour
        first = lo == 0 < hi and (p.size == 1 or p[0] >= p[1]) and p[0] >= low
        last = hi == p.size and p.size - 1 >= max(lo, 1) and p[-1] >= p[-2] and p[-1] >= low
        if first or last:
            peaks = np.concatenate([[0] if first else [], peaks, [p.size - 1] if last else []]).astype(np.intp)
    if peaks.size == 0:
        return np.array([lo + int(np.nanargmax(p[lo:hi]))])
    return peaks[np.argsort(p[peaks])[::-1][:k]]
