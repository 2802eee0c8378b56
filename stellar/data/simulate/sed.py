"""A seeded, vectorised simulator of stellar SEDs: synthetic photometry of model spectra through real filter curves.

Physics, deliberately simple but grounded:

- Stars: Teff log-uniform, a dwarf/giant mix; dwarfs follow a main-sequence mass–Teff relation
  (M ∝ Teff^1.6, about right from K to B dwarfs) with log g ≈ 4–5, giants have log g 0.5–3.5 and 0.8–4 M☉.
  Radius from ``R = sqrt(G M / g)``, so log g shows up in the luminosity (through the parallax) and, for A/B
  stars, in the Balmer jump.
- Spectrum: the Planck function at Teff, times a Balmer jump below 3646 Å that peaks near 9,500 K and deepens
  towards low gravity (lower electron pressure, less H⁻ opacity), scaled by ``(R / d)²`` for the flux at Earth.
  No absorption lines or molecular bands: blue and ultraviolet fluxes of cool stars are too high (line
  blanketing is missing), which is why SED colours from this simulator are a teaching set, not a library.
- Photometry: AB magnitudes through ``speclite`` filter curves (SDSS 2010, Gaia DR3, 2MASS, WISE 2010, Bessell
  U/B/V), converted to each band's native system with the AB offsets of :data:`stellar.data.preprocess.sed.BAND_INFO`.
- Extinction: ``E(B-V)`` grows with distance; ``A_band = E(B-V) · R_band`` from
  :func:`stellar.data.preprocess.sed.extinction_coefficients`, so :func:`~stellar.data.preprocess.sed.deredden`
  is its exact inverse.
- Observation: magnitude errors ``σ = floor + 10^(0.4 (m - m_lim)) / 5`` per band (about 0.2 mag at the limit),
  Gaussian noise, bands fainter than their limit or brighter than saturation masked, and a fraction of entries
  dropped at random; parallaxes with Gaussian errors (they may come out negative).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.labels import MK_CLASSES, mk_letter_from_teff
from stellar.data.preprocess.sed import BAND_INFO, BANDS, extinction_coefficients
from stellar.errors import StellarValueError

log = logging.getLogger(__name__)

#: speclite filter of each band
SPECLITE_FILTERS: dict[str, str] = {
    "sdss_u": "sdss2010-u",
    "sdss_g": "sdss2010-g",
    "sdss_r": "sdss2010-r",
    "sdss_i": "sdss2010-i",
    "sdss_z": "sdss2010-z",
    "gaia_g": "gaiadr3-G",
    "gaia_bp": "gaiadr3-BP",
    "gaia_rp": "gaiadr3-RP",
    "2mass_j": "twomass-J",
    "2mass_h": "twomass-H",
    "2mass_ks": "twomass-Ks",
    "wise_w1": "wise2010-W1",
    "wise_w2": "wise2010-W2",
    "johnson_u": "bessell-U",
    "johnson_b": "bessell-B",
    "johnson_v": "bessell-V",
    "cousins_i": "bessell-I",
}

# Approximate faint limits (≈5σ) and bright (saturation) limits, native magnitudes: SDSS imaging, Gaia DR3, 2MASS PSC,
# AllWISE. Bessell U/B/V/I have no survey behind them here: a Hipparcos-like 0–12 mag window.
FAINT_LIMIT: dict[str, float] = {
    "sdss_u": 22.0, "sdss_g": 22.2, "sdss_r": 22.2, "sdss_i": 21.3, "sdss_z": 20.5,
    "gaia_g": 20.7, "gaia_bp": 20.5, "gaia_rp": 19.8,
    "2mass_j": 16.8, "2mass_h": 16.0, "2mass_ks": 15.5,
    "wise_w1": 16.8, "wise_w2": 15.6,
    "johnson_u": 13.0, "johnson_b": 13.0, "johnson_v": 12.4, "cousins_i": 12.0,
}  # fmt: skip
BRIGHT_LIMIT: dict[str, float] = {
    "sdss_u": 13.0, "sdss_g": 14.0, "sdss_r": 14.0, "sdss_i": 14.0, "sdss_z": 12.5,
    "gaia_g": 3.0, "gaia_bp": 3.0, "gaia_rp": 3.0,
    "2mass_j": 4.0, "2mass_h": 4.0, "2mass_ks": 4.0,
    "wise_w1": 8.0, "wise_w2": 6.7,
    "johnson_u": -1.0, "johnson_b": -1.0, "johnson_v": -1.0, "cousins_i": -1.0,
}  # fmt: skip

_H, _C, _KB = 6.62607015e-27, 2.99792458e10, 1.380649e-16  # cgs
_G = 6.674e-8  # cm³ g⁻¹ s⁻²
_MSUN, _RSUN, _PC = 1.989e33, 6.957e10, 3.0857e18  # g, cm, cm
_BALMER_EDGE = 3646.0  # Å


@lru_cache(maxsize=8)
def _filters(names: tuple[str, ...]) -> Any:
    import speclite.filters

    return speclite.filters.load_filters(*(SPECLITE_FILTERS[b] for b in names))


def wavelength_grid(n: int = 3000) -> np.ndarray:
    """Logarithmic wavelength grid (Å) covering every filter of :data:`SPECLITE_FILTERS`: 2,000–60,000 Å."""
    return np.geomspace(2000.0, 60000.0, int(n))


def planck_flambda(wave: np.ndarray, teff: np.ndarray) -> np.ndarray:
    """Surface flux ``π B_λ(T)``, erg s⁻¹ cm⁻² Å⁻¹, for wavelengths ``wave`` (Å, (L,)) and ``teff`` (K, (N,))."""
    lam = wave[None, :] * 1e-8  # cm
    x = _H * _C / (lam * _KB * np.asarray(teff, dtype=float)[:, None])
    return np.pi * 2.0 * _H * _C**2 / lam**5 / np.expm1(np.minimum(x, 700.0)) * 1e-8


def balmer_jump_mag(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Depth of the Balmer jump (mag, F_λ just blue of 3646 Å vs an extrapolated Planck continuum).

    About 1.3 mag at 9,500 K and log g 4 (A0 V), falling off as a Gaussian in log Teff (σ = 0.08 dex), and 15% deeper
    per dex of lower gravity.
    """
    t = np.log10(np.asarray(teff, dtype=float) / 9500.0)
    gravity = np.clip(1.0 + 0.15 * (4.0 - np.asarray(logg, dtype=float)), 0.5, 1.6)
    return 1.3 * np.exp(-0.5 * (t / 0.08) ** 2) * gravity


def synthetic_ab_mags(wave: np.ndarray, flambda: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """AB magnitudes (N, B) of spectra ``flambda`` (N, L; erg s⁻¹ cm⁻² Å⁻¹) on ``wave`` (Å) through ``bands``."""
    import astropy.units as u

    names = tuple(bands)
    unknown = [b for b in names if b not in SPECLITE_FILTERS]
    if unknown:
        raise StellarValueError(f"bands {unknown} have no filter curve; allowed: {list(SPECLITE_FILTERS)}")
    table = _filters(names).get_ab_magnitudes(flambda * (u.erg / (u.s * u.cm**2 * u.AA)), wave * u.AA, axis=-1)
    return np.stack([np.asarray(table[c], dtype=float) for c in table.colnames], axis=-1)


@dataclass
class SEDSample:
    """Simulated photometry: native magnitudes, errors and mask (N, B) in ``bands`` order, and per-star labels;
    ``mag_true`` (N, B) holds the noise-free reddened magnitudes, unmasked."""

    bands: tuple[str, ...]
    mag: np.ndarray
    mag_err: np.ndarray
    mask: np.ndarray
    labels: pd.DataFrame
    mag_true: np.ndarray | None = None


@dataclass
class SEDSimulator:
    """Seeded simulator of stellar photometry (see the module docstring for the physics).

    Parameters
    ----------
    bands : sequence of str
        Bands to observe (default: every band of :data:`stellar.data.preprocess.sed.BANDS`).
    teff_range : (float, float), K
        Teff is log-uniform in this range.
    giant_fraction : float
        Share of giants (log g 0.5–3.5); the rest are dwarfs (log g ≈ 4–5).
    parallax_range : (float, float), mas
        True parallax is log-uniform in this range.
    parallax_err : float, mas
        1σ parallax error.
    ebv_per_kpc : float, mag
        Mean E(B-V) per kpc of distance (the draw is exponential around it, capped at 1.5 mag).
    mag_err_floor : float, mag
        Systematic floor of every magnitude error.
    missing_fraction : float
        Share of band entries dropped at random.
    n_wave : int
        Points of the model-spectrum grid.
    """

    bands: tuple[str, ...] = BANDS
    teff_range: tuple[float, float] = (3200.0, 25000.0)
    giant_fraction: float = 0.35
    parallax_range: tuple[float, float] = (0.1, 10.0)
    parallax_err: float = 0.05
    ebv_per_kpc: float = 0.15
    mag_err_floor: float = 0.01
    missing_fraction: float = 0.05
    n_wave: int = 3000

    def __post_init__(self) -> None:
        self.bands = tuple(self.bands)
        unknown = [b for b in self.bands if b not in SPECLITE_FILTERS or b not in BAND_INFO]
        if unknown or not self.bands:
            raise StellarValueError(f"bands must be a non-empty list from {list(SPECLITE_FILTERS)}; got {unknown}")
        lo, hi = self.teff_range
        if not 1000.0 <= lo < hi <= 60000.0:
            raise StellarValueError(f"teff_range must satisfy 1000 <= lo < hi <= 60000 K; got {self.teff_range}")
        if not 0.0 <= self.giant_fraction <= 1.0 or not 0.0 <= self.missing_fraction < 1.0:
            raise StellarValueError("giant_fraction must be in [0, 1] and missing_fraction in [0, 1)")
        if not 0.0 < self.parallax_range[0] < self.parallax_range[1]:
            raise StellarValueError(f"parallax_range must be 0 < lo < hi mas; got {self.parallax_range}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def draw_stars(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """Teff (K), log g (dex), mass (M☉), radius (R☉), luminosity class, true parallax (mas) and E(B-V)."""
        lo, hi = np.log10(self.teff_range)
        teff = 10.0 ** rng.uniform(lo, hi, n)
        giant = rng.uniform(size=n) < self.giant_fraction
        # giants are cool (red giant branch, clump, AGB) with a tail of bright giants to ~12,000 K
        teff = np.where(giant, 10.0 ** rng.uniform(np.log10(3300.0), np.log10(12000.0), n), teff)
        mass_dwarf = np.clip((teff / 5772.0) ** 1.6, 0.1, 20.0) * 10.0 ** rng.normal(0.0, 0.05, n)
        mass_giant = 10.0 ** rng.uniform(np.log10(0.8), np.log10(4.0), n)
        mass = np.where(giant, mass_giant, mass_dwarf)
        # dwarfs: log g from the ZAMS radius R ≈ M^0.8 (R☉), with a spread for evolution off the ZAMS
        r_dwarf = mass_dwarf**0.8 * 10.0 ** rng.uniform(0.0, 0.2, n)
        logg_dwarf = np.log10(_G * mass * _MSUN / (r_dwarf * _RSUN) ** 2)
        logg = np.where(giant, rng.uniform(0.5, 3.5, n), logg_dwarf)
        radius = np.sqrt(_G * mass * _MSUN / 10.0**logg) / _RSUN
        plo, phi = np.log10(self.parallax_range)
        parallax = 10.0 ** rng.uniform(plo, phi, n)
        ebv = np.minimum(rng.exponential(self.ebv_per_kpc * (1.0 / parallax)), 1.5)
        return pd.DataFrame(
            {
                "teff": teff,
                "logg": logg,
                "mass": mass,
                "radius": radius,
                "lum_class": np.where(giant, "giant", "dwarf"),
                "parallax_true": parallax,
                "ebv": ebv,
            }
        )

    def intrinsic_mags(self, stars: pd.DataFrame, chunk: int = 2000) -> np.ndarray:
        """Noise-free, unreddened native magnitudes (N, B) of ``stars`` at their distance."""
        wave = wavelength_grid(self.n_wave)
        ab_offset = np.array([BAND_INFO[b].ab_offset for b in self.bands])
        out = np.empty((len(stars), len(self.bands)))
        teff, logg = stars["teff"].to_numpy(float), stars["logg"].to_numpy(float)
        dilution = (stars["radius"].to_numpy(float) * _RSUN * stars["parallax_true"].to_numpy(float) / (1e3 * _PC)) ** 2
        edge = 0.5 * (1.0 - np.tanh((wave - _BALMER_EDGE) / 30.0))
        for s in range(0, len(stars), chunk):
            sl = slice(s, s + chunk)
            flux = planck_flambda(wave, teff[sl]) * 10.0 ** (-0.4 * balmer_jump_mag(teff[sl], logg[sl])[:, None] * edge)
            out[sl] = synthetic_ab_mags(wave, flux * dilution[sl, None], self.bands) - ab_offset
        return out

    def simulate(self, n: int, seed: int = 0) -> SEDSample:
        """``n`` stars: observed native magnitudes with errors and a mask, and their labels.

        Labels: ``teff`` (K), ``logg`` (dex), ``mass``, ``radius``, ``lum_class`` (dwarf/giant), ``mk_class``
        (from Teff), ``parallax`` and ``parallax_err`` (observed, mas), ``parallax_true``, ``ebv`` (mag).
        """
        if n < 1:
            raise StellarValueError(f"n must be >= 1; got {n}")
        rng = np.random.default_rng(seed)
        return self.observe(self.draw_stars(n, rng), rng)

    def observe(self, stars: pd.DataFrame, rng: np.random.Generator) -> SEDSample:
        """Observed photometry of given ``stars`` (reddening, noise, limits, dropped entries, parallax errors).

        Parameters
        ----------
        stars : pandas.DataFrame
            One row per star with ``teff`` (K), ``logg`` (dex), ``radius`` (R☉), ``parallax_true`` (mas) and
            ``ebv`` (mag), as :meth:`draw_stars` makes them (other columns are kept as labels).
        rng : numpy.random.Generator
            Source of the noise.

        Returns
        -------
        SEDSample
            As :meth:`simulate`; the labels are ``stars`` plus ``mk_class``, ``parallax`` and ``parallax_err``.
        """
        missing = [c for c in ("teff", "logg", "radius", "parallax_true", "ebv") if c not in stars.columns]
        if missing:
            raise StellarValueError(f"stars lacks column(s) {missing}; it has {list(stars.columns)}")
        stars = stars.reset_index(drop=True)
        n = len(stars)
        mag0 = self.intrinsic_mags(stars)
        coeff = extinction_coefficients(self.bands)
        reddened = mag0 + stars["ebv"].to_numpy()[:, None] * np.nan_to_num(coeff)[None, :]
        faint = np.array([FAINT_LIMIT[b] for b in self.bands])
        bright = np.array([BRIGHT_LIMIT[b] for b in self.bands])
        err = self.mag_err_floor + 10.0 ** (0.4 * (reddened - faint[None, :])) / 5.0
        mag = reddened + err * rng.standard_normal(reddened.shape)
        mask = (reddened > faint) | (reddened < bright) | (rng.uniform(size=mag.shape) < self.missing_fraction)
        mask |= ~np.isfinite(coeff)[None, :]
        log.info("SED simulator: %d stars, masked %d of %d band entries", n, int(mask.sum()), mask.size)
        labels = stars.assign(
            mk_class=np.asarray(MK_CLASSES, dtype=object)[mk_letter_from_teff(stars["teff"].to_numpy())],
            parallax=stars["parallax_true"].to_numpy() + self.parallax_err * rng.standard_normal(n),
            parallax_err=np.full(n, self.parallax_err),
        )
        return SEDSample(
            bands=self.bands,
            mag=np.where(mask, np.nan, mag),
            mag_err=np.where(mask, np.nan, err),
            mask=mask,
            labels=labels,
            mag_true=reddened,
        )
