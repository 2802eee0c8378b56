"""Calibrated combination of classifiers (mean / stacked pool) and a LightningModule as an estimator: known
answers on synthetic probabilities, save/load round trips, refusal of bad input."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stellar.errors import StellarConfigError, StellarDataError
from stellar.evaluation.calibration import TemperatureScaler
from stellar.models.combine import CalibratedEnsemble, StackedPool
from stellar.models.components.mlp import FeatureMLP
from stellar.models.estimators import read_meta, write_meta
from stellar.models.lightning_estimator import LightningEstimator
from stellar.models.module import StellarModule
from stellar.models.sed import SEDClassifier
from tests.models.test_estimators import FAST, _part

CLASSES = ["a", "b", "c"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Fixed:
    """A stub member: logits = ``scale`` × a fixed function of the features (``fit`` learns nothing)."""

    inputs = ("features",)

    def __init__(
        self,
        class_names: list[str],
        seed: int = 0,
        name: str = "fixed",
        scale: float = 1.0,
        col: int = 0,
        target_stats: Mapping[str, Sequence[float]] | None = None,
    ):
        self.class_names, self.scale, self.col = class_names, scale, col

    def fit(self, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        return {"train/nothing": 0.0}

    def predict_outputs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.nan_to_num(np.asarray(arrays["features"], dtype=np.float64)[:, self.col])
        z = np.stack([-x, np.zeros_like(x), x], axis=1)  # class a for low x, c for high x
        return {"logits": (self.scale * z).astype(np.float32)}

    def save(self, directory: Path, prefix: str = "") -> Path:
        return write_meta(Path(directory), prefix, {"class_names": self.class_names})

    def load(self, path: str | Path) -> Fixed:
        read_meta(path)
        return self


def test_mean_of_members_without_calibration_is_the_plain_average():
    model = CalibratedEnsemble(
        {"u": partial(Fixed, scale=1.0), "v": partial(Fixed, scale=3.0, col=1)}, class_names=CLASSES
    )
    data = _part(50, 0)
    model.fit(data, None)
    x0, x1 = data["features"][:, 0].astype(float), np.nan_to_num(data["features"][:, 1].astype(float))
    expected = 0.5 * (_softmax(np.stack([-x0, 0 * x0, x0], 1)) + _softmax(3 * np.stack([-x1, 0 * x1, x1], 1)))
    got = np.exp(model.predict_outputs(data)["logits"].astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_each_member_is_temperature_scaled_before_the_mean():
    # labels drawn from softmax(z): a member with logits 4z is overconfident by T = 4, one with 0.5z timid (T = 0.5)
    rng = np.random.default_rng(1)
    x = rng.normal(scale=2.0, size=(4000, 1)).astype(np.float32)
    z = np.concatenate([-x, 0 * x, x], axis=1).astype(np.float64)
    y = np.array([rng.choice(3, p=p) for p in _softmax(z)])
    data = {"features": x, "label": y, "index": np.arange(len(y))}
    members = {"sharp": partial(Fixed, scale=4.0), "timid": partial(Fixed, scale=0.5)}
    model = CalibratedEnsemble(members, class_names=CLASSES, member_calibrator=TemperatureScaler)
    metrics = model.fit(data, data)
    temps = {k: c.temperature for k, c in model.prob_calibrators.items()}
    assert temps["sharp_0"] == pytest.approx(4.0, rel=0.1) and temps["timid_0"] == pytest.approx(0.5, rel=0.1)
    # after calibration both members are ~softmax(z), so is their mean
    got = np.exp(model.predict_outputs(data)["logits"].astype(np.float64))
    assert np.abs(got - _softmax(z)).max() < 0.05
    assert {"val/sharp_0.calibrated_acc", "val/combined_acc", "val/combined_mlogloss"} <= set(metrics)


def test_stacked_pool_recovers_known_weights_and_bias():
    # labels drawn from softmax(2 log p1 + 0.5 log p2 + b): the pool's maximum likelihood finds w and b back
    rng = np.random.default_rng(2)
    n = 20000
    p1, p2 = _softmax(rng.normal(size=(n, 3))), _softmax(rng.normal(size=(n, 3)))
    b = np.array([0.3, 0.0, -0.3])
    truth = _softmax(2.0 * np.log(p1) + 0.5 * np.log(p2) + b)
    y = (rng.uniform(size=(n, 1)) > truth.cumsum(axis=1)).sum(axis=1)
    pool = StackedPool(l2=0.0).fit([p1, p2], y)
    assert pool.weights is not None and pool.bias is not None
    np.testing.assert_allclose(pool.weights, [2.0, 0.5], atol=0.1)
    np.testing.assert_allclose(pool.bias - pool.bias.mean(), b, atol=0.08)
    again = StackedPool.from_dict(json.loads(json.dumps(pool.to_dict())))
    np.testing.assert_allclose(again.transform([p1, p2]), pool.transform([p1, p2]))
    # weights (1, 0) and no bias give the first member back exactly
    fixed = StackedPool.from_dict({"weights": [1.0, 0.0], "bias": [0.0, 0.0, 0.0]})
    np.testing.assert_allclose(fixed.transform([p1, p2]), p1, rtol=1e-9)


def test_stacked_pool_refuses_bad_input():
    p = _softmax(np.zeros((4, 3)))
    with pytest.raises(StellarConfigError, match="not fitted"):
        StackedPool().transform([p])
    with pytest.raises(StellarConfigError, match="l2"):
        StackedPool(l2=-1.0)
    with pytest.raises(StellarDataError, match="labels"):
        StackedPool().fit([p], np.array([0, 1, 5, 0]))
    pool = StackedPool.from_dict({"weights": [1.0], "bias": [0.0, 0.0, 0.0]})
    with pytest.raises(StellarDataError, match="fitted on 1 x 3"):
        pool.transform([p, p])


@pytest.mark.parametrize("stack", [False, True])
def test_calibrated_ensemble_round_trips_its_members_calibrators_and_pool(tmp_path, stack):
    train, val, test = _part(400, 0), _part(200, 1), _part(100, 2)
    members: dict[str, Any] = {"xgb": partial(SEDClassifier, **FAST), "fixed": partial(Fixed, scale=2.0)}
    kw: dict[str, Any] = {"class_names": CLASSES, "member_calibrator": TemperatureScaler, "stack": stack, "seed": 3}
    model = CalibratedEnsemble(members, **kw)
    model.fit(train, val)
    path = model.save(tmp_path)
    meta = json.loads(path.read_text())
    assert set(meta["calibrators"]) == {"xgb_0", "fixed_0"} and (meta["pool"] is not None) == stack
    loaded = CalibratedEnsemble(members, **kw).load(path)
    np.testing.assert_array_equal(loaded.predict_outputs(test)["logits"], model.predict_outputs(test)["logits"])
    with pytest.raises(StellarConfigError, match="stack"):
        CalibratedEnsemble(members, **{**kw, "stack": not stack}).load(path)
    with pytest.raises(StellarConfigError, match="member_calibrator"):
        CalibratedEnsemble(members, class_names=CLASSES, member_calibrator="temperature")  # type: ignore[arg-type]


def _module(**kw: Any) -> StellarModule:
    opt = partial(torch.optim.AdamW, lr=0.02)
    return StellarModule(FeatureMLP(hidden=[16], out_dim=8), name="mlp_module", head_hidden=8, optimizer=opt, **kw)


def test_lightning_estimator_trains_keeps_the_best_epoch_and_round_trips(tmp_path):
    train, val, test = _part(600, 0), _part(200, 1), _part(200, 2)
    for part in (train, val, test):
        part["features"] = np.nan_to_num(part["features"])
    model = LightningEstimator(_module, class_names=CLASSES, seed=4, max_epochs=4, batch_size=64)
    assert model.inputs == ["features"] and model.targets == []
    metrics = model.fit(train, val)
    assert 0 <= metrics["val/best_epoch"] < 4 and model.best_epoch == metrics["val/best_epoch"]
    out = model.predict_outputs(test)
    assert out["logits"].shape == (200, 3) and np.mean(out["logits"].argmax(1) == test["label"]) > 0.8
    again = LightningEstimator(_module, class_names=CLASSES, seed=4, max_epochs=4, batch_size=64)
    again.fit(train, val)
    np.testing.assert_allclose(again.predict_outputs(test)["logits"], out["logits"], atol=1e-6)  # seeded

    path = model.save(tmp_path, prefix="t.")
    assert {p.name for p in tmp_path.iterdir()} == {"t.estimator.json", "t.module.pt"}
    loaded = LightningEstimator(_module, class_names=CLASSES).load(path)
    np.testing.assert_array_equal(loaded.predict_outputs(test)["logits"], out["logits"])
    assert loaded.best_epoch == model.best_epoch
    with pytest.raises(StellarConfigError, match="class_names"):
        LightningEstimator(_module, class_names=["x", "y"]).load(path)


def test_lightning_estimator_refuses_bad_configuration_and_data():
    with pytest.raises(StellarConfigError, match="factory"):
        LightningEstimator(None, class_names=CLASSES)  # type: ignore[arg-type]
    with pytest.raises(StellarConfigError, match="max_epochs"):
        LightningEstimator(_module, class_names=CLASSES, max_epochs=0)
    with pytest.raises(StellarConfigError, match="LightningModule"):
        LightningEstimator(lambda **kw: object(), class_names=CLASSES)
    model = LightningEstimator(_module, class_names=CLASSES)
    with pytest.raises(StellarConfigError, match="features"):
        model.predict_outputs({"flux": np.zeros((2, 3))})
    with pytest.raises(StellarDataError, match="empty"):
        model.fit({"features": np.zeros((0, 3), np.float32), "label": np.zeros(0, np.int64)})


def test_lightning_estimator_refuses_a_factory_that_shares_its_encoder():
    shared = partial(StellarModule, FeatureMLP(hidden=[4], out_dim=4))  # what a Hydra partial does with the encoder
    LightningEstimator(shared, class_names=CLASSES)
    with pytest.raises(StellarConfigError, match="copies: 1"):
        LightningEstimator(shared, class_names=CLASSES)
