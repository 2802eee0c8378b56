"""The paired simulator: one draw of a star gives its spectrum, its SED with a parallax and its light curve.

Each star is drawn once and rendered by the existing simulators, so the three modalities agree on the star:

- Stars: Teff, log g, mass, radius, dwarf/giant, true parallax and E(B-V) from
  :meth:`SEDSimulator.draw_stars <stellar.data.simulate.sed.SEDSimulator.draw_stars>`; [Fe/H], radial velocity
  and spectral S/N from :meth:`SpectrumSimulator.draw_labels
  <stellar.data.simulate.spectra.SpectrumSimulator.draw_labels>` (its Teff and log g are not used). A share
  ``horizontal_branch_fraction`` of the stars is moved to a metal-poor horizontal branch (Teff 5,500–8,500 K,
  log g 2.3–3.2, 0.55–0.8 M☉, [Fe/H] ≈ −1.6), the home of RR Lyrae stars, which neither simulator draws.
- Variability: an ordered list of :class:`VariabilityRule` boxes in the HR diagram (Teff, log g, [Fe/H],
  population), each taking a share of the still-unassigned stars inside it: RR Lyrae on the horizontal branch in
  the instability strip (RRab on its cool side, RRc on its hot side), Cepheids among the supergiants crossing
  it, δ Scuti where it meets the main sequence, long-period variables on the cool upper giant branch, flares
  on M dwarfs, spots on cool dwarfs, contact binaries among F–K dwarfs and detached/semi-detached eclipsing
  binaries anywhere; the rest are constant. Period and amplitude are drawn by the light-curve simulator's
  priors for the class.
- Rendering: the spectrum by :meth:`SpectrumSimulator.render
  <stellar.data.simulate.spectra.SpectrumSimulator.render>` at the star's Teff, log g, [Fe/H], rv and S/N; the
  photometry and observed parallax by :meth:`SEDSimulator.observe
  <stellar.data.simulate.sed.SEDSimulator.observe>`; the light curve by :meth:`LightCurveSimulator.simulate
  <stellar.data.simulate.lightcurve.LightCurveSimulator.simulate>` with the star's class and, as its mean
  first-band magnitude, the star's noise-free reddened magnitude in ``lightcurve_band``.
- Presence: each modality is observed independently with its rate in ``presence`` (a star may have none; it
  stays in the object table with its labels).

Known simplifications: the spectrum is not reddened (its continuum is the unextincted Planck curve); the
light curve's colour between bands is the light-curve simulator's own draw, not the SED's; variability does not
change the SED or the spectrum (they are taken at mean light); binaries are single stars in the SED and spectrum.

Examples
--------
>>> from stellar.data.simulate.lightcurve import LightCurveSimulator
>>> from stellar.data.simulate.sed import SEDSimulator
>>> from stellar.data.simulate.spectra import SpectrumSimulator
>>> sim = PairedSimulator(
...     spectra=SpectrumSimulator(wave_min=5000.0, wave_max=5500.0),
...     sed=SEDSimulator(bands=("sdss_g", "sdss_r")),
...     lightcurve=LightCurveSimulator(n_points=40, bands=("g", "r")),
... )
>>> out = sim.simulate(30, seed=1)
>>> len(out.stars), out.spectra.flux.shape[0] == int(out.present["spectrum"].sum())
(30, True)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from stellar.data.labels import MK_CLASSES, mk_letter_from_teff
from stellar.data.simulate.lightcurve import VARIABILITY_CLASSES, LightCurveSimulator, SimulatedLightCurves
from stellar.data.simulate.sed import SEDSample, SEDSimulator
from stellar.data.simulate.spectra import SimulatedSpectra, SpectrumSimulator
from stellar.errors import StellarValueError

log = logging.getLogger(__name__)

#: The modalities, in the order the paired simulator renders them.
MODALITIES: tuple[str, ...] = ("spectrum", "sed", "lightcurve")
#: Populations of the star draw.
POPULATIONS: tuple[str, ...] = ("dwarf", "giant", "horizontal_branch")
_G, _MSUN, _RSUN = 6.674e-8, 1.989e33, 6.957e10  # cgs


def _interval(name: str, value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise StellarValueError(f"{name} must be a pair (low, high) or null; got {value!r}") from err
    if not lo < hi:
        raise StellarValueError(f"{name} must satisfy low < high; got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class VariabilityRule:
    """A box in the HR diagram whose stars take a variability class with some probability.

    Parameters
    ----------
    var_class : str
        One of :data:`~stellar.data.simulate.lightcurve.VARIABILITY_CLASSES`.
    probability : float
        Share of the still-unassigned stars inside the box that take the class.
    teff : (float, float), K, optional
        Half-open Teff interval [low, high); ``None``: any.
    logg : (float, float), dex, optional
        Half-open log g interval; ``None``: any.
    feh : (float, float), dex, optional
        Half-open [Fe/H] interval; ``None``: any.
    population : str, optional
        Only stars of this population (:data:`POPULATIONS`); ``None``: any.
    """

    var_class: str
    probability: float
    teff: tuple[float, float] | None = None
    logg: tuple[float, float] | None = None
    feh: tuple[float, float] | None = None
    population: str | None = None

    def __post_init__(self) -> None:
        if self.var_class not in VARIABILITY_CLASSES:
            raise StellarValueError(f"var_class must be one of {VARIABILITY_CLASSES}; got {self.var_class!r}")
        if not 0.0 <= float(self.probability) <= 1.0:
            raise StellarValueError(f"probability of {self.var_class} must be in [0, 1]; got {self.probability}")
        if self.population is not None and self.population not in POPULATIONS:
            raise StellarValueError(f"population must be one of {POPULATIONS} or null; got {self.population!r}")
        for name in ("teff", "logg", "feh"):
            object.__setattr__(self, name, _interval(f"{self.var_class}.{name}", getattr(self, name)))
        object.__setattr__(self, "probability", float(self.probability))

    def inside(self, stars: pd.DataFrame) -> np.ndarray:
        """True for the rows of ``stars`` (``teff``, ``logg``, ``feh``, ``population``) inside the box."""
        ok = np.ones(len(stars), dtype=bool)
        for name in ("teff", "logg", "feh"):
            box = getattr(self, name)
            if box is not None:
                v = stars[name].to_numpy(dtype=float)
                ok &= (v >= box[0]) & (v < box[1])
        if self.population is not None:
            ok &= stars["population"].to_numpy() == self.population
        return ok


#: The default rules, applied in order (see the module docstring); every star outside them is ``non_variable``.
DEFAULT_RULES: tuple[VariabilityRule, ...] = (
    VariabilityRule("rr_lyrae_ab", 0.9, teff=(6000.0, 6900.0), population="horizontal_branch"),
    VariabilityRule("rr_lyrae_c", 0.9, teff=(6900.0, 7500.0), population="horizontal_branch"),
    VariabilityRule("cepheid", 0.7, teff=(5000.0, 6600.0), logg=(0.0, 2.0), population="giant"),
    VariabilityRule("delta_scuti", 0.5, teff=(6500.0, 8800.0), logg=(3.5, 4.4), population="dwarf"),
    VariabilityRule("lpv", 0.8, teff=(2000.0, 4000.0), logg=(0.0, 1.5), population="giant"),
    VariabilityRule("flare", 0.3, teff=(2000.0, 3900.0), logg=(4.5, 6.0), population="dwarf"),
    VariabilityRule("rotational", 0.2, teff=(2000.0, 6200.0), logg=(4.0, 6.0), population="dwarf"),
    VariabilityRule("eclipsing_contact", 0.03, teff=(4000.0, 7000.0), logg=(3.8, 6.0), population="dwarf"),
    VariabilityRule("eclipsing_detached", 0.05),
    VariabilityRule("eclipsing_semidetached", 0.03),
)


@dataclass
class PairedSample:
    """The output of :meth:`PairedSimulator.simulate`.

    Attributes
    ----------
    stars : pandas.DataFrame
        One row per star: ``teff`` (K), ``logg`` (dex), ``feh`` (dex), ``mass`` (M☉), ``radius`` (R☉),
        ``lum_class``, ``population``, ``mk_class``, ``distance_pc`` (pc), ``parallax_true``, ``parallax`` and
        ``parallax_err`` (mas; observed whether or not the SED is present), ``ebv`` (mag), ``rv`` (km/s),
        ``snr``, ``var_class``, ``period`` (d; NaN for aperiodic classes), ``amplitude`` (mag, first light-curve
        band) and ``mean_mag`` (mag, the light curve's first band).
    present : dict of str to numpy.ndarray of bool
        Per modality (:data:`MODALITIES`), whether the star was observed in it, (N,).
    spectra : SimulatedSpectra
        Spectra of the stars with ``present["spectrum"]``, in star order.
    sed : SEDSample
        Photometry of the stars with ``present["sed"]``, in star order.
    lightcurve : SimulatedLightCurves
        Light curves of the stars with ``present["lightcurve"]``, in star order.
    """

    stars: pd.DataFrame
    present: dict[str, np.ndarray]
    spectra: SimulatedSpectra
    sed: SEDSample
    lightcurve: SimulatedLightCurves

    def rows(self, modality: str) -> np.ndarray:
        """Star indices of the rows of ``modality``'s arrays."""
        return np.flatnonzero(self.present[modality])


def _subset_sed(s: SEDSample, rows: np.ndarray) -> SEDSample:
    true = s.mag_true[rows] if s.mag_true is not None else None
    labels = s.labels.iloc[rows].reset_index(drop=True)
    return SEDSample(s.bands, s.mag[rows], s.mag_err[rows], s.mask[rows], labels, true)


def _concat_sed(parts: list[SEDSample]) -> SEDSample:
    true = [p.mag_true for p in parts]
    return SEDSample(
        parts[0].bands,
        np.concatenate([p.mag for p in parts]),
        np.concatenate([p.mag_err for p in parts]),
        np.concatenate([p.mask for p in parts]),
        pd.concat([p.labels for p in parts], ignore_index=True),
        np.concatenate(true) if all(t is not None for t in true) else None,  # type: ignore[arg-type]
    )


def _concat_lightcurves(parts: list[SimulatedLightCurves], bands: tuple[str, ...]) -> SimulatedLightCurves:
    keys = ("time", "mag", "mag_err", "band", "mask")
    arrays = {k: np.concatenate([getattr(p, k) for p in parts]) for k in keys}
    return SimulatedLightCurves(**arrays, labels=pd.concat([p.labels for p in parts], ignore_index=True), bands=bands)


def _concat_spectra(parts: list[SimulatedSpectra], log_wave: np.ndarray) -> SimulatedSpectra:
    return SimulatedSpectra(
        log_wave,
        np.concatenate([p.flux for p in parts]),
        np.concatenate([p.ivar for p in parts]),
        np.concatenate([p.mask for p in parts]),
        pd.concat([p.labels for p in parts], ignore_index=True),
    )


def _no_spectra(log_wave: np.ndarray) -> SimulatedSpectra:
    empty = np.zeros((0, len(log_wave)), dtype=np.float32)
    labels = pd.DataFrame({c: pd.Series(dtype=float) for c in ("teff", "logg", "feh", "rv", "snr")})
    return SimulatedSpectra(
        log_wave, empty, empty.copy(), np.zeros(empty.shape, dtype=bool), labels.assign(mk_class="")
    )


def _seed(seed: int, stream: int, chunk: int) -> int:
    return int(np.random.SeedSequence([seed, stream, chunk]).generate_state(1)[0])


@dataclass
class PairedSimulator:
    """Seeded paired simulator (see the module docstring for the physics).

    Parameters
    ----------
    spectra : SpectrumSimulator
        Renders the spectra; its [Fe/H], rv and S/N priors are the stars' (its Teff/log g priors are not used).
    sed : SEDSimulator
        Draws the stars (Teff, log g, mass, radius, parallax, E(B-V)) and renders their photometry.
    lightcurve : LightCurveSimulator
        Renders the light curves (cadence, bands, noise; period and amplitude priors per class).
    presence : mapping of str to float
        Probability that each modality (``spectrum``, ``sed``, ``lightcurve``) is observed, each in [0, 1].
    rules : sequence of VariabilityRule (or dicts of its fields)
        Variability classes by HR position, applied in order (default :data:`DEFAULT_RULES`).
    horizontal_branch_fraction : float
        Share of stars moved to the metal-poor horizontal branch.
    lightcurve_band : str
        SED band whose noise-free reddened magnitude is the light curve's mean first-band magnitude; must be one
        of ``sed.bands``.
    chunk_size : int
        Stars rendered at a time (bounds memory; the progress bar advances per chunk).
    """

    spectra: SpectrumSimulator = field(default_factory=SpectrumSimulator)
    sed: SEDSimulator = field(default_factory=SEDSimulator)
    lightcurve: LightCurveSimulator = field(default_factory=lambda: LightCurveSimulator(bands=("g", "r")))
    presence: Mapping[str, float] = field(default_factory=lambda: {"spectrum": 0.7, "sed": 0.9, "lightcurve": 0.6})
    rules: Sequence[Any] = DEFAULT_RULES
    horizontal_branch_fraction: float = 0.05
    lightcurve_band: str = "sdss_g"
    chunk_size: int = 1000

    def __post_init__(self) -> None:
        presence = {str(k): v for k, v in dict(self.presence).items()}
        if set(presence) != set(MODALITIES):
            raise StellarValueError(f"presence must give a rate for each of {MODALITIES}; got {sorted(presence)}")
        for name, rate in presence.items():
            try:
                rate = float(rate)
            except (TypeError, ValueError) as err:
                raise StellarValueError(f"presence.{name} must be a number in [0, 1]; got {rate!r}") from err
            if not 0.0 <= rate <= 1.0:
                raise StellarValueError(f"presence.{name} must be in [0, 1]; got {rate}")
            presence[name] = rate
        self.presence = {m: presence[m] for m in MODALITIES}
        self.rules = tuple(r if isinstance(r, VariabilityRule) else VariabilityRule(**dict(r)) for r in self.rules)
        if not 0.0 <= self.horizontal_branch_fraction <= 1.0:
            raise StellarValueError(
                f"horizontal_branch_fraction must be in [0, 1]; got {self.horizontal_branch_fraction}"
            )
        if self.lightcurve_band not in self.sed.bands:
            raise StellarValueError(
                f"lightcurve_band must be one of the SED simulator's bands {self.sed.bands}; "
                f"got {self.lightcurve_band!r}"
            )
        if int(self.chunk_size) != self.chunk_size or self.chunk_size < 1:
            raise StellarValueError(f"chunk_size must be an integer >= 1; got {self.chunk_size}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (for dataset provenance and names)."""
        return {
            "spectra": self.spectra.to_dict(),
            "sed": self.sed.to_dict(),
            "lightcurve": self.lightcurve.to_dict(),
            "presence": dict(self.presence),
            "rules": [dataclasses.asdict(r) for r in self.rules],
            "horizontal_branch_fraction": self.horizontal_branch_fraction,
            "lightcurve_band": self.lightcurve_band,
            "chunk_size": self.chunk_size,
        }

    # ---------------------------------------------------------------------------------------------- the draw
    def draw_stars(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """Stellar parameters of ``n`` stars and their variability class (no period yet): see the module docstring."""
        stars = self.sed.draw_stars(n, rng)
        extra = self.spectra.draw_labels(n, rng)[["feh", "rv", "snr"]]
        stars = pd.concat([stars, extra], axis=1)
        stars["population"] = stars["lum_class"].to_numpy(dtype=object)
        hb = rng.random(n) < self.horizontal_branch_fraction
        k = int(hb.sum())
        teff_hb = 10.0 ** rng.uniform(np.log10(5500.0), np.log10(8500.0), k)
        logg_hb, mass_hb = rng.uniform(2.3, 3.2, k), rng.uniform(0.55, 0.8, k)
        feh_hb = np.clip(rng.normal(-1.6, 0.4, k), *self.spectra.feh_range)
        stars.loc[hb, ["teff", "logg", "mass", "feh"]] = np.column_stack([teff_hb, logg_hb, mass_hb, feh_hb])
        stars.loc[hb, ["lum_class", "population"]] = ["giant", "horizontal_branch"]
        stars["radius"] = np.sqrt(_G * stars["mass"] * _MSUN / 10.0 ** stars["logg"]) / _RSUN
        stars["mk_class"] = np.asarray(MK_CLASSES, dtype=object)[mk_letter_from_teff(stars["teff"].to_numpy())]
        stars["distance_pc"] = 1000.0 / stars["parallax_true"]
        stars["var_class"] = self.assign_variability(stars, rng)
        return stars

    def assign_variability(self, stars: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
        """Variability class of each star from :attr:`rules` (first rule that takes it; else ``non_variable``)."""
        out = np.full(len(stars), "non_variable", dtype=object)
        free = np.ones(len(stars), dtype=bool)
        for rule in self.rules:
            take = free & rule.inside(stars) & (rng.random(len(stars)) < rule.probability)
            out[take] = rule.var_class
            free &= ~take
        return out

    # ---------------------------------------------------------------------------------------------- rendering
    def simulate(self, n: int, seed: int = 0, progress: bool = False) -> PairedSample:
        """Draw ``n`` stars and render every modality; the same seed gives the same output.

        Parameters
        ----------
        n : int
            Number of stars.
        seed : int
            Seed of every random stream (stars, presence and each modality's noise use separate streams).
        progress : bool
            Show a progress bar over the rendered chunks.
        """
        if int(n) != n or n < 1:
            raise StellarValueError(f"n must be an integer >= 1; got {n}")
        n = int(n)
        rng_stars, rng_presence = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        stars = self.draw_stars(n, rng_stars)
        present = {m: rng_presence.random(n) < self.presence[m] for m in MODALITIES}
        chunks = [np.arange(s, min(s + self.chunk_size, n)) for s in range(0, n, self.chunk_size)]
        spec_rows = np.flatnonzero(present["spectrum"])
        spec_chunks = [spec_rows[s : s + self.chunk_size] for s in range(0, len(spec_rows), self.chunk_size)]
        bar = tqdm(
            total=2 * len(chunks) + len(spec_chunks), desc="paired simulator", unit="chunk", disable=not progress
        )
        with bar:
            seds, curves = [], []
            band = self.sed.bands.index(self.lightcurve_band)
            for i, rows in enumerate(chunks):
                sed = self.sed.observe(stars.iloc[rows], np.random.default_rng(_seed(seed, 1, i)))
                seds.append(sed)
                bar.update()
                assert sed.mag_true is not None  # observe always sets it
                curves.append(
                    self.lightcurve.simulate(
                        len(rows),
                        seed=_seed(seed, 2, i),
                        var_class=stars["var_class"].to_numpy()[rows],
                        mean_mag=sed.mag_true[:, band],
                    )
                )
                bar.update()
            spectra = []
            for i, rows in enumerate(spec_chunks):
                s = stars.iloc[rows]
                spectra.append(
                    self.spectra.render(s["teff"], s["logg"], s["feh"], s["rv"], s["snr"], seed=_seed(seed, 3, i))
                )
                bar.update()
        sed_all = _concat_sed(seds)
        lc_all = _concat_lightcurves(curves, self.lightcurve.bands)
        for col in ("parallax", "parallax_err"):
            stars[col] = sed_all.labels[col].to_numpy()
        for col in ("period", "amplitude", "mean_mag"):
            stars[col] = lc_all.labels[col].to_numpy()
        spec = _concat_spectra(spectra, self.spectra.log_wave) if spectra else _no_spectra(self.spectra.log_wave)
        lc_rows = np.flatnonzero(present["lightcurve"])
        lc = SimulatedLightCurves(
            lc_all.time[lc_rows],
            lc_all.mag[lc_rows],
            lc_all.mag_err[lc_rows],
            lc_all.band[lc_rows],
            lc_all.mask[lc_rows],
            lc_all.labels.iloc[lc_rows].reset_index(drop=True),
            lc_all.bands,
        )
        counts = {m: int(p.sum()) for m, p in present.items()}
        log.info("paired simulator: %d stars; observed per modality %s", n, counts)
        return PairedSample(stars, present, spec, _subset_sed(sed_all, np.flatnonzero(present["sed"])), lc)
