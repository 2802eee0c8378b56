"""Wavelengths: units, the log-λ grid, air to vacuum, and the shift to the rest frame (Å, vacuum)."""

from __future__ import annotations

from typing import Any

import astropy.units as u
import numpy as np

from stellar.errors import StellarValueError
from stellar.utils.units import to_value

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
