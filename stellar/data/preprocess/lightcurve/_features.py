"""Variability features of light curves, and their valid points packed into fixed-length sequences."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np

from stellar.data.preprocess._lc_rows import prepare, squeeze
from stellar.data.preprocess.lightcurve._clean import (
    MAD_TO_SIGMA,
    _median_sorted,
    _nanmedian_rows,
    _quantile_sorted,
    _sorted_rows,
)
from stellar.data.preprocess.lightcurve._packing import _Packing
from stellar.data.preprocess.lightcurve._periodograms import _peak_periods
from stellar.data.preprocess.period import best_period
from stellar.errors import StellarValueError
from stellar.utils.threads import check_workers

# records keep the public module's name, as before the split (the row checks log under it too)
log = logging.getLogger(__package__)


def features(
    time: Any,
    values: Any,
    err: Any,
    mask: Any = None,
    min_period: Any = 0.1,
    max_period: Any = None,
    oversampling: float = 5.0,
    period_method: Literal["lomb_scargle", "multiharmonic"] = "lomb_scargle",
    workers: int = 1,
) -> dict[str, np.ndarray]:
    """Variability features of one band, per light curve (call once per band for multiband data).

    Parameters
    ----------
    time : array-like, Quantity or Time, (T,) or (N, T), d
    values : array-like, (T,) or (N, T), mag or flux
    err : array-like, same shape and unit as ``values``
    mask : array-like of bool, optional
        ``True`` on points to leave out.
    min_period, max_period : float or Quantity, d
        Period search range (bare floats are days); ``max_period`` defaults to each row's baseline.
    oversampling : float
        Frequency-grid samples per peak width.
    period_method : {'lomb_scargle', 'multiharmonic'}
        ``'lomb_scargle'``: the highest Lomb–Scargle peak (:func:`peak_period`).
        ``'multiharmonic'``: :func:`best_period` (aliases, halves and doubles judged by a multi-harmonic fit; far
        fewer one-day aliases and half-period eclipsing binaries, at ~0.1-0.5 s per light curve).
    workers : int
        Threads for the Lomb–Scargle periodograms (finufft releases the GIL); 1 by default.

    Returns
    -------
    dict of numpy.ndarray, each (N,) (or scalar arrays for one light curve)
        ``period`` (d, see ``period_method``), ``amplitude`` (half the 5–95 percentile range, unit of ``values``),
        ``skewness``, ``kurtosis`` (excess), ``mad_std`` (1.4826 × MAD, unit of ``values``), ``eta`` (von
        Neumann ratio of time-ordered successive differences to the variance), ``stetson_k``,
        ``beyond_1std`` (fraction more than one standard deviation from the weighted mean), ``n_points``.
        Rows with fewer than 5 valid points give NaN.
    """
    if err is None:
        raise StellarValueError("err must be given (same unit as values); Stetson K and weights need it")
    if period_method not in ("lomb_scargle", "multiharmonic"):
        raise StellarValueError(f"period_method must be 'lomb_scargle' or 'multiharmonic'; got {period_method!r}")
    check_workers(workers)
    t, x, e, m, single = prepare(time, values, mask, err=err)
    if e is None:
        raise StellarValueError("err must be given")
    pack = _Packing(t, m)  # each row's valid points in time order (for eta and the periodograms)
    n = pack.n.astype(float)
    ok = n >= 5
    nn = np.where(ok, n, np.nan)
    with np.errstate(all="ignore"):
        # masked entries enter the sums as zeros: plain sums and products are several times faster than the
        # nan-functions and than ** 3 and ** 4
        x = np.where(m, np.nan, x)
        x0 = np.where(m, 0.0, x)
        mean = x0.sum(axis=1) / nn
        d = np.where(m, 0.0, x - mean[:, None])
        d2 = d * d
        var = d2.sum(axis=1) / (nn - 1)
        std = np.sqrt(var)
        m2 = d2.sum(axis=1) / nn
        skew = (d2 * d).sum(axis=1) / nn / m2**1.5
        kurt = (d2 * d2).sum(axis=1) / nn / m2**2 - 3.0
        xs, nv = _sorted_rows(x)
        p5, p95 = (_quantile_sorted(xs, nv, q) for q in (0.05, 0.95))
        med = _median_sorted(xs, nv)
        mad_std = MAD_TO_SIGMA * _nanmedian_rows(np.abs(x - med[:, None]))
        tv, xv, ev = pack.t, pack.pack(x), pack.pack(e)
        step = np.diff(xv)
        same = pack.row[1:] == pack.row[:-1]  # successive points of one light curve, in time order
        eta = np.bincount(pack.row[1:], np.where(same, step * step, 0.0), x.shape[0]) / (nn - 1) / var
        w = np.where(m, 0.0, 1.0 / e**2)
        wmean = (w * x0).sum(axis=1) / w.sum(axis=1)
        delta = np.where(m, 0.0, np.sqrt(nn / (nn - 1))[:, None] * (x0 - wmean[:, None]) / e)
        stetson_k = np.abs(delta).sum(axis=1) / nn / np.sqrt((delta * delta).sum(axis=1) / nn)
        beyond = (np.abs(x - wmean[:, None]) > std[:, None]).sum(axis=1) / nn
    period = np.full(x.shape[0], np.nan)
    rows = np.flatnonzero(ok)
    valid = list(zip(pack.rows(tv), pack.rows(xv), pack.rows(ev), strict=True))
    if period_method == "multiharmonic":
        for i in rows:
            period[i] = best_period(*valid[i], min_period=min_period, max_period=max_period,
                                    oversampling=oversampling)  # fmt: skip
    elif rows.size:
        period[rows] = _peak_periods([valid[i] for i in rows], min_period, max_period, oversampling, workers)
    out = {
        "period": period,
        "amplitude": 0.5 * (p95 - p5),
        "skewness": skew,
        "kurtosis": kurt,
        "mad_std": mad_std,
        "eta": eta,
        "stetson_k": stetson_k,
        "beyond_1std": beyond,
    }
    out = {k: np.where(ok, v, np.nan) for k, v in out.items()}
    out["n_points"] = n.astype(np.int64)
    return {k: squeeze(v, single) for k, v in out.items()}


def to_fixed_length(time: Any, flux: Any, mask: Any, n: int, flux_err: Any = None) -> tuple[np.ndarray, ...]:
    """Pack the valid points of each light curve, in time order, into ``n`` slots (pad or truncate).

    Parameters
    ----------
    time : array-like, Quantity or Time, (T,) or (N, T), d
    flux : array-like, (T,) or (N, T)
    mask : array-like of bool or None
        ``True`` on points to drop.
    n : int
        Output length; light curves with more valid points keep their first ``n`` (truncation is logged).
    flux_err : array-like, optional
        Packed the same way and returned before the mask when given.

    Returns
    -------
    time, flux[, flux_err] : numpy.ndarray, (N, n) or (n,); 0 in padded slots
    mask : numpy.ndarray of bool, ``True`` in padded slots
    """
    if not (isinstance(n, int | np.integer) and n > 0):
        raise StellarValueError(f"n must be a positive int; got {n!r}")
    t, x, e, m, single = prepare(time, flux, mask, err=flux_err)
    pack = _Packing(t, m)
    t, x, ee = (pack.front_rows(pack.pack(a)) for a in (t, x, np.zeros_like(x) if e is None else e))
    m = ~pack.front
    n_trunc = int(np.count_nonzero(pack.n > n))
    if n_trunc:
        log.info("to_fixed_length: truncated %d of %d light curves to %d points", n_trunc, m.shape[0], n)
    pad = max(0, n - m.shape[1])

    def fit(a: np.ndarray, fill: Any) -> np.ndarray:
        return np.pad(a[:, :n], ((0, 0), (0, pad)), constant_values=fill)

    mo = fit(m, True)
    res = [np.where(mo, 0.0, fit(a, 0.0)) for a in (t, x, ee)]
    out = (res[0], res[1]) + ((res[2],) if e is not None else ()) + (mo,)
    return tuple(squeeze(a, single) for a in out)
