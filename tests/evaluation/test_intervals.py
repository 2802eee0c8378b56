"""Interval calibrators against known answers: synthetic residuals whose true spread is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stellar.errors import StellarValueError
from stellar.evaluation.calibration import (
    ONE_SIGMA,
    BaseIntervalCalibrator,
    BaseProbCalibrator,
    ConformalIntervals,
    NoIntervalCalibration,
    TemperatureScaler,
    VarianceScaler,
    calibrated_outputs,
    conformal_quantile,
    gaussian_factor,
    inside_interval,
    normalised_residuals,
)
from stellar.evaluation.metrics import regression_report

Z95 = 1.959963984540054


def _coverage(cal: BaseIntervalCalibrator, out: dict, truth: np.ndarray, t: str, level: float) -> float:
    lo, hi = cal.interval(out, t, level)
    return float(np.mean((truth >= lo) & (truth <= hi)))


def _linear(rng: np.random.Generator, n: int, true_scale: float, df: float | None = None) -> tuple[dict, dict]:
    """A target ``x`` whose model says σ (heteroscedastic) while the errors are ``true_scale`` σ."""
    sd = rng.uniform(0.5, 2.0, n)
    mean = rng.normal(0.0, 10.0, n)
    noise = rng.standard_normal(n) if df is None else rng.standard_t(df, n)
    return {"x_mean": mean, "x_logvar": 2 * np.log(sd)}, {"x": mean + true_scale * sd * noise}


def _log_teff(rng: np.random.Generator, n: int, true_scale: float) -> tuple[dict, dict]:
    """Teff learned as log10: physical mean and delta-method σ, truths drawn in log10 with ``true_scale`` σ."""
    log_mean = rng.uniform(3.5, 4.3, n)
    log_sd = rng.uniform(0.005, 0.05, n)
    mean = 10.0**log_mean
    sd_phys = mean * math.log(10.0) * log_sd
    truth = 10.0 ** (log_mean + true_scale * log_sd * rng.standard_normal(n))
    return {"teff_mean": mean, "teff_logvar": 2 * np.log(sd_phys)}, {"teff": truth}


@pytest.mark.parametrize("cls", [VarianceScaler, ConformalIntervals])
def test_a_wrong_scale_is_corrected_on_new_data(cls):
    rng = np.random.default_rng(0)
    val_out, val_truth = _linear(rng, 2000, true_scale=2.5)
    test_out, test_truth = _linear(rng, 20000, true_scale=2.5)
    before = NoIntervalCalibration()
    assert _coverage(before, test_out, test_truth["x"], "x", ONE_SIGMA) == pytest.approx(0.31, abs=0.02)
    cal = cls().fit(val_out, val_truth)
    assert cal.factor("x") == pytest.approx(2.5, rel=0.05)
    # within sampling error: the calibration is estimated from 2000 rows (binomial sd 0.010 at 68%, 0.005 at 95%)
    assert _coverage(cal, test_out, test_truth["x"], "x", ONE_SIGMA) == pytest.approx(ONE_SIGMA, abs=0.03)
    assert _coverage(cal, test_out, test_truth["x"], "x", 0.95) == pytest.approx(0.95, abs=0.015)


@pytest.mark.parametrize("cls", [VarianceScaler, ConformalIntervals])
def test_log_targets_are_calibrated_in_log10(cls):
    rng = np.random.default_rng(1)
    val_out, val_truth = _log_teff(rng, 2000, true_scale=0.5)
    cal = cls().fit(val_out, val_truth, log_targets=["teff"])
    assert cal.factor("teff") == pytest.approx(0.5, rel=0.06)
    # the residuals are exactly the log10 draws over the log10 sigma
    z = normalised_residuals(val_out["teff_mean"], val_out["teff_logvar"], val_truth["teff"], log_target=True)
    assert np.std(z) == pytest.approx(0.5, rel=0.05)
    test_out, test_truth = _log_teff(rng, 20000, true_scale=0.5)
    for level in (ONE_SIGMA, 0.95):
        assert _coverage(cal, test_out, test_truth["teff"], "teff", level) == pytest.approx(level, abs=0.03)


@pytest.mark.parametrize("cls", [NoIntervalCalibration, VarianceScaler, ConformalIntervals])
def test_a_wide_log_target_interval_is_positive_and_holds_its_level(cls):
    """A period known to ±0.3 dex: ``mean ± 1.96 σ`` in linear space would reach below zero (the delta-method σ is
    0.69 of the mean); the interval taken in log10, where the factors are fitted, stays positive and covers."""
    rng = np.random.default_rng(5)

    def draw(n: int) -> tuple[dict, np.ndarray]:
        log_mean = rng.uniform(-0.5, 1.5, n)
        mean = 10.0**log_mean
        out = {"period_mean": mean, "period_logvar": 2 * np.log(mean * math.log(10.0) * 0.3)}
        return out, 10.0 ** (log_mean + 0.3 * rng.standard_normal(n))

    val_out, val_truth = draw(2000)
    cal = cls() if cls is NoIntervalCalibration else cls().fit(val_out, {"period": val_truth}, log_targets=["period"])
    cal.log_targets = ["period"]  # the identity calibrator is told the learned space as train.py tells the fitted ones
    test_out, truth = draw(20000)
    lo, hi = cal.interval(test_out, "period", 0.95)
    assert (lo > 0).all() and (hi > test_out["period_mean"]).all()
    assert np.allclose(np.log10(test_out["period_mean"] / lo), np.log10(hi / test_out["period_mean"]))
    for level in (ONE_SIGMA, 0.95):
        assert _coverage(cal, test_out, truth, "period", level) == pytest.approx(level, abs=0.03)
    # the evaluation report counts a truth as covered exactly when it lies in the interval the server answers
    k95 = cal.factor("period", 0.95)
    inside = inside_interval(test_out["period_mean"], test_out["period_logvar"], truth, k95, log_target=True)
    assert np.array_equal(inside, (truth >= lo) & (truth <= hi))
    rep = regression_report(test_out["period_mean"], test_out["period_logvar"], truth, (1.0, k95), log_target=True)
    assert rep["coverage_95_after"] == pytest.approx(np.mean(inside))
    linear = regression_report(test_out["period_mean"], test_out["period_logvar"], truth, (1.0, k95))
    assert abs(linear["coverage_95_after"] - rep["coverage_95_after"]) > 0.01  # linear space counts other truths


def test_conformal_holds_its_level_on_heavy_tails_where_variance_scaling_does_not():
    """Exchangeable data with Student-t(3) errors: the conformal interval covers at least its level on average
    (and at most level + 1/(n + 1)), while a Gaussian scale fitted by likelihood over-covers 68%."""
    rng = np.random.default_rng(2)
    n_val, reps = 39, 300  # (n + 1) · 0.95 = 38: the 38th of 39 scores
    cover = {ONE_SIGMA: [], 0.95: []}
    variance68 = []
    for _ in range(reps):
        val_out, val_truth = _linear(rng, n_val, 1.0, df=3)
        test_out, test_truth = _linear(rng, 200, 1.0, df=3)
        cal = ConformalIntervals().fit(val_out, val_truth)
        for level in cover:
            cover[level].append(_coverage(cal, test_out, test_truth["x"], "x", level))
        var = VarianceScaler().fit(val_out, val_truth)
        variance68.append(_coverage(var, test_out, test_truth["x"], "x", ONE_SIGMA))
    mc = 3 * 0.2 / math.sqrt(reps)  # Monte-Carlo error of the mean coverage (per-rep sd < 0.2)
    for level, values in cover.items():
        assert level - mc <= np.mean(values) <= level + 1 / (n_val + 1) + mc
    assert np.mean(variance68) > ONE_SIGMA + 0.05


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 20.0)[::-1]  # 19 scores, any order
    assert conformal_quantile(scores, 0.95) == 19.0  # ceil(20 · 0.95) = 19
    assert conformal_quantile(scores, 0.5) == 10.0  # ceil(20 · 0.5) = 10
    assert conformal_quantile(scores, ONE_SIGMA) == 14.0  # ceil(20 · 0.6827) = 14


def test_too_few_scores_for_a_level_use_the_largest_and_warn(caplog):
    assert conformal_quantile(np.array([1.0, 3.0, 2.0]), 0.95) == 3.0
    assert "needs at least 19 scores" in caplog.text


def test_transform_rescales_the_std_and_leaves_the_rest():
    rng = np.random.default_rng(3)
    out, truth = _linear(rng, 500, 2.0)
    out = {**out, "x_logvar": out["x_logvar"].astype(np.float32), "logits": np.zeros((500, 2)), "y_mean": np.ones(500)}
    cal = ConformalIntervals().fit(out, truth)
    new = cal.transform(out)
    assert new["x_logvar"].dtype == np.float32
    expected = cal.factor("x") * np.exp(0.5 * out["x_logvar"])
    np.testing.assert_allclose(np.exp(0.5 * new["x_logvar"]), expected, rtol=1e-5)
    assert new["logits"] is out["logits"] and new["x_mean"] is out["x_mean"] and new["y_mean"] is out["y_mean"]
    assert not np.shares_memory(new["x_logvar"], out["x_logvar"])
    assert calibrated_outputs(None, out) == out
    # a target the calibrator was not fitted on keeps the Gaussian factors
    assert cal.factor("y", 0.95) == pytest.approx(Z95)


def test_identity_gives_gaussian_intervals_and_needs_no_fit():
    cal = NoIntervalCalibration()
    assert cal.factor("x") == pytest.approx(1.0) and cal.factor("x", 0.95) == pytest.approx(Z95)
    assert gaussian_factor(ONE_SIGMA) == pytest.approx(1.0)
    out = {"x_mean": np.zeros(3), "x_logvar": np.zeros(3)}
    np.testing.assert_array_equal(cal.fit(out, {"x": np.ones(3)}).transform(out)["x_logvar"], out["x_logvar"])
    assert BaseIntervalCalibrator.from_dict(json.loads(json.dumps(NoIntervalCalibration().to_dict()))).factor("x") == 1


@pytest.mark.parametrize("cal", [VarianceScaler(), ConformalIntervals(levels=[0.9, 0.99]), NoIntervalCalibration()])
def test_json_round_trip_gives_the_same_intervals(cal):
    rng = np.random.default_rng(4)
    out, truth = _log_teff(rng, 300, 1.7)
    lin_out, lin_truth = _linear(rng, 300, 0.6)
    cal.fit({**out, **lin_out}, {**truth, **lin_truth}, log_targets=["teff"])
    back = BaseIntervalCalibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert type(back) is type(cal) and back.log_targets == ["teff"] and back.targets == cal.targets
    levels = [ONE_SIGMA, 0.95] + ([0.9, 0.99] if isinstance(cal, ConformalIntervals) else [0.5])
    for t in ("teff", "x"):
        for level in levels:
            assert back.factor(t, level) == cal.factor(t, level)
    np.testing.assert_array_equal(back.transform(out)["teff_logvar"], cal.transform(out)["teff_logvar"])


def test_regression_report_gives_coverage_before_and_after():
    rng = np.random.default_rng(5)
    out, truth = _linear(rng, 4000, 2.0)
    plain = regression_report(out["x_mean"], out["x_logvar"], truth["x"])
    assert plain["coverage_68_after"] == plain["coverage_68"] and plain["coverage_95_after"] == plain["coverage_95"]
    cal = VarianceScaler().fit(out, truth)
    rep = regression_report(out["x_mean"], out["x_logvar"], truth["x"], (cal.factor("x"), cal.factor("x", 0.95)))
    assert rep["coverage_68"] == pytest.approx(0.38, abs=0.03) and rep["coverage_95"] == pytest.approx(0.67, abs=0.03)
    assert rep["coverage_68_after"] == pytest.approx(ONE_SIGMA, abs=0.02)
    assert rep["coverage_95_after"] == pytest.approx(0.95, abs=0.01)


def test_bad_input_is_refused_with_the_argument_named():
    out = {"x_mean": np.zeros(5), "x_logvar": np.zeros(5)}
    with pytest.raises(StellarValueError, match="not fitted"):
        VarianceScaler().factor("x")
    with pytest.raises(StellarValueError, match="not fitted"):
        ConformalIntervals().to_dict()
    with pytest.raises(StellarValueError, match="level must be in"):
        NoIntervalCalibration().factor("x", 1.5)
    with pytest.raises(StellarValueError, match="levels must be in"):
        ConformalIntervals(levels=[0.0])
    with pytest.raises(StellarValueError, match="levels must be a sequence"):
        ConformalIntervals(levels="0.9")  # type: ignore[arg-type]
    with pytest.raises(StellarValueError, match="'y_mean'"):
        VarianceScaler().fit(out, {"y": np.zeros(5)})
    with pytest.raises(StellarValueError, match="truths must map"):
        VarianceScaler().fit(out, {})
    with pytest.raises(StellarValueError, match="same length"):
        VarianceScaler().fit(out, {"x": np.zeros(4)})
    with pytest.raises(StellarValueError, match="2 or more usable"):
        VarianceScaler().fit(out, {"x": np.full(5, np.nan)})
    fitted = ConformalIntervals().fit(out, {"x": np.linspace(-1, 1, 5)})
    with pytest.raises(StellarValueError, match="fitted levels"):
        fitted.factor("x", 0.9)


def test_from_dict_refuses_unknown_foreign_and_malformed_payloads():
    with pytest.raises(StellarValueError, match=r"must be one of \['by_subset', 'conformal', 'none', 'variance'\]"):
        BaseIntervalCalibrator.from_dict({"type": "temperature", "temperature": 1.0})
    # the two families do not mix: a probability calibrator's payload is not an interval calibrator's
    temp = TemperatureScaler().fit(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])).to_dict()
    with pytest.raises(StellarValueError, match="must be one of"):
        BaseIntervalCalibrator.from_dict(temp)
    with pytest.raises(StellarValueError, match="must be one of"):
        BaseProbCalibrator.from_dict({"type": "variance", "targets": {}})
    with pytest.raises(StellarValueError, match="mapping"):
        BaseIntervalCalibrator.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(StellarValueError, match="must include 'targets'"):
        BaseIntervalCalibrator.from_dict({"type": "variance"})
    with pytest.raises(StellarValueError, match="scale'\\] must be finite and > 0"):
        BaseIntervalCalibrator.from_dict({"type": "variance", "targets": {"x": {"n": 3, "scale": -1.0}}})
    with pytest.raises(StellarValueError, match="malformed"):
        BaseIntervalCalibrator.from_dict({"type": "variance", "targets": {"x": {"scale": 1.0}}})
    bad_levels = {"type": "conformal", "levels": [0.95], "targets": {"x": {"n": 9, "quantiles": [[0.95, 2.0]]}}}
    with pytest.raises(StellarValueError, match="a finite quantile >= 0 for each of"):
        BaseIntervalCalibrator.from_dict(bad_levels)
