"""The MLP estimator and the ensemble estimator: output contract, save/load without pickle, refusal of bad input."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from stellar.errors import StellarConfigError, StellarDataError
from stellar.models.ensemble import Ensemble, EnsembleClassifier, gaussian_mixture
from stellar.models.mlp import MLPClassifier
from stellar.models.ridge import Fields, RidgeEstimator
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
        EnsembleClassifier(_members(), class_names=[])  # classifier members without classes: nothing to predict


def test_gaussian_mixture_has_the_moments_of_the_mixture():
    mean, logvar = gaussian_mixture([np.array([1.0, 0.0]), np.array([3.0, 0.0])], [np.log([1.0, 4.0])] * 2)
    # members N(1, 1) and N(3, 1): mean 2, variance 1 + 1 (spread of the means); N(0, 4) twice: N(0, 4)
    assert np.allclose(mean, [2.0, 0.0]) and np.allclose(np.exp(logvar), [2.0, 4.0])
    with pytest.raises(StellarConfigError, match="equally long"):
        gaussian_mixture([np.zeros(2)], [])


def test_ensemble_of_regressors_mixes_calibrated_members_and_round_trips(tmp_path):
    from tests.models.test_ridge import CLASSES as RCLASSES
    from tests.models.test_ridge import _part as ridge_part

    rep = Fields(["flux"])
    members = {"flux": partial(RidgeEstimator, targets=["teff", "logg"], representation=rep),
               "strong": partial(RidgeEstimator, targets=["logg"], representation=rep, alphas=[1e4])}  # fmt: skip
    train, val, test = ridge_part(600, 1), ridge_part(300, 2), ridge_part(300, 3)
    model = Ensemble(members, class_names=RCLASSES, calibrate_members=True, target_stats={"teff": (3.8, 0.1)})
    assert model.targets == ["teff", "logg"] and model.log_targets == ["teff"] and model.inputs == ["flux"]
    metrics = model.fit(train, val)
    assert {"val/acc", "val/teff_mae", "val/logg_mae", "train/flux_0.teff_alpha"} <= set(metrics)
    out = model.predict_outputs(test)
    a = model.models["flux_0"].predict_outputs(test)
    b = model.models["strong_0"].predict_outputs(test)
    # teff comes from one member: its mean, its σ scaled by its validation calibrator (~1: σ is a validation RMS)
    assert np.allclose(out["teff_mean"], a["teff_mean"], rtol=1e-6)
    k = model.member_calibrators["flux_0"]["intervals"].factor("teff")
    assert 0.8 < k < 1.25 and np.allclose(out["teff_logvar"], a["teff_logvar"] + 2 * np.log(k), atol=1e-4)
    # logg: the mixture of both; the over-regularised member's bias widens the mixture beyond either σ
    assert np.allclose(out["logg_mean"], (a["logg_mean"] + b["logg_mean"]) / 2, atol=1e-5)
    ka, kb = (model.member_calibrators[m]["intervals"].factor("logg") for m in ("flux_0", "strong_0"))
    var = (ka**2 * np.exp(a["logg_logvar"]) + kb**2 * np.exp(b["logg_logvar"])) / 2 + np.var(
        [a["logg_mean"], b["logg_mean"]], axis=0
    )
    assert np.allclose(np.exp(out["logg_logvar"]), var, rtol=1e-4)
    assert np.mean(np.abs(out["logg_mean"] - test["logg"]) <= np.exp(0.5 * out["logg_logvar"])) > 0.6
    assert np.mean(out["logits"].argmax(1) == test["label"]) > 0.8

    path = model.save(tmp_path)
    saved = json.loads(path.read_text())
    assert saved["member_calibrators"]["flux_0"]["probs"]["type"] == "temperature"
    loaded = Ensemble(members, class_names=RCLASSES, calibrate_members=True).load(path)
    again = loaded.predict_outputs(test)
    assert all(np.array_equal(again[k], out[k]) for k in out)


def test_weighted_gaussian_mixture_and_simplex_grid():
    from stellar.models.ensemble import simplex_grid

    mean, logvar = gaussian_mixture([np.array([0.0]), np.array([4.0])], [np.log([1.0])] * 2, weights=[3, 1])
    # weights 0.75 / 0.25: mean 1; variance 1 + 0.75·1² + 0.25·3² = 4
    assert np.allclose(mean, [1.0]) and np.allclose(np.exp(logvar), [4.0])
    assert np.allclose(gaussian_mixture([np.array([0.0]), np.array([4.0])], [np.zeros(1)] * 2, [1, 0])[0], 0.0)
    with pytest.raises(StellarConfigError, match="non-negative"):
        gaussian_mixture([np.zeros(1), np.zeros(1)], [np.zeros(1)] * 2, weights=[-1, 2])
    grid = simplex_grid(3, 0.25)
    assert grid.shape == (15, 3) and np.allclose(grid.sum(1), 1.0) and (grid >= 0).all()
    with pytest.raises(StellarConfigError, match="divide 1"):
        simplex_grid(2, 0.3)


def test_validation_weighting_uses_each_member_where_it_is_better_and_round_trips(tmp_path):
    from tests.models.test_ridge import CLASSES as RCLASSES
    from tests.models.test_ridge import _part as ridge_part

    rep = Fields(["flux"])
    # "good" fits teff and logg; "bad" over-regularises both heads (alpha 1e6: means near the training mean)
    members = {"good": partial(RidgeEstimator, targets=["teff", "logg"], representation=rep),
               "bad": partial(RidgeEstimator, targets=["teff", "logg"], representation=rep, alphas=[1e6])}  # fmt: skip
    train, val, test = ridge_part(600, 1), ridge_part(300, 2), ridge_part(300, 3)
    with pytest.raises(StellarConfigError, match="weighting"):
        Ensemble(members, class_names=RCLASSES, weighting="best")
    equal = Ensemble(members, class_names=RCLASSES)
    equal.fit(train, val)
    model = Ensemble(members, class_names=RCLASSES, weighting="validation", weight_step=0.1)
    metrics = model.fit(train, val)
    # the over-regularised member gets no weight on either target: the mixture is the good member's
    for t in ("teff", "logg"):
        assert model.weights[t] == {"good_0": 1.0, "bad_0": 0.0}
        assert metrics[f"val/weight.{t}.good_0"] == 1.0
    out, good = model.predict_outputs(test), model.models["good_0"].predict_outputs(test)
    assert np.allclose(out["logg_mean"], good["logg_mean"], atol=1e-6)
    eq = equal.predict_outputs(test)
    assert np.mean(np.abs(out["logg_mean"] - test["logg"])) < np.mean(np.abs(eq["logg_mean"] - test["logg"]))
    assert set(model.weights["class"]) == {"good_0", "bad_0"} and np.isclose(sum(model.weights["class"].values()), 1)
    loaded = Ensemble(members, class_names=RCLASSES, weighting="validation").load(model.save(tmp_path))
    assert loaded.weights == model.weights
    again = loaded.predict_outputs(test)
    assert all(np.array_equal(again[k], out[k]) for k in out)


def test_weight_margin_keeps_a_mixture_only_when_it_beats_the_best_single_member_clearly():
    from stellar.models.ensemble import best_weights

    rng = np.random.default_rng(2)
    truth = np.zeros(400)
    # two members with independent unit errors: their equal mixture halves the variance, a clear gain
    a, b = rng.normal(size=400), rng.normal(size=400)

    def abs_err(x: np.ndarray, y: np.ndarray):
        return lambda w: np.abs(w["x_0"] * x + w["y_0"] * y - truth)

    keys = ["x_0", "y_0"]
    clear = best_weights(keys, 0.1, abs_err(a, b), margin=1.0)
    assert clear is not None and 0.3 <= clear["x_0"] <= 0.7
    # a second member whose errors are almost the first's (0.98 a + 0.2 b: correlation 0.98, the same spread): in
    # expectation their best mixture lowers the error variance by 1%, and on this draw the grid's best point mixes
    # them, but by less than one standard error of the paired difference, so one member answers alone: the better
    # one of the two on this sample
    c = 0.98 * a + 0.2 * b
    mixed = best_weights(keys, 0.1, abs_err(a, c), margin=0.0)
    assert mixed is not None and 0 < mixed["x_0"] < 1
    single = best_weights(keys, 0.1, abs_err(a, c), margin=1.0)
    assert single is not None and sorted(single.values()) == [0.0, 1.0]
    alone = {k: float(np.mean(abs_err(a, c)({"x_0": float(k == "x_0"), "y_0": float(k == "y_0")}))) for k in keys}
    assert single[min(alone, key=alone.__getitem__)] == 1.0
    # a loss of one number cannot give a standard error; a negative margin is refused
    with pytest.raises(StellarConfigError, match="per object"):
        best_weights(keys, 0.1, lambda w: float(np.mean(abs_err(a, c)(w))), margin=1.0)
    with pytest.raises(StellarConfigError, match="weight_margin"):
        best_weights(keys, 0.1, abs_err(a, b), margin=-1.0)
    with pytest.raises(StellarConfigError, match="weight_margin"):
        Ensemble(_members(), class_names=CLASSES, weighting="validation", weight_margin=-0.5)


class _FixedTeff:
    """A stand-in member: its Teff is the data field ``column`` (σ 1 % in dex), no class head; fit does nothing."""

    def __init__(self, column: str, class_names=None, seed=0, name="", target_stats=None):
        self.column, self.class_names, self.targets, self.log_targets, self.inputs = column, [], ["teff"], ["teff"], []

    def fit(self, train, val=None):
        return {}

    def save(self, directory, prefix=""):
        path = Path(directory) / f"{prefix}fixed.json"
        path.write_text(json.dumps({"column": self.column}))
        return path

    def load(self, path):
        self.column = json.loads(Path(path).read_text())["column"]
        return self

    def predict_outputs(self, arrays):
        mean = np.asarray(arrays[self.column], dtype=np.float64)
        return {"teff_mean": mean, "teff_logvar": np.full(len(mean), np.log((0.01 * np.log10(mean)) ** 2))}


def test_weight_space_measures_the_teff_error_in_dex_or_in_kelvin():
    # half the stars at 5,000 K, half at 20,000 K; "hot" is exact on the hot stars and 250 K (0.021 dex) off on the
    # cool ones, "cool" exact on the cool stars and 600 K (0.013 dex) off on the hot ones: in dex "cool" is the
    # better member, in kelvin "hot" is, and any mixture lies between (the errors have one sign)
    teff = np.repeat([5000.0, 20000.0], 50)
    hot, cool = np.where(teff < 1e4, teff + 250.0, teff), np.where(teff < 1e4, teff, teff + 600.0)
    val = {"label": np.full(100, -1), "teff": teff, "hot": hot, "cool": cool}
    members = {"hot": partial(_FixedTeff, "hot"), "cool": partial(_FixedTeff, "cool")}
    chosen = {}
    for space in ("learned", "physical"):
        model = Ensemble(members, weighting="validation", weight_space=space)
        model.fit(val, val)
        chosen[space] = model.weights["teff"]
        assert model.hparams["weight_space"] == space
    assert chosen["learned"] == {"hot_0": 0.0, "cool_0": 1.0}
    assert chosen["physical"] == {"hot_0": 1.0, "cool_0": 0.0}
    with pytest.raises(StellarConfigError, match="weight_space"):
        Ensemble(members, weighting="validation", weight_space="kelvin")


def test_trust_quantile_lets_a_member_answer_only_inside_its_training_range_and_round_trips(tmp_path):
    # training Teff 4,000-8,000 K, uniform; "net" is exact inside that range and 2,000 K off above it; "ref" (the
    # member not gated) is 1% off everywhere. With net trusted between the 5% and 95% training quantiles only, the
    # ensemble takes net inside (weight chosen on val) and ref alone for the hot stars
    rng = np.random.default_rng(0)
    train = {"label": np.full(400, -1), "teff": rng.uniform(4000, 8000, 400)}
    teff = np.concatenate([rng.uniform(4500, 7500, 80), rng.uniform(15000, 30000, 20)])
    net, ref = np.where(teff < 8000, teff, teff - 2000.0), teff * 1.01
    train["net"], train["ref"] = train["teff"], train["teff"] * 1.01
    val = {"label": np.full(100, -1), "teff": teff, "net": net, "ref": ref}
    members = {"net": partial(_FixedTeff, "net"), "ref": partial(_FixedTeff, "ref")}
    plain = Ensemble(members, weighting="validation")
    plain.fit(train, val)
    gated = Ensemble(members, weighting="validation", trust_quantile={"net": 0.95})
    gated.fit(train, val)
    lo, hi = gated.trust_range["net"]["teff"]
    assert np.allclose([lo, hi], np.quantile(np.log10(train["teff"]), [0.05, 0.95]), rtol=1e-12)
    out, base = gated.predict_outputs(val), plain.predict_outputs(val)
    hot = teff > 10**hi * 1.02
    assert gated.weights["teff"]["net_0"] == 1.0  # inside its range net is exact, so it takes the whole weight
    assert np.allclose(out["teff_mean"][hot], ref[hot], rtol=1e-6)  # outside, the reference alone
    inside = (ref >= 10**lo) & (ref <= 10**hi)
    assert np.allclose(out["teff_mean"][inside], net[inside], rtol=1e-6)
    err = np.abs(out["teff_mean"] - teff).mean()
    assert err < np.abs(base["teff_mean"] - teff).mean()
    loaded = Ensemble(members, weighting="validation", trust_quantile={"net": 0.95}).load(gated.save(tmp_path / "g"))
    assert loaded.trust_range == gated.trust_range
    assert np.array_equal(loaded.predict_outputs(val)["teff_mean"], out["teff_mean"])
    with pytest.raises(StellarConfigError, match="trust"):
        Ensemble(members, weighting="validation").load(tmp_path / "g")
    with pytest.raises(StellarConfigError, match="trust_quantile"):
        Ensemble(members, trust_quantile={"net": 0.4})
    with pytest.raises(StellarConfigError, match="trust_quantile"):
        Ensemble(members, trust_quantile={"net": 0.9, "ref": 0.9})
