"""A seeded, vectorised simulator of variable-star light curves on Kepler, TESS and ground-based cadences.

Physics, deliberately simple but grounded (magnitudes; positive = fainter):

- Eclipsing binaries: two spheres on a circular orbit (radii ``r1, r2`` in units of the separation ``a``,
  inclination ``i``, surface-brightness ratio ``J``), eclipses from the exact overlap area of two discs, with
  linear limb darkening integrated over concentric annuli (exact for uniform discs), plus the ellipsoidal
  term ``q r³ sin² i`` of each star. Detached (small radii, any ``J``), semi-detached (Algol: a cool,
  lobe-filling secondary) and contact (W UMa: large radii, ``J`` near 1, strong ellipsoidal light) systems
  differ only in their priors. ``J`` rises towards the red as a Wien ratio.
- Pulsators as Fourier series: RRab a sawtooth (harmonic ratios ``ρ^(k-1)``, ρ ≈ 0.5; period and amplitude
  on the Oosterhoff I Bailey relation of Cacciari+2005), RRc near-sinusoids, classical Cepheids sawtooths with
  the Hertzsprung-progression dip of R21 near 10 d and amplitude growing with period, δ Scuti one to four modes
  (the second often at the 0.77 first-overtone ratio), long-period variables a sinusoid with cycle-to-cycle
  phase wander. Pulsation amplitudes scale as λ^-1.2 between bands (A_B : A_V : A_I ≈ 1.25 : 1 : 0.63).
- Rotation: two spots as rotating sinusoids (fundamental plus harmonic), the second at a slightly different
  (differentially rotating) period, both with amplitudes that grow and decay over tens of days.
- Flares: fast Gaussian rise (1-5 min) and exponential decay (5-60 min) at a Poisson rate, in flux.
- Cadences: Kepler long cadence (29.4 min, monthly downlink and quarterly roll gaps), TESS (2, 10 or 30 min;
  13.7-day orbits with a downlink gap), and sparse ground surveys (seasons of ~180 d per year, one epoch per
  night or fewer, observed near meridian transit so the transit time drifts ~4 min/day across a season: the
  source of one-day and one-year aliases; all bands observed in one visit, like SDSS Stripe 82 or EROS).
- Noise: magnitude dependent, the LSST-style ground model ``σ² = σ_sys² + (0.04 − γ) x + γ x²`` with
  ``x = 10^(0.4 (m − m5))`` and per-epoch seeing scatter, or photon plus floor noise for Kepler/TESS (in ppm per
  cadence, scaled to the cadence); integration over the exposure damps each Fourier harmonic by a sinc factor;
  a small fraction of flagged (masked) cadences and of unflagged outliers.

Known simplifications: no supersampling of eclipses and flares within a cadence, no reflection effect, no
eccentric orbits, no Blazhko modulation, no instrumental long-term trends.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stellar.errors import StellarValueError

log = logging.getLogger(__name__)

#: Class names, in label order.
VARIABILITY_CLASSES: tuple[str, ...] = (
    "eclipsing_detached",
    "eclipsing_semidetached",
    "eclipsing_contact",
    "rr_lyrae_ab",
    "rr_lyrae_c",
    "cepheid",
    "delta_scuti",
    "rotational",
    "lpv",
    "flare",
    "non_variable",
)
#: Cadence models.
CADENCES: tuple[str, ...] = ("kepler", "tess", "ground")
#: Classes whose ``period`` label is strictly periodic (rotation is quasi-periodic; flares, non-variables have none).
PERIODIC_CLASSES: tuple[str, ...] = (*VARIABILITY_CLASSES[:7], "lpv")

KEPLER_CADENCE_D = 29.4244 / 1440.0
TESS_ORBIT_D = 13.7
#: Effective wavelengths (nm) used to scale amplitudes, surface-brightness ratios and colours; others get 600 nm.
BAND_WAVELENGTH_NM = {
    "u": 355.0, "g": 475.0, "r": 622.0, "i": 763.0, "z": 905.0, "U": 365.0, "B": 445.0, "V": 551.0, "R": 658.0,
    "I": 806.0, "kepler": 640.0, "tess": 800.0, "eros_b": 540.0, "eros_r": 720.0, "G": 640.0, "BP": 510.0,
    "RP": 780.0, "b": 540.0,
}  # fmt: skip
_V_NM = 551.0
_MAG_RANGE = {"kepler": (10.0, 16.0), "tess": (8.0, 13.0), "ground": (14.0, 20.5)}
_LABEL_COLUMNS = (
    "var_class", "period", "amplitude", "mean_mag", "t0", "radius_ratio", "r1", "r2", "inclination", "sb_ratio",
    "mass_ratio", "limb_darkening", "n_modes", "flare_rate", "n_flares", "spot_evolution",
)  # fmt: skip


@dataclass
class SimulatedLightCurves:
    """Padded light curves, one per row, with their labels.

    Attributes
    ----------
    time : numpy.ndarray of float64, (N, T), d
        Observation times (MJD-like for ground, BKJD/BTJD-like for space); padded slots hold 0.
    mag, mag_err : numpy.ndarray of float64, (N, T), mag
        Observed magnitudes and their 1σ errors; padded slots hold 0.
    band : numpy.ndarray of int64, (N, T)
        Index into the simulator's ``bands``.
    mask : numpy.ndarray of bool, (N, T)
        ``True`` on padded slots and on flagged (bad) cadences.
    labels : pandas.DataFrame
        One row per light curve: ``var_class``, ``period`` (d, NaN if aperiodic), ``amplitude`` (peak-to-peak of
        the noiseless model in the first band, mag), ``mean_mag`` (first band), ``t0`` (d, epoch of phase 0 =
        primary minimum for binaries) and class-specific columns (NaN where they do not apply): ``radius_ratio``
        (r2/r1), ``r1``, ``r2`` (radii / separation), ``inclination`` (deg), ``sb_ratio`` (J in the first
        band), ``mass_ratio``, ``limb_darkening`` (linear u), ``n_modes``, ``flare_rate`` (1/d), ``n_flares``,
        ``spot_evolution`` (d).
    bands : tuple of str
    """

    time: np.ndarray
    mag: np.ndarray
    mag_err: np.ndarray
    band: np.ndarray
    mask: np.ndarray
    labels: pd.DataFrame
    bands: tuple[str, ...] = ("r",)

    def __len__(self) -> int:
        return int(self.mag.shape[0])

    @property
    def flux(self) -> np.ndarray:
        """Flux relative to each light curve's first-band mean magnitude (0 in padded slots), dimensionless."""
        f = 10.0 ** (-0.4 * (self.mag - self.labels["mean_mag"].to_numpy()[:, None]))
        return np.where(self.mask & (self.mag == 0), 0.0, f)

    @property
    def flux_err(self) -> np.ndarray:
        """1σ error of :attr:`flux` (0 in padded slots), dimensionless."""
        return self.flux * self.mag_err / (2.5 / np.log(10.0))


# ----------------------------------------------------------------------------------------------- physics
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


# ----------------------------------------------------------------------------------------------- simulator
@dataclass(frozen=True)
class LightCurveSimulator:
    """Seeded light-curve simulator: variability classes × cadence models × magnitude-dependent noise.

    Parameters
    ----------
    cadence : {'kepler', 'tess', 'ground'}
        Sampling model (see the module docstring).
    n_points : int
        Slots per light curve ``T`` (all bands together); ground light curves fill a random 60-100% of them
        (``min_fill``), the rest is padding.
    bands : tuple of str
        Band names; ground visits observe every band, space cadences alternate them.
    classes : tuple of str
        Subset of :data:`VARIABILITY_CLASSES` to draw from, uniformly (balanced by default).
    baseline : float or None, d
        Ground-survey span (default 2,900 d ≈ 8 seasons, like Stripe 82); space cadences are set by ``n_points``.
    tess_cadence_min : float, min
        TESS cadence: 2, 10 or 30.
    mag_range : tuple of float or None, mag
        Mean magnitudes, uniform; default per cadence (Kepler 10-16, TESS 8-13, ground 14-20.5).
    m5 : float, mag
        Ground 5σ depth per visit.
    min_fill : float or None
        Smallest filled fraction of the ``n_points`` slots (default 0.6 on the ground, 1 in space).
    bad_fraction, outlier_fraction : float
        Fraction of cadences flagged (masked, with a glitch added) and of unflagged outliers (0.1-1 mag on the
        ground, 5-50 σ in space).
    noise : bool
        Add noise (errors are reported either way).
    balance_classes : bool
        Equal counts per class (up to one), shuffled; otherwise classes drawn at random.

    Examples
    --------
    >>> sim = LightCurveSimulator(cadence="ground", n_points=100, bands=("g", "r"))
    >>> lc = sim.simulate(22, seed=1)
    >>> lc.mag.shape, sorted(set(lc.labels.var_class)) == sorted(VARIABILITY_CLASSES)
    ((22, 100), True)
    """

    cadence: str = "ground"
    n_points: int = 200
    bands: tuple[str, ...] = ("r",)
    classes: tuple[str, ...] = VARIABILITY_CLASSES
    baseline: float | None = None
    tess_cadence_min: float = 30.0
    mag_range: tuple[float, float] | None = None
    m5: float = 22.5
    min_fill: float | None = None
    bad_fraction: float = 0.01
    outlier_fraction: float = 0.002
    noise: bool = True
    balance_classes: bool = True

    def __post_init__(self) -> None:
        if self.cadence not in CADENCES:
            raise StellarValueError(f"cadence must be one of {CADENCES}; got {self.cadence!r}")
        if int(self.n_points) != self.n_points or self.n_points < 4:
            raise StellarValueError(f"n_points must be an integer >= 4; got {self.n_points}")
        object.__setattr__(self, "bands", tuple(str(b) for b in self.bands))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.bands:
            raise StellarValueError("bands must name at least one band")
        bad = [c for c in self.classes if c not in VARIABILITY_CLASSES]
        if bad or not self.classes:
            raise StellarValueError(f"classes must be a non-empty subset of {VARIABILITY_CLASSES}; got {bad}")
        if self.tess_cadence_min not in (2, 10, 30):
            raise StellarValueError(f"tess_cadence_min must be 2, 10 or 30 (min); got {self.tess_cadence_min}")
        if self.baseline is not None and not self.baseline > 1:
            raise StellarValueError(f"baseline must be > 1 d; got {self.baseline}")
        if self.mag_range is not None:
            lo, hi = (float(x) for x in self.mag_range)
            if not lo <= hi:
                raise StellarValueError(f"mag_range must be (low, high) with low <= high; got {self.mag_range}")
            object.__setattr__(self, "mag_range", (lo, hi))
        if self.min_fill is not None and not 0 < self.min_fill <= 1:
            raise StellarValueError(f"min_fill must be in (0, 1]; got {self.min_fill}")
        for name in ("bad_fraction", "outlier_fraction"):
            if not 0 <= getattr(self, name) < 0.5:
                raise StellarValueError(f"{name} must be in [0, 0.5); got {getattr(self, name)}")

    # -------------------------------------------------------------------------------------------- public
    @property
    def exposure_d(self) -> float:
        """Integration time of one cadence, d (ground visits: 54 s)."""
        return {"kepler": KEPLER_CADENCE_D, "tess": self.tess_cadence_min / 1440.0}.get(self.cadence, 54.0 / 86400)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form with ``_target_`` (for dataset provenance and Hydra)."""
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", **params}

    def simulate(self, n: int, seed: int = 0) -> SimulatedLightCurves:
        """Simulate ``n`` light curves; the same seed gives the same output.

        Parameters
        ----------
        n : int
            Number of light curves.
        seed : int
            Seed of ``numpy.random.default_rng`` (sampling, class parameters and noise use spawned streams).

        Returns
        -------
        SimulatedLightCurves
        """
        if int(n) != n or n < 0:
            raise StellarValueError(f"n must be a non-negative integer; got {n}")
        n = int(n)
        s_cls, s_time, s_par, s_noise = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
        k = len(self.classes)
        idx = np.arange(n) % k if self.balance_classes else s_cls.integers(0, k, n)
        cls = np.asarray(self.classes, dtype=object)[s_cls.permutation(idx) if self.balance_classes else idx]
        time, band, pad, flagged = self._sample_times(n, s_time)
        lo, hi = self.mag_range or _MAG_RANGE[self.cadence]
        mean_mag = s_par.uniform(lo, hi, n)
        colour = s_par.uniform(0.3, 2.0, n)  # mag per unit of (λ0/λ - 1), a blackbody-like colour
        lam = _lam(self.bands)
        mean = mean_mag[:, None] + colour[:, None] * (lam[0] / lam[band] - 1.0)
        delta = np.zeros(time.shape)
        labels = {c: np.full(n, np.nan) for c in _LABEL_COLUMNS[1:]}
        for name in self.classes:
            rows = np.flatnonzero(cls == name)
            if rows.size:
                d, lab = getattr(self, f"_sim_{name}")(time[rows], band[rows], s_par)
                delta[rows] = d
                for key, val in lab.items():
                    labels[key][rows] = val
        labels["mean_mag"] = mean_mag
        model = mean + delta
        err, mag = self._noise(model, flagged, s_noise)
        mask = pad | flagged
        table = pd.DataFrame({"var_class": cls.astype(str), **{c: labels[c] for c in _LABEL_COLUMNS[1:]}})
        log.info("simulated %d %s light curves; %d cadences flagged", n, self.cadence, int(flagged.sum()))
        zero = np.where(pad, 0.0, 1.0)
        return SimulatedLightCurves(
            time * zero, mag * zero, err * zero, np.where(pad, 0, band).astype(np.int64), mask, table, self.bands
        )

    # -------------------------------------------------------------------------------------------- sampling
    def _sample_times(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Times (d), band indices, padding and flagged-cadence masks, each (n, n_points)."""
        t_slots, nb = self.n_points, len(self.bands)
        if self.cadence == "ground":
            t, band, pad = self._ground_times(n, rng)
        else:
            dt = self.exposure_d
            m = int(t_slots * 1.3) + 200
            k = np.arange(m) * dt
            if self.cadence == "kepler":
                start = rng.uniform(131.5, 1400.0, n)[:, None]
                month = np.mod(start + k, 30.5)
                quarter = np.mod(start + k, 93.0)
                gap = (month < 1.0) | (quarter < 1.5)  # monthly downlink, quarterly roll
            else:
                start = rng.uniform(1325.0, 2500.0, n)[:, None]
                gap = np.mod(start + k, TESS_ORBIT_D) < 1.0  # perigee downlink once per orbit
            order = np.argsort(gap, axis=1, kind="stable")[:, :t_slots]  # first t_slots cadences outside gaps
            t = np.take_along_axis(start + k, order, axis=1)
            band = np.broadcast_to(np.arange(t_slots) % nb, t.shape).copy()
            fill = self.min_fill if self.min_fill is not None else 1.0
            n_valid = np.ceil(t_slots * rng.uniform(fill, 1.0, n)).astype(int)
            pad = np.arange(t_slots)[None, :] >= n_valid[:, None]
        flagged = (rng.random(t.shape) < self.bad_fraction) & ~pad
        return np.where(pad, 0.0, t), band, pad, flagged

    def _ground_times(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t_slots, nb = self.n_points, len(self.bands)
        baseline = self.baseline or 2900.0
        n_ep = -(-t_slots // nb)
        season_len = 180.0
        n_seasons = int(np.ceil(baseline / 365.25))
        # a uniform draw within the seasons, floored to a night: ~0.1-1 visit per night
        u = np.sort(rng.uniform(0, 1, (n, n_ep)), axis=1)
        season = np.minimum((u * n_seasons).astype(int), n_seasons - 1)
        day = np.floor((u * n_seasons - season) * season_len)
        night = np.floor(season * 365.25 + day)
        # observed near transit: the transit drifts by one sidereal day per year (about -4 min/night)
        transit = -(day - season_len / 2) / 365.25
        frac = np.clip(transit + rng.normal(0, 0.06, (n, n_ep)), -0.3, 0.3)
        start = rng.integers(51000, 53000, n)[:, None] + 0.29  # local midnight of a site at 106 deg W, in UT
        epoch = np.minimum(start + night + frac, start + baseline)
        t = (epoch[:, :, None] + np.arange(nb) * 72.0 / 86400.0).reshape(n, -1)[:, :t_slots]
        band = np.broadcast_to(np.arange(n_ep * nb) % nb, (n, n_ep * nb))[:, :t_slots].copy()
        fill = self.min_fill if self.min_fill is not None else 0.6
        n_valid = np.ceil(rng.uniform(fill, 1.0, n) * n_ep).astype(int) * nb
        # keep a random subset of epochs (time-ordered): pad out the rest at the end
        keep_ep = np.argsort(rng.random((n, n_ep)), axis=1) < (n_valid // nb)[:, None]
        keep = np.repeat(keep_ep, nb, axis=1)[:, :t_slots]
        order = np.argsort(~keep, axis=1, kind="stable")
        t = np.take_along_axis(t, order, axis=1)
        band = np.take_along_axis(band, order, axis=1)
        pad = ~np.take_along_axis(keep, order, axis=1)
        return t, band, pad

    # -------------------------------------------------------------------------------------------- noise
    def _noise(self, model: np.ndarray, flagged: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """1σ errors and noisy magnitudes; flagged cadences get a glitch."""
        if self.cadence == "ground":
            x = 10.0 ** (0.4 * (model - self.m5))
            gamma = 0.039
            sigma = np.sqrt(0.005**2 + (0.04 - gamma) * x + gamma * x * x)
            sigma = sigma * rng.lognormal(0.0, 0.2, model.shape)  # seeing and transparency, visit to visit
        else:
            # ppm per cadence: Kepler ~ 90 ppm and TESS 30-min ~ 250 ppm at magnitude 12 and 10, photon-limited
            ref_mag, ref_ppm = (12.0, 90.0) if self.cadence == "kepler" else (10.0, 250.0)
            ppm = ref_ppm * np.sqrt(self.exposure_d / (30.0 / 1440)) ** -1
            ppm_phot = ppm * 10.0 ** (0.2 * (model - ref_mag))
            sigma = 1.0857e-6 * np.sqrt(ppm_phot**2 + 20.0**2)
        mag = model.copy()
        if self.noise:
            mag += sigma * rng.standard_normal(model.shape)
            out = rng.random(model.shape) < self.outlier_fraction
            size = rng.uniform(0.1, 1.0, model.shape) if self.cadence == "ground" else sigma * rng.uniform(5, 50)
            mag += np.where(out, size * rng.choice([-1.0, 1.0], model.shape), 0.0)
            mag += np.where(flagged, rng.uniform(-0.5, 0.5, model.shape) * (0.2 + 10 * sigma), 0.0)
        return sigma, mag

    # -------------------------------------------------------------------------------------------- classes
    def _eclipsing(
        self, time: np.ndarray, band: np.ndarray, rng: np.random.Generator, kind: str
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = int(time.shape[0])
        if kind == "detached":
            period = np.exp(rng.uniform(np.log(1.0), np.log(30.0), n))
            r1 = rng.uniform(0.02, 0.15, n)
            r2 = r1 * rng.uniform(0.2, 1.0, n)
            j = rng.uniform(0.05, 1.0, n)
            q = rng.uniform(0.3, 1.0, n)
        elif kind == "semidetached":
            period = np.exp(rng.uniform(np.log(0.7), np.log(10.0), n))
            q = rng.uniform(0.1, 0.5, n)
            r2 = 0.49 * q ** (2 / 3) / (0.6 * q ** (2 / 3) + np.log1p(q ** (1 / 3)))  # Eggleton Roche lobe
            r1 = rng.uniform(0.15, 0.35, n)
            j = rng.uniform(0.02, 0.3, n)
        else:
            period = np.exp(rng.uniform(np.log(0.22), np.log(0.8), n))
            q = rng.uniform(0.1, 1.0, n)
            r1 = rng.uniform(0.38, 0.5, n)
            r2 = r1 * q**0.46
            j = rng.uniform(0.8, 1.0, n)
        impact = rng.uniform(0.0, 0.9, n) * (r1 + r2)  # eclipsing by construction
        inc = np.degrees(np.arccos(np.clip(impact, 0, 1)))
        u = rng.uniform(0.3, 0.7, n)
        t0 = np.nanmin(np.where(time > 0, time, np.nan), axis=1) + rng.uniform(0, 1, n) * period
        lam = _lam(self.bands)
        j_band = j[:, None] ** (lam[0] / lam[band])  # Wien-like: the cooler star fades towards the blue
        phase = np.mod((time - t0[:, None]) / period[:, None], 1.0)
        args = (r1[:, None], r2[:, None], inc[:, None], j_band, u[:, None], q[:, None])
        flux = eclipsing_binary_flux(phase, *args)
        grid = np.array([[0.0, 0.25, 0.5]])  # extremes: conjunctions (eclipses, ellipsoidal minima), quadrature
        ref = eclipsing_binary_flux(grid, *args[:3], j[:, None], u[:, None], q[:, None])  # first band: J itself
        amplitude = 2.5 * np.log10(ref.max(axis=1) / ref.min(axis=1))
        labels = {"period": period, "amplitude": amplitude, "t0": t0, "radius_ratio": r2 / r1, "r1": r1, "r2": r2}
        labels |= {"inclination": inc, "sb_ratio": j, "mass_ratio": q, "limb_darkening": u}
        return -2.5 * np.log10(flux), labels

    def _sim_eclipsing_detached(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        return self._eclipsing(t, b, rng, "detached")

    def _sim_eclipsing_semidetached(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        return self._eclipsing(t, b, rng, "semidetached")

    def _sim_eclipsing_contact(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        return self._eclipsing(t, b, rng, "contact")

    def _pulsator(
        self,
        time: np.ndarray,
        band: np.ndarray,
        rng: np.random.Generator,
        period: np.ndarray,
        amplitude: np.ndarray,
        amp: np.ndarray,
        ph: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = int(time.shape[0])
        t0 = rng.uniform(0, 1, n) * period
        k = np.arange(1, amp.shape[1] + 1)
        smear = np.sinc(k[None, :] * self.exposure_d / period[:, None])  # integration over one exposure
        phase = (time - t0[:, None]) / period[:, None]
        delta = _fourier(phase, amplitude[:, None] * amp * smear, ph) * _band_scale(self.bands)[band]
        return delta, {"period": period, "amplitude": amplitude, "t0": t0}

    def _sim_rr_lyrae_ab(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        period = np.clip(np.exp(rng.normal(np.log(0.57), 0.1, n)), 0.42, 0.85)
        lp = np.log10(period)
        a_v = -2.627 - 22.046 * lp - 30.876 * lp**2  # Bailey relation, Oosterhoff I (Cacciari+2005)
        amplitude = np.clip(a_v + rng.normal(0, 0.12, n), 0.3, 1.4) * _band_scale(("V", self.bands[0]))[1]
        amp, ph = _sawtooth(rng, n, rng.uniform(0.42, 0.55, n))
        return self._pulsator(t, b, rng, period, amplitude, amp, ph)

    def _sim_rr_lyrae_c(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        period = rng.uniform(0.23, 0.43, n)
        amplitude = rng.uniform(0.25, 0.6, n) * _band_scale(("V", self.bands[0]))[1]
        amp = np.stack([np.ones(n), rng.uniform(0.05, 0.2, n), rng.uniform(0.0, 0.08, n)], axis=1)
        ph = rng.uniform(0, 2 * np.pi, (n, 3)) * np.array([0.0, 1.0, 1.0])
        return self._pulsator(t, b, rng, period, amplitude, _unit_ptp(amp, ph), ph)

    def _sim_cepheid(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        lp = rng.uniform(np.log10(2.0), np.log10(60.0), n)
        period = 10.0**lp
        amplitude = np.clip(0.35 + 0.5 * lp + rng.normal(0, 0.12, n), 0.15, 1.4) * _band_scale(("V", self.bands[0]))[1]
        ratio = 0.45 - 0.3 * np.exp(-(((lp - 1.0) / 0.08) ** 2))  # Hertzsprung progression: R21 dips near 10 d
        amp, ph = _sawtooth(rng, n, np.clip(ratio + rng.normal(0, 0.03, n), 0.1, 0.6), k=6)
        return self._pulsator(t, b, rng, period, amplitude, amp, ph)

    def _sim_delta_scuti(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        lo = max(0.03, 4 * self.exposure_d)  # keep the dominant mode well below the Nyquist frequency
        period = np.exp(rng.uniform(np.log(lo), np.log(0.25), n))
        amplitude = np.exp(rng.uniform(np.log(0.01), np.log(0.3), n))
        n_modes = rng.integers(1, 5, n)
        ratios = np.stack([np.full(n, 0.773), rng.uniform(0.6, 1.4, n), rng.uniform(0.6, 1.4, n)], axis=1)
        rel = rng.uniform(0.1, 0.6, (n, 3)) * (np.arange(1, 4)[None, :] < n_modes[:, None])
        t0 = rng.uniform(0, 1, n) * period
        scale = _band_scale(self.bands)[b]
        delta = 0.5 * np.cos(2 * np.pi * (t - t0[:, None]) / period[:, None])
        delta *= np.sinc(self.exposure_d / period)[:, None]
        for m in range(3):
            p = period * ratios[:, m]
            delta += (
                0.5
                * (rel[:, m] * np.sinc(self.exposure_d / p))[:, None]
                * np.cos(2 * np.pi * t / p[:, None] + rng.uniform(0, 2 * np.pi, n)[:, None])
            )
        return amplitude[:, None] * delta * scale, {"period": period, "amplitude": amplitude, "t0": t0,
                                                    "n_modes": n_modes.astype(float)}  # fmt: skip

    def _sim_rotational(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        period = np.exp(rng.uniform(np.log(0.5), np.log(30.0), n))
        amplitude = np.exp(rng.uniform(np.log(0.002), np.log(0.08), n))
        tau = period * rng.uniform(5.0, 20.0, n)  # spot lifetime
        t0 = rng.uniform(0, 1, n) * period
        scale = _band_scale(self.bands)[b]
        delta = np.zeros(t.shape)
        for spot, shear in enumerate((np.zeros(n), rng.uniform(-0.01, 0.01, n))):
            p = period * (1 + shear)
            w = 1.0 if spot == 0 else 0.5
            grow = 1.0 + 0.5 * np.sin(2 * np.pi * t / tau[:, None] + rng.uniform(0, 2 * np.pi, n)[:, None])
            phase = (t - t0[:, None]) / p[:, None] + (0.0 if spot == 0 else rng.uniform(0, 1, n)[:, None])
            h2 = rng.uniform(0.1, 0.3, n)[:, None]
            delta += w * grow * (np.cos(2 * np.pi * phase) + h2 * np.cos(4 * np.pi * phase + 1.0))
        delta *= 0.5 * amplitude[:, None] / 1.5
        return delta * scale, {"period": period, "amplitude": amplitude, "t0": t0, "spot_evolution": tau}

    def _sim_lpv(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n = int(t.shape[0])
        period = np.exp(rng.uniform(np.log(80.0), np.log(600.0), n))
        amplitude = np.exp(rng.uniform(np.log(0.1), np.log(3.0), n))
        t0 = rng.uniform(0, 1, n) * period
        # cycle-to-cycle phase wander: a slow random walk sampled on a coarse grid, interpolated
        tmin = np.where(t > 0, t, np.inf).min(axis=1)
        cyc = (t - tmin[:, None]) / period[:, None]
        knots = np.cumsum(rng.normal(0, 0.03, (n, 64)), axis=1)
        wander = np.take_along_axis(knots, np.clip(cyc.astype(int), 0, 63), axis=1)
        phase = (t - t0[:, None]) / period[:, None] + wander
        h2 = rng.uniform(0.0, 0.25, n)[:, None]
        shape = np.cos(2 * np.pi * phase) + h2 * np.cos(4 * np.pi * phase + 0.8)
        ptp = np.ptp(np.cos(2 * np.pi * np.linspace(0, 1, 256)) + h2 * np.cos(4 * np.pi * np.linspace(0, 1, 256) + 0.8),
                     axis=1)  # fmt: skip
        delta = amplitude[:, None] * shape / ptp[:, None] * _band_scale(self.bands)[b]
        return delta, {"period": period, "amplitude": amplitude, "t0": t0}

    def _sim_flare(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        n, m = t.shape
        rate = np.exp(rng.uniform(np.log(0.1), np.log(2.0), n))  # flares per day
        valid = t > 0
        t_lo = np.where(valid, t, np.inf).min(axis=1)
        t_hi = np.where(valid, t, -np.inf).max(axis=1)
        span = np.maximum(t_hi - t_lo, 1e-3)
        counts = rng.poisson(rate * span)
        row = np.repeat(np.arange(n), counts)
        peak = t_lo[row] + rng.uniform(0, 1, row.size) * span[row]
        amp = np.exp(rng.uniform(np.log(0.01), np.log(1.0), row.size))  # peak flux / quiescent flux
        rise = rng.uniform(1.0, 5.0, row.size) / 1440.0
        decay = rng.uniform(5.0, 60.0, row.size) / 1440.0
        # each point takes the nearest flares on either side: sort flares per row on one global axis
        offset = (np.arange(n) * (span.max() + 10 * 1.0) * 4).astype(float)
        key = peak - t_lo[row] + offset[row]
        order = np.argsort(key)
        key, amp, rise, decay, row = key[order], amp[order], rise[order], decay[order], row[order]
        tq = np.where(valid, t - t_lo[:, None], 0.0) + offset[:, None]
        flux = np.zeros((n, m))
        if key.size:
            j = np.searchsorted(key, tq)  # the next flare is j, the previous ones j-1, j-2
            for back in (1, 2, 3):
                i = np.clip(j - back, 0, key.size - 1)
                same = (j - back >= 0) & (np.abs(key[i] - tq) < span.max() + 10)
                dt = tq - key[i]
                flux += np.where(same & (dt >= 0), amp[i] * np.exp(-np.clip(dt, 0, None) / decay[i]), 0.0)
            i = np.clip(j, 0, key.size - 1)
            dt = tq - key[i]
            flux += np.where((j < key.size) & (dt < 0), amp[i] * np.exp(-0.5 * (dt / rise[i]) ** 2), 0.0)
        delta = -2.5 * np.log10(1.0 + flux * np.where(valid, 1.0, 0.0)) * _band_scale(self.bands)[b]
        max_amp = np.zeros(n)
        np.maximum.at(max_amp, row, amp)
        return delta, {"amplitude": 2.5 * np.log10(1 + max_amp), "flare_rate": rate, "n_flares": counts.astype(float)}

    def _sim_non_variable(self, t: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple:
        return np.zeros(t.shape), {"amplitude": np.zeros(t.shape[0])}


def simulate_lightcurves(n: int, seed: int = 0, **kwargs: Any) -> SimulatedLightCurves:
    """Simulate ``n`` light curves with a :class:`LightCurveSimulator` built from ``kwargs``.

    Examples
    --------
    >>> out = simulate_lightcurves(11, seed=3, cadence="kepler", n_points=500, bands=("kepler",))
    >>> len(out), out.time.dtype.name, bool(np.isfinite(out.mag).all())
    (11, 'float64', True)
    """
    return LightCurveSimulator(**kwargs).simulate(n, seed)
