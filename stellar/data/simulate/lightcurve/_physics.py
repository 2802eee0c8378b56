"""The physics of the simulated light curves: eclipsing binaries from exact disc overlaps, Fourier-series
pulsators, and how amplitudes and colours scale with a band's wavelength."""

from __future__ import annotations

from typing import Any

import numpy as np

from stellar.errors import StellarValueError

#: Effective wavelengths (nm) used to scale amplitudes, surface-brightness ratios and colours; others get 600 nm.
BAND_WAVELENGTH_NM = {
    "u": 355.0, "g": 475.0, "r": 622.0, "i": 763.0, "z": 905.0, "U": 365.0, "B": 445.0, "V": 551.0, "R": 658.0,
    "I": 806.0, "kepler": 640.0, "tess": 800.0, "eros_b": 540.0, "eros_r": 720.0, "G": 640.0, "BP": 510.0,
    "RP": 780.0, "b": 540.0,
}  # fmt: skip
_V_NM = 551.0


def _circle_overlap(ra: np.ndarray, rb: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Overlap area of two circles of radii ``ra``, ``rb`` whose centres are ``d`` apart (any consistent unit)."""
    ra, rb, d = np.broadcast_arrays(ra, rb, d)
    out = np.zeros(d.shape)
    inside = d <= np.abs(ra - rb)
    out[inside] = np.pi * np.minimum(ra, rb)[inside] ** 2
    part = ~inside & (d < ra + rb) & (ra > 0) & (rb > 0)
    a, b, s = ra[part], rb[part], d[part]
    ca = np.clip((s * s + a * a - b * b) / (2 * s * a), -1.0, 1.0)
    cb = np.clip((s * s + b * b - a * a) / (2 * s * b), -1.0, 1.0)
    k = np.clip((-s + a + b) * (s + a - b) * (s - a + b) * (s + a + b), 0.0, None)
    out[part] = a * a * np.arccos(ca) + b * b * np.arccos(cb) - 0.5 * np.sqrt(k)
    return out


def _blocked(r_back: np.ndarray, r_front: np.ndarray, d: np.ndarray, u: np.ndarray, n_annuli: int = 12) -> tuple:
    """Flux of a linearly limb-darkened disc hidden by an opaque disc, and the disc's total flux (same units).

    The background disc is cut into annuli (denser towards the limb); each annulus contributes its mean
    intensity times its overlapped area, so a uniform disc (u = 0) gives the exact overlap area.
    """
    edges = np.sin(0.5 * np.pi * np.arange(n_annuli + 1) / n_annuli)  # in units of r_back
    mid = 0.5 * (edges[1:] + edges[:-1])
    intensity = 1.0 - u[..., None] * (1.0 - np.sqrt(1.0 - mid**2))  # (…, K)
    areas = np.stack([_circle_overlap(r_back * e, r_front, d) for e in edges], axis=-1)
    blocked = (intensity * np.diff(areas, axis=-1)).sum(axis=-1)
    total = (intensity * np.pi * np.diff(edges**2)).sum(axis=-1) * r_back**2
    return blocked, total


def eclipsing_binary_flux(
    phase: Any,
    r1: Any,
    r2: Any,
    inclination: Any,
    sb_ratio: Any,
    limb_darkening: Any = 0.0,
    mass_ratio: Any = 0.0,
) -> np.ndarray:
    """Relative flux of two spheres on a circular orbit, eclipses from exact disc overlaps.

    Parameters
    ----------
    phase : array-like, cycles
        Orbital phase; 0 is the primary eclipse (star 2 in front of star 1). Broadcasts with the parameters.
    r1, r2 : array-like, dimensionless
        Radii in units of the orbital separation.
    inclination : array-like, deg
    sb_ratio : array-like, dimensionless
        Central surface brightness of star 2 over star 1 (0 for a dark companion).
    limb_darkening : array-like, dimensionless
        Linear limb-darkening coefficient ``u`` of both stars (0 = uniform discs).
    mass_ratio : array-like, dimensionless
        ``M2/M1``; sets the ellipsoidal variation ``q r1³ sin² i`` (and ``r2³ sin² i / q``); 0 turns it off.

    Returns
    -------
    numpy.ndarray
        Flux relative to the out-of-eclipse total (1 at quadrature without ellipsoidal light).

    Examples
    --------
    >>> f = eclipsing_binary_flux([0.0, 0.25], r1=0.1, r2=0.02, inclination=90.0, sb_ratio=0.0)
    >>> round(1 - float(f[0]), 6), float(f[1])  # central transit of a dark companion: (r2 / r1)²
    (0.04, 1.0)
    """
    ph, a1, a2, inc, j, u, q = np.broadcast_arrays(
        *(np.asarray(x, dtype=float) for x in (phase, r1, r2, inclination, sb_ratio, limb_darkening, mass_ratio))
    )
    if np.any(a1 <= 0) or np.any(a2 < 0) or np.any(j < 0) or np.any(q < 0):
        raise StellarValueError("need r1 > 0, r2 >= 0, sb_ratio >= 0 and mass_ratio >= 0")
    theta = 2 * np.pi * ph
    sin_i2 = np.sin(np.radians(inc)) ** 2
    d = np.sqrt(np.sin(theta) ** 2 + (1 - sin_i2) * np.cos(theta) ** 2)
    front2 = np.cos(theta) > 0
    b1, l1 = _blocked(a1, a2, d, u)
    b2, l2 = _blocked(a2, a1, d, u)
    l2 = j * l2
    lost = np.where(front2, b1, j * b2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ell = np.where(q > 0, (q * a1**3 * l1 + a2**3 / np.where(q > 0, q, 1.0) * l2) / (l1 + l2), 0.0) * sin_i2
    return np.asarray((l1 + l2 - lost) / (l1 + l2) * (1.0 - ell * np.cos(2 * theta)))


def _fourier(phase: np.ndarray, amp: np.ndarray, ph: np.ndarray) -> np.ndarray:
    """Σ_k amp_k cos(2π k phase + ph_k); ``phase`` (N, T), ``amp`` and ``ph`` (N, K)."""
    out = np.zeros(phase.shape)
    for k in range(amp.shape[1]):
        out += amp[:, k, None] * np.cos(2 * np.pi * (k + 1) * phase + ph[:, k, None])
    return out


def _unit_ptp(amp: np.ndarray, ph: np.ndarray) -> np.ndarray:
    """Harmonic amplitudes rescaled so the series has a peak-to-peak of 1."""
    grid = np.broadcast_to(np.linspace(0, 1, 512, endpoint=False), (amp.shape[0], 512))
    s = _fourier(grid, amp, ph)
    return np.asarray(amp / np.ptp(s, axis=1)[:, None])


def _sawtooth(rng: np.random.Generator, n: int, ratio: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Harmonics of a fast-rise (brightening), slow-decline sawtooth in magnitude, with jittered phases."""
    order = np.arange(1, k + 1)
    amp = ratio[:, None] ** (order - 1)
    # Σ (-1)^(k+1) sin(kθ)/k rises linearly and drops at θ = π: in mag a slow fade then a fast brightening
    ph = np.where(order % 2 == 1, -np.pi / 2, np.pi / 2)[None, :] + rng.normal(0, 0.15, (n, k)) * (order > 1)
    return _unit_ptp(amp, ph), ph


def _band_scale(bands: tuple[str, ...]) -> np.ndarray:
    lam = np.array([BAND_WAVELENGTH_NM.get(b, 600.0) for b in bands])
    s = (lam / _V_NM) ** -1.2
    return np.asarray(s / s[0])


def _lam(bands: tuple[str, ...]) -> np.ndarray:
    return np.array([BAND_WAVELENGTH_NM.get(b, 600.0) for b in bands])
