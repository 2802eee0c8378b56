"""Light-curve preprocessing: pure, batch-first array functions shared by datamodules, simulators and the server.

Light curves travel as padded ``(N, T)`` arrays (one light curve per row; a 1-D ``(T,)`` array is one light
curve) with a boolean ``mask`` that is ``True`` on bad or padded points, as in the dataset store. Times are in
days (BJD/BKJD/BTJD/MJD offsets alike; only differences matter here); an astropy ``Quantity`` of any time unit
is accepted wherever a time, period or window is, and frequencies are in 1/day (``Quantity`` accepted). Flux or
magnitude values carry arbitrary units. Every function returns new arrays and never mutates its inputs; points
newly masked are counted and logged at INFO.

Typical chain for a Kepler/TESS light curve::

    time, flux, err, quality = from_lightkurve(lc)
    mask = quality_mask(quality, mission="kepler") | ~np.isfinite(flux)
    flux, err, mask = normalise(flux, err, mask)
    flat, trend, mask = detrend_biweight(time, flux, mask, window=0.75)
    mask = sigma_clip(flat, mask, sigma=5.0)
    feats = features(time, flat, err, mask)
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal, NamedTuple

import astropy.units as u
import numpy as np
from astropy.time import Time

from stellar.errors import StellarValueError
from stellar.utils.units import to_value

log = logging.getLogger(__name__)

#: Normal-consistent scale of the median absolute deviation.
MAD_TO_SIGMA = 1.482602218505602
_FloatArray = np.ndarray


# ----------------------------------------------------------------------------------------------- validation
def _as_time(x: Any, name: str = "time") -> np.ndarray:
    """Days as float; an astropy ``Time`` becomes MJD, a ``Quantity`` is converted, a bare float is days."""
    if isinstance(x, Time):
        return np.asarray(x.mjd, dtype=float)
    return to_value(x, u.day, name)


def _as_freq(x: Any, name: str = "frequency") -> np.ndarray:
    f = to_value(x, 1 / u.day, name)
    if f.ndim != 1 or f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise StellarValueError(f"{name} must be a non-empty 1-D array of finite, positive frequencies (1/day)")
    return f


def _plain(x: Any, name: str) -> np.ndarray:
    if isinstance(x, u.Quantity):
        return to_value(x, x.unit, name)
    return to_value(x, u.dimensionless_unscaled, name)


def _rows(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 1:
        return x[None, :]
    if x.ndim != 2:
        raise StellarValueError(f"{name} must be 1-D (T,) or 2-D (N, T); got shape {x.shape}")
    return x


def _prepare(
    time: Any, values: Any, mask: Any, *, vname: str = "flux", err: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, bool]:
    """Broadcast inputs to (N, T); add non-finite points to the mask (counted, logged). Returns copies."""
    v = _rows(_plain(values, vname), vname)
    single = np.ndim(values) == 1
    t = np.broadcast_to(_rows(_as_time(time), "time"), v.shape).astype(float)
    m = _mask_like(mask, v)
    e = None if err is None else np.broadcast_to(_rows(_plain(err, "flux_err"), "flux_err"), v.shape).astype(float)
    bad = ~np.isfinite(v) | ~np.isfinite(t)
    if e is not None:
        bad |= ~np.isfinite(e) | (e <= 0)
    _log_new(m, m | bad, "non-finite time/value or non-positive error")
    return t, v.astype(float), e, m | bad, single


def _mask_like(mask: Any, v: np.ndarray) -> np.ndarray:
    if mask is None:
        return np.zeros(v.shape, dtype=bool)
    m = np.asarray(mask)
    if m.dtype != bool:
        raise StellarValueError(f"mask must be boolean (True = bad point); got dtype {m.dtype}")
    try:
        return np.broadcast_to(_rows(m, "mask"), v.shape).copy()
    except ValueError as err:
        raise StellarValueError(f"mask has shape {m.shape}; expected {v.shape}") from err


def _log_new(old: np.ndarray, new: np.ndarray, why: str) -> None:
    n = int(np.count_nonzero(new & ~old))
    if n:
        log.info("masked %d of %d light-curve points: %s", n, new.size, why)


def _out(x: np.ndarray, single: bool) -> np.ndarray:
    return x[0] if single else x


# ----------------------------------------------------------------------------------------------- boundary
def from_lightkurve(lc: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plain arrays from a ``lightkurve.LightCurve``.

    Parameters
    ----------
    lc : lightkurve.LightCurve
        Any light curve; its time is taken in days in its own scale and format (e.g. BKJD or BTJD).

    Returns
    -------
    time : numpy.ndarray of float, d
    flux, flux_err : numpy.ndarray of float, the light curve's flux unit (NaN where masked)
    quality : numpy.ndarray of int
        The QUALITY bits, zeros when the light curve has none.
    """
    try:
        time = np.asarray(lc.time.value, dtype=float)
        flux: np.ndarray = np.ma.filled(np.ma.asarray(u.Quantity(lc.flux).value, dtype=float), np.nan)
        err: np.ndarray = np.ma.filled(np.ma.asarray(u.Quantity(lc.flux_err).value, dtype=float), np.nan)
    except AttributeError as err_:
        raise StellarValueError(f"lc must be a lightkurve.LightCurve; got {type(lc).__name__}") from err_
    quality = np.asarray(lc["quality"], dtype=np.int64) if "quality" in lc.colnames else np.zeros(len(time), int)
    return time, flux, err, quality


def quality_mask(
    quality: Any, bitmask: int | str = "default", mission: Literal["kepler", "k2", "tess"] = "kepler"
) -> np.ndarray:
    """Flag cadences whose QUALITY bits intersect a lightkurve bitmask.

    Parameters
    ----------
    quality : array-like of int, (T,) or (N, T)
        Kepler/K2 ``SAP_QUALITY`` or TESS ``QUALITY`` column.
    bitmask : int or {'none', 'default', 'hard', 'hardest'}
        lightkurve's ``KeplerQualityFlags``/``TessQualityFlags`` bitmask name, or an explicit integer.
    mission : {'kepler', 'k2', 'tess'}
        Which flag definitions to use.

    Returns
    -------
    numpy.ndarray of bool
        ``True`` on bad cadences (the mask convention of this module), same shape as ``quality``.
    """
    # lightkurve costs seconds to import; only this boundary needs it
    from lightkurve.utils import KeplerQualityFlags, TessQualityFlags

    flags = {"kepler": KeplerQualityFlags, "k2": KeplerQualityFlags, "tess": TessQualityFlags}.get(mission)
    if flags is None:
        raise StellarValueError(f"mission must be 'kepler', 'k2' or 'tess'; got {mission!r}")
    if isinstance(bitmask, str) and bitmask not in flags.OPTIONS:
        raise StellarValueError(f"bitmask must be an int or one of {sorted(flags.OPTIONS)}; got {bitmask!r}")
    q = np.asarray(quality)
    if not np.issubdtype(q.dtype, np.integer):
        raise StellarValueError(f"quality must be an integer array; got dtype {q.dtype}")
    bad = ~flags.create_quality_mask(q.ravel(), bitmask=bitmask).reshape(q.shape)
    log.info("quality_mask: %d of %d cadences flagged (bitmask=%r)", int(bad.sum()), bad.size, bitmask)
    return np.asarray(bad, dtype=bool)


# ----------------------------------------------------------------------------------------------- cleaning
def _robust_loc_scale(x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xn = np.where(m, np.nan, x)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-masked rows give NaN, handled by callers
        med = np.nanmedian(xn, axis=-1)
        mad = np.nanmedian(np.abs(xn - med[..., None]), axis=-1)
    return med, MAD_TO_SIGMA * mad


def sigma_clip(flux: Any, mask: Any = None, sigma: float = 5.0, max_iter: int = 5) -> np.ndarray:
    """Robust iterative sigma clipping about the per-row median, with σ = 1.4826 × MAD.

    Parameters
    ----------
    flux : array-like, (T,) or (N, T), any unit
    mask : array-like of bool, optional
        ``True`` on points already bad.
    sigma : float
        Clip threshold in robust standard deviations (two-sided).
    max_iter : int
        Maximum number of clipping passes; stops early when nothing changes.

    Returns
    -------
    numpy.ndarray of bool
        New mask: the input mask, non-finite points and clipped points.
    """
    if not sigma > 0 or max_iter < 1:
        raise StellarValueError(f"sigma must be > 0 and max_iter >= 1; got sigma={sigma}, max_iter={max_iter}")
    x = _rows(_plain(flux, "flux"), "flux")
    m0 = _mask_like(mask, x) | ~np.isfinite(x)
    m = m0.copy()
    for _ in range(max_iter):
        med, s = _robust_loc_scale(x, m)
        with np.errstate(invalid="ignore"):
            new = m | (np.abs(x - med[:, None]) > sigma * s[:, None])
        if np.array_equal(new, m):
            break
        m = new
    _log_new(m0, m, f"sigma clip at {sigma} robust sigma")
    return _out(m, np.ndim(flux) == 1)


def normalise(flux: Any, flux_err: Any, mask: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Divide each light curve (and its errors) by the median of its unmasked flux.

    Parameters
    ----------
    flux, flux_err : array-like, (T,) or (N, T), same flux unit
    mask : array-like of bool, optional
        ``True`` on bad points; they do not enter the median.

    Returns
    -------
    flux, flux_err : numpy.ndarray, dimensionless (relative flux)
    mask : numpy.ndarray of bool
        Input mask plus non-finite points; whole rows whose median is not finite and positive are masked.
    """
    x = _rows(_plain(flux, "flux"), "flux")
    e = np.broadcast_to(_rows(_plain(flux_err, "flux_err"), "flux_err"), x.shape)
    m0 = _mask_like(mask, x)
    m = m0 | ~np.isfinite(x) | ~np.isfinite(e)
    med, _ = _robust_loc_scale(x, m)
    bad_row = ~(np.isfinite(med) & (med > 0))
    m = m | bad_row[:, None]
    scale = np.where(bad_row, 1.0, med)[:, None]
    _log_new(m0, m, "non-finite flux/error or a row median that is not positive")
    single = np.ndim(flux) == 1
    return _out(x / scale, single), _out(e / scale, single), _out(m, single)


# ----------------------------------------------------------------------------------------------- detrending
def _biweight_row(
    t: np.ndarray,
    y: np.ndarray,
    window: float,
    c: float,
    n_iter: int,
    min_points: int,
    ftol: float,
    spacing: float | None = None,
) -> np.ndarray:
    """Trend at each of the sorted valid points ``t``; NaN where a window holds fewer than ``min_points``.

    With ``spacing`` (d), the biweight is evaluated only at knots (the first point of every ``spacing`` bin and
    the ends of every gap-free segment) and interpolated linearly in between."""
    seg = np.concatenate([[0], np.cumsum(np.diff(t) > window)])  # a gap wider than the window starts a segment
    key_all = t + seg * (4.0 * window + (t[-1] - t[0]))  # spread segments apart so no window spans two
    if spacing:
        first = np.r_[True, seg[1:] != seg[:-1]]
        last = np.r_[seg[1:] != seg[:-1], True]
        start = np.maximum.accumulate(np.where(first, np.arange(t.size), 0))
        bucket = np.floor((t - t[start]) / spacing)
        new_bucket = np.r_[True, (bucket[1:] != bucket[:-1]) | first[1:]]
        knots = np.flatnonzero(new_bucket | last)
    else:
        knots = np.arange(t.size)
    key = key_all[knots]
    lo = np.searchsorted(key_all, key - window / 2, side="left")
    hi = np.searchsorted(key_all, key + window / 2, side="right")
    count = hi - lo
    k = int(count.max())
    idx = lo[:, None] + np.arange(k)[None, :]
    inside = idx < hi[:, None]
    w = np.where(inside, y[np.minimum(idx, len(y) - 1)], np.nan)
    w.sort(axis=1)  # NaNs sort last, so a median is a gather at the middle of each row's count
    wz = np.where(np.isnan(w), 0.0, w)

    def _median(a: np.ndarray, n: np.ndarray) -> np.ndarray:
        rows = np.arange(len(n))
        return 0.5 * (a[rows, (n - 1) // 2] + a[rows, n // 2])

    loc = _median(w, count)
    act = np.arange(len(key))  # iterate only the locations that have not converged yet
    for _ in range(n_iter):
        wa, la = w[act], loc[act]
        dev = np.abs(wa - la[:, None])
        dev.sort(axis=1)
        mad = _median(dev, count[act])
        with np.errstate(invalid="ignore", divide="ignore"):
            uu = (wa - la[:, None]) / (c * mad[:, None])
            wt = np.where(np.abs(uu) < 1, (1 - uu * uu) ** 2, 0.0)  # NaN slots compare False: weight 0
            wsum = wt.sum(axis=1)
            new = np.where(wsum > 0, (wt * wz[act]).sum(axis=1) / wsum, la)  # MAD = 0: keep the median
        loc[act] = new
        act = act[np.abs(new - la) > ftol * np.abs(la)]
        if act.size == 0:
            break
    trend = np.where(count >= min_points, loc, np.nan)
    return trend if knots.size == t.size else np.interp(key_all, key, trend)


def detrend_biweight(
    time: Any,
    flux: Any,
    mask: Any = None,
    window: Any = 0.5,
    c: float = 5.0,
    min_points: int = 5,
    n_iter: int = 10,
    ftol: float = 1e-6,
    knot_spacing: float | None = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Divide out a time-windowed Tukey biweight location (the robust sliding filter of wotan's default).

    At each unmasked point the trend is the iterated biweight location of the unmasked fluxes within
    ±``window``/2 in time. Windows never span a gap longer than ``window``; points whose window holds fewer
    than ``min_points`` values get no trend and are masked (counted, logged).

    Parameters
    ----------
    time : array-like, Quantity or Time, (T,) or (N, T), d
        Times (need not be sorted).
    flux : array-like, (T,) or (N, T), relative flux
    mask : array-like of bool, optional
        ``True`` on bad points; they neither get nor contribute a trend.
    window : float or Quantity, d
        Full window width (bare floats are days). About 3× the longest transit to keep.
    c : float
        Biweight tuning constant in MADs (wotan's default 5).
    min_points : int
        Fewest points a window must hold.
    n_iter : int
        Maximum biweight iterations.
    ftol : float
        Stop iterating once every location changes by at most ``ftol`` relative (wotan's default 1e-6).
    knot_spacing : float or None
        Evaluate the biweight at knots ``knot_spacing × window`` apart (and at every segment's ends) and
        interpolate linearly in between: the trend varies on the scale of the window, so at the default 0.05 the
        interpolation error is ~1e-3 of the trend's curvature over a window, for ~20× less work on Kepler
        cadences. ``None`` evaluates it at every point.

    Returns
    -------
    detrended : numpy.ndarray, relative flux (``flux / trend``; NaN where masked)
    trend : numpy.ndarray, flux unit (NaN where masked)
    mask : numpy.ndarray of bool

    Examples
    --------
    >>> t = np.arange(0, 10, 0.02); f = 1 + 0.01 * np.sin(t)
    >>> flat, trend, m = detrend_biweight(t, f, window=0.5)
    >>> bool(np.nanmax(np.abs(flat[25:-25] - 1)) < 1e-4)  # the half-windows at the edges lag a slope
    True
    """
    win = float(to_value(window, u.day, "window"))
    if not (np.isfinite(win) and win > 0):
        raise StellarValueError(f"window must be a positive time (d); got {window}")
    if knot_spacing is not None and not 0 < knot_spacing <= 1:
        raise StellarValueError(f"knot_spacing must be None or in (0, 1] (fraction of the window); got {knot_spacing}")
    if not c > 0 or min_points < 1 or n_iter < 0:
        raise StellarValueError(f"need c > 0, min_points >= 1, n_iter >= 0; got {c}, {min_points}, {n_iter}")
    t, f, _, m0, single = _prepare(time, flux, mask)
    trend = np.full(f.shape, np.nan)
    for i in range(f.shape[0]):
        good = np.flatnonzero(~m0[i])
        if good.size == 0:
            continue
        order = good[np.argsort(t[i, good], kind="stable")]
        spacing = None if knot_spacing is None else knot_spacing * win
        trend[i, order] = _biweight_row(t[i, order], f[i, order], win, c, n_iter, min_points, ftol, spacing)
    m = m0 | ~np.isfinite(trend) | (trend == 0)
    _log_new(m0, m, f"fewer than {min_points} points within the {win} d biweight window")
    with np.errstate(all="ignore"):
        flat = np.where(m, np.nan, f / trend)
    trend = np.where(m, np.nan, trend)
    return _out(flat, single), _out(trend, single), _out(m, single)


# ----------------------------------------------------------------------------------------------- periodograms
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
    t = _as_time(time)
    baseline = float(np.nanmax(t) - np.nanmin(t)) if np.isfinite(t).any() else 0.0
    if not baseline > 0:
        raise StellarValueError("time must span a positive baseline (d)")
    pmin = float(to_value(min_period, u.day, "min_period"))
    pmax = baseline if max_period is None else float(to_value(max_period, u.day, "max_period"))
    if not (0 < pmin < pmax) or not oversampling > 0:
        raise StellarValueError(
            f"need 0 < min_period < max_period (d) and oversampling > 0; got {pmin}, {pmax}, {oversampling}"
        )
    fmin, fmax = 1.0 / pmax, 1.0 / pmin
    n = int(np.ceil((fmax - fmin) * oversampling * baseline)) + 1
    return np.linspace(fmin, fmax, max(n, 2))


def _uniform(f: np.ndarray) -> bool:
    if f.size < 2:
        return False
    d = np.diff(f)
    return bool(np.all(d > 0) and np.allclose(d, d.mean(), rtol=1e-9, atol=0))


def _ls_row(t: np.ndarray, y: np.ndarray, e: np.ndarray | None, f: np.ndarray, normalization: str) -> np.ndarray:
    if _uniform(f):
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

    method = "fast" if _uniform(f) else "cython"
    return np.asarray(LombScargle(t, y, e, normalization=normalization).power(f, method=method), dtype=float)


def lomb_scargle(
    time: Any, flux: Any, flux_err: Any = None, frequency: Any = None, mask: Any = None, normalization: str = "standard"
) -> np.ndarray:
    """Generalised (floating-mean) Lomb–Scargle power, one band, batch-first.

    Uses nifty-ls (non-uniform FFT, matches astropy's exact power to ~1e-9) on a uniform grid; astropy's
    ``LombScargle`` otherwise.

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
    f = _as_freq(frequency)
    t, y, e, m, single = _prepare(time, flux, mask, err=flux_err)
    power = np.full((y.shape[0], f.size), np.nan)
    for i in range(y.shape[0]):
        ok = ~m[i]
        if ok.sum() >= 3:
            power[i] = _ls_row(t[i, ok], y[i, ok], None if e is None else e[i, ok], f, normalization)
    return _out(power, single)


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

    f = _as_freq(frequency)
    if np.ndim(flux) != 1:
        raise StellarValueError(f"flux must be 1-D (T,) for the multiband periodogram; got shape {np.shape(flux)}")
    t, y, e, m, _ = _prepare(time, flux, mask, err=flux_err)
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
    t = _as_time(time)
    p = np.asarray(to_value(period, u.day, "period"))
    if not (np.all(np.isfinite(p)) and np.all(p > 0)):
        raise StellarValueError("period must be finite and > 0 (d)")
    z = _as_time(t0, "t0")
    if t.ndim == 2:
        p, z = (p[:, None] if p.ndim else p), (z[:, None] if z.ndim else z)
    return np.mod(t - z, p) / p


# ----------------------------------------------------------------------------------------------- period finding
class PeriodSearch(NamedTuple):
    """Everything :func:`best_period` looked at for one light curve.

    Attributes
    ----------
    period : float, d
        The chosen period (NaN when there were too few points).
    frequency : numpy.ndarray, (F,), 1/day
        The search grid.
    power : numpy.ndarray, (F,)
        Combined single-harmonic power: per-band floating-mean Lomb–Scargle power weighted by each band's χ²
        about its mean (the multiband periodogram with independent per-band amplitudes and phases).
    candidates : numpy.ndarray, (K,), 1/day
        Refined candidate frequencies (peaks, their ±1/day aliases and their halves and doubles).
    bic : numpy.ndarray, (K,)
        ``N ln χ² + n_params ln N`` of the multi-harmonic fit at each candidate (the BIC with the error scale
        free, so underestimated errors or an imperfect shape do not reward extra harmonics); the smallest wins.
    n_params : numpy.ndarray of int, (K,)
        Parameters of each candidate's model (bands' offsets plus harmonic terms).
    """

    period: float
    frequency: np.ndarray
    power: np.ndarray
    candidates: np.ndarray
    bic: np.ndarray
    n_params: np.ndarray


def _design(t: np.ndarray, b: np.ndarray, n_bands: int, f: np.ndarray, n_base: int, n_band: int) -> np.ndarray:
    """Multi-harmonic design matrices (F, T, P) at frequencies ``f``: per-band offsets, ``n_base`` shared harmonics,
    and ``n_band`` harmonics per band beyond the first (the first band's are the shared ones, which avoids the
    degeneracy of base plus all-band terms)."""
    arg = 2 * np.pi * f[:, None] * (t - t.mean())[None, :]  # (F, T); centred times keep the phases accurate
    c1, s1 = np.cos(arg), np.sin(arg)
    harm = [(c1, s1)]
    for _ in range(1, max(n_base, n_band)):  # angle addition: cheaper than more trigonometry
        c, s = harm[-1]
        harm.append((c * c1 - s * s1, s * c1 + c * s1))
    cols = [np.broadcast_to((b == j).astype(float), arg.shape) for j in range(n_bands)]
    for k in range(n_base):
        cols += list(harm[k])
    for j in range(1, n_bands):
        sel = (b == j).astype(float)
        for k in range(n_band):
            cols += [sel * harm[k][0], sel * harm[k][1]]
    return np.stack(cols, axis=-1)


def _chi2(t: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, nb: int, f: np.ndarray, terms: tuple) -> tuple:
    """Weighted least-squares χ² of the multi-harmonic model at each frequency ``f`` (F,); and the parameter count."""
    a = _design(t, b, nb, f, *terms) * np.sqrt(w)[None, :, None]  # whitened: χ² = |a c - y √w|²
    yw = y * np.sqrt(w)
    at = a.transpose(0, 2, 1)
    lhs = at @ a
    rhs = at @ yw
    lhs += 1e-10 * np.trace(lhs, axis1=1, axis2=2)[:, None, None] / lhs.shape[1] * np.eye(lhs.shape[1])
    coef = np.linalg.solve(lhs, rhs[..., None])
    resid = yw[None, :] - (a @ coef)[..., 0]  # explicit residuals: |yw|² - rhs·coef cancels catastrophically
    return np.einsum("ft,ft->f", resid, resid), a.shape[-1]


def _refine(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, nb: int, f0: float, half: float, terms: tuple
) -> tuple[float, float]:
    """Minimise χ²(f) within ``f0 ± half``: two zooming passes of a 7-point grid, then a parabola."""
    lo, hi = f0 - half, f0 + half
    best_f, best_c = f0, np.inf
    for _ in range(2):
        grid = np.linspace(lo, hi, 7)
        grid = grid[grid > 0]
        c, _ = _chi2(t, y, w, b, nb, grid, terms)
        i = int(np.argmin(c))
        best_f, best_c = float(grid[i]), float(c[i])
        step = grid[1] - grid[0]
        lo, hi = best_f - step, best_f + step
    if 0 < i < len(grid) - 1:  # vertex of the parabola through the last pass's minimum and its neighbours
        c0, c1, c2 = c[i - 1], c[i], c[i + 1]
        den = c0 - 2 * c1 + c2
        if den > 0:
            shift = 0.5 * (c0 - c2) / den
            f_new = best_f + shift * step
            c_new, _ = _chi2(t, y, w, b, nb, np.array([f_new]), terms)
            if c_new[0] < best_c:
                best_f, best_c = float(f_new), float(c_new[0])
    return best_f, best_c


def _combined_power(t: np.ndarray, y: np.ndarray, e: np.ndarray, b: np.ndarray, nb: int, f: np.ndarray) -> np.ndarray:
    """Σ_b χ²₀,b P_b(f) / Σ_b χ²₀,b over bands with at least 5 points (P_b: floating-mean Lomb–Scargle)."""
    use = [j for j in range(nb) if np.count_nonzero(b == j) >= 5]
    if not use:
        return np.full(f.size, np.nan)
    sel = b[None, :] == np.array(use)[:, None]  # (B, T)
    w = np.where(sel, 1.0 / e**2, 0.0)
    mean = (w * y).sum(axis=1) / w.sum(axis=1)
    chi0 = (w * (y[None, :] - mean[:, None]) ** 2).sum(axis=1)
    # one batched transform on the shared times: other bands' points enter with zero weight (error 1e150)
    order = np.argsort(t, kind="stable")
    yy = np.where(sel, y, 0.0)[:, order]
    ee = np.where(sel, e, 1e150)[:, order]
    try:
        import nifty_ls
    except ImportError:
        nifty_ls = None
    if nifty_ls is not None and _uniform(f):
        # one thread: light curves are the parallel axis, and finufft's threads cost more than they save here
        res = nifty_ls.lombscargle(t[order], yy, ee, fmin=float(f[0]), fmax=float(f[-1]), Nf=f.size, nthreads=1)
        power = np.asarray(res.power, dtype=float).reshape(len(use), f.size)
    else:
        power = np.stack([_ls_row(t[s], y[s], e[s], f, "standard") for s in sel])
    return np.asarray((chi0[:, None] * power).sum(axis=0) / chi0.sum())


def _peaks(p: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest local maxima of ``p``."""
    inner = np.flatnonzero((p[1:-1] >= p[:-2]) & (p[1:-1] >= p[2:])) + 1
    if inner.size == 0:
        return np.array([int(np.nanargmax(p))])
    return inner[np.argsort(p[inner])[::-1][:k]]


def _search_row(
    t: np.ndarray, y: np.ndarray, e: np.ndarray, b: np.ndarray, nb: int, grid: np.ndarray, opts: dict
) -> PeriodSearch:
    n_terms, n_band = opts["n_terms"], (opts["n_terms_band"] if nb > 1 else 0)

    def n_par(k: int) -> int:
        return nb + 2 * k + 2 * n_band * (nb - 1)

    power = _combined_power(t, y, e, b, nb, grid)
    df = grid[1] - grid[0]
    w = 1.0 / e**2
    seeds: list[tuple[float, int]] = []  # (frequency, shared harmonics)
    win = max(int(np.ceil(opts["alias_window"] / df)), 1)
    # only offsets at which the sampling window has power make aliases (a nightly survey, not Kepler or TESS)
    aliases = [d for d in opts["aliases"] if abs(np.mean(np.exp(2j * np.pi * d * t))) > opts["alias_min_window"]]
    for i in _peaks(power, opts["n_peaks"]):
        f = float(grid[i])
        seeds.append((f, n_terms))
        for d in aliases:  # the window's aliases: the strongest peak near f ± d (a sidereal day is 1.0027/d)
            for fa in (f + d, abs(f - d)):
                j = int(np.searchsorted(grid, fa))
                if win < j < grid.size - win:
                    seeds.append((float(grid[j - win + int(np.nanargmax(power[j - win : j + win + 1]))]), n_terms))
        for h in opts["harmonics"]:  # eclipsing binaries with near-equal minima peak at twice their frequency
            k = max(n_terms, int(np.ceil(n_terms / h)))  # reach the same highest frequency: f/2 nests f
            if grid[0] <= f * h <= grid[-1] and t.size >= opts["min_points_per_param"] * n_par(k):
                seeds.append((f * h, k))
    uniq = {(round(f / (0.5 * df)), k): (f, k) for f, k in seeds}
    y = y.copy()
    for j in range(nb):  # remove each band's weighted mean: keeps the normal equations well scaled
        s = b == j
        y[s] -= np.sum(w[s] * y[s]) / np.sum(w[s])
    cand, bic, params = [], [], []
    for f0, k in uniq.values():
        f, c = _refine(t, y, w, b, nb, f0, 1.5 * df, (k, n_band))
        p = n_par(k)
        cand.append(f)
        bic.append(t.size * np.log(max(c, 1e-300)) + p * np.log(t.size))
        params.append(p)
    best = int(np.argmin(bic))
    # halving test: the winner's model at f is nested in one at f/2 with twice the harmonics; an eclipsing binary's
    # unequal minima (odd harmonics of its true frequency) pay for the extra terms, noise does not
    f_best, k_best = cand[best], int((params[best] - nb - 2 * n_band * (nb - 1)) // 2)
    while 2 * k_best <= opts["max_terms"] and f_best / 2 >= grid[0]:
        k2 = 2 * k_best
        p = n_par(k2)
        if t.size < opts["min_points_per_param"] * p:  # the BIC needs N >> p; sparse data would fit noise
            break
        f, c = _refine(t, y, w, b, nb, f_best / 2, 0.5 * df, (k2, n_band))
        cand.append(f)
        bic.append(t.size * np.log(max(c, 1e-300)) + p * np.log(t.size))
        params.append(p)
        if bic[-1] >= bic[best]:
            break
        best, f_best, k_best = len(cand) - 1, f, k2
    return PeriodSearch(float(1.0 / cand[best]), grid, power, np.array(cand), np.array(bic), np.array(params))


def best_period(
    time: Any,
    values: Any,
    err: Any = None,
    mask: Any = None,
    band: Any = None,
    *,
    min_period: Any = 0.1,
    max_period: Any = None,
    oversampling: float = 5.0,
    n_terms: int = 3,
    n_terms_band: int = 1,
    n_peaks: int = 5,
    aliases: tuple[float, ...] = (1.0,),
    alias_window: float = 0.01,
    alias_min_window: float = 0.2,
    harmonics: tuple[float, ...] = (0.5, 2.0),
    max_terms: int = 24,
    min_points_per_param: float = 10.0,
    full_output: bool = False,
) -> Any:
    """Period that survives the aliases: periodogram peaks refined and judged by a multi-harmonic fit.

    1. Combined periodogram on :func:`frequency_grid`: per band, the floating-mean Lomb–Scargle power (nifty-ls),
       weighted by that band's χ² about its mean (one band: the ordinary periodogram).
    2. Candidates: the ``n_peaks`` highest peaks; for each, the highest power within ``alias_window`` of
       ``f ± d`` for each ``d`` in ``aliases`` (sampling aliases: nightly ground surveys put copies of every peak
       at ±1/day, or ±1.0027/day for the sidereal day), and ``f × h`` for ``h`` in ``harmonics``.
    3. Each candidate is refined by minimising the χ² of a multi-harmonic model (per-band offsets, ``n_terms``
       shared harmonics, ``n_terms_band`` extra harmonics per band beyond the first; weights 1/err²) within ±1.5
       grid steps. The smallest BIC ``N ln χ² + n_params ln N`` wins (error scale fitted). Lower-frequency
       candidates ``f × h`` (h < 1) get ``n_terms / h`` harmonics, so that their model contains the one at ``f``:
       the longer period wins only when the extra harmonics pay for themselves (an eclipsing binary's unequal
       minima), not by fitting noise.
    4. Halving test: the winner at ``f`` with ``k`` harmonics is compared with ``f/2`` and ``2k`` harmonics (a nested
       model), repeatedly while the BIC improves, up to ``max_terms`` harmonics.

    A single-harmonic periodogram favours whichever alias the window function boosts; a multi-harmonic model fits
    the true period's non-sinusoidal shape (and its per-band phases) better than any alias, which is the remedy
    of Sesar+2010 (templates) and VanderPlas & Ivezić 2015 (multiband, multi-term).

    Parameters
    ----------
    time : array-like, Quantity or Time, (T,) or (N, T), d
    values : array-like, (T,) or (N, T), mag or flux
    err : array-like, optional, same unit as ``values``
        1σ errors; unit weights when omitted.
    mask : array-like of bool, optional
        ``True`` on points to leave out.
    band : array-like of str or int, (T,) or (N, T), optional
        Band of each point; one band when omitted.
    min_period, max_period : float or Quantity, d
        Search range (bare floats are days); ``max_period`` defaults to each row's baseline.
    oversampling : float
        Grid samples per peak width ``1/baseline``.
    n_terms, n_terms_band : int
        Harmonics of the shared and of the per-band model.
    n_peaks : int
        Periodogram peaks to consider.
    aliases : tuple of float, 1/day
        Alias offsets to try around each peak.
    alias_window : float, 1/day
        Half-width searched around each alias for its peak.
    alias_min_window : float
        An alias offset ``d`` is tried only where the spectral window ``|mean(exp(2πi d t))|`` exceeds this (about
        0.9 at 1/day for nightly ground sampling, ~0 for Kepler/TESS).
    harmonics : tuple of float
        Frequency multiples to try around each peak.
    max_terms : int
        Most harmonics the halving test may use.
    min_points_per_param : float
        Lower-frequency candidates with more harmonics (``f × h``, h < 1, and the halving test) are tried only with
        at least this many points per model parameter: the BIC's large-sample penalty does not stop a sparse light
        curve (~60 points in one band) from fitting noise with doubled harmonics.
    full_output : bool
        Return a :class:`PeriodSearch` (or a list of them, one per row) instead of the periods.

    Returns
    -------
    numpy.ndarray of float, (N,) or scalar array, d
        NaN for light curves with fewer than ``2 + 2 n_terms`` valid points.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t = np.sort(rng.uniform(0, 30, 300))
    >>> y = np.sin(2 * np.pi * t / 0.7) + 0.5 * np.sin(4 * np.pi * t / 0.7 + 1) + rng.normal(0, 0.1, 300)
    >>> round(float(best_period(t, y, np.full(300, 0.1))), 4)
    0.7
    """
    if not (int(n_terms) == n_terms >= 1 and int(n_terms_band) == n_terms_band >= 0 and int(n_peaks) == n_peaks >= 1):
        raise StellarValueError(f"need n_terms >= 1, n_terms_band >= 0, n_peaks >= 1; got {n_terms}, {n_terms_band}, "
                                f"{n_peaks}")  # fmt: skip
    if not alias_window >= 0:
        raise StellarValueError(f"alias_window must be >= 0 (1/day); got {alias_window}")
    t, y, e, m, single = _prepare(time, values, mask, err=err)
    e = np.ones_like(y) if e is None else e
    if band is None:
        bidx = np.zeros(y.shape, dtype=int)
    else:
        braw = np.asarray(band)
        try:
            braw = np.broadcast_to(braw, y.shape)
        except ValueError as err_:
            raise StellarValueError(f"band must have the shape of values {y.shape}; got {braw.shape}") from err_
        _, bidx = np.unique(braw, return_inverse=True)
        bidx = bidx.reshape(y.shape)
    opts: dict[str, Any] = {"n_terms": int(n_terms), "n_terms_band": int(n_terms_band), "n_peaks": int(n_peaks)}
    opts |= {"aliases": tuple(float(a) for a in aliases), "harmonics": tuple(harmonics), "alias_window": alias_window}
    opts["alias_min_window"] = float(alias_min_window)
    opts["max_terms"] = int(max_terms)
    opts["min_points_per_param"] = float(min_points_per_param)
    out: list[PeriodSearch | None] = []
    for i in range(y.shape[0]):
        ok = ~m[i]
        if ok.sum() < 2 + 2 * n_terms:
            out.append(None)
            continue
        _, bi = np.unique(bidx[i, ok], return_inverse=True)
        grid = frequency_grid(t[i, ok], min_period, max_period, oversampling)
        out.append(_search_row(t[i, ok], y[i, ok], e[i, ok], bi, int(bi.max()) + 1, grid, opts))
    if full_output:
        return out[0] if single else out
    periods = np.array([np.nan if r is None else r.period for r in out])
    return _out(periods, single)


# ----------------------------------------------------------------------------------------------- features
def _compact(t: np.ndarray, x: np.ndarray, e: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort each row by time with masked points last; masked entries become NaN."""
    order = np.argsort(np.where(m, np.inf, t), axis=1, kind="stable")

    def take(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, order, axis=1)

    mm = take(m)
    return np.where(mm, np.nan, take(t)), np.where(mm, np.nan, take(x)), np.where(mm, np.nan, take(e)), mm


def features(
    time: Any,
    values: Any,
    err: Any,
    mask: Any = None,
    min_period: Any = 0.1,
    max_period: Any = None,
    oversampling: float = 5.0,
    period_method: Literal["lomb_scargle", "multiharmonic"] = "lomb_scargle",
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
        ``'lomb_scargle'``: the highest Lomb–Scargle peak (nifty-ls; ~1 ms for sparse survey light curves).
        ``'multiharmonic'``: :func:`best_period` (aliases, halves and doubles judged by a multi-harmonic fit; far
        fewer one-day aliases and half-period eclipsing binaries, at ~0.1-0.5 s per light curve).

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
    t, x, e, m, single = _prepare(time, values, mask, err=err)
    if e is None:
        raise StellarValueError("err must be given")
    t, x, e, m = _compact(t, x, e, m)
    n = (~m).sum(axis=1).astype(float)
    ok = n >= 5
    nn = np.where(ok, n, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x, axis=1)
        d = x - mean[:, None]
        var = np.nansum(d**2, axis=1) / (nn - 1)
        std = np.sqrt(var)
        m2 = np.nanmean(d**2, axis=1)
        skew = np.nanmean(d**3, axis=1) / m2**1.5
        kurt = np.nanmean(d**4, axis=1) / m2**2 - 3.0
        p5, p95 = np.nanpercentile(x, [5, 95], axis=1)
        med = np.nanmedian(x, axis=1)
        mad_std = MAD_TO_SIGMA * np.nanmedian(np.abs(x - med[:, None]), axis=1)
        eta = np.nansum(np.diff(x, axis=1) ** 2, axis=1) / (nn - 1) / var
        w = 1.0 / e**2
        wmean = np.nansum(w * x, axis=1) / np.nansum(w, axis=1)
        delta = np.sqrt(nn / (nn - 1))[:, None] * (x - wmean[:, None]) / e
        stetson_k = np.nanmean(np.abs(delta), axis=1) / np.sqrt(np.nanmean(delta**2, axis=1))
        beyond = np.nansum(np.abs(x - wmean[:, None]) > std[:, None], axis=1) / nn
    period = np.full(x.shape[0], np.nan)
    for i in np.flatnonzero(ok):
        k = ~m[i]
        if period_method == "multiharmonic":
            period[i] = best_period(t[i, k], x[i, k], e[i, k], min_period=min_period, max_period=max_period,
                                    oversampling=oversampling)  # fmt: skip
            continue
        grid = frequency_grid(t[i, k], min_period, max_period, oversampling)
        p = _ls_row(t[i, k], x[i, k], e[i, k], grid, "standard")
        period[i] = 1.0 / grid[int(np.nanargmax(p))]
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
    return {k: _out(v, single) for k, v in out.items()}


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
    t, x, e, m, single = _prepare(time, flux, mask, err=flux_err)
    t, x, ee, m = _compact(t, x, np.zeros_like(x) if e is None else e, m)
    n_trunc = int(np.count_nonzero((~m).sum(axis=1) > n))
    if n_trunc:
        log.info("to_fixed_length: truncated %d of %d light curves to %d points", n_trunc, m.shape[0], n)
    pad = max(0, n - m.shape[1])

    def fit(a: np.ndarray, fill: Any) -> np.ndarray:
        return np.pad(a[:, :n], ((0, 0), (0, pad)), constant_values=fill)

    mo = fit(m, True)
    res = [np.where(mo, 0.0, fit(a, 0.0)) for a in (t, x, ee)]
    out = (res[0], res[1]) + ((res[2],) if e is not None else ()) + (mo,)
    return tuple(_out(a, single) for a in out)
