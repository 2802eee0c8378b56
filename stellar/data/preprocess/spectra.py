"""Spectrum preprocessing: pure, batch-first array functions shared by datamodules, simulators and the server.

Every function takes arrays whose last axis is the spectral axis (one spectrum per row), returns new arrays and
never mutates its inputs. Wavelengths are in Ångström (vacuum unless a function says otherwise); an astropy
``Quantity`` of any length unit is accepted wherever a wavelength is. Flux is flux density per unit wavelength
in arbitrary units, ``ivar`` its inverse variance, and ``mask`` is ``True`` on bad pixels.

:func:`preprocess_spectra` is the single entry point (air → vacuum, rest frame, flux-conserving resampling
onto a log-λ grid, continuum normalisation, cleaning); :class:`SpectrumPreprocessing` freezes its parameters
so that configs can build it with ``_target_`` and artifacts can store it with ``to_dict()``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np

from stellar.data.preprocess.continuum import chebyshev_x, check_fit_args, fit_continuum, normalised
from stellar.errors import StellarValueError
from stellar.utils.units import to_value

log = logging.getLogger(__name__)

#: Speed of light, km/s.
C_KMS = 299_792.458
_AA = u.AA


def _strip(x: Any, name: str) -> np.ndarray:
    """Float array of ``x``; a Quantity keeps its own unit (flux and ivar carry arbitrary units)."""
    if isinstance(x, u.Quantity):
        return to_value(x, x.unit, name)
    return to_value(x, u.dimensionless_unscaled, name)


def _as_wave(wave: Any, name: str = "wave") -> np.ndarray:
    w = to_value(wave, _AA, name)
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise StellarValueError(f"{name} must be finite and positive (Å)")
    return w


def log_wavelength_grid(wave_min: Any = 3600.0, wave_max: Any = 7400.0, dloglam: float = 1e-4) -> np.ndarray:
    """Log-uniform vacuum wavelength grid, SDSS-like.

    Pixel centres sit on integer multiples of ``dloglam`` (as SDSS ``loglam`` does), from the first one at or
    above ``log10(wave_min)`` to the last one at or below ``log10(wave_max)``. ``dloglam=1e-4`` dex is
    69 km/s per pixel, i.e. Nyquist sampling of R ≈ 2000.

    Parameters
    ----------
    wave_min, wave_max : float or Quantity, Å
        Wavelength range (vacuum).
    dloglam : float, dex
        Pixel size in log10(λ/Å).

    Returns
    -------
    numpy.ndarray of float64, log10(Å)
        Pixel centres.

    Examples
    --------
    >>> g = log_wavelength_grid(3600, 7400)
    >>> len(g), round(float(10 ** g[0]), 1)
    (3129, 3600.8)
    """
    lo, hi = float(_as_wave(wave_min, "wave_min")), float(_as_wave(wave_max, "wave_max"))
    step = float(to_value(dloglam, u.dimensionless_unscaled, "dloglam"))
    if not step > 0:
        raise StellarValueError(f"dloglam must be > 0 dex; got {dloglam}")
    if not hi > lo:
        raise StellarValueError(f"wave_max must exceed wave_min; got {lo} Å and {hi} Å")
    k0 = int(np.ceil(np.log10(lo) / step - 1e-6))
    k1 = int(np.floor(np.log10(hi) / step + 1e-6))
    return np.arange(k0, k1 + 1, dtype=np.float64) * step


def air_to_vacuum(wave: Any) -> np.ndarray:
    """Convert air wavelengths to vacuum (the IAU standard / Ciddor 1996 form used by SDSS ``airtovac``).

    Wavelengths below 2000 Å are taken to be vacuum already and returned unchanged.

    Parameters
    ----------
    wave : array-like or Quantity, Å
        Air wavelengths.

    Returns
    -------
    numpy.ndarray, Å
        Vacuum wavelengths, same shape.

    Examples
    --------
    >>> round(float(air_to_vacuum(6562.79)), 2)
    6564.6
    """
    air = _as_wave(wave)
    vac = air.copy()
    for _ in range(3):  # fixed-point iteration of vac = air * n(vac); converges to < 1e-10 Å
        sigma2 = (1e4 / vac) ** 2
        fact = 1.0 + 5.792105e-2 / (238.0185 - sigma2) + 1.67917e-3 / (57.362 - sigma2)
        vac = np.where(air >= 2000.0, air * fact, air)
    return vac


def _doppler_factor(redshift: Any, rv: Any) -> np.ndarray:
    if redshift is not None and rv is not None:
        raise StellarValueError("give either redshift or rv, not both")
    if rv is not None:
        beta = to_value(rv, u.km / u.s, "rv") / C_KMS
        if np.any(np.abs(beta) >= 1):
            raise StellarValueError("rv must be below the speed of light in magnitude")
        return np.sqrt((1.0 + beta) / (1.0 - beta))
    z = to_value(redshift, u.dimensionless_unscaled, "redshift")
    if not np.all(np.isfinite(z)) or np.any(z <= -1):
        raise StellarValueError("redshift must be finite and > -1")
    return 1.0 + z


def to_rest_frame(wave: Any, *, redshift: Any = None, rv: Any = None) -> np.ndarray:
    """Shift observed wavelengths to the rest frame, ``λ_rest = λ_obs / (1 + z)``.

    Parameters
    ----------
    wave : array-like or Quantity, Å
        Observed wavelengths, (M,) or (N, M).
    redshift : float or array-like (N,), optional
        Redshift per spectrum.
    rv : float, array-like (N,) or Quantity, km/s, optional
        Radial velocity per spectrum (relativistic Doppler, ``1+z = sqrt((1+β)/(1-β))``). Give one of
        ``redshift`` or ``rv``; with neither the wavelengths are returned unchanged (as a copy).

    Returns
    -------
    numpy.ndarray, Å
        Rest-frame wavelengths; (N, M) when a per-spectrum shift is given, else the shape of ``wave``.
    """
    w = _as_wave(wave)
    if redshift is None and rv is None:
        return w.copy()
    factor = _doppler_factor(redshift, rv)
    return w / (factor[..., None] if factor.ndim else factor)


def _bin_edges(centres: np.ndarray) -> np.ndarray:
    """Bin edges halfway between centres, outer edges half a pixel out (as specutils' SpectralAxis)."""
    first = 1.5 * centres[..., :1] - 0.5 * centres[..., 1:2]
    last = 1.5 * centres[..., -1:] - 0.5 * centres[..., -2:-1]
    return np.concatenate([first, 0.5 * (centres[..., 1:] + centres[..., :-1]), last], axis=-1)


def _cumulative(values: np.ndarray) -> np.ndarray:
    out = np.zeros((*values.shape[:-1], values.shape[-1] + 1), dtype=np.float64)
    np.cumsum(values, axis=-1, out=out[..., 1:])
    return out


def _locate(edges_in: np.ndarray, edges_out: np.ndarray, n_rows: int) -> np.ndarray:
    """Index of the input bin holding each output edge, clipped to the valid bins; (K+1,) or (N, K+1)."""
    m = edges_in.shape[-1] - 1
    if edges_in.ndim == 1:
        idx = np.searchsorted(edges_in, edges_out, side="right") - 1
        return np.clip(idx, 0, m - 1)
    # Per-row input edges: place every input edge among the (shared) output edges, then turn those places
    # into counts per output edge with one bincount + cumsum (no Python loop over rows). np.interp finds the
    # places: its search starts from the previous answer, so sorted rows cost O(1) per edge instead of a
    # binary search. A place off by one where edges coincide to rounding is harmless: the cumulative
    # integrals evaluated from the clipped in-bin position are continuous across a bin edge.
    k = edges_out.shape[0]
    frac = np.interp(edges_in.ravel(), edges_out, np.arange(k, dtype=np.float64)).reshape(edges_in.shape)
    places = np.where(edges_in > edges_out[-1], k, np.ceil(frac).astype(np.int64))  # (N, M+1) in [0, k]
    flat = places + (k + 1) * np.arange(n_rows)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n_rows * (k + 1)).reshape(n_rows, k + 1)
    return np.clip(np.cumsum(counts[:, :k], axis=1) - 1, 0, m - 1)


class _Gather:
    """Values at the located input bins, for (M,)-shared indices or (N, K+1) per-row ones.

    Per-row gathers use flat indices into the raveled arrays, several times faster than take_along_axis.
    """

    def __init__(self, idx: np.ndarray, n_rows: int) -> None:
        self.idx = idx
        self.rows = None if idx.ndim == 1 else np.arange(n_rows)[:, None]

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        if self.rows is None:
            return arr[..., self.idx]
        return np.ascontiguousarray(arr).reshape(-1)[self.idx + arr.shape[-1] * self.rows]


def _resample_block(
    edges_in: np.ndarray, flux: np.ndarray, var: np.ndarray | None, good: np.ndarray, edges_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Flux-conserving rebinning of a block of rows (see :func:`resample_flux_conserving`)."""
    n = flux.shape[0]
    dx = np.diff(edges_in, axis=-1)
    g = good.astype(np.float64)
    fg = np.where(good, flux, 0.0)
    # cumulative integrals on the input edges; the integral up to any point is exact by linear interpolation
    # inside the bin it falls in, because the integrands are piecewise constant.
    s_f = _cumulative(fg * dx)
    s_g = _cumulative(g * dx)
    gather = _Gather(_locate(edges_in, edges_out, n), n)
    e_i = gather(edges_in)
    dx_i = gather(dx)
    t = np.clip(edges_out - e_i, 0.0, dx_i)  # position of the (clipped) output edge inside its input bin
    cum_f = gather(s_f) + t * gather(fg)
    cum_g = gather(s_g) + t * gather(g)
    width_good = np.diff(cum_g, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out_flux = np.diff(cum_f, axis=-1) / width_good
    has_good = width_good > 0
    out_mask = width_good < 0.5 * np.diff(edges_out)
    out_flux = np.where(has_good, out_flux, np.nan)
    if var is None:
        return out_flux, None, out_mask
    # exact variance of the overlap-weighted mean: sum_i p_i^2 var_i / (sum_i p_i)^2, with p_i the overlap of
    # good input bin i. Q(x) = S2[i] + t^2 v[i] plus a correction for the first, partially covered bin.
    vg = np.where(good, var, 0.0)
    s_2 = _cumulative(vg * dx * dx)
    v_i = gather(vg)
    q = gather(s_2) + t * t * v_i
    pos = e_i + t
    overlap_first = np.minimum(dx_i[..., :-1] - t[..., :-1], np.diff(pos, axis=-1))
    var_num = np.diff(q, axis=-1) - 2.0 * v_i[..., :-1] * t[..., :-1] * overlap_first
    with np.errstate(invalid="ignore", divide="ignore"):
        out_ivar = np.where(has_good & ~out_mask & (var_num > 0), width_good**2 / var_num, 0.0)
    return out_flux, out_ivar, out_mask


def _bad_pixels(flux: np.ndarray, ivar: np.ndarray | None, mask: np.ndarray | None) -> np.ndarray:
    bad = ~np.isfinite(flux)
    if ivar is not None:
        bad |= ~(np.isfinite(ivar) & (ivar > 0))
    if mask is not None:
        bad |= mask
    return bad


def _variance(ivar: np.ndarray | None, bad: np.ndarray) -> np.ndarray | None:
    if ivar is None:
        return None
    with np.errstate(divide="ignore"):
        return np.where(bad, 0.0, 1.0 / np.where(bad, 1.0, ivar))


def _increasing(wave: np.ndarray) -> np.ndarray:
    if np.any(wave[..., 1:] <= wave[..., :-1]):
        raise StellarValueError("wave must increase strictly along its last axis")
    return wave


def _lazy(x: Any, name: str, unit: u.UnitBase = u.dimensionless_unscaled) -> Any:
    """``x`` as an array of its own dtype (a Quantity stays one), to be made float chunk by chunk."""
    if x is None or isinstance(x, u.Quantity):
        return x
    arr = np.asarray(x)
    return arr if arr.dtype.kind in "biuf" else to_value(x, unit, name)  # strings, objects: converted (or refused)


class _Rows:
    """Spectra checked up front for shapes and units, and made float64 arrays one chunk of rows at a time.

    Wavelength values (finite, positive, increasing) are checked chunk by chunk too, and flux and ivar keep their
    dtype until then (a float32 input is never copied whole to float64): the working set follows the chunk, not N.
    """

    def __init__(self, wave: Any, flux: Any, ivar: Any, mask: Any) -> None:
        wave, flux, ivar = _lazy(wave, "wave", _AA), _lazy(flux, "flux"), _lazy(ivar, "ivar")
        mask = None if mask is None else np.asarray(mask)
        if isinstance(wave, u.Quantity):
            to_value(1.0 * wave.unit, _AA, "wave")  # a wrong unit fails now, not after some chunks
        if flux.ndim not in (1, 2):
            raise StellarValueError(f"flux must be (M,) or (N, M); got shape {flux.shape}")
        if wave.ndim not in (1, 2) or wave.shape[-1] != flux.shape[-1] or (wave.ndim == 2 and wave.shape != flux.shape):
            raise StellarValueError(f"wave must be (M,) or flux's shape {flux.shape}; got {wave.shape}")
        if wave.shape[-1] < 2:
            raise StellarValueError("wave must have at least two pixels")
        for name, arr in (("ivar", ivar), ("mask", mask)):
            if arr is not None and arr.shape != flux.shape:
                raise StellarValueError(f"{name} must have flux's shape {flux.shape}; got {arr.shape}")
        self.squeeze = flux.ndim == 1
        self.flux = np.atleast_2d(flux)
        self.ivar = None if ivar is None else np.atleast_2d(ivar)
        self.mask = None if mask is None else np.atleast_2d(mask)
        self.n, self.m = self.flux.shape
        # an (M,) wave shared by all rows is checked and converted once
        self.shared = _increasing(_as_wave(wave)) if wave.ndim == 1 else None
        self.wave = wave

    def chunks(self, size: int) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]]:
        """``(rows, wave, flux, ivar, bad)`` for each ``size`` rows; ``wave`` is (M,) when shared."""
        for start in range(0, self.n, size):
            rows = slice(start, start + size)
            wave = self.shared if self.shared is not None else _increasing(_as_wave(self.wave[rows]))
            flux = _strip(self.flux[rows], "flux")
            ivar = None if self.ivar is None else _strip(self.ivar[rows], "ivar")
            mask = None if self.mask is None else np.asarray(self.mask[rows], dtype=bool)
            yield rows, wave, flux, ivar, _bad_pixels(flux, ivar, mask)


def resample_flux_conserving(
    wave: Any,
    flux: Any,
    new_wave: Any,
    ivar: Any = None,
    mask: Any = None,
    *,
    chunk_size: int = 256,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Flux-conserving rebinning onto new pixel centres (the semantics of specutils' FluxConservingResampler).

    Bin edges lie halfway between centres (outer edges half a pixel out). Each output pixel is the mean of
    the input flux density over the output bin, computed from cumulative integrals on the input edges, so
    the integral of flux over any range of whole output bins is conserved. Bad input pixels (``mask``,
    non-finite flux, ``ivar <= 0``) are left out of the integral: a good output pixel is the mean over the
    good part of its bin. An output pixel is masked when less than half of its bin is covered by good input
    (which includes bins outside the input coverage).

    The variance is the exact variance of the overlap-weighted mean, ``Σ p_i² σ_i² / (Σ p_i)²`` with
    ``p_i`` the overlap of good input pixel ``i`` (as specutils); it ignores the covariance that rebinning
    introduces between neighbouring output pixels.

    Parameters
    ----------
    wave : array-like or Quantity, Å
        Input pixel centres, (M,) shared by all rows or (N, M) per row; strictly increasing.
    flux : array-like, flux density per Å
        (M,) or (N, M).
    new_wave : array-like or Quantity, Å
        Output pixel centres, (K,), strictly increasing.
    ivar : array-like, optional
        Inverse variance of ``flux``, same shape; 0 marks a bad pixel.
    mask : array-like of bool, optional
        True on bad input pixels.
    chunk_size : int
        Rows processed at a time (bounds memory).

    Returns
    -------
    flux : numpy.ndarray of float64
        (K,) or (N, K) like the input; NaN where no good input covers the bin.
    ivar : numpy.ndarray of float64 or None
        Output inverse variance, 0 where masked; ``None`` when no ``ivar`` was given.
    mask : numpy.ndarray of bool
        True on masked output pixels.
    """
    rows = _Rows(wave, flux, ivar, mask)
    nw = _as_wave(new_wave, "new_wave")
    if nw.ndim != 1 or nw.size < 2 or np.any(np.diff(nw) <= 0):
        raise StellarValueError("new_wave must be 1-D, with at least two strictly increasing values")
    if chunk_size < 1:
        raise StellarValueError(f"chunk_size must be >= 1; got {chunk_size}")
    edges_out = _bin_edges(nw)
    out_f = np.empty((rows.n, nw.size))
    out_iv = None if rows.ivar is None else np.empty_like(out_f)
    out_m = np.empty(out_f.shape, dtype=bool)
    for sl, w, f, iv, bad in rows.chunks(chunk_size):
        rf, riv, rm = _resample_block(_bin_edges(w), f, _variance(iv, bad), ~bad, edges_out)
        out_f[sl], out_m[sl] = rf, rm
        if out_iv is not None and riv is not None:
            out_iv[sl] = riv
    if rows.squeeze:
        return out_f[0], None if out_iv is None else out_iv[0], out_m[0]
    return out_f, out_iv, out_m


def continuum_normalise(
    wave: Any,
    flux: Any,
    ivar: Any = None,
    mask: Any = None,
    *,
    degree: int = 6,
    n_iter: int = 10,
    clip_low: float = 2.0,
    clip_high: float = 3.0,
    chunk_size: int = 256,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Divide spectra by a robust smooth continuum, all rows at once.

    The continuum is ``exp(P(ln λ))`` with ``P`` a Chebyshev polynomial of ``degree`` fitted to ``ln(flux)``
    by iterated weighted least squares, solved for every row at once. Fitting in log space makes the
    continuum multiplicative and positive, and follows a Planck slope over a decade or more (hot stars rising
    to the blue, M dwarfs falling by orders of magnitude). The fit uses the inverse-variance weighted mean
    flux of groups of 4 pixels, weighted by the inverse variance of its logarithm, ``ivar · continuum²``
    with the continuum of the previous iteration (the data in the first), or by pixel count without
    ``ivar``. Each iteration rejects points more than ``clip_low`` scatters below the fit (absorption lines,
    molecular bands) or ``clip_high`` above it (emission, cosmic rays); the scatter is measured from the
    points above the fit only, which lines do not reach, so the fit climbs to the upper envelope. The two
    highest points of each of ``2·(degree+1)`` stretches always stay in, so that the fit cannot run away
    where lines leave no continuum. Non-positive pixels are left out of the fit, but normalised like the
    rest. At S/N ≳ 10 the continuum of line-free regions comes out within ~1 % (a few tenths of a percent
    low from the clipping); in late M dwarfs, with no true continuum, it follows the peaks between bands.

    Parameters
    ----------
    wave : array-like or Quantity, Å
        (M,) shared or (N, M) per row, strictly increasing.
    flux : array-like, flux density
        (M,) or (N, M).
    ivar : array-like, optional
        Inverse variance of ``flux``; ``ivar <= 0`` marks a bad pixel.
    mask : array-like of bool, optional
        True on bad pixels; they take no part in the fit.
    degree : int
        Polynomial degree in ln λ.
    n_iter : int
        Clipping iterations.
    clip_low, clip_high : float
        Rejection thresholds below and above the fit, in units of the scatter.
    chunk_size : int
        Rows fitted at a time.

    Returns
    -------
    norm_flux : numpy.ndarray
        ``flux / continuum``; 1 on bad pixels and on rows that could not be fitted.
    norm_ivar : numpy.ndarray or None
        ``ivar · continuum²``; 0 on bad pixels and unfitted rows. ``None`` without ``ivar``.
    continuum : numpy.ndarray
        The fitted continuum, in flux units; 1 on rows that could not be fitted (fewer than
        ``max(2·(degree+1), 10)`` usable pixels), which are counted and logged at INFO.
    """
    check_fit_args(degree, n_iter, clip_low, clip_high)
    rows = _Rows(wave, flux, ivar, mask)
    norm = np.empty((rows.n, rows.m))
    norm_iv = None if rows.ivar is None else np.empty_like(norm)
    cont = np.empty_like(norm)
    n_failed = 0
    # per-row bases take K times more memory
    step = chunk_size if rows.shared is not None else max(1, chunk_size // 8)
    for sl, w, f, iv, bad in rows.chunks(step):
        c, fitted = fit_continuum(chebyshev_x(w), f, iv, bad, degree, n_iter, clip_low, clip_high)
        norm[sl], niv, _ = normalised(f, iv, bad, c, fitted)
        if norm_iv is not None and niv is not None:
            norm_iv[sl] = niv
        cont[sl] = c
        n_failed += int((~fitted).sum())
    if n_failed:
        log.info("continuum_normalise: %d of %d spectra had too few usable pixels; fully masked", n_failed, rows.n)
    if rows.squeeze:
        return norm[0], None if norm_iv is None else norm_iv[0], cont[0]
    return norm, norm_iv, cont


def preprocess_spectra(
    wave: Any,
    flux: Any,
    ivar: Any = None,
    mask: Any = None,
    *,
    grid: Any = None,
    air: bool = False,
    redshift: Any = None,
    rv: Any = None,
    normalise: bool = True,
    degree: int = 6,
    n_iter: int = 10,
    clip_low: float = 2.0,
    clip_high: float = 3.0,
    chunk_size: int = 256,
) -> dict[str, np.ndarray]:
    """The one spectrum preprocessing path: vacuum, rest frame, log-λ grid, continuum, clean.

    Steps: optional air → vacuum (:func:`air_to_vacuum`); optional shift to the rest frame
    (:func:`to_rest_frame`); flux-conserving resampling onto ``grid`` (:func:`resample_flux_conserving`);
    optional continuum normalisation (:func:`continuum_normalise`); cleaning. Rows are processed
    ``chunk_size`` at a time, all rows of a chunk at once.

    Cleaning makes every number finite, as models need: a pixel is masked when the resampling masked it,
    or its flux or ivar is not finite after normalisation (and on rows that could not be normalised); masked
    pixels get ``ivar = 0`` and flux 1 (the continuum level) when normalising, 0 otherwise. Without
    ``ivar`` the output ``ivar`` is 1 on good pixels (unit weights: the noise is unknown). Masked pixels and
    fully masked spectra are counted and logged at INFO.

    Parameters
    ----------
    wave : array-like or Quantity, Å
        (M,) shared or (N, M) per row, strictly increasing; vacuum unless ``air``.
    flux : array-like, flux density per Å
        (M,) or (N, M).
    ivar : array-like, optional
        Inverse variance of ``flux``.
    mask : array-like of bool, optional
        True on bad input pixels.
    grid : array-like, log10(Å), optional
        Output pixel centres (vacuum, rest frame); default :func:`log_wavelength_grid`.
    air : bool
        Whether ``wave`` is in air (as MILES) rather than vacuum (as SDSS).
    redshift : float or array-like (N,), optional
        Redshift of each spectrum, removed before resampling.
    rv : float, array-like (N,) or Quantity, km/s, optional
        Radial velocity instead of ``redshift``.
    normalise : bool
        Whether to divide by the fitted continuum.
    degree, n_iter, clip_low, clip_high
        Continuum fit settings, see :func:`continuum_normalise`.
    chunk_size : int
        Rows processed at a time (bounds memory).

    Returns
    -------
    dict
        ``flux`` (N, K) float32, ``ivar`` (N, K) float32, ``mask`` (N, K) bool (True = bad), with K the grid
        length; a 1-D input gives N = 1.

    Examples
    --------
    >>> import numpy as np
    >>> wave = np.linspace(3500.0, 7500.0, 4000)
    >>> out = preprocess_spectra(wave, np.ones((2, 4000)))
    >>> out["flux"].shape, out["flux"].dtype, bool(out["mask"].any())
    ((2, 3129), dtype('float32'), False)
    """
    check_fit_args(degree, n_iter, clip_low, clip_high)
    if chunk_size < 1:
        raise StellarValueError(f"chunk_size must be >= 1; got {chunk_size}")
    wave, flux = _lazy(wave, "wave", _AA), np.atleast_2d(_lazy(flux, "flux"))
    if wave.ndim == 2 and wave.shape[0] == 1 and flux.shape[0] == 1:
        wave = wave[0]
    ivar = None if ivar is None else np.atleast_2d(_lazy(ivar, "ivar"))
    mask = None if mask is None else np.atleast_2d(mask)
    rows = _Rows(wave, flux, ivar, mask)
    n = rows.n
    log_grid = log_wavelength_grid() if grid is None else to_value(grid, u.dimensionless_unscaled, "grid")
    if log_grid.ndim != 1 or log_grid.size < 2 or np.any(np.diff(log_grid) <= 0) or not np.all(np.isfinite(log_grid)):
        raise StellarValueError("grid must be a 1-D, strictly increasing array of log10(λ/Å)")
    factor = None if redshift is None and rv is None else _doppler_factor(redshift, rv)
    if factor is not None and factor.ndim != 0 and factor.shape != (n,):
        raise StellarValueError(f"redshift or rv must be a scalar or have shape ({n},); got {factor.shape}")
    new_wave = 10.0**log_grid
    edges_out = _bin_edges(new_wave)
    x = chebyshev_x(new_wave)
    out_f = np.empty((n, log_grid.size), dtype=np.float32)
    out_iv = np.empty_like(out_f)
    out_m = np.empty(out_f.shape, dtype=bool)
    n_unfitted = 0
    for sl, w, f, iv, bad in rows.chunks(chunk_size):
        if air:
            w = air_to_vacuum(w)
        if factor is not None:
            w = w / (factor[sl, None] if factor.ndim else factor)
        rf, riv, rm = _resample_block(_bin_edges(w), f, _variance(iv, bad), ~bad, edges_out)
        if normalise:
            cont, fitted = fit_continuum(x, rf, riv, rm, degree, n_iter, clip_low, clip_high)
            n_unfitted += int((~fitted & ~rm.all(axis=1)).sum())
            rf, riv, rm = normalised(rf, riv, rm, cont, fitted)
        with np.errstate(over="ignore", invalid="ignore"):
            f32 = rf.astype(np.float32)
            iv32 = (~rm).astype(np.float32) if riv is None else riv.astype(np.float32)
        rm = rm | ~np.isfinite(f32) | ~np.isfinite(iv32)
        out_f[sl] = np.where(rm, np.float32(1.0 if normalise else 0.0), f32)
        out_iv[sl] = np.where(rm, np.float32(0.0), iv32)
        out_m[sl] = rm
    n_masked, n_empty = int(out_m.sum()), int(out_m.all(axis=1).sum())
    log.info(
        "preprocess_spectra: %d spectra, %d of %d pixels masked (%.2f%%); %d spectra fully masked "
        "(%d of them only because too few positive pixels were left to fit a continuum)",
        n,
        n_masked,
        out_m.size,
        100.0 * n_masked / max(out_m.size, 1),
        n_empty,
        n_unfitted,
    )
    return {"flux": out_f, "ivar": out_iv, "mask": out_m}


@dataclass(frozen=True)
class SpectrumPreprocessing:
    """Frozen parameters of :func:`preprocess_spectra`: what configs build and model artifacts store.

    Examples
    --------
    >>> p = SpectrumPreprocessing(wave_min=4000.0, wave_max=5000.0)
    >>> SpectrumPreprocessing.from_dict(p.to_dict()) == p
    True
    """

    #: Grid range, Å (vacuum, rest frame), and pixel size, dex.
    wave_min: float = 3600.0
    wave_max: float = 7400.0
    dloglam: float = 1e-4
    #: Whether input wavelengths are in air.
    air: bool = False
    #: Whether to continuum-normalise, and the continuum fit settings.
    normalise: bool = True
    degree: int = 6
    n_iter: int = 10
    clip_low: float = 2.0
    clip_high: float = 3.0
    chunk_size: int = 256

    def __post_init__(self) -> None:
        log_wavelength_grid(self.wave_min, self.wave_max, self.dloglam)  # validates the grid parameters
        check_fit_args(self.degree, self.n_iter, self.clip_low, self.clip_high)
        if self.chunk_size < 1:
            raise StellarValueError(f"chunk_size must be >= 1; got {self.chunk_size}")

    @property
    def grid(self) -> np.ndarray:
        """Output pixel centres, log10(Å)."""
        return log_wavelength_grid(self.wave_min, self.wave_max, self.dloglam)

    def __call__(
        self, wave: Any, flux: Any, ivar: Any = None, mask: Any = None, redshift: Any = None, rv: Any = None
    ) -> dict[str, np.ndarray]:
        """Run :func:`preprocess_spectra` with these parameters."""
        return preprocess_spectra(
            wave,
            flux,
            ivar,
            mask,
            grid=self.grid,
            air=self.air,
            redshift=redshift,
            rv=rv,
            normalise=self.normalise,
            degree=self.degree,
            n_iter=self.n_iter,
            clip_low=self.clip_low,
            clip_high=self.clip_high,
            chunk_size=self.chunk_size,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, with ``_target_`` so that Hydra can instantiate it as is."""
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> SpectrumPreprocessing:
        """Inverse of :meth:`to_dict` (``_target_`` is optional)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        params = {k: v for k, v in params.items() if k != "_target_"}
        unknown = sorted(set(params) - fields)
        if unknown:
            raise StellarValueError(f"unknown SpectrumPreprocessing parameters {unknown}; allowed: {sorted(fields)}")
        return cls(**params)
