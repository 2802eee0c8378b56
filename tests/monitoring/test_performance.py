"""Label-free performance estimation and the bootstrap of measured performance, against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from stellar.monitoring.performance import estimate_performance, measured_classification, measured_regression


def _calibrated(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them: calibrated by construction."""
    logits = rng.normal(size=(n, k)) * 2.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    return p, y


def test_estimated_accuracy_is_within_its_interval_of_the_truth_when_calibrated() -> None:
    rng = np.random.default_rng(0)
    errors, inside = [], 0
    for _ in range(40):
        p, y = _calibrated(rng, 1000, 4)
        est = estimate_performance(p, ["a", "b", "c", "d"])
        truth = float(np.mean(p.argmax(axis=1) == y))
        errors.append(abs(est["accuracy"] - truth))
        lo, hi = est["accuracy_interval"]
        inside += lo <= truth <= hi
    assert np.mean(errors) < 0.02
    assert inside >= 34  # a 95% interval: about 38 of 40


def test_estimated_f1_of_confident_correct_predictions_is_one() -> None:
    p = np.eye(3)[[0, 1, 2, 0]]
    est = estimate_performance(p, ["x", "y", "z"])
    assert est["accuracy"] == 1.0 and est["accuracy_std"] == 0.0
    assert est["per_class_f1"] == {"x": 1.0, "y": 1.0, "z": 1.0}


def test_measured_classification_bootstrap_brackets_the_value() -> None:
    rng = np.random.default_rng(1)
    p, y = _calibrated(rng, 500, 3)
    y[:10] = -1  # unknown labels are left out
    m = measured_classification(p, y, n_boot=100)
    assert m["n"] == 490
    assert m["accuracy"] == pytest.approx(np.mean(p[10:].argmax(axis=1) == y[10:]))
    lo, hi = m["accuracy_interval"]
    assert lo < m["accuracy"] < hi and hi - lo < 0.12


def test_measured_regression_with_calibrated_factors() -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(size=2000)
    mean = truth + rng.normal(scale=2.0, size=2000)
    outputs = {"teff_mean": mean, "teff_logvar": np.zeros(2000)}  # sigma 1, true error 2: under-covering
    raw = measured_regression(outputs, {"teff": truth}, n_boot=50)["teff"]
    fixed = measured_regression(outputs, {"teff": truth}, {"teff": 2.0}, n_boot=50)["teff"]
    assert raw["coverage_68"] == pytest.approx(0.38, abs=0.04)
    assert fixed["coverage_68"] == pytest.approx(0.68, abs=0.04)
    assert raw["mae"] == pytest.approx(2.0 * np.sqrt(2 / np.pi), rel=0.05)


def test_measured_coverage_of_a_log_target_is_taken_in_log10() -> None:
    """A period known to 0.3 dex, with σ from the delta method: in log10 the model's 1σ interval covers 68%; the
    same σ read as a symmetric linear interval covers other truths (the reference's coverage is in log10)."""
    rng = np.random.default_rng(3)
    log_mean = rng.uniform(-0.5, 1.5, 3000)
    mean = 10.0**log_mean
    truth = 10.0 ** (log_mean + 0.3 * rng.standard_normal(3000))
    outputs = {"period_mean": mean, "period_logvar": 2 * np.log(mean * np.log(10.0) * 0.3)}
    in_log = measured_regression(outputs, {"period": truth}, n_boot=20, log_targets=["period"])["period"]
    linear = measured_regression(outputs, {"period": truth}, n_boot=20)["period"]
    assert in_log["coverage_68"] == pytest.approx(0.6827, abs=0.03)
    assert abs(linear["coverage_68"] - in_log["coverage_68"]) > 0.02
