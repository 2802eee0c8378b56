"""The paired simulator: presence at the configured rates, variability from the HR position, seeded, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stellar.data.simulate.lightcurve import LightCurveSimulator
from stellar.data.simulate.paired import DEFAULT_RULES, MODALITIES, PairedSimulator, VariabilityRule
from stellar.data.simulate.sed import SEDSimulator
from stellar.data.simulate.spectra import SpectrumSimulator
from stellar.errors import StellarValueError


def _fast(**kwargs) -> PairedSimulator:
    """A cheap configuration: a 200 Å spectrum, two bands, short light curves."""
    return PairedSimulator(
        spectra=SpectrumSimulator(wave_min=5000.0, wave_max=5200.0),
        sed=SEDSimulator(bands=("sdss_g", "sdss_r")),
        lightcurve=LightCurveSimulator(n_points=24, bands=("g", "r")),
        **kwargs,
    )


def test_presence_rates_are_the_configured_ones_within_sampling_error():
    rates = {"spectrum": 0.3, "sed": 0.8, "lightcurve": 0.55}
    n = 3000
    out = _fast(presence=rates).simulate(n, seed=4)
    for m in MODALITIES:
        p = rates[m]
        assert abs(out.present[m].mean() - p) < 4 * np.sqrt(p * (1 - p) / n), m
    # each modality's arrays hold exactly the present stars, in star order
    assert out.spectra.flux.shape[0] == out.present["spectrum"].sum()
    assert out.sed.mag.shape[0] == out.present["sed"].sum()
    assert out.lightcurve.mag.shape[0] == out.present["lightcurve"].sum()
    rows = out.rows("spectrum")
    assert np.allclose(out.spectra.labels["teff"], out.stars["teff"].to_numpy()[rows])
    assert np.allclose(out.sed.labels["parallax"], out.stars["parallax"].to_numpy()[out.rows("sed")])
    lc_rows = out.rows("lightcurve")
    assert (out.lightcurve.labels["var_class"].to_numpy() == out.stars["var_class"].to_numpy()[lc_rows]).all()


def test_rates_of_zero_and_one_give_no_and_every_star():
    out = _fast(presence={"spectrum": 0.0, "sed": 1.0, "lightcurve": 1.0}).simulate(40, seed=0)
    assert out.spectra.flux.shape[0] == 0 and out.spectra.flux.shape[1] == len(out.spectra.log_wave)
    assert out.present["sed"].all() and out.sed.mag.shape[0] == 40


def test_variability_class_follows_the_hr_position():
    out = _fast().simulate(4000, seed=2)
    s = out.stars
    by_class = {r.var_class: r for r in DEFAULT_RULES}
    variable = s["var_class"] != "non_variable"
    assert variable.sum() > 300
    for cls, group in s[variable].groupby("var_class"):
        assert by_class[cls].inside(group).all(), cls
    rr = s["var_class"].str.startswith("rr_lyrae")
    assert rr.sum() > 20
    assert (s.loc[rr, "population"] == "horizontal_branch").all() and (s.loc[rr, "feh"] < -0.5).mean() > 0.9
    assert (s.loc[rr, "teff"].between(6000, 7500)).all()
    lpv = s["var_class"] == "lpv"
    assert lpv.sum() > 5 and (s.loc[lpv, "teff"] < 4000).all() and (s.loc[lpv, "logg"] < 1.5).all()
    # periods come from each class's priors: RRab 0.42-0.85 d, LPVs 80-600 d, none for constant stars
    assert s.loc[s["var_class"] == "rr_lyrae_ab", "period"].between(0.42, 0.85).all()
    assert s.loc[lpv, "period"].between(80, 600).all()
    assert s.loc[~variable, "period"].isna().all() and (s.loc[~variable, "amplitude"] == 0).all()


def test_a_rule_with_probability_one_takes_every_star_in_its_box_and_order_decides():
    rules = [
        {"var_class": "rr_lyrae_ab", "probability": 1.0, "teff": [6000, 6900], "population": "horizontal_branch"},
        {"var_class": "eclipsing_detached", "probability": 1.0},
    ]
    out = _fast(rules=rules, horizontal_branch_fraction=0.3).simulate(600, seed=1)
    s = out.stars
    box = (s["population"] == "horizontal_branch") & (s["teff"] >= 6000) & (s["teff"] < 6900)
    assert box.sum() > 20
    assert (s.loc[box, "var_class"] == "rr_lyrae_ab").all()
    assert (s.loc[~box, "var_class"] == "eclipsing_detached").all()


def test_same_seed_same_objects_other_seed_other_objects():
    sim = _fast()
    a, b, c = sim.simulate(80, seed=7), sim.simulate(80, seed=7), sim.simulate(80, seed=8)
    pd.testing.assert_frame_equal(a.stars, b.stars)
    for m in MODALITIES:
        assert np.array_equal(a.present[m], b.present[m])
    assert np.array_equal(a.spectra.flux, b.spectra.flux)
    assert np.array_equal(a.sed.mag, b.sed.mag, equal_nan=True)
    assert np.array_equal(a.lightcurve.mag, b.lightcurve.mag)
    assert not np.allclose(a.stars["teff"], c.stars["teff"])


def test_light_curve_mean_magnitude_is_the_stars_sed_magnitude():
    out = _fast(presence={"spectrum": 0.0, "sed": 1.0, "lightcurve": 1.0}).simulate(50, seed=3)
    g = out.sed.mag_true[:, out.sed.bands.index("sdss_g")]
    assert np.allclose(out.stars["mean_mag"], g)
    assert np.allclose(out.lightcurve.labels["mean_mag"], g)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"presence": {"spectrum": 0.5, "sed": 0.5}}, "presence must give a rate"),
        ({"presence": {"spectrum": 1.5, "sed": 0.5, "lightcurve": 0.5}}, r"presence.spectrum must be in \[0, 1\]"),
        ({"presence": {"spectrum": "x", "sed": 0.5, "lightcurve": 0.5}}, "presence.spectrum must be a number"),
        ({"rules": [{"var_class": "supernova", "probability": 0.5}]}, "var_class must be one of"),
        ({"rules": [{"var_class": "lpv", "probability": 2.0}]}, "probability of lpv"),
        ({"rules": [{"var_class": "lpv", "probability": 0.5, "teff": [5000, 4000]}]}, "lpv.teff must satisfy"),
        ({"rules": [{"var_class": "lpv", "probability": 0.5, "population": "halo"}]}, "population must be one of"),
        ({"lightcurve_band": "wise_w1"}, "lightcurve_band must be one of"),
        ({"horizontal_branch_fraction": -0.1}, "horizontal_branch_fraction"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_configuration_is_a_clear_error(kwargs, match):
    with pytest.raises(StellarValueError, match=match):
        _fast(**kwargs)


def test_bad_n_is_a_clear_error():
    with pytest.raises(StellarValueError, match="n must be an integer >= 1"):
        _fast().simulate(0)


def test_rule_box_is_half_open():
    rule = VariabilityRule("delta_scuti", 0.5, teff=(6500.0, 8800.0), logg=(3.5, 4.4), population="dwarf")
    stars = pd.DataFrame(
        {"teff": [6500.0, 8800.0, 7000.0, 7000.0], "logg": [4.0, 4.0, 4.4, 4.0], "feh": 0.0, "population": "dwarf"}
    )
    assert rule.inside(stars).tolist() == [True, False, False, True]


def test_simulator_hooks_keep_the_plain_simulators_unchanged():
    sed = SEDSimulator(bands=("sdss_g", "sdss_r"))
    a = sed.simulate(30, seed=5)
    rng = np.random.default_rng(5)
    b = sed.observe(sed.draw_stars(30, rng), rng)
    assert np.array_equal(a.mag, b.mag, equal_nan=True)
    lc = LightCurveSimulator(n_points=24, bands=("g", "r"))
    plain = lc.simulate(11, seed=2)
    given = lc.simulate(11, seed=2, var_class=plain.labels["var_class"], mean_mag=plain.labels["mean_mag"])
    assert np.array_equal(plain.mag, given.mag)
    with pytest.raises(StellarValueError, match="var_class must give one of"):
        lc.simulate(2, var_class=["lpv", "nova"])
    with pytest.raises(StellarValueError, match="mean_mag must be 2 finite"):
        lc.simulate(2, mean_mag=[1.0, np.nan])
