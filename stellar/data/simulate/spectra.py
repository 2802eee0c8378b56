"""A seeded, vectorised simulator of stellar spectra at SDSS-like resolution.

Physics, deliberately simple but grounded:

- Continuum: the Planck function at Teff (plus the Balmer jump of A/B stars).
- Lines: real optical lines (:mod:`stellar.data.simulate.linelist`) at their vacuum wavelengths. Each line's
  strength follows the Saha–Boltzmann population of its lower level (electron pressure rising with Teff and
  gravity), and metal lines fade once hydrogen bound-free opacity (∝ the H n=2 population) takes over in A/B
  stars. So the Balmer lines peak near 9–10 kK, He I in B stars, He II in O stars, Ca II H&K, Ca I 4227,
  Mg b, Na D and the Fe I blends towards G/K/M. Metal strengths scale as 10^[Fe/H].
- Profiles: pseudo-Voigt optical depth (Gaussian of the instrument at resolution R plus thermal and
  microturbulent broadening; Lorentzian pressure wings whose width grows with log g, strongest for the Stark
  wings of the Balmer lines) applied as ``exp(-τ)``, which gives a curve of growth (linear, saturated,
  damping-wing regimes).
- Molecules: the G band (CH) in F–K and TiO bands (sharp heads, slow redward recovery) that appear below
  ~4000 K and deepen towards late M, both growing as ``exp(D0 / kT)``.
- Observation: Doppler shift by rv, log-λ sampling, Gaussian noise with a per-spectrum S/N (photon plus a
  constant floor), cosmic-ray spikes and dead runs of pixels, which are masked with ``ivar = 0``.

Profiles are applied after instrumental broadening (not convolved with ``exp(-τ)``), which keeps the
simulator fast at the cost of slightly too deep cores of saturated lines.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.labels import MK_CLASSES, MK_TEFF_EDGES_K, mk_letter_from_teff
from stellar.data.preprocess.spectra import C_KMS, log_wavelength_grid
from stellar.data.simulate import linelist as ll
from stellar.errors import StellarValueError

log = logging.getLogger(__name__)

_K_EV = 8.617333262e-5  # Boltzmann constant, eV/K
_K_J = 1.380649e-23  # J/K
_SAHA = 2.4147e21  # (2π m_e k / h²)^1.5, m^-3 K^-1.5
_HC_K = 1.438777e8  # h c / k, Å K
_SIGMA_PER_FWHM = 1.0 / 2.354820
_AMU_KMS2 = 2 * _K_J / 1.66054e-27 / 1e6  # 2k/m_u in (km/s)² per K
_MASS = {"H": 1.0, "He": 4.0, "Na": 23.0, "Mg": 24.3, "Si": 28.1, "Ca": 40.1, "Ti": 47.9, "Cr": 52.0}
_MASS |= {"Mn": 54.9, "Fe": 55.8, "Sr": 87.6, "Ba": 137.3}
_MICROTURB_KMS = 2.0
#: Exponents that soften the peak-normalised Saha–Boltzmann curves. A line's strength is really set by the ratio of
#: line to continuum opacity, and the continuum opacity (H⁻, then H bound-free) changes with Teff too, which
#: flattens the curves: Balmer lines stay visible in G/K stars and neutral metals (Na D, Ca I) in G stars. He
#: lines keep the raw curve, confined to O/B stars.
_SOFTENING = {"H": 0.3, "He": 1.0, "neutral": 0.4, "ion": 0.7}
_H_SOFTENING = _SOFTENING["H"]
_LINE_SPECIES = [line.species for line in ll.LINES]
_LINE_STAGE = np.array([line.stage for line in ll.LINES])
_LINE_CHI = np.array([line.chi_exc for line in ll.LINES])
_LINE_STRENGTH = np.array([line.strength for line in ll.LINES])
_LINE_GAMMA = np.array([line.gamma for line in ll.LINES])
_LINE_IS_H = np.array([s == "H" for s in _LINE_SPECIES])
_LINE_IS_METAL = np.array([ll.SPECIES[s].metal for s in _LINE_SPECIES])
_LINE_MASS = np.array([_MASS[s] for s in _LINE_SPECIES])
_LINE_SOFTENING = np.array(
    [_SOFTENING.get(line.species, _SOFTENING["neutral"] if line.stage == 0 else _SOFTENING["ion"]) for line in ll.LINES]
)


def _electron_pressure(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Photospheric electron pressure (Pa): ~10 Pa for the Sun, rising with Teff and as g^0.5."""
    return 10.0 * (teff / 5800.0) * 10.0 ** (0.5 * (logg - 4.44))


def _stage_fractions(species: ll.Species, teff: np.ndarray, pe: np.ndarray) -> np.ndarray:
    """Saha ionisation fractions, (n_stages, N)."""
    log_n = [np.zeros_like(teff)]
    for j, chi in enumerate(species.chi):
        u_ratio = species.partition[j + 1] / species.partition[j]
        log_n.append(log_n[-1] + np.log(2 * u_ratio * _SAHA * teff**1.5 * _K_J * teff / pe) - chi / (_K_EV * teff))
    arr = np.stack(log_n)
    frac = np.exp(arr - arr.max(axis=0))
    return frac / frac.sum(axis=0)


def _hydrogen_n2(teff: np.ndarray, pe: np.ndarray) -> np.ndarray:
    return _stage_fractions(ll.SPECIES["H"], teff, pe)[0] * np.exp(-10.2 / (_K_EV * teff))


_N2_REF = float(_hydrogen_n2(np.array([7000.0]), _electron_pressure(np.array([7000.0]), np.array([4.44])))[0])


def _metal_opacity_factor(teff: np.ndarray, pe: np.ndarray) -> np.ndarray:
    """Line-to-continuum opacity factor of metals: 1 under H⁻ opacity, falling as H bound-free takes over."""
    return 1.0 / (1.0 + _hydrogen_n2(teff, pe) / _N2_REF)


def _raw_line_curves(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Unnormalised Saha–Boltzmann strength of every line, (L, N)."""
    pe = _electron_pressure(teff, logg)
    fractions = {name: _stage_fractions(sp, teff, pe) for name, sp in ll.SPECIES.items()}
    pops = np.stack([fractions[s][k] for s, k in zip(_LINE_SPECIES, _LINE_STAGE, strict=True)])
    curves = pops * np.exp(-_LINE_CHI[:, None] / (_K_EV * teff))
    return np.where(_LINE_IS_METAL[:, None], curves * _metal_opacity_factor(teff, pe), curves)


_T_REF = np.geomspace(2500.0, 60000.0, 600)
_CURVE_PEAK = _raw_line_curves(_T_REF, np.full_like(_T_REF, 4.0)).max(axis=1)


def line_strengths(teff: np.ndarray, logg: np.ndarray, feh: np.ndarray) -> np.ndarray:
    """Weak-line equivalent width (Å) of every line of :data:`linelist.LINES` for each star, (L, N).

    Parameters
    ----------
    teff : array-like, K
    logg : array-like, dex (cgs)
    feh : array-like, dex

    Examples
    --------
    >>> ew = line_strengths(np.array([9500.0, 5800.0]), np.array([4.0, 4.4]), np.zeros(2))
    >>> k = [line.name for line in ll.LINES].index("Hdelta")
    >>> bool(ew[k, 0] > 3 * ew[k, 1])
    True
    """
    teff, logg, feh = (np.asarray(a, dtype=float) for a in (teff, logg, feh))
    curve = _raw_line_curves(teff, logg) / _CURVE_PEAK[:, None]
    curve = curve ** _LINE_SOFTENING[:, None]
    abundance = np.where(_LINE_IS_METAL[:, None], 10.0**feh, 1.0)
    return _LINE_STRENGTH[:, None] * curve * abundance


def _molecular_depths(teff: np.ndarray, logg: np.ndarray, feh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(G-band area in Å, TiO optical depth at the band heads) per star."""
    pe = _electron_pressure(teff, logg)
    x_ch = np.exp(ll.D0_CH_EV / _K_EV * (1.0 / teff - 1.0 / 5200.0))
    g_band = 5.0 * 10.0**feh * x_ch / (1.0 + x_ch) * _metal_opacity_factor(teff, pe)
    tau = 0.05 * 10.0**feh * np.exp(np.minimum(ll.D0_TIO_EV / _K_EV * (1.0 / teff - 1.0 / 3900.0), 50.0))
    return g_band, tau / (1.0 + tau / 3.0)  # saturates: band heads reach at most ~95 % depth


def _pseudo_voigt(delta: np.ndarray, sigma: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Area-normalised pseudo-Voigt (Thompson, Cox & Hastings 1987); ``delta`` (N, W), widths (N, 1)."""
    f_g, f_l = sigma / _SIGMA_PER_FWHM, 2.0 * gamma
    f = f_g**5 + 2.69269 * f_g**4 * f_l + 2.42843 * f_g**3 * f_l**2 + 4.47163 * f_g**2 * f_l**3
    f = (f + 0.07842 * f_g * f_l**4 + f_l**5) ** 0.2
    r = f_l / f
    eta = 1.36603 * r - 0.47719 * r**2 + 0.11116 * r**3
    s, hw = f * _SIGMA_PER_FWHM, 0.5 * f
    d2 = delta * delta
    gauss = ((1.0 - eta) / (s * np.sqrt(2 * np.pi))) * np.exp(-0.5 * d2 / (s * s))
    return gauss + (eta * hw / np.pi) / (d2 + hw * hw)


@dataclass
class SimulatedSpectra:
    """Simulated spectra on a shared observed-frame grid.

    Attributes
    ----------
    log_wave : numpy.ndarray (M,), log10(Å)
        Vacuum wavelength grid (observed frame).
    flux : numpy.ndarray (N, M) float32
        Flux density, arbitrary units of order 1–100 (like SDSS's 1e-17 erg s⁻¹ cm⁻² Å⁻¹); not normalised.
    ivar : numpy.ndarray (N, M) float32
        Inverse variance; 0 on masked pixels.
    mask : numpy.ndarray (N, M) bool
        True on bad pixels (cosmic rays, dead pixels).
    labels : pandas.DataFrame
        ``teff`` (K), ``logg`` (dex), ``feh`` (dex), ``rv`` (km/s), ``snr`` (median per-pixel S/N) and
        ``mk_class`` (letter).
    continuum : numpy.ndarray (N, M) float32 or None
        The Planck continuum (without lines, bands or Balmer jump), when asked for.
    """

    log_wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    labels: pd.DataFrame
    continuum: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.flux.shape[0])


def _check_range(name: str, value: Any, lo: float, hi: float) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise StellarValueError(f"{name} must be a pair of numbers; got {value!r}") from err
    if not (lo <= a <= b <= hi):
        raise StellarValueError(f"{name} must satisfy {lo} <= low <= high <= {hi}; got {value!r}")
    return a, b


_MS_LOG_TEFF = np.log10([2500, 3000, 3500, 3900, 5300, 5950, 7300, 10000, 20000, 31500, 45000])
_MS_LOGG = np.array([5.1, 5.0, 4.85, 4.7, 4.6, 4.45, 4.3, 4.2, 4.1, 4.0, 3.9])
_HDELTA = [line.name for line in ll.LINES].index("Hdelta")


@dataclass(frozen=True)
class SpectrumSimulator:
    """Configuration of the spectrum simulator; :meth:`simulate` draws stars and renders their spectra.

    Parameters
    ----------
    wave_min, wave_max : float, Å
        Observed-frame vacuum wavelength range of the log-λ grid.
    dloglam : float, dex
        Pixel size (1e-4 dex = 69 km/s, as SDSS).
    resolution : float
        Spectral resolving power R = λ/FWHM.
    snr_range : (float, float)
        Range of the median per-pixel S/N, drawn log-uniformly per spectrum.
    bad_pixel_fraction : float
        Fraction of pixels hit by cosmic rays (spikes, masked).
    bad_run_probability : float
        Probability that a spectrum has a dead run of 3–30 pixels (zeros, masked).
    teff_range : (float, float), K
        Effective temperatures drawn log-uniformly, within an MK class picked uniformly when
        ``balance_classes`` (so every letter O–M is equally frequent), else over the whole range.
    feh_range : (float, float), dex
        [Fe/H]: 80 % from N(-0.2, 0.3), 20 % uniform, clipped to the range.
    rv_range : (float, float), km/s
        Radial velocities, uniform.
    giant_fraction : float
        Fraction of giants among stars cooler than 5500 K (0.4 times that among hotter ones); the others follow
        the main-sequence log g(Teff) with 0.1 dex scatter.
    balance_classes : bool
        Sample MK classes uniformly (see ``teff_range``).
    noise : bool
        Add noise and bad pixels; False renders noiseless, unmasked spectra (``ivar`` still holds the
        nominal inverse variance at the drawn S/N).
    keep_continuum : bool
        Also return the Planck continuum of each spectrum.
    chunk_size : int
        Spectra rendered at a time (bounds memory).

    Examples
    --------
    >>> sim = SpectrumSimulator(wave_min=4000.0, wave_max=5000.0)
    >>> out = sim.simulate(20, seed=1)
    >>> out.flux.shape == (20, len(sim.log_wave)), sorted(out.labels.columns)
    (True, ['feh', 'logg', 'mk_class', 'rv', 'snr', 'teff'])
    """

    wave_min: float = 3600.0
    wave_max: float = 7400.0
    dloglam: float = 1e-4
    resolution: float = 2000.0
    snr_range: tuple[float, float] = (10.0, 100.0)
    bad_pixel_fraction: float = 0.002
    bad_run_probability: float = 0.05
    teff_range: tuple[float, float] = (3000.0, 40000.0)
    feh_range: tuple[float, float] = (-2.5, 0.5)
    rv_range: tuple[float, float] = (-300.0, 300.0)
    giant_fraction: float = 0.3
    balance_classes: bool = True
    noise: bool = True
    keep_continuum: bool = False
    chunk_size: int = 512

    def __post_init__(self) -> None:
        log_wavelength_grid(self.wave_min, self.wave_max, self.dloglam)
        if not self.resolution > 0:
            raise StellarValueError(f"resolution must be > 0; got {self.resolution}")
        limits = {"snr_range": (1e-3, 1e6), "teff_range": (2000.0, 60000.0), "feh_range": (-5.0, 1.5)}
        limits["rv_range"] = (-0.5 * C_KMS, 0.5 * C_KMS)
        for name, (lo, hi) in limits.items():
            # stored as plain tuples of floats, whatever sequence a config passed (provenance hashes stay stable)
            object.__setattr__(self, name, _check_range(name, getattr(self, name), lo, hi))
        for name in ("bad_pixel_fraction", "bad_run_probability", "giant_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise StellarValueError(f"{name} must be in [0, 1]; got {getattr(self, name)}")
        if self.chunk_size < 1:
            raise StellarValueError(f"chunk_size must be >= 1; got {self.chunk_size}")

    @property
    def log_wave(self) -> np.ndarray:
        """Observed-frame grid, log10(Å) vacuum."""
        return log_wavelength_grid(self.wave_min, self.wave_max, self.dloglam)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form with ``_target_`` (for dataset provenance and Hydra)."""
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", **params}

    def draw_labels(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """Draw ``n`` stars from the priors: columns teff, logg, feh, rv, snr, mk_class."""
        tmin, tmax = _check_range("teff_range", self.teff_range, 2000.0, 60000.0)
        if self.balance_classes:
            upper = np.array((np.inf, *MK_TEFF_EDGES_K))
            lower = np.array((*MK_TEFF_EDGES_K, 0.0))
            lo, hi = np.maximum(lower, tmin), np.minimum(upper, tmax)
            usable = np.flatnonzero(hi > lo)
            cls = usable[rng.integers(0, usable.size, n)] if usable.size else np.zeros(n, dtype=int)
            lo, hi = (lo[cls], hi[cls]) if usable.size else (np.full(n, tmin), np.full(n, tmax))
        else:
            lo, hi = np.full(n, tmin), np.full(n, tmax)
        teff = np.exp(rng.uniform(np.log(lo), np.log(hi)))
        ms = np.interp(np.log10(teff), _MS_LOG_TEFF, _MS_LOGG) + rng.normal(0.0, 0.1, n)
        p_giant = self.giant_fraction * np.where(teff < 5500.0, 1.0, 0.4)
        giant = rng.random(n) < p_giant
        logg_giant = np.where(teff < 5500.0, rng.uniform(1.0, 3.5, n), ms - rng.uniform(0.3, 1.0, n))
        logg = np.clip(np.where(giant, logg_giant, ms), 0.5, 5.3)
        f_lo, f_hi = _check_range("feh_range", self.feh_range, -5.0, 1.5)
        feh = np.where(rng.random(n) < 0.8, rng.normal(-0.2, 0.3, n), rng.uniform(f_lo, f_hi, n))
        rv = rng.uniform(*_check_range("rv_range", self.rv_range, -C_KMS, C_KMS), n)
        s_lo, s_hi = _check_range("snr_range", self.snr_range, 1e-3, 1e6)
        snr = np.exp(rng.uniform(np.log(s_lo), np.log(s_hi), n))
        return _labels(teff, logg, np.clip(feh, f_lo, f_hi), rv, snr)

    def simulate(self, n: int, seed: int = 0) -> SimulatedSpectra:
        """Draw ``n`` stars from the priors and render their spectra; the same seed gives the same output."""
        if int(n) != n or n < 0:
            raise StellarValueError(f"n must be a non-negative integer; got {n}")
        label_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
        labels = self.draw_labels(int(n), np.random.default_rng(label_seed))
        return self._render(labels, np.random.default_rng(noise_seed))

    def render(
        self, teff: Any, logg: Any, feh: Any = 0.0, rv: Any = 0.0, snr: Any = None, *, seed: int = 0
    ) -> SimulatedSpectra:
        """Render spectra of given stars (arrays broadcast together); ``snr`` defaults to the range's middle.

        Parameters
        ----------
        teff : array-like, K
        logg : array-like, dex
        feh : array-like, dex
        rv : array-like, km/s
        snr : array-like, optional
            Median per-pixel S/N.
        seed : int
            Seed of the noise, bad pixels and flux scale.
        """
        if snr is None:
            snr = float(np.sqrt(np.prod(_check_range("snr_range", self.snr_range, 1e-3, 1e6))))
        arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, dtype=float)) for a in (teff, logg, feh, rv, snr)))
        t, g, f, v, s = (a.ravel() for a in arrays)
        if np.any(t < 1000) or np.any(t > 100000) or np.any(s <= 0) or np.any(np.abs(v) >= C_KMS):
            raise StellarValueError("teff must be within 1000–100000 K, snr > 0 and |rv| below c")
        return self._render(_labels(t, g, f, v, s), np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1]))

    def _render(self, labels: pd.DataFrame, rng: np.random.Generator) -> SimulatedSpectra:
        log_wave = self.log_wave
        wave = 10.0**log_wave
        n, m = len(labels), wave.size
        teff, logg, feh = (labels[c].to_numpy(dtype=float) for c in ("teff", "logg", "feh"))
        rv, snr = labels["rv"].to_numpy(dtype=float), labels["snr"].to_numpy(dtype=float)
        beta = rv / C_KMS
        doppler = np.sqrt((1.0 + beta) / (1.0 - beta))
        amplitude = 10.0 ** rng.uniform(0.5, 2.0, n)
        strengths = line_strengths(teff, logg, feh)
        g_band, tio = _molecular_depths(teff, logg, feh)
        balmer_jump = 0.7 * (strengths[_HDELTA] / ll.LINES[_HDELTA].strength) ** (1.0 / _H_SOFTENING)
        flux = np.empty((n, m), dtype=np.float32)
        ivar = np.empty_like(flux)
        mask = np.zeros((n, m), dtype=bool)
        continuum = np.empty_like(flux) if self.keep_continuum else None
        for start in range(0, n, self.chunk_size):
            sl = slice(start, start + self.chunk_size)
            lam_rest = wave[None, :] / doppler[sl, None]
            tau = self._optical_depth(wave, lam_rest, doppler[sl], teff[sl], logg[sl], strengths[:, sl])
            tau += _band_depth(wave, lam_rest, doppler[sl], tio[sl], g_band[sl], balmer_jump[sl], self.resolution)
            # Planck B_λ(T) / B_λ(5500 Å) times the flux scale, in float32 (hc/λkT < 15 here)
            ratio = (5500.0 / lam_rest).astype(np.float32)
            x55 = _HC_K / (5500.0 * teff[sl])
            cont = (amplitude[sl] * np.expm1(x55)).astype(np.float32)[:, None] * ratio**2 * ratio**2 * ratio
            cont /= np.expm1(ratio * x55.astype(np.float32)[:, None])
            true = cont * np.exp(-tau)
            med = np.median(true, axis=1)
            sigma = (med / snr[sl])[:, None] * np.sqrt(0.5 + 0.5 * true / med[:, None])
            ivar[sl] = 1.0 / sigma**2
            if continuum is not None:
                continuum[sl] = cont
            if self.noise:
                true += sigma * rng.standard_normal(true.shape, dtype=np.float32)
                self._add_bad_pixels(true, mask[sl], med, rng)
            flux[sl] = true
        ivar[mask] = 0.0
        if self.noise:
            log.info("simulated %d spectra; %d bad pixels masked (%.3f%%)", n, mask.sum(), 100 * mask.mean())
        return SimulatedSpectra(log_wave, flux, ivar, mask, labels, continuum)

    def _optical_depth(
        self,
        wave: np.ndarray,
        lam_rest: np.ndarray,
        doppler: np.ndarray,
        teff: np.ndarray,
        logg: np.ndarray,
        strengths: np.ndarray,
    ) -> np.ndarray:
        """Summed line optical depth (N, M); a loop over lines, each evaluated only near its centre."""
        n = lam_rest.shape[0]
        tau = np.zeros(lam_rest.shape, dtype=np.float32)
        z_lo, z_hi = doppler.min(), doppler.max()
        gravity = 10.0 ** (np.where(_LINE_IS_H, 0.35, 0.3)[:, None] * (logg - 4.44))
        for k, lam0 in enumerate(ll.LINE_WAVE_VAC):
            rows = np.flatnonzero(strengths[k] > 1e-3)
            if rows.size == 0:
                continue
            area = strengths[k, rows].astype(np.float32)
            v2 = (_AMU_KMS2 * teff[rows] / _LINE_MASS[k] + _MICROTURB_KMS**2) / 2.0
            sigma = (lam0 * np.sqrt((_SIGMA_PER_FWHM / self.resolution) ** 2 + v2 / C_KMS**2)).astype(np.float32)
            gamma = (_LINE_GAMMA[k] * gravity[k, rows]).astype(np.float32)
            # rest-frame half-width of each star's line: where the wing optical depth falls to ~1e-3 (capped at
            # 400 Å); the profile is tapered to zero over its outer 30 %, so that it ends smoothly and does not
            # depend on which other stars share the chunk
            half = np.minimum(np.maximum(6.0 * sigma, np.sqrt(area * gamma / np.float32(np.pi * 1e-3))), 400.0)
            j0, j1 = np.searchsorted(wave, [(lam0 - half.max()) * z_lo, (lam0 + half.max()) * z_hi])
            if j1 <= j0:
                continue
            whole = rows.size == n
            delta = ((lam_rest[:, j0:j1] if whole else lam_rest[rows, j0:j1]) - lam0).astype(np.float32)
            edge = np.clip((half[:, None] - np.abs(delta)) / (0.3 * half[:, None]), 0.0, 1.0)
            prof = (area[:, None] * edge * edge * (3.0 - 2.0 * edge)) * _pseudo_voigt(
                delta, sigma[:, None], gamma[:, None]
            )
            if whole:
                tau[:, j0:j1] += prof
            else:
                tau[rows, j0:j1] += prof
        return tau

    def _add_bad_pixels(self, flux: np.ndarray, mask: np.ndarray, level: np.ndarray, rng: np.random.Generator) -> None:
        """Cosmic-ray spikes and dead runs, written into this chunk's fresh ``flux`` and ``mask``."""
        n, m = flux.shape
        counts = rng.binomial(m, self.bad_pixel_fraction, n)
        rows = np.repeat(np.arange(n), counts)
        cols = rng.integers(0, m, rows.size)
        flux[rows, cols] += level[rows] * rng.uniform(2.0, 20.0, rows.size).astype(np.float32)
        mask[rows, cols] = True
        runs = np.flatnonzero(rng.random(n) < self.bad_run_probability)
        length = rng.integers(3, 31, runs.size)
        first = rng.integers(0, np.maximum(m - length, 1))
        offsets = np.arange(30)
        r, c = np.broadcast_arrays(runs[:, None], np.minimum(first[:, None] + offsets, m - 1))
        keep = offsets[None, :] < length[:, None]
        flux[r[keep], c[keep]] = 0.0
        mask[r[keep], c[keep]] = True


def _band_depth(
    wave: np.ndarray,
    lam_rest: np.ndarray,
    doppler: np.ndarray,
    tio: np.ndarray,
    g_band: np.ndarray,
    balmer_jump: np.ndarray,
    resolution: float,
) -> np.ndarray:
    """Optical depth of the TiO bands, the G band and the Balmer continuum, (N, M)."""
    tau = np.zeros(lam_rest.shape, dtype=np.float32)
    z_lo = doppler.min()
    rows = np.flatnonzero(tio > 1e-3)
    if rows.size:
        j0 = int(np.searchsorted(wave, (ll.TIO_HEADS_VAC[0] - 20.0) * z_lo))
        lam = lam_rest[rows, j0:].astype(np.float32)
        bands = np.zeros(lam.shape, dtype=np.float32)
        for head, rel in zip(ll.TIO_HEADS_VAC, ll.TIO_RELATIVE_STRENGTH, strict=True):
            d = lam - np.float32(head)
            width = head * _SIGMA_PER_FWHM / resolution
            step = 0.5 * (1.0 + np.tanh(d / (2.0 * width)))  # the head, smoothed by the instrument
            bands += rel * step * np.exp(-np.maximum(d, 0.0) / ll.TIO_RECOVERY_AA)
        tau[rows, j0:] += tio[rows, None].astype(np.float32) * bands
    rows = np.flatnonzero(g_band > 1e-3)
    if rows.size:
        sigma = np.hypot(ll.G_BAND_SIGMA_AA, ll.G_BAND_VAC * _SIGMA_PER_FWHM / resolution)
        j0, j1 = np.searchsorted(
            wave, [(ll.G_BAND_VAC - 6 * sigma) * z_lo, (ll.G_BAND_VAC + 6 * sigma) * doppler.max()]
        )
        d = lam_rest[rows, j0:j1] - ll.G_BAND_VAC
        tau[rows, j0:j1] += g_band[rows, None] / (sigma * np.sqrt(2 * np.pi)) * np.exp(-0.5 * (d / sigma) ** 2)
    rows = np.flatnonzero(balmer_jump > 1e-3)
    if rows.size:
        j1 = int(np.searchsorted(wave, (ll.BALMER_LIMIT_VAC + 60.0) * doppler.max()))
        d = lam_rest[rows, :j1] - ll.BALMER_LIMIT_VAC
        tau[rows, :j1] += balmer_jump[rows, None] * 0.5 * (1.0 - np.tanh(d / 10.0))
    return tau


def _labels(teff: np.ndarray, logg: np.ndarray, feh: np.ndarray, rv: np.ndarray, snr: np.ndarray) -> pd.DataFrame:
    letters = np.asarray(MK_CLASSES)[mk_letter_from_teff(teff)]
    return pd.DataFrame({"teff": teff, "logg": logg, "feh": feh, "rv": rv, "snr": snr, "mk_class": letters})


def simulate_spectra(n: int, seed: int = 0, **kwargs: Any) -> SimulatedSpectra:
    """Simulate ``n`` spectra with a :class:`SpectrumSimulator` built from ``kwargs``.

    Examples
    --------
    >>> out = simulate_spectra(7, seed=3, wave_min=5000.0, wave_max=6000.0)
    >>> len(out), out.flux.dtype.name, bool(np.isfinite(out.flux).all())
    (7, 'float32', True)
    """
    return SpectrumSimulator(**kwargs).simulate(n, seed)
