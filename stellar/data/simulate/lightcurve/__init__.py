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

The code lives in ``_physics`` (eclipses, Fourier series, band scaling), ``_classes`` (each class's model and
priors) and ``_simulator`` (cadences, noise, the simulator); import from here.
"""

from stellar.data.simulate.lightcurve._physics import BAND_WAVELENGTH_NM, eclipsing_binary_flux
from stellar.data.simulate.lightcurve._simulator import (
    CADENCES,
    KEPLER_CADENCE_D,
    PERIODIC_CLASSES,
    TESS_ORBIT_D,
    VARIABILITY_CLASSES,
    LightCurveSimulator,
    SimulatedLightCurves,
    simulate_lightcurves,
)

__all__ = [
    "BAND_WAVELENGTH_NM",
    "CADENCES",
    "KEPLER_CADENCE_D",
    "PERIODIC_CLASSES",
    "TESS_ORBIT_D",
    "VARIABILITY_CLASSES",
    "LightCurveSimulator",
    "SimulatedLightCurves",
    "eclipsing_binary_flux",
    "simulate_lightcurves",
]
