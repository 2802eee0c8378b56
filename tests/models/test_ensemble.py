"""The MLP estimator and the ensemble estimator: output contract, save/load without pickle, refusal of bad input."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

from stellar.errors import StellarConfigError, StellarDataError
from stellar.models.ensemble import EnsembleClassifier
from stellar.models.mlp import MLPClassifier
from stellar.models.sed import SEDClassifier
from tests.models.test_estimators import FAST, _part

CLASSES = ["a", "b", "c"]
MLP_FAST = {"epochs": 5, "lr": 0.01, "batch_size": 64, "hidden": [32, 32], "out_dim": 16, "head_hidden": 16}


def _members() -> dict[str, partial]:
    return {"xgb": partial(SEDClassifier, **FAST), "mlp": partial(MLPClassifier, **MLP_FAST)}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_mlp_returns_log_probabilities_keeps_the_best_epoch_and_round_trips(tmp_path):
    train, val, test = _part(600, 0), _part(200, 1), _part(200, 2)
    model = MLPClassifier(class_names=CLASSES, seed=1, **MLP_FAST)
    metrics = model.fit(train, val)
    assert {"train/class_loss", "val/class_loss", "val/class_acc"} <= set(metrics)
    assert metrics["val/class_loss"] == min(model.history["class"]["val"]["loss"])
    out = model.predict_outputs(test)
    assert set(out) == {"logits"} and out["logits"].shape == (200, 3) and out["logits"].dtype == np.float32
    assert np.allclose(np.exp(out["logits"]).sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(out["logits"].argmax(1) == test["label"]) > 0.85
    again = MLPClassifier(class_names=CLASSES, seed=1, **MLP_FAST)
    again.fit(train, val)
    assert np.array_equal(again.predict_outputs(test)["logits"], out["logits"])  # seeded: the same weights

    path = model.save(tmp_path, prefix="m.")
    assert {p.name for p in tmp_path.iterdir()} == {"m.estimator.json", "m.mlp.pt"}
    assert json.loads(path.read_text())["n_features"] == 3
    loaded = MLPClassifier(class_names=CLASSES, **MLP_FAST).load(path)
    assert np.array_equal(loaded.predict_outputs(test)["logits"], out["logits"])
    with pytest.raises(StellarConfigError, match="hidden"):
        MLPClassifier(class_names=CLASSES, **{**MLP_FAST, "hidden": [8]}).load(path)
    with pytest.raises(StellarDataError, match="fitted on 3"):
        model.predict_outputs({"features": np.zeros((4, 5), np.float32)})


def test_mlp_refuses_bad_configuration_and_data(tmp_path):
    with pytest.raises(StellarConfigError, match="class_names"):
        MLPClassifier(class_names=["only"])
    with pytest.raises(StellarConfigError, match="epochs"):
        MLPClassifier(class_names=CLASSES, epochs=0)
    with pytest.raises(StellarConfigError, match="not fitted"):
        MLPClassifier(class_names=CLASSES).predict_outputs({"features": np.zeros((2, 3))})
    with pytest.raises(StellarDataError, match="labelled"):
        MLPClassifier(class_names=CLASSES).fit({"features": np.zeros((3, 2)), "label": -np.ones(3)})
    with pytest.raises(StellarDataError, match=r"estimator\.json"):
        MLPClassifier(class_names=CLASSES).load(tmp_path)


def test_ensemble_averages_member_probabilities_and_round_trips_in_one_flat_folder(tmp_path):
    train, val, test = _part(600, 0), _part(200, 1), _part(200, 2)
    model = EnsembleClassifier(_members(), copies={"mlp": 2}, class_names=CLASSES, seed=5, name="ens")
    assert list(model.models) == ["xgb_0", "mlp_0", "mlp_1"]
    assert [m.seed for m in model.models.values()] == [5, 5, 6]
    metrics = model.fit(train, val)
    assert {"val/xgb_0.class_mlogloss", "val/mlp_1.class_loss", "val/class_mlogloss", "val/acc"} <= set(metrics)
    assert set(model.history) == {"xgb_0.class", "mlp_0.class", "mlp_1.class"}
    out = model.predict_outputs(test)
    assert set(out) == {"logits"} and out["logits"].shape == (200, 3)
    mean = np.mean([_softmax(m.predict_outputs(test)["logits"]) for m in model.models.values()], axis=0)
    assert np.allclose(np.exp(out["logits"]), mean, atol=1e-5)
    assert np.mean(out["logits"].argmax(1) == test["label"]) > 0.9

    path = model.save(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert all(p.is_file() for p in tmp_path.iterdir())  # flat: the registry stores a folder's files
    assert names == {"estimator.json", "xgb_0.estimator.json", "xgb_0.class.ubj"} | {
        f"mlp_{i}.{f}" for i in (0, 1) for f in ("estimator.json", "mlp.pt")
    }
    assert json.loads(path.read_text())["members"] == ["xgb_0", "mlp_0", "mlp_1"]
    loaded = EnsembleClassifier(_members(), copies={"mlp": 2}, class_names=CLASSES).load(tmp_path)
    assert np.array_equal(loaded.predict_outputs(test)["logits"], out["logits"])
    with pytest.raises(StellarConfigError, match="members"):
        EnsembleClassifier(_members(), class_names=CLASSES).load(path)
    with pytest.raises(StellarConfigError, match="class_names"):
        EnsembleClassifier(_members(), copies={"mlp": 2}, class_names=["x", "y", "z"]).load(path)


def test_ensemble_refuses_bad_configuration():
    with pytest.raises(StellarConfigError, match="members"):
        EnsembleClassifier({}, class_names=CLASSES)
    with pytest.raises(StellarConfigError, match="not members"):
        EnsembleClassifier(_members(), copies={"knn": 2}, class_names=CLASSES)
    with pytest.raises(StellarConfigError, match="at least 1"):
        EnsembleClassifier(_members(), copies={"xgb": 0}, class_names=CLASSES)
    with pytest.raises(StellarConfigError, match="_partial_"):
        EnsembleClassifier({"xgb": SEDClassifier(class_names=CLASSES)}, class_names=CLASSES)  # type: ignore[dict-item]
    with pytest.raises(StellarConfigError, match="class_names"):
        EnsembleClassifier(_members(), class_names=[])
