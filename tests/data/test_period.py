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
