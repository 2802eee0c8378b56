"""The simulator: cadences, noise, and the classes drawn and put together (see
:mod:`stellar.data.simulate.lightcurve`)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.simulate.lightcurve._classes import _ClassModels
from stellar.data.simulate.lightcurve._physics import _lam
from stellar.errors import StellarValueError

# records keep the public module's name, as before the split
log = logging.getLogger(__package__)

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

    # the public path: pickles name the class by it
    __module__ = "stellar.data.simulate.lightcurve"

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


@dataclass(frozen=True)
class LightCurveSimulator(_ClassModels):
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

    # the public path: configs and datasets' provenance (``_target_`` in to_dict) and pickles name it by it
    __module__ = "stellar.data.simulate.lightcurve"

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

    def simulate(self, n: int, seed: int = 0, var_class: Any = None, mean_mag: Any = None) -> SimulatedLightCurves:
        """Simulate ``n`` light curves; the same seed gives the same output.

        Parameters
        ----------
        n : int
            Number of light curves.
        seed : int
            Seed of ``numpy.random.default_rng`` (sampling, class parameters and noise use spawned streams).
        var_class : sequence of str, optional
            The class of each light curve (n,), any of :data:`VARIABILITY_CLASSES` (e.g. set by a star's place
            in the HR diagram); by default drawn from ``classes``.
        mean_mag : array-like, optional, mag
            Mean magnitude of each light curve in the first band (n,); by default uniform in ``mag_range``.

        Returns
        -------
        SimulatedLightCurves
        """
        if int(n) != n or n < 0:
            raise StellarValueError(f"n must be a non-negative integer; got {n}")
        n = int(n)
        s_cls, s_time, s_par, s_noise = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
        if var_class is None:
            k = len(self.classes)
            idx = np.arange(n) % k if self.balance_classes else s_cls.integers(0, k, n)
            cls = np.asarray(self.classes, dtype=object)[s_cls.permutation(idx) if self.balance_classes else idx]
        else:
            cls = np.asarray([str(c) for c in var_class], dtype=object)
            bad = sorted(set(cls) - set(VARIABILITY_CLASSES))
            if len(cls) != n or bad:
                raise StellarValueError(
                    f"var_class must give one of {VARIABILITY_CLASSES} for each of the {n} light curves; "
                    f"got {len(cls)} values, unknown {bad}"
                )
        time, band, pad, flagged = self._sample_times(n, s_time)
        lo, hi = self.mag_range or _MAG_RANGE[self.cadence]
        mean_mag_drawn = s_par.uniform(lo, hi, n)
        if mean_mag is None:
            mean_mag = mean_mag_drawn
        else:
            mean_mag = np.asarray(mean_mag, dtype=float)
            if mean_mag.shape != (n,) or not np.isfinite(mean_mag).all():
                raise StellarValueError(f"mean_mag must be {n} finite magnitudes; got shape {mean_mag.shape}")
        colour = s_par.uniform(0.3, 2.0, n)  # mag per unit of (λ0/λ - 1), a blackbody-like colour
        lam = _lam(self.bands)
        mean = mean_mag[:, None] + colour[:, None] * (lam[0] / lam[band] - 1.0)
        delta = np.zeros(time.shape)
        labels = {c: np.full(n, np.nan) for c in _LABEL_COLUMNS[1:]}
        for name in dict.fromkeys([*self.classes, *cls]):
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


def simulate_lightcurves(n: int, seed: int = 0, **kwargs: Any) -> SimulatedLightCurves:
    """Simulate ``n`` light curves with a :class:`LightCurveSimulator` built from ``kwargs``.

    Examples
    --------
    >>> out = simulate_lightcurves(11, seed=3, cadence="kepler", n_points=500, bands=("kepler",))
    >>> len(out), out.time.dtype.name, bool(np.isfinite(out.mag).all())
    (11, 'float64', True)
    """
    return LightCurveSimulator(**kwargs).simulate(n, seed)
