"""Light-curve inputs made into padded ``(N, T)`` rows: the checks and coercions that every light-curve function
starts from (:mod:`~stellar.data.preprocess.lightcurve`, :mod:`~stellar.data.preprocess.period` and
:mod:`~stellar.data.preprocess.lightcurve_inputs` share them).

Times are days (an astropy ``Time`` becomes MJD, a ``Quantity`` is converted, a bare float is days), frequencies
1/day; ``mask`` is ``True`` on bad or padded points. Newly masked points are counted and logged at INFO.
"""

from __future__ import annotations

import logging
from typing import Any

import astropy.units as u
import numpy as np
from astropy.time import Time

from stellar.errors import StellarValueError
from stellar.utils.units import to_value

# the masking is reported under the public module's name, where it always was (whichever function masked)
log = logging.getLogger("stellar.data.preprocess.lightcurve")


def as_time(x: Any, name: str = "time") -> np.ndarray:
    """Days as float; an astropy ``Time`` becomes MJD, a ``Quantity`` is converted, a bare float is days."""
    if isinstance(x, Time):
        return np.asarray(x.mjd, dtype=float)
    return to_value(x, u.day, name)


def as_freq(x: Any, name: str = "frequency") -> np.ndarray:
    """A non-empty 1-D array of finite, positive frequencies in 1/day (a ``Quantity`` is converted)."""
    f = to_value(x, 1 / u.day, name)
    if f.ndim != 1 or f.size == 0 or not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise StellarValueError(f"{name} must be a non-empty 1-D array of finite, positive frequencies (1/day)")
    return f


def plain(x: Any, name: str) -> np.ndarray:
    """Float array of ``x``; a ``Quantity`` keeps its own unit (fluxes and magnitudes carry arbitrary units)."""
    if isinstance(x, u.Quantity):
        return to_value(x, x.unit, name)
    return to_value(x, u.dimensionless_unscaled, name)


def rows(x: Any, name: str, dtype: Any = None, allow_empty: bool = True) -> np.ndarray:
    """``x`` as ``(N, T)`` rows: a 1-D ``(T,)`` array is one row (a view, not a copy).

    Parameters
    ----------
    x : array-like, (T,) or (N, T)
    name : str
        The argument's name, for the error message.
    dtype : numpy dtype, optional
        Converted to it (``None``: ``x``'s own dtype; an array is then returned as is).
    allow_empty : bool
        Whether ``T = 0`` is allowed.

    Raises
    ------
    StellarValueError
        If ``x`` is neither 1-D nor 2-D, or is empty along ``T`` where that is not allowed.
    """
    a = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or (not allow_empty and a.shape[1] == 0):
        need = "" if allow_empty else " with T > 0"
        raise StellarValueError(f"{name} must be 1-D (T,) or 2-D (N, T){need}; got shape {np.shape(x)}")
    return a


def prepare(
    time: Any, values: Any, mask: Any, *, vname: str = "flux", err: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, bool]:
    """Broadcast inputs to (N, T); add non-finite points to the mask (counted, logged). Returns copies.

    Returns ``(time, values, err, mask, single)``: ``err`` is None when not given, ``single`` whether ``values``
    was one light curve (1-D), for :func:`squeeze`."""
    v = rows(plain(values, vname), vname)
    single = np.ndim(values) == 1
    t = np.broadcast_to(rows(as_time(time), "time"), v.shape).astype(float)
    m = mask_like(mask, v)
    e = None if err is None else np.broadcast_to(rows(plain(err, "flux_err"), "flux_err"), v.shape).astype(float)
    bad = ~np.isfinite(v) | ~np.isfinite(t)
    if e is not None:
        bad |= ~np.isfinite(e) | (e <= 0)
    log_new(m, m | bad, "non-finite time/value or non-positive error")
    return t, v.astype(float), e, m | bad, single


def mask_like(mask: Any, v: np.ndarray) -> np.ndarray:
    """A boolean ``mask`` (``True`` = bad point) broadcast to the shape of ``v``, as a new array; all False if None."""
    if mask is None:
        return np.zeros(v.shape, dtype=bool)
    m = np.asarray(mask)
    if m.dtype != bool:
        raise StellarValueError(f"mask must be boolean (True = bad point); got dtype {m.dtype}")
    try:
        return np.broadcast_to(rows(m, "mask"), v.shape).copy()
    except ValueError as err:
        raise StellarValueError(f"mask has shape {m.shape}; expected {v.shape}") from err


def log_new(old: np.ndarray, new: np.ndarray, why: str) -> None:
    """Log at INFO how many points ``new`` masks that ``old`` did not, and why."""
    n = int(np.count_nonzero(new & ~old))
    if n:
        log.info("masked %d of %d light-curve points: %s", n, new.size, why)


def squeeze(x: np.ndarray, single: bool) -> np.ndarray:
    """``x``'s first row if the input was one light curve (``single``), else ``x``."""
    return x[0] if single else x
