"""Period finding (`stellar.data.preprocess.period`): real Stripe 82 data, aliases, eclipsing-binary halving."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest

from stellar.data.preprocess import lightcurve as lc
from stellar.data.preprocess import period as ps
from stellar.errors import StellarValueError
from tests.data.test_preprocess_lightcurve import SESAR, SESAR_PERIOD  # one real Stripe 82 star and its period


def test_best_period_real_sesar_single_and_multiband() -> None:
    d = pd.read_csv(SESAR)
    r = d["band"] == "r"
    p_r = ps.best_period(d["time"][r], d["mag"][r], d["magerr"][r], min_period=0.1, max_period=10)
    p_mb = ps.best_period(d["time"] * u.day, d["mag"], d["magerr"], band=d["band"].to_numpy(), min_period=0.1,
                          max_period=10 * u.day)  # fmt: skip
    assert float(p_r) == pytest.approx(SESAR_PERIOD, rel=1e-4)
    assert float(p_mb) == pytest.approx(SESAR_PERIOD, rel=1e-4)


def test_best_period_beats_one_day_aliases_on_ground_cadence() -> None:
    from stellar.data.simulate.lightcurve import LightCurveSimulator

    sim = LightCurveSimulator(cadence="ground", n_points=120, bands=("r",), classes=("rr_lyrae_ab", "rr_lyrae_c"))
    s = sim.simulate(12, seed=3)
    true = s.labels.period.to_numpy()
    ours = ps.best_period(s.time, s.mag, s.mag_err, s.mask, min_period=0.1, max_period=10)
    plain = lc.features(s.time, s.mag, s.mag_err, s.mask, min_period=0.1, max_period=10)["period"]
    ok_ours, ok_plain = np.abs(ours / true - 1) < 1e-3, np.abs(plain / true - 1) < 1e-3
    assert ok_ours.mean() >= 0.9 and ok_ours.sum() >= ok_plain.sum()
    search = ps.best_period(s.time[0], s.mag[0], s.mag_err[0], s.mask[0], max_period=10, full_output=True)
    assert isinstance(search, ps.PeriodSearch) and search.period == pytest.approx(ours[0])
    assert len(search.candidates) == len(search.bic) == len(search.n_params) > 5  # peaks, aliases, harmonics


def test_best_period_halving_test_finds_eclipsing_binary_period() -> None:
    from stellar.data.simulate.lightcurve import eclipsing_binary_flux

    rng = np.random.default_rng(7)
    t = np.arange(0, 30, 0.0204)
    period = 1.3
    flux = eclipsing_binary_flux(t / period, r1=0.2, r2=0.18, inclination=86.0, sb_ratio=0.7, limb_darkening=0.5)
    y = flux + rng.normal(0, 3e-4, t.size)
    e = np.full(t.size, 3e-4)
    grid = lc.frequency_grid(t, 0.1, 10)
    ls_period = 1 / grid[np.argmax(lc.lomb_scargle(t, y, e, grid))]
    assert ls_period == pytest.approx(period / 2, rel=1e-2)  # two similar eclipses per orbit
    assert float(ps.best_period(t, y, e, min_period=0.1, max_period=10)) == pytest.approx(period, rel=1e-4)
    feats = lc.features(t, y, e, min_period=0.1, max_period=10, period_method="multiharmonic")
    assert float(feats["period"]) == pytest.approx(period, rel=1e-4)


def test_best_period_validation_and_short_rows() -> None:
    t = np.arange(6.0)
    assert np.isnan(ps.best_period(t, np.sin(t), np.ones(6)))  # 6 < 2 + 2 n_terms points
    with pytest.raises(StellarValueError, match="n_terms"):
        ps.best_period(t, t, n_terms=0)
    with pytest.raises(StellarValueError, match="n_sidelobes"):
        ps.best_period(t, t, n_sidelobes=0)
    with pytest.raises(StellarValueError, match="huber"):
        ps.best_period(t, t, huber=0.0)


LC = SESAR.parent


def _sesar(num: int) -> pd.DataFrame:
    return pd.read_csv(LC / f"sesar_rrlyrae_{num}.csv")


def test_best_period_tries_yearly_sidelobes() -> None:
    # Stripe 82 star 2313959 (RRab, 0.712152910794 d, 122 points): near the truth, the combined periodogram peaks
    # one yearly sidelobe (1/365 per day) off it; only the neighbouring sidelobes as candidates let the fit find it
    d, true = _sesar(2313959), 0.712152910794
    kw = {"band": d["band"].to_numpy(), "min_period": 0.1, "max_period": 10}
    search = ps.best_period(d["time"], d["mag"], d["magerr"], full_output=True, **kw)
    near = np.abs(search.frequency - 1 / true) < 0.01
    f_peak = search.frequency[near][np.argmax(search.power[near])]
    assert abs(f_peak - 1 / true) == pytest.approx(1 / 365.25, abs=3e-4)
    assert search.period == pytest.approx(true, rel=1e-4)
    one = float(ps.best_period(d["time"], d["mag"], d["magerr"], n_sidelobes=1, **kw))
    assert abs(1 / one - 1 / true) == pytest.approx(1 / 365.25, abs=3e-4)  # the highest sidelobe only: it wins


def test_best_period_huber_judgement_beats_one_day_alias() -> None:
    # Stripe 82 star 1463748 (RRab, 0.567901498598 d, 275 points): χ² prefers the +1/day alias, dominated by points
    # a fixed shape cannot follow; the Huber fit finds the catalogue period
    d, true = _sesar(1463748), 0.567901498598
    kw = {"band": d["band"].to_numpy(), "min_period": 0.1, "max_period": 10}
    assert float(ps.best_period(d["time"], d["mag"], d["magerr"], **kw)) == pytest.approx(true, rel=1e-4)
    chi2_period = float(ps.best_period(d["time"], d["mag"], d["magerr"], huber=None, **kw))
    assert abs(1 / chi2_period - 1 / true) == pytest.approx(1.0027, abs=0.01)


def test_robust_bic_is_least_squares_bic_without_outliers_and_resists_them() -> None:
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 200, 150))
    y = 0.3 * np.sin(2 * np.pi * t / 0.6) + 0.1 * np.cos(4 * np.pi * t / 0.6) + rng.normal(0, 0.02, t.size)
    w, b = np.full(t.size, 1 / 0.02**2), np.zeros(t.size, dtype=int)
    f, terms = 1 / 0.6, (3, 0)
    chi2, n_par = ps._chi2(t, y, w, b, 1, np.array([f]), terms)
    ls_bic = t.size * np.log(chi2[0]) + n_par * np.log(t.size)
    huge_c, p = ps._robust_bic(t, y, w, b, 1, f, terms, c=1e6)  # ρ = z²/2 everywhere: half the χ²
    assert p == n_par and huge_c == pytest.approx(ls_bic + t.size * np.log(0.5), abs=1e-6)
    y_out = y.copy()
    y_out[::30] += 2.0  # five 100σ outliers
    chi2_out, _ = ps._chi2(t, y_out, w, b, 1, np.array([f]), terms)
    rise_ls = t.size * np.log(chi2_out[0] / chi2[0])
    rise_huber = ps._robust_bic(t, y_out, w, b, 1, f, terms, c=1.5)[0] - ps._robust_bic(t, y, w, b, 1, f, terms, 1.5)[0]
    assert rise_huber < 0.5 * rise_ls


def test_local_peaks_and_more_harmonics_for_a_sawtooth() -> None:
    p = np.array([0, 3, 0, 1, 0, 5, 0, 2, 0, 4, 0], dtype=float)
    assert ps._local_peaks(p, 5, 4, 3) == [5, 9, 1]
    assert ps._local_peaks(p, 5, 1, 3) == [5]
    # a sawtooth (harmonics 1/k) on 400 points: the chosen model uses more than the 3 starting harmonics
    rng = np.random.default_rng(2)
    t = np.sort(rng.uniform(0, 100, 400))
    phase = t / 0.55
    y = sum(np.sin(2 * np.pi * k * phase) / k for k in range(1, 9)) * 0.3 + rng.normal(0, 0.01, t.size)
    search = ps.best_period(t, y, np.full(t.size, 0.01), min_period=0.1, max_period=10, full_output=True)
    assert search.period == pytest.approx(0.55, rel=1e-5)
    assert search.n_params[np.argmin(search.bic)] >= 1 + 2 * 5  # n_terms_max = 5, or 6 from a peak at 2f halved


def _sawtooth_rrab(t: np.ndarray, period: float, amp: float = 0.8) -> np.ndarray:
    """An RRab-like light curve in mag: a slow fade and a fast rise (harmonics k with amplitude 0.5^(k-1))."""
    phase = 2 * np.pi * t / period
    return amp * sum(0.5 ** (k - 1) * (-1) ** (k + 1) * np.sin(k * phase) for k in range(1, 7)) / 2.2


def test_shape_of_the_fit_knows_r21_and_amplitude() -> None:
    t = np.sort(np.random.default_rng(4).uniform(0, 50, 300))
    y = 0.4 * np.sin(2 * np.pi * t / 0.6) + 0.2 * np.cos(4 * np.pi * t / 0.6)  # A2/A1 = 0.5
    shape = ps._shape(t, y, np.ones(t.size), np.zeros(t.size, dtype=int), 1, 1 / 0.6, (3, 0))
    assert shape["r21"] == pytest.approx(0.5, abs=1e-6)
    grid = np.linspace(0, 0.6, 4000)
    ptp = np.ptp(0.4 * np.sin(2 * np.pi * grid / 0.6) + 0.2 * np.cos(4 * np.pi * grid / 0.6))
    assert shape["amplitude"] == pytest.approx(ptp, rel=1e-3)


def test_rr_lyrae_prior_values() -> None:
    prior = ps.PERIOD_PRIORS["rr_lyrae"]
    saw, sine = {"r21": 0.45, "amplitude": 1.0}, {"r21": 0.1, "amplitude": 0.4}
    assert prior(0.15, sine) == np.inf and prior(1.2, saw) == np.inf  # outside 0.2-1.0 d
    assert prior(0.6, saw) == 0 and prior(0.3, sine) == 0  # RRab and RRc where they belong
    assert prior(0.33, saw) == pytest.approx(2 * np.log(20)) and prior(0.6, sine) == pytest.approx(2 * np.log(20))


def test_rr_lyrae_prior_amplitude_term_values() -> None:
    prior, old = ps.PERIOD_PRIORS["rr_lyrae"], ps.RRLyraePrior(c_max_amplitude=None)
    big, small = {"r21": 0.1, "amplitude": 1.0, "band": "g"}, {"r21": 0.1, "amplitude": 0.5, "band": "g"}
    # 1.0 mag in g is 0.84 mag in V: too large for an RRc (0.7 V = 0.83 g), so judged as an RRab
    assert prior(0.33, big) == pytest.approx(2 * np.log(20)) and old(0.33, big) == 0
    assert prior(0.6, big) == 0 and old(0.6, big) == pytest.approx(2 * np.log(20))
    assert prior(0.33, small) == 0 and prior(0.6, small) == pytest.approx(2 * np.log(20))  # an RRc as before
    assert prior(0.33, big | {"band": "z"}) == pytest.approx(2 * np.log(20))  # 1.0 mag in z: 1.8 mag in V
    assert prior(0.33, big | {"band": "u"}) == 0 and prior(0.33, big | {"band": None}) == 0  # no scale known
    assert prior(0.33, {"r21": 0.1, "amplitude": 1.0}) == 0  # a shape without a band: the amplitude is unused


def test_rr_lyrae_prior_amplitude_sees_through_a_smeared_alias() -> None:
    # a 1.3 mag (g) saw-tooth at 0.5 d, one visit a night with the hour spread by ±0.1 d: at the +1/d alias
    # (0.333 d) the higher harmonics' phases shift with each visit's hour, so that fit looks like a sinusoid
    # (A2/A1 < 0.3) and the shape prior alone takes it for an RRc; its 1 mag amplitude says it is not one
    rng = np.random.default_rng(1)
    nights = np.sort(rng.choice(np.arange(700), 60, replace=False)).astype(float)
    t = nights / 1.00273791 + 0.3 + rng.normal(0, 0.1, nights.size)
    y = _sawtooth_rrab(t, 0.5, amp=1.3) + rng.normal(0, 0.03, t.size)
    args = (t, y - y.mean(), np.full(t.size, 1 / 0.03**2), np.zeros(t.size, dtype=int), 1)
    truth = ps._shape(*args, 1 / 0.5, (3, 0)) | {"band": "g"}
    alias = ps._shape(*args, 1 / 0.5 + 1.00273791, (3, 0)) | {"band": "g"}
    assert truth["r21"] > 0.45 and alias["r21"] < 0.3 and alias["amplitude"] > 0.9
    prior, old = ps.PERIOD_PRIORS["rr_lyrae"], ps.RRLyraePrior(c_max_amplitude=None)
    assert prior(0.5, truth) == old(0.5, truth) == 0
    assert old(1 / 3, alias) == 0 and prior(1 / 3, alias) == pytest.approx(2 * np.log(20))


def test_rr_lyrae_prior_amplitude_breaks_a_planted_alias_trap() -> None:
    # a large-amplitude RRab at 0.6 d whose light curve is nearly sinusoidal (A2/A1 = 0.2), one visit a night at
    # the same sidereal time: every alias k/d ± f fits exactly alike. The shape prior alone takes the +1/d alias
    # (0.375 d, a plausible RRc) over a "sinusoid" above 0.5 d; with the amplitude term (1.2 mag in g: no RRc)
    # short-period aliases pay and the truth wins, a tie broken, not a better fit
    rng = np.random.default_rng(7)
    nights = np.sort(rng.choice(np.arange(700), 150, replace=False)).astype(float)
    t = nights / 1.00273791 + 0.3
    true = 0.6
    phase = 2 * np.pi * t / true
    y = 0.55 * np.sin(phase) + 0.11 * np.sin(2 * phase + 0.5) + rng.normal(0, 0.02, t.size)
    e, b = np.full(t.size, 0.02), np.full(t.size, "g")
    kw = {"min_period": 0.1, "max_period": 10, "band": b, "full_output": True}
    old = ps.best_period(t, y, e, prior=ps.RRLyraePrior(c_max_amplitude=None), **kw)
    assert old.period == pytest.approx(1 / (1 / true + 1.00273791), rel=1e-3)  # the +1/d alias, 0.375 d
    new = ps.best_period(t, y, e, prior="rr_lyrae", **kw)
    assert new.period == pytest.approx(true, rel=1e-4)
    assert np.min(new.bic) == pytest.approx(np.min(old.bic), abs=1.0)
    # without band names the amplitude has no scale and the term stays silent
    plain = ps.best_period(t, y, e, prior="rr_lyrae", min_period=0.1, max_period=10)
    assert float(plain) == pytest.approx(old.period, rel=1e-6)


def test_rr_lyrae_prior_breaks_a_planted_one_day_alias_trap() -> None:
    # one visit a night at the same sidereal time: f and f + k/d fit exactly alike (a perfect one-day alias trap);
    # a saw-tooth (RRab) at 0.6 d has aliases at 1.5 d (outside RR Lyrae periods) and 0.375, 0.272, ... d (too short
    # for an RRab). Here the generic search lands on the +2/d alias, 0.272 d. (With other draws of the nights its
    # candidates can miss the truth altogether, prior or not: every k/d alias is exactly as good.)
    rng = np.random.default_rng(7)
    nights = np.sort(rng.choice(np.arange(700), 150, replace=False)).astype(float)
    t = nights / 1.00273791 + 0.3  # sidereal days: the same hour angle every night
    true = 0.6
    y = _sawtooth_rrab(t, true) + rng.normal(0, 0.02, t.size)
    e = np.full(t.size, 0.02)
    kw = {"min_period": 0.1, "max_period": 10}
    plain = ps.best_period(t, y, e, full_output=True, **kw)
    cycles = (1 / plain.period - 1 / true) / 1.00273791  # cycles per sidereal day between the found and true frequency
    assert round(cycles) != 0 and abs(cycles - round(cycles)) < 1e-3  # the generic search lands on an alias
    with_prior = ps.best_period(t, y, e, full_output=True, prior="rr_lyrae", **kw)
    assert with_prior.period == pytest.approx(true, rel=1e-4)
    # a tie broken by the prior, not a better fit: the truth scores as the alias did (the truth pays no penalty)
    assert np.min(with_prior.bic) == pytest.approx(np.min(plain.bic), abs=1.0)
    assert np.isinf(with_prior.bic).any()  # candidates outside 0.2-1.0 d were excluded


def test_rr_lyrae_prior_leaves_clean_cases_alone_and_validates() -> None:
    d = pd.read_csv(SESAR)  # the real Stripe 82 fixture star, found without the prior
    kw = {"band": d["band"].to_numpy(), "min_period": 0.1, "max_period": 10}
    assert float(ps.best_period(d["time"], d["mag"], d["magerr"], prior="rr_lyrae", **kw)) == pytest.approx(
        SESAR_PERIOD, rel=1e-4
    )
    for num, true in ((2313959, 0.712152910794), (1463748, 0.567901498598)):  # the other real fixture stars
        d = _sesar(num)
        kw = {"band": d["band"].to_numpy(), "min_period": 0.1, "max_period": 10}
        assert float(ps.best_period(d["time"], d["mag"], d["magerr"], prior="rr_lyrae", **kw)) == pytest.approx(
            true, rel=1e-4
        )
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 60, 400))  # dense random sampling: no alias to fear
    y = _sawtooth_rrab(t, 0.55) + rng.normal(0, 0.02, t.size)
    e = np.full(t.size, 0.02)
    plain = float(ps.best_period(t, y, e, min_period=0.1, max_period=10))
    assert plain == pytest.approx(0.55, rel=1e-4)
    assert float(ps.best_period(t, y, e, min_period=0.1, max_period=10, prior="rr_lyrae")) == plain
    # a callable prior that excludes everything: no period rather than an excluded one
    assert np.isnan(ps.best_period(t, y, e, min_period=0.1, max_period=10, prior=lambda p, s: np.inf))
    with pytest.raises(StellarValueError, match="prior"):
        ps.best_period(t, y, e, prior="cepheid")
    with pytest.raises(StellarValueError, match="prior"):
        ps.best_period(t, y, e, prior=3.0)
