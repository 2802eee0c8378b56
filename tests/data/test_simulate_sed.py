"""SED simulator physics: filter photometry in the right system, colours that follow Teff, gravity in the
luminosity, extinction that deredden() undoes, and seeded reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stellar.data.preprocess.sed import BAND_INFO, deredden
from stellar.data.simulate.sed import (
    SEDSimulator,
    balmer_jump_mag,
    planck_flambda,
    synthetic_ab_mags,
    wavelength_grid,
)
from stellar.errors import StellarValueError

VEGA_BANDS = ("johnson_b", "johnson_v", "gaia_bp", "gaia_g", "gaia_rp", "cousins_i", "2mass_j", "2mass_h", "2mass_ks")


def _native(teff: list[float], bands=VEGA_BANDS) -> np.ndarray:
    w = wavelength_grid()
    ab = synthetic_ab_mags(w, planck_flambda(w, np.asarray(teff)), bands)
    return ab - np.array([BAND_INFO[b].ab_offset for b in bands])


def test_flat_fnu_source_of_3631_jy_is_zero_ab_magnitude_in_every_band():
    w = wavelength_grid()
    f_lambda = 3631e-23 * 2.99792458e18 / w**2  # erg/s/cm²/Å of f_ν = 3631 Jy
    mags = synthetic_ab_mags(w, f_lambda[None, :], tuple(BAND_INFO))
    assert np.allclose(mags, 0.0, atol=2e-3)


def test_vega_like_star_has_near_zero_vega_colours_and_a_cool_star_does_not():
    m = _native([9600.0, 3500.0])
    vega_colours = m[0, :-1] - m[0, 1:]
    # a 9,600 K Planck curve is not Vega (no Balmer lines, no Paschen slope), but every adjacent colour is small
    assert np.all(np.abs(vega_colours) < 0.3)
    cool = m[1]
    assert cool[VEGA_BANDS.index("johnson_v")] - cool[VEGA_BANDS.index("2mass_ks")] > 3.0


def test_colours_redden_monotonically_with_falling_teff():
    teff = np.geomspace(20000.0, 3200.0, 12)
    bands = ("sdss_g", "sdss_r", "gaia_bp", "gaia_rp", "2mass_j", "2mass_ks", "johnson_b", "johnson_v")
    m = _native(list(teff), bands)
    for a, b in [(0, 1), (2, 3), (4, 5), (6, 7)]:
        assert np.all(np.diff(m[:, a] - m[:, b]) > 0), (bands[a], bands[b])


def test_balmer_jump_peaks_near_a0_and_deepens_at_low_gravity():
    t = np.array([5000.0, 9500.0, 20000.0])
    d = balmer_jump_mag(t, np.full(3, 4.0))
    assert d.argmax() == 1 and d[1] == pytest.approx(1.3)
    assert balmer_jump_mag(np.array([9500.0]), np.array([2.0]))[0] > d[1]


def test_giants_are_brighter_than_dwarfs_at_the_same_teff_and_distance():
    sim = SEDSimulator(bands=("gaia_g",))
    stars = pd.DataFrame(
        {"teff": [4500.0, 4500.0], "logg": [2.0, 4.6], "radius": [10.0, 0.7], "parallax_true": [1.0, 1.0]}
    )
    g_giant, g_dwarf = sim.intrinsic_mags(stars)[:, 0]
    assert g_dwarf - g_giant == pytest.approx(5.0 * np.log10(10.0 / 0.7), abs=1e-6)


def test_simulation_is_seeded_labelled_and_masked():
    sim = SEDSimulator()
    a, b = sim.simulate(80, seed=4), sim.simulate(80, seed=4)
    assert np.array_equal(a.mag, b.mag, equal_nan=True)
    assert not np.array_equal(a.mag, sim.simulate(80, seed=5).mag, equal_nan=True)
    assert a.mag.shape == (80, len(sim.bands)) and np.array_equal(np.isnan(a.mag), a.mask)
    assert set(a.labels["lum_class"]) <= {"dwarf", "giant"}
    assert set(a.labels["mk_class"]) <= set("OBAFGKM")
    giants = a.labels["lum_class"] == "giant"
    assert a.labels.loc[giants, "logg"].max() <= 3.5 < a.labels.loc[~giants, "logg"].min() + 0.5


def test_deredden_undoes_the_simulated_extinction_within_the_noise():
    sim = SEDSimulator(missing_fraction=0.0, ebv_per_kpc=1.0)
    s = sim.simulate(200, seed=0)
    intrinsic = sim.intrinsic_mags(s.labels)
    ebv = s.labels["ebv"].to_numpy()
    m0, _, mask = deredden(s.mag, ebv, mask=s.mask, bands=sim.bands)
    pull = (m0 - intrinsic)[~mask] / s.mag_err[~mask]
    assert np.abs(pull).max() < 6.0 and abs(pull.mean()) < 0.2
    assert np.nanmean(s.mag - intrinsic) > 0.05  # extinction did dim the stars


def test_bad_arguments_are_refused():
    with pytest.raises(StellarValueError, match="bands"):
        SEDSimulator(bands=("sdss_q",))
    with pytest.raises(StellarValueError, match="teff_range"):
        SEDSimulator(teff_range=(5000.0, 4000.0))
    with pytest.raises(StellarValueError, match="n must"):
        SEDSimulator().simulate(0)
