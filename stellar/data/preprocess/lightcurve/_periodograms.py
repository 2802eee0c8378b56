"""Periodograms of light curves: Lomb–Scargle power (one band, batch-first; multiband), phase folding, and the
period of the highest peak (single-precision transforms and a coarse-then-exact search where they are safe)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import astropy.units as u
import numpy as np

from stellar.data.preprocess import _nifty
from stellar.data.preprocess._lc_rows import as_freq, as_time, prepare, squeeze
from stellar.data.preprocess._periodogram import grid_params, ls_row, top_peaks, uniform
from stellar.errors import StellarValueError
from stellar.utils.threads import check_workers
from stellar.utils.units import to_value


def _valid_rows(
    t: np.ndarray, y: np.ndarray, e: np.ndarray | None, m: np.ndarray
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]]:
    """The rows with at least 3 valid points, and their valid ``(t, y, dy)`` (``dy`` None without errors)."""
    use = np.flatnonzero((~m).sum(axis=1) >= 3)
    return use, [(t[i, ~m[i]], y[i, ~m[i]], None if e is None else e[i, ~m[i]]) for i in use]


def lomb_scargle(
    time: Any, flux: Any, flux_err: Any = None, frequency: Any = None, mask: Any = None, normalization: str = "standard"
) -> np.ndarray:
    """Generalised (floating-mean) Lomb–Scargle power, one band, batch-first.

    Uses nifty-ls (non-uniform FFT, matches astropy's exact power to ~1e-9) on a uniform grid, one pair of finufft
    plans for all rows; astropy's ``LombScargle`` otherwise.

    Parameters
    ----------
    time : array-like, Quantity or Time, (T,) or (N, T), d
    flux : array-like, (T,) or (N, T), flux or mag
    flux_err : array-like, optional, same unit as ``flux``
    frequency : array-like or Quantity, (F,), 1/day
        Shared frequency grid, e.g. from :func:`frequency_grid`.
    mask : array-like of bool, optional
        ``True`` on points to leave out.
    normalization : {'standard', 'model', 'log', 'psd'}

    Returns
    -------
    numpy.ndarray, (F,) or (N, F)
        Power; NaN rows for light curves with fewer than 3 valid points.
    """
    if frequency is None:
        raise StellarValueError("frequency must be given (1/day); build one with frequency_grid()")
    if normalization not in ("standard", "model", "log", "psd"):
        raise StellarValueError(f"normalization must be standard, model, log or psd; got {normalization!r}")
    f = as_freq(frequency)
    t, y, e, m, single = prepare(time, flux, mask, err=flux_err)
    power = np.full((y.shape[0], f.size), np.nan)
    use, rows = _valid_rows(t, y, e, m)
    if rows and uniform(f) and _nifty.available():  # one pair of finufft plans for all rows
        same = np.ones(len(rows))
        df = (f[-1] - f[0]) / (f.size - 1)
        power[use] = _nifty.power_rows(rows, f[0] * same, df * same, f.size * same.astype(np.int64), normalization)
    else:
        for i, row in zip(use, rows, strict=True):
            power[i] = ls_row(*row, f, normalization)
    return squeeze(power, single)


def multiband_lomb_scargle(
    time: Any,
    flux: Any,
    flux_err: Any,
    band: Any,
    frequency: Any,
    mask: Any = None,
    nterms_base: int = 1,
    nterms_band: int = 1,
    method: Literal["fast", "flexible"] = "fast",
) -> np.ndarray:
    """Multiband Lomb–Scargle power of one light curve (VanderPlas & Ivezić 2015).

    Implemented by astropy's ``LombScargleMultiband``: a shared base model of ``nterms_base`` harmonics plus
    ``nterms_band`` harmonics and an offset per band, all at one frequency.

    Parameters
    ----------
    time : array-like, Quantity or Time, (T,), d
    flux : array-like, (T,), flux or mag
    flux_err : array-like, (T,) or None, same unit as ``flux``
    band : array-like of str or int, (T,)
        Band label of each point.
    frequency : array-like or Quantity, (F,), 1/day
    mask : array-like of bool, (T,), optional
        ``True`` on points to leave out.
    nterms_base, nterms_band : int
        Harmonics of the shared and of the per-band model.
    method : {'fast', 'flexible'}
        astropy's method: ``'fast'`` (about 1 s for ~300 points × 7e4 frequencies) or the exact least-squares
        ``'flexible'`` (about 20× slower).

    Returns
    -------
    numpy.ndarray, (F,)
        Power (standard normalisation).
    """
    from astropy.timeseries import LombScargleMultiband

    f = as_freq(frequency)
    if np.ndim(flux) != 1:
        raise StellarValueError(f"flux must be 1-D (T,) for the multiband periodogram; got shape {np.shape(flux)}")
    t, y, e, m, _ = prepare(time, flux, mask, err=flux_err)
    b = np.asarray(band)
    if b.shape != (y.shape[1],):
        raise StellarValueError(f"band must have shape ({y.shape[1]},); got {b.shape}")
    ok = ~m[0]
    if ok.sum() < 3:
        raise StellarValueError("need at least 3 valid points for a periodogram")
    ls = LombScargleMultiband(
        t[0, ok], y[0, ok], b[ok], None if e is None else e[0, ok], nterms_base=nterms_base, nterms_band=nterms_band
    )
    if method not in ("fast", "flexible"):
        raise StellarValueError(f"method must be 'fast' or 'flexible'; got {method!r}")
    return np.asarray(ls.power(f, method=method, sb_method=method), dtype=float)


def phase_fold(time: Any, period: Any, t0: Any = 0.0) -> np.ndarray:
    """Phase of each time, in cycles in [0, 1), for a period and reference epoch.

    Parameters
    ----------
    time : array-like, Quantity or Time, (T,) or (N, T), d
    period : float, Quantity or array-like (N,), d
    t0 : float, Quantity or array-like (N,), d
        Epoch of phase 0, in the same time system as ``time``.

    Returns
    -------
    numpy.ndarray, cycles
        Same shape as ``time``.
    """
    t = as_time(time)
    p = np.asarray(to_value(period, u.day, "period"))
    if not (np.all(np.isfinite(p)) and np.all(p > 0)):
        raise StellarValueError("period must be finite and > 0 (d)")
    z = as_time(t0, "t0")
    if t.ndim == 2:
        p, z = (p[:, None] if p.ndim else p), (z[:, None] if z.ndim else z)
    return np.mod(t - z, p) / p


#: Grid size per point above which :func:`peak_period` searches a coarse grid first (see ``_peak_periods``).
_SPARSE = 10
#: Coarse peaks whose neighbourhoods :func:`peak_period` evaluates on the full grid: every one within
#: _WITHIN of the highest (a peak between coarse points keeps > 75 % of its height there), at most _CANDIDATES.
_WITHIN = 0.6
_CANDIDATES = 100


def peak_period(
    time: Any,
    values: Any,
    err: Any = None,
    mask: Any = None,
    min_period: Any = 0.1,
    max_period: Any = None,
    oversampling: float = 5.0,
    workers: int = 1,
) -> np.ndarray:
    """Period of the highest Lomb–Scargle peak of each light curve, each on its own :func:`frequency_grid`.

    The floating-mean power of :func:`lomb_scargle` (nifty-ls, one pair of finufft plans for all rows). Sparse
    light curves (more than 10 grid frequencies per point, e.g. ground-based surveys over years) are searched
    on every ``oversampling // 2``-th frequency first, then the grid frequencies around every coarse peak within
    60 % of the highest are evaluated exactly: the same grid maximum at about half the cost (tested against
    astropy on the full grid).

    Parameters
    ----------
    time : array-like, Quantity or Time, (T,) or (N, T), d
    values : array-like, (T,) or (N, T), flux or mag
    err : array-like, optional, same unit as ``values``
    mask : array-like of bool, optional
        ``True`` on points to leave out.
    min_period, max_period : float or Quantity, d
        Period range (bare floats are days); ``max_period`` defaults to each row's baseline.
    oversampling : float
        Frequency-grid samples per peak width.
    workers : int
        Threads for the periodograms (finufft releases the GIL); 1 by default.

    Returns
    -------
    numpy.ndarray, d, (N,) or scalar
        NaN for light curves with fewer than 3 valid points.
    """
    check_workers(workers)
    t, x, e, m, single = prepare(time, values, mask, err=err)
    period = np.full(x.shape[0], np.nan)
    use, rows = _valid_rows(t, x, e, m)
    if use.size:
        period[use] = _peak_periods(rows, min_period, max_period, oversampling, workers)
    return squeeze(period, single)


def _peak_periods(
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    min_period: Any,
    max_period: Any,
    oversampling: float,
    workers: int = 1,
) -> np.ndarray:
    """:func:`peak_period` of the valid points ``(t, y, dy)`` of each light curve (each with at least 3).

    A sparse light curve (grid more than ``_SPARSE`` times its points: the transforms dominate) is searched on
    every ``stride``-th grid point first, ``stride = oversampling // 2`` (≥ 2 samples per peak width); then the
    grid points within one stride of every coarse peak at least ``_WITHIN`` × the highest (at most
    ``_CANDIDATES`` of them) are evaluated exactly and the highest wins. A peak's highest grid point is at most
    one fine step (≤ 0.2 of the peak width at oversampling 5) from a coarse point, where it keeps > 75 % of its
    height, so this is the full grid's highest point unless more than ``_CANDIDATES`` coarse peaks compete.

    A dense light curve on a well-conditioned grid (``_nifty.single_is_safe``) is searched on its full grid with
    single-precision transforms (about twice as fast), and the grid points within their error bound of the
    highest are settled in double precision (:func:`_best_of_single`): the same grid maximum as the
    double-precision power."""
    baseline = np.array([np.ptp(r[0]) for r in rows])
    fmin, df, nf = grid_params(baseline, min_period, max_period, oversampling)
    if not _nifty.available():
        grids = [fmin[i] + df[i] * np.arange(nf[i]) for i in range(len(rows))]
        return 1.0 / (
            fmin + df * np.array([np.nanargmax(ls_row(*r, g, "standard")) for r, g in zip(rows, grids, strict=True)])
        )
    n_points = np.array([r[0].size for r in rows])
    stride = np.where(nf > _SPARSE * n_points, max(1, int(oversampling // 2)), 1)
    fmax = fmin + df * (nf - 1)
    fast = np.array([s == 1 and _nifty.single_is_safe(r[0], f0, f1)
                     for r, s, f0, f1 in zip(rows, stride, fmin, fmax, strict=True)], dtype=bool)  # fmt: skip
    # shared finufft plans: the same power as _ls_row, without its per-call set-up; the dense rows' search runs
    # in single precision where its error bound holds, and every grid point that may be the highest is checked
    # in double below
    powers: list[np.ndarray] = [np.empty(0)] * len(rows)
    for idx, single in ((np.flatnonzero(fast), True), (np.flatnonzero(~fast), False)):
        if idx.size:
            got = _nifty.power_rows([rows[int(i)] for i in idx], fmin[idx], df[idx] * stride[idx],
                                    (nf[idx] - 1) // stride[idx] + 1, "standard", workers, single)  # fmt: skip
            for i, p in zip(idx.tolist(), got, strict=True):
                powers[i] = p
    best = np.empty(len(rows), dtype=np.int64)
    for i, p in enumerate(powers):
        if fast[i]:
            best[i] = _best_of_single(rows[i], p, fmin[i], df[i])
            continue
        if stride[i] == 1:
            best[i] = np.nanargmax(p)
            continue
        near = np.arange(-stride[i], stride[i] + 1)
        cand = np.unique(np.clip(top_peaks(p, _CANDIDATES, _WITHIN)[:, None] * stride[i] + near, 0, nf[i] - 1))
        best[i] = cand[np.nanargmax(_nifty.exact_power(*rows[i], fmin[i] + df[i] * cand))]
    return 1.0 / (fmin + df * best)


#: At most this many grid points within the single-precision error of the highest are checked by direct sums
#: (~0.3 ms each for 4,000 points); more (a flat spectrum) and the row's power is recomputed in double precision.
_SINGLE_CHECKS = 8


def _best_of_single(row: tuple[np.ndarray, np.ndarray, np.ndarray | None], p: np.ndarray, fmin: float,
                    df: float) -> int:  # fmt: skip
    """Index of the highest power of a row's grid, from its single-precision power ``p``.

    Every grid point whose power may be the highest, within twice the error bound of the highest, is a
    candidate; one candidate is the answer, a few are compared by direct sums in double precision. So the
    index is that of the double-precision power's maximum."""
    top = p.max()  # NaN if any power is NaN: then the double-precision power decides
    cand = np.flatnonzero(p >= top - 2 * _nifty.single_error(p.size)) if np.isfinite(top) else np.empty(0)
    if cand.size == 1:
        return int(cand[0])
    if 1 < cand.size <= _SINGLE_CHECKS:
        return int(cand[np.nanargmax(_nifty.exact_power(*row, fmin + df * cand))])
    exact = _nifty.power_rows([row], np.array([fmin]), np.array([df]), np.array([p.size]))[0]
    return int(np.nanargmax(exact))
