"""``model=lightcurve_combined`` through ``run(cfg)`` on the small EROS set: trained, scored again by evaluate.py
from its folder, registered, rebuilt from the registry with the same probabilities, and served."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stellar.models.combine import CalibratedEnsemble
from stellar.pipelines import evaluate, train
from stellar.registry import ModelRegistry
from stellar.serving.api import LightCurveAPI
from stellar.serving.schemas import LightCurveRequest, PredictionResponse
from tests.conftest import DATA

EROS = f"datamodule.data_dir={DATA / 'lightcurves' / 'eros_subset'}"
FAST = ["trainer.max_epochs=2", "model.members.xgb.n_jobs=1", "model.members.xgb.num_boost_round=15"]


@pytest.mark.parametrize("stack", [False, True])
def test_combined_model_trains_evaluates_and_registers(make_cfg, tmp_path, stack):
    reg_root = tmp_path / "registry"
    cfg = make_cfg(
        "experiment=eros_lightcurves", "model=lightcurve_combined", EROS, *FAST, f"model.stack={stack}",
        "register=true", f"registry.root={reg_root}", tiny=False,
    )  # fmt: skip
    metrics, objs = train.run(cfg)
    model, dm = objs["model"], objs["datamodule"]
    assert isinstance(model, CalibratedEnsemble) and model.members == ["transformer_0", "xgb_0"]
    assert set(model.prob_calibrators) == {"transformer_0", "xgb_0"} and (model.stacked is not None) == stack
    run_dir = Path(cfg.paths.output_dir)
    saved = json.loads((run_dir / "checkpoints" / "estimator.json").read_text())
    assert saved["type"] == "CalibratedEnsemble" and set(saved["files"]) == {"transformer_0", "xgb_0"}
    summary = metrics["test_summary"]["classification"]

    report, _ = evaluate.run(
        make_cfg(f"run_dir={run_dir}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False)
    )
    assert report["classification"]["accuracy"] == pytest.approx(summary["accuracy"])
    assert report["classification"]["ece_after"] == pytest.approx(summary["ece_after"], abs=1e-6)

    mv = ModelRegistry(reg_root).get(metrics["registered"].split(":")[0])
    rebuilt = mv.load_model()
    test = dm.arrays("test")
    np.testing.assert_allclose(
        rebuilt.predict_outputs(test)["logits"], model.predict_outputs(test)["logits"], rtol=1e-5, atol=1e-6
    )

    api = LightCurveAPI(mv.name, registry_root=str(reg_root), api_path="/predict/lightcurve")
    api.setup("cpu")
    t = np.linspace(0.0, 300.0, 40)
    request = LightCurveRequest(
        lightcurves=[list(17.0 + 0.3 * np.sin(2 * np.pi * t / 0.6))], times=[list(t)], bands=[["b", "r"] * 20],
        errors=[[0.02] * 40], unit="mag",
    )  # fmt: skip
    out = api.encode_response(api.predict(api.decode_request(request)))
    (pred,) = PredictionResponse.model_validate(out).model_dump()["predictions"]
    assert list(pred["probabilities"]) == list(dm.class_names)
    assert sum(pred["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("model", ["lightcurve_combined", "lightcurve_transformer"])
def test_augment_option_reaches_the_training_loaders(make_cfg, model):
    from stellar.data.augment import LightCurveAugmentation

    extra = FAST if model == "lightcurve_combined" else []
    cfg = make_cfg(
        "experiment=eros_lightcurves", f"model={model}", EROS, "datamodule/augment=lightcurve", "debug=fdr", *extra,
        tiny=False,
    )  # fmt: skip
    metrics, objs = train.run(cfg)
    assert isinstance(objs["datamodule"].augment, LightCurveAugmentation) and objs["datamodule"].augment.seed == 11
    if model == "lightcurve_combined":
        assert isinstance(objs["model"].models["transformer_0"].augment, LightCurveAugmentation)
    assert "test_summary" in metrics
    # off by default
    assert "augment" not in make_cfg("experiment=eros_lightcurves", EROS, tiny=False).datamodule


def test_phase_multiples_option_trains_and_reloads(make_cfg, tmp_path):
    """model.encoder.phase_multiples=[1,2] (phase also at twice best_period) trains, and evaluate.py rebuilds the
    same encoder from the run folder (same accuracy on the test part)."""
    cfg = make_cfg(
        "experiment=eros_lightcurves", "model=lightcurve_transformer", EROS, "trainer.max_epochs=1",
        "model.encoder.phase_multiples=[1,2]", tiny=False,
    )  # fmt: skip
    metrics, objs = train.run(cfg)
    enc = objs["model"].encoder
    assert enc.phase_multiples == (1.0, 2.0) and enc.phase.in_features == 2 * 3 * 2
    report, _ = evaluate.run(
        make_cfg(
            f"run_dir={cfg.paths.output_dir}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False
        )
    )
    assert report["classification"]["accuracy"] == pytest.approx(metrics["test_summary"]["classification"]["accuracy"])
    # off by default
    assert list(make_cfg("experiment=eros_lightcurves", EROS, tiny=False).model.members.transformer.module.encoder
                .phase_multiples) == [1]  # fmt: skip
