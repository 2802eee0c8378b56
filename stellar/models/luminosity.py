"""Luminosity and a physical log g from V, the parallax and Teff (one place for the bolometric correction).

L from the absolute V magnitude and the bolometric correction BC_V(Teff) of Flower (1996) in the corrected
coefficients of Torres (2010, AJ 140, 1158, Table 1), M_bol,☉ = 4.73 (the scale of those coefficients); then, with
a main-sequence mass guess M = L^mass_exponent (solar units), log g = 4.438 + log M + 4 log(Teff / 5772 K) − log L.
No extinction correction. Bad input (a non-positive or missing parallax, a non-positive Teff, missing V) gives NaN,
never an error. Used by the late fusion's cascade features (:mod:`stellar.models.late_fusion`) and by
``experiments/multimodal/logg_floor.py``.
"""

from __future__ import annotations

import numpy as np

from stellar.utils.numeric import log10_positive

#: solar log g (cgs), effective temperature (K) and bolometric magnitude on the scale of the BC_V coefficients
LOGG_SUN, TEFF_SUN, MBOL_SUN = 4.438, 5772.0, 4.73

#: Torres (2010) Table 1: Flower's BC_V polynomials in log Teff, by range (lower, upper, coefficients of lt**i)
_BC = [
    (3.90, 9.9, [-0.118115450538963e06, 0.137145973583929e06, -0.636233812100225e05, 0.147412923562646e05,
                 -0.170587278406872e04, 0.788731721804990e02]),
    (3.70, 3.90, [-0.370510203809015e05, 0.385672629965804e05, -0.150651486316025e05, 0.261724637119416e04,
                  -0.170623810323864e03]),
    (0.0, 3.70, [-0.190537291496456e05, 0.155144866764412e05, -0.421278819301717e04, 0.381476328422343e03]),
]  # fmt: skip


def _array(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def bc_v_log(log_teff: np.ndarray | float) -> np.ndarray:
    """Bolometric correction in V (mag) at ``log10 Teff``; NaN where it is not finite."""
    lt = _array(log_teff)
    out = np.full(lt.shape, np.nan)
    for lo, hi, coef in _BC:
        sel = np.isfinite(lt) & (lt >= lo) & (lt < hi)
        out[sel] = sum(c * lt[sel] ** i for i, c in enumerate(coef))
    return out


def bc_v(teff: np.ndarray | float) -> np.ndarray:
    """Bolometric correction in V (mag) at ``teff`` (K); NaN where Teff is not a positive number."""
    return bc_v_log(log10_positive(teff))


def absolute_magnitude(mag: np.ndarray | float, parallax_mas: np.ndarray | float) -> np.ndarray:
    """``mag + 5 + 5 log10(parallax / 1000)``; NaN where the parallax is not positive or either is missing."""
    m, p = np.broadcast_arrays(_array(mag), _array(parallax_mas))
    ok = np.isfinite(m) & np.isfinite(p) & (p > 0)
    out = np.full(m.shape, np.nan)
    out[ok] = m[ok] + 5.0 + 5.0 * np.log10(p[ok] / 1000.0)
    return out


def log_luminosity(v: np.ndarray | float, parallax_mas: np.ndarray | float, log_teff: np.ndarray | float) -> np.ndarray:
    """log10 L/L☉ from V (mag), the parallax (mas) and log10 Teff (K); NaN on bad input."""
    return -0.4 * (absolute_magnitude(v, parallax_mas) + bc_v_log(log_teff) - MBOL_SUN)


def logg_from_luminosity(
    log_l: np.ndarray | float, log_teff: np.ndarray | float, mass_exponent: float = 0.25
) -> np.ndarray:
    """log g (cgs) from log10 L/L☉ and log10 Teff with the mass guess M = L^mass_exponent."""
    return LOGG_SUN + (mass_exponent - 1.0) * _array(log_l) + 4.0 * (_array(log_teff) - np.log10(TEFF_SUN))


def logg_from_parallax(
    v: np.ndarray | float, parallax_mas: np.ndarray | float, teff: np.ndarray | float, mass_exponent: float = 0.25
) -> np.ndarray:
    """log g (cgs) from V (mag), the parallax (mas), Teff (K) and the mass guess M = L^mass_exponent."""
    lt = log10_positive(teff)
    return logg_from_luminosity(log_luminosity(v, parallax_mas, lt), lt, mass_exponent)
