import json
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy.special import softmax

from stellar.errors import StellarValueError
from stellar.evaluation import (
    BaseProbCalibrator,
    IsotonicCalibrator,
    NoCalibration,
    TemperatureScaler,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_curve,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "calibrator"
TRUE_T = 3.0


def _sample(n, n_classes=4, seed=0, scale=1.5):
    """True-signal logits ``s`` and labels drawn from softmax(s) (Gumbel-max), so softmax(s) is calibrated."""
    rng = np.random.default_rng(seed)
    s = rng.normal(scale=scale, size=(n, n_classes))
    y = (s + rng.gumbel(size=s.shape)).argmax(axis=1)
    return s, y


@pytest.fixture(scope="module")
def overconfident():
    """An overconfident classifier: logits = 3 × the true signal; fit and held-out parts from one distribution."""
    s, y = _sample(10000, seed=1)
    logits = TRUE_T * s
    return {"fit": (logits[:5000], y[:5000]), "test": (logits[5000:], y[5000:])}


def test_readme_snippet_runs_verbatim(overconfident):
    logits, y_true = overconfident["fit"]
    probs = softmax(logits, axis=1)

    from stellar.evaluation import TemperatureScaler

    scaler = TemperatureScaler().fit(logits, y_true)  # logits (N, C) before softmax, y_true (N,) ints
    calibrated_probs = scaler.transform(logits)
    print("Learned temperature:", scaler.temperature)

    from stellar.evaluation import IsotonicCalibrator

    iso = IsotonicCalibrator(per_class=True).fit(probs, y_true)  # probs (N, C) already softmaxed
    calibrated_probs = iso.transform(probs)

    from stellar.evaluation import expected_calibration_error, reliability_curve

    pre_ece = expected_calibration_error(probs, y_true, n_bins=15)
    centers, acc, conf, counts = reliability_curve(calibrated_probs, y_true, n_bins=15)

    payload = scaler.to_dict()  # JSON-serialisable
    from stellar.evaluation import BaseProbCalibrator

    reloaded = BaseProbCalibrator.from_dict(payload)  # returns the right subclass, same outputs

    assert isinstance(reloaded, TemperatureScaler)
    np.testing.assert_array_equal(reloaded.transform(logits), scaler.transform(logits))
    assert pre_ece > 0.1 and counts.sum() == len(y_true) and centers.shape == acc.shape == conf.shape == (15,)


def test_temperature_recovers_true_t_and_keeps_argmax(overconfident):
    logits, y = overconfident["fit"]
    scaler = TemperatureScaler().fit(logits, y)
    assert abs(scaler.temperature - TRUE_T) / TRUE_T < 0.1
    probs = scaler.transform(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(probs.argmax(axis=1), logits.argmax(axis=1))


def test_temperature_lowers_ece_and_nll_on_held_out_data(overconfident):
    scaler = TemperatureScaler().fit(*overconfident["fit"])
    logits, y = overconfident["test"]
    raw, cal = softmax(logits, axis=1), scaler.transform(logits)
    assert expected_calibration_error(cal, y) < 0.5 * expected_calibration_error(raw, y)
    assert expected_calibration_error(cal, y) < 0.03
    assert negative_log_likelihood(cal, y) < negative_log_likelihood(raw, y)


@pytest.mark.parametrize("per_class", [True, False])
def test_isotonic_lowers_ece_on_held_out_data(overconfident, per_class):
    logits_fit, y_fit = overconfident["fit"]
    logits, y = overconfident["test"]
    iso = IsotonicCalibrator(per_class=per_class).fit(softmax(logits_fit, axis=1), y_fit)
    raw = softmax(logits, axis=1)
    cal = iso.transform(raw)
    np.testing.assert_allclose(cal.sum(axis=1), 1.0, atol=1e-12)
    assert cal.min() >= 0.0
    assert expected_calibration_error(cal, y) < 0.5 * expected_calibration_error(raw, y)


def test_isotonic_all_zero_rows_fall_back_to_input():
    # class 0 is never the label, class 1 always: a row with p1 below every fitted value maps to all zeros
    probs = np.array([[0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    iso = IsotonicCalibrator(per_class=True).fit(probs, np.array([1, 1, 1]))
    np.testing.assert_allclose(iso.transform(np.array([[0.5, 0.5]])), [[0.0, 1.0]])
    iso.thresholds_[1] = (np.array([0.6, 0.8]), np.array([0.0, 0.0]))  # force an all-zero map
    np.testing.assert_allclose(iso.transform(np.array([[0.5, 0.5], [0.1, 0.9]])), [[0.5, 0.5], [0.1, 0.9]])


def _fitted_calibrators(logits, y):
    probs = softmax(logits, axis=1)
    return [
        (TemperatureScaler().fit(logits, y), logits),
        (IsotonicCalibrator(per_class=True).fit(probs, y), probs),
        (IsotonicCalibrator(per_class=False).fit(probs, y), probs),
        (NoCalibration(input_kind="logits").fit(logits, y), logits),
        (NoCalibration(), probs),
    ]


def test_json_round_trip_gives_identical_outputs(overconfident):
    held_out, _ = overconfident["test"]
    for cal, _fit_scores in _fitted_calibrators(*overconfident["fit"]):
        payload = json.loads(json.dumps(cal.to_dict()))
        assert payload["type"] == cal.type_name and payload["input_kind"] == cal.input_kind
        reloaded = BaseProbCalibrator.from_dict(payload)
        assert type(reloaded) is type(cal) and reloaded.input_kind == cal.input_kind
        scores = held_out if cal.input_kind == "logits" else softmax(held_out, axis=1)
        np.testing.assert_array_equal(reloaded.transform(scores), cal.transform(scores))


def test_no_calibration_is_softmax_or_identity():
    logits, _ = _sample(50, seed=3)
    probs = softmax(logits, axis=1)
    np.testing.assert_allclose(NoCalibration(input_kind="logits").transform(logits), probs, atol=1e-15)
    np.testing.assert_allclose(NoCalibration().transform(probs), probs, atol=1e-15)
    assert NoCalibration.from_dict({"type": "none", "input_kind": "logits"}).input_kind == "logits"


def test_ece_small_when_calibrated_and_large_when_overconfident():
    s, y = _sample(20000, seed=2)
    assert expected_calibration_error(softmax(s, axis=1), y, n_bins=15) < 0.02
    assert expected_calibration_error(softmax(TRUE_T * s, axis=1), y, n_bins=15) > 0.15


def test_ece_hand_computed():
    # confidences 0.9 (right) and 0.8 (wrong) in separate bins: (|1 - 0.9| + |0 - 0.8|) / 2
    ece = expected_calibration_error(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 1]), n_bins=10)
    assert ece == pytest.approx(0.45)


def test_reliability_curve_counts_and_centers():
    s, y = _sample(1000, seed=4)
    centers, acc, conf, counts = reliability_curve(softmax(s, axis=1), y, n_bins=10)
    np.testing.assert_allclose(centers, np.arange(0.05, 1.0, 0.1))
    assert counts.sum() == 1000 and counts.dtype.kind == "i"
    # 4 classes: the top confidence is at least 0.25, so the lowest bins are empty and NaN
    assert counts[:2].sum() == 0 and np.isnan(acc[:2]).all() and np.isnan(conf[:2]).all()
    full = counts > 0
    lo, hi = centers[full] - 0.05, centers[full] + 0.05
    assert np.all((conf[full] >= lo - 1e-12) & (conf[full] <= hi + 1e-12))


def test_brier_and_nll():
    y = np.array([0, 2, 1])
    onehot = np.eye(3)[y]
    assert brier_score(onehot, y) == 0.0
    assert negative_log_likelihood(onehot, y) == 0.0
    uniform = np.full((3, 3), 1 / 3)
    assert brier_score(uniform, y) == pytest.approx(2 / 3)
    assert negative_log_likelihood(uniform, y) == pytest.approx(np.log(3))
    assert np.isfinite(negative_log_likelihood(np.eye(3)[[1, 0, 0]], y))


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        (np.full((3, 2), 0.5), np.array([0, 1]), "one label per row"),
        (np.full((3, 2), 0.5), np.array([0, 1, 2]), r"in \[0, 2\)"),
        (np.full((3, 2), 0.5), np.array([0, -1, 1]), r"in \[0, 2\)"),
        (np.array([[0.5, 0.5], [np.nan, 0.5]]), np.array([0, 1]), "1 NaN"),
        (np.array([[0.5, 0.5], [np.inf, 0.5]]), np.array([0, 1]), "1 inf"),
        (np.array([[0.5, 0.6], [0.5, 0.5]]), np.array([0, 1]), "sum to 1"),
        (np.array([[1.5, -0.5], [0.5, 0.5]]), np.array([0, 1]), r"\[0, 1\]"),
        (np.array([0.5, 0.5]), np.array([0]), "2-D"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "at least 1 row"),
        (np.full((2, 2), 0.5), np.array([0.5, 1.0]), "integer"),
        (np.full((2, 2), 0.5), np.array([[0], [1]]), "1-D"),
    ],
)
def test_metrics_reject_bad_input(scores, labels, match):
    for fn in (expected_calibration_error, brier_score, negative_log_likelihood):
        with pytest.raises(StellarValueError, match=match):
            fn(scores, labels)


def test_calibrators_reject_bad_input():
    logits, y = _sample(20, seed=5)
    with pytest.raises(StellarValueError, match="2-D"):
        TemperatureScaler().fit(logits[:, 0], y)
    with pytest.raises(StellarValueError, match="one label per row"):
        TemperatureScaler().fit(logits, y[:-1])
    with pytest.raises(StellarValueError, match="not logits"):
        IsotonicCalibrator().fit(logits, y)  # logits where probabilities are expected
    with pytest.raises(StellarValueError, match="NaN"):
        TemperatureScaler().fit(np.where(np.eye(20, 4, dtype=bool), np.nan, logits), y)
    with pytest.raises(StellarValueError, match="3 class columns"):
        TemperatureScaler().fit(logits[:, :3], np.minimum(y, 2)).transform(logits)
    with pytest.raises(StellarValueError, match="log_t_bounds"):
        TemperatureScaler(log_t_bounds=(1.0, -1.0))
    with pytest.raises(StellarValueError, match="per_class"):
        IsotonicCalibrator(per_class="yes")  # type: ignore[arg-type]
    with pytest.raises(StellarValueError, match="input_kind"):
        NoCalibration(input_kind="scores")  # type: ignore[arg-type]


@pytest.mark.parametrize("cal", [TemperatureScaler(), IsotonicCalibrator(), IsotonicCalibrator(per_class=False)])
def test_unfitted_calibrator_raises(cal):
    probs = np.full((2, 3), 1 / 3)
    with pytest.raises(StellarValueError, match="not fitted"):
        cal.transform(probs)
    with pytest.raises(StellarValueError, match="not fitted"):
        cal.to_dict()


def test_from_dict_rejects_unknown_or_malformed_payloads(overconfident):
    with pytest.raises(StellarValueError, match=r"must be one of \['isotonic', 'none', 'temperature'\]"):
        BaseProbCalibrator.from_dict({"type": "platt"})
    with pytest.raises(StellarValueError, match="found None"):
        BaseProbCalibrator.from_dict({"temperature": 2.0})
    with pytest.raises(StellarValueError, match="not a TemperatureScaler"):
        TemperatureScaler.from_dict({"type": "none"})
    with pytest.raises(StellarValueError, match="malformed"):
        BaseProbCalibrator.from_dict({"type": "temperature", "n_classes": 4})
    with pytest.raises(StellarValueError, match="> 0"):
        BaseProbCalibrator.from_dict({"type": "temperature", "n_classes": 4, "temperature": -1.0})
    payload = IsotonicCalibrator().fit(softmax(overconfident["fit"][0], axis=1), overconfident["fit"][1]).to_dict()
    payload["thresholds"] = payload["thresholds"][:2]
    with pytest.raises(StellarValueError, match="4 maps"):
        BaseProbCalibrator.from_dict(payload)


@pytest.mark.parametrize(
    ("name", "cls"), [("none", NoCalibration), ("temperature", TemperatureScaler), ("isotonic", IsotonicCalibrator)]
)
def test_hydra_configs_build_calibrators(name, cls, overconfident):
    cal = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    assert type(cal) is cls
    logits, y = overconfident["fit"]
    scores = logits if cal.input_kind == "logits" else softmax(logits, axis=1)
    out = cal.fit(scores, y).transform(scores)
    assert out.shape == logits.shape
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
