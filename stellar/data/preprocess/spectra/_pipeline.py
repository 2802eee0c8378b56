"""Continuum normalisation, and the one spectrum preprocessing path with its frozen parameters."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np

from stellar.data.preprocess.continuum import chebyshev_x, check_fit_args, fit_continuum, log_shape, normalised
from stellar.data.preprocess.spectra._inputs import _lazy, _Rows, _variance
from stellar.data.preprocess.spectra._resample import _bin_edges, _resample_block
from stellar.data.preprocess.spectra._wave import _AA, _doppler_factor, air_to_vacuum, log_wavelength_grid
from stellar.errors import StellarValueError
from stellar.utils.units import to_value

# records keep the public module's name, as before the split
log = logging.getLogger(__package__)


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
    continuum_channel: bool = False,
) -> dict[str, np.ndarray]:
    """The one spectrum preprocessing path: vacuum, rest frame, log-λ grid, continuum, clean.

    Steps: optional air → vacuum (:func:`air_to_vacuum`); optional shift to the rest frame
    (:func:`to_rest_frame`); flux-conserving resampling onto ``grid`` (:func:`resample_flux_conserving`);
    optional continuum normalisation (:func:`continuum_normalise`); cleaning. Rows are processed
    ``chunk_size`` at a time, all rows of a chunk at once.

    Normalising removes the continuum's shape, which in a flux-calibrated spectrum (MILES, or the simulator's
    Planck continuum) carries temperature; ``continuum_channel`` keeps it beside the normalised flux, as
    ``continuum = ln(C / median C)`` of the fitted continuum ``C`` on the same grid: the median is over the good
    pixels, the value is held at the edge beyond the first and last good pixel (where the fit would only
    extrapolate), and it is 0 on rows with no fitted continuum. ``flux · exp(continuum)`` is then the spectrum
    divided by the median of its continuum.

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
    continuum_channel : bool
        Also return the continuum's shape (needs ``normalise``).

    Returns
    -------
    dict
        ``flux`` (N, K) float32, ``ivar`` (N, K) float32, ``mask`` (N, K) bool (True = bad), with K the grid
        length, and with ``continuum_channel`` ``continuum`` (N, K) float32, natural log (dimensionless); a 1-D
        input gives N = 1.

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
    if continuum_channel and not normalise:
        raise StellarValueError("continuum_channel=True needs normalise=True (the channel is the fitted continuum)")
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
    out_c = np.zeros_like(out_f) if continuum_channel else None
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
            if out_c is not None:
                out_c[sl] = log_shape(cont, rm, fitted)
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
    out = {"flux": out_f, "ivar": out_iv, "mask": out_m}
    if out_c is not None:
        # a pixel masked only after the fit (non-finite once normalised) keeps the smooth continuum value
        out["continuum"] = out_c
    return out


@dataclass(frozen=True)
class SpectrumPreprocessing:
    """Frozen parameters of :func:`preprocess_spectra`: what configs build and model artifacts store.

    Examples
    --------
    >>> p = SpectrumPreprocessing(wave_min=4000.0, wave_max=5000.0)
    >>> SpectrumPreprocessing.from_dict(p.to_dict()) == p
    True
    """

    # the public path: configs, stored models (``_target_`` in to_dict) and pickles name the class by it
    __module__ = "stellar.data.preprocess.spectra"

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
    #: Whether to return the continuum's shape as the ``continuum`` field (for flux-calibrated spectra, whose
    #: continuum slope carries temperature). Off when absent from a stored dict, as models from before it were.
    continuum_channel: bool = False

    def __post_init__(self) -> None:
        log_wavelength_grid(self.wave_min, self.wave_max, self.dloglam)  # validates the grid parameters
        check_fit_args(self.degree, self.n_iter, self.clip_low, self.clip_high)
        if self.chunk_size < 1:
            raise StellarValueError(f"chunk_size must be >= 1; got {self.chunk_size}")
        if self.continuum_channel and not self.normalise:
            raise StellarValueError("continuum_channel=True needs normalise=True (the channel is the fitted continuum)")

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
            continuum_channel=self.continuum_channel,
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
