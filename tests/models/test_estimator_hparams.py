"""One source of estimator hyper-parameters: the keys of ``estimator.json`` and their round trip."""

from __future__ import annotations

import json
from functools import partial

import pytest

from stellar.models.ensemble import EnsembleClassifier
from stellar.models.estimators import PIPELINE_KEYS, Estimator
from stellar.models.mlp import MLPClassifier
from stellar.models.sed import SEDClassifier, SEDRegressor
from tests.models.test_ensemble import MLP_FAST
from tests.models.test_estimators import FAST, _part

# the keys each estimator wrote to estimator.json before hparams had one source (same keys, same order)
XGB_KEYS = ["name", "class_names", "targets", "log_targets", "target_stats", "inputs", "quantiles", "interval_scale",
            "type", "best_iteration", "files"]  # fmt: skip
MLP_KEYS = ["name", "class_names", "targets", "target_stats", "inputs", "n_features", "hidden", "out_dim",
            "head_hidden", "best_epoch", "type", "files"]  # fmt: skip
# the ensemble's gained log_targets and member_calibrators when it took regression members, and the rule that chose
# its weights (weight_margin, weight_space, trust_quantile) with the options of the weighting, and the trusted ranges
ENSEMBLE_KEYS = ["name", "class_names", "targets", "target_stats", "inputs", "log_targets", "members", "weighting",
                 "weight_margin", "weight_space", "trust_quantile", "type", "files", "member_calibrators", "weights",
                 "trust_range"]  # fmt: skip


def test_estimator_json_keeps_its_keys_and_round_trips(tmp_path):
    train, val = _part(300, 0), _part(100, 1)
    members = {"xgb": partial(SEDClassifier, **FAST), "mlp": partial(MLPClassifier, **MLP_FAST)}
    ens = EnsembleClassifier(members, class_names=["a", "b", "c"], name="ens")
    ens.fit(train, val)
    ens.save(tmp_path / "ens")
    saved = {f: json.loads((tmp_path / "ens" / f).read_text()) for f in ("estimator.json", "xgb_0.estimator.json",
                                                                         "mlp_0.estimator.json")}  # fmt: skip
    assert list(saved["estimator.json"]) == ENSEMBLE_KEYS and list(saved["xgb_0.estimator.json"]) == XGB_KEYS
    assert list(saved["mlp_0.estimator.json"]) == MLP_KEYS
    assert saved["estimator.json"]["members"] == ["xgb_0", "mlp_0"]
    assert saved["estimator.json"]["targets"] == [] and saved["estimator.json"]["target_stats"] == {}
    mlp = saved["mlp_0.estimator.json"]
    assert mlp["hidden"] == MLP_FAST["hidden"] and mlp["n_features"] == 3 and mlp["target_stats"] == {}
    loaded = EnsembleClassifier(members, class_names=["a", "b", "c"], name="ens").load(tmp_path / "ens")
    assert loaded.hparams == ens.hparams == {k: saved["estimator.json"][k] for k in ENSEMBLE_KEYS[:-5]}
    for key, model in loaded.models.items():
        assert model.hparams == ens.models[key].hparams

    reg = SEDRegressor(targets=["teff"], target_stats={"teff": (3.7, 0.1)}, **FAST)
    reg.fit(train, val)
    meta = json.loads(reg.save(tmp_path / "reg").read_text())
    assert list(meta) == XGB_KEYS and meta["target_stats"] == {"teff": [3.7, 0.1]}
    assert meta["quantiles"] == [0.16, 0.5, 0.84] and set(meta["interval_scale"]) == {"teff"}
    again = SEDRegressor(targets=["teff"], **FAST).load(tmp_path / "reg")
    assert again.hparams == reg.hparams == {k: meta[k] for k in XGB_KEYS[:-3]}


def test_an_estimator_cannot_forget_or_repeat_a_key():
    with pytest.raises(TypeError, match="lacks \\['inputs'\\]"):
        type("NoInputs", (Estimator,), {"hparam_keys": ("name", "class_names", "targets", "target_stats")})
    with pytest.raises(TypeError, match="\\['name'\\] twice"):
        type("Twice", (Estimator,), {"hparam_keys": (*PIPELINE_KEYS, "name")})
    assert all(
        k in cls.hparam_keys for cls in (SEDClassifier, MLPClassifier, EnsembleClassifier) for k in PIPELINE_KEYS
    )
