"""XGBoost estimators: the output contract, save/load without pickle, and honest quantile intervals."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from stellar.errors import StellarConfigError, StellarDataError
from stellar.models.estimators import XGBoostEstimator, feature_matrix
from stellar.models.sed import SEDClassifier, SEDRegressor

FAST: dict[str, Any] = {"num_boost_round": 60, "early_stopping_rounds": 10, "n_jobs": 1}


def _part(n: int, seed: int) -> dict[str, np.ndarray]:
    """Two informative features (one with missing values), a 3-class label and a log-normal 'teff'."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    label = (x[:, 0] > 0.5).astype(np.int64) + (x[:, 0] > -0.5)
    teff = 5000.0 * 10.0 ** (0.1 * x[:, 1] + 0.02 * rng.normal(size=n))
    x[rng.uniform(size=n) < 0.1, 2] = np.nan
    return {"features": x, "label": label, "teff": teff.astype(np.float32), "index": np.arange(n)}


def test_feature_matrix_flattens_and_concatenates_named_fields():
    arrays = {"a": np.ones((4, 2, 3)), "b": np.array([[np.inf], [1.0], [2.0], [3.0]]), "c": np.zeros((4, 1), bool)}
    x = feature_matrix(arrays, ["a", "b", "c"])
    assert x.shape == (4, 8) and x.dtype == np.float32
    assert np.isnan(x[0, 6]) and x[1, 6] == 1.0
    with pytest.raises(StellarConfigError, match="inputs"):
        feature_matrix(arrays, ["missing"])


def test_classifier_returns_log_probabilities_and_round_trips(tmp_path):
    train, val, test = _part(600, 0), _part(200, 1), _part(200, 2)
    model = SEDClassifier(class_names=["a", "b", "c"], seed=3, **FAST)
    metrics = model.fit(train, val)
    assert {"train/class_mlogloss", "val/class_mlogloss"} <= set(metrics)
    out = model.predict_outputs(test)
    assert set(out) == {"logits"} and out["logits"].shape == (200, 3)
    assert np.allclose(np.exp(out["logits"]).sum(axis=1), 1.0, atol=1e-4)
    assert np.mean(out["logits"].argmax(1) == test["label"]) > 0.9
    path = model.save(tmp_path / "ckpt")
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"estimator.json", "class.ubj"}
    meta = json.loads(path.read_text())
    assert meta["class_names"] == ["a", "b", "c"] and meta["inputs"] == ["features"]
    again = SEDClassifier(class_names=["a", "b", "c"], **FAST).load(path)
    assert np.array_equal(again.predict_outputs(test)["logits"], out["logits"])
    with pytest.raises(StellarConfigError, match="class_names"):
        SEDClassifier(class_names=["x", "y"]).load(path)


def test_regressor_gives_physical_mean_and_a_calibrated_68_percent_interval(tmp_path):
    train, val, test = _part(3000, 0), _part(500, 1), _part(1000, 2)
    logt = np.log10(train["teff"])
    model = SEDRegressor(targets=["teff"], target_stats={"teff": (logt.mean(), logt.std())}, seed=0, **FAST)
    model.fit(train, val)
    out = model.predict_outputs(test)
    assert set(out) == {"teff_mean", "teff_logvar"}
    err = np.abs(out["teff_mean"] - test["teff"])
    assert np.median(err / test["teff"]) < 0.05
    inside = err < np.exp(0.5 * out["teff_logvar"])
    assert 0.6 < inside.mean() < 0.76  # scaled on val to cover 68%
    assert 0.3 < model.interval_scale["teff"] < 3.0
    model.save(tmp_path)
    again = SEDRegressor(targets=["teff"]).load(tmp_path)
    assert again.target_stats == model.target_stats
    assert np.allclose(again.predict_outputs(test)["teff_mean"], out["teff_mean"])
    assert np.allclose(again.predict_outputs(test)["teff_logvar"], out["teff_logvar"])


def test_configuration_errors_name_the_argument():
    with pytest.raises(StellarConfigError, match="class_names"):
        SEDClassifier(class_names=[])
    with pytest.raises(StellarConfigError, match="targets"):
        SEDRegressor(targets=[])
    with pytest.raises(StellarConfigError, match="quantiles"):
        XGBoostEstimator(class_names=["a"], quantiles=(0.5, 0.2, 0.9))
    with pytest.raises(StellarConfigError, match="not fitted"):
        XGBoostEstimator(class_names=["a", "b"]).predict_outputs({"features": np.zeros((2, 1))})
    with pytest.raises(StellarDataError, match="labelled"):
        XGBoostEstimator(class_names=["a", "b"], n_jobs=1).fit({"features": np.zeros((3, 1)), "label": -np.ones(3)})
