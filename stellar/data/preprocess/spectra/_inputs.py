"""Spectra checked and made float arrays a chunk of rows at a time, with their bad pixels and variances."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import astropy.units as u
import numpy as np

from stellar.data.preprocess.spectra._wave import _AA, _as_wave, _strip
from stellar.errors import StellarValueError
from stellar.utils.units import to_value


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
