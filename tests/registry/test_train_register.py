"""``train.py register=true`` stores a version that rebuilds the trained model exactly."""

from __future__ import annotations

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from stellar.pipelines.train import run
from stellar.registry import ModelRegistry
from tests.conftest import REPO


def test_train_registers_its_best_model(tmp_path):
    reg_root = tmp_path / "registry"
    overrides = [
        f"paths.output_dir={tmp_path / 'run'}",
        f"paths.store_dir={tmp_path / 'store'}",
        f"paths.log_dir={tmp_path}",
        "datamodule.source.n=96",
        "datamodule.batch_size=32",
        "trainer.max_epochs=1",
        "register=true",
        f"registry.root={reg_root}",
        "registry.aliases=[staging]",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=overrides)
    metrics, objects = run(cfg)
    reg = ModelRegistry(reg_root)
    assert metrics["registered"] == "spectral_cnn:v1"
    assert reg.aliases("spectral_cnn") == {"staging": 1}
    mv = reg.get("spectral_cnn", "staging")
    dm = objects["datamodule"]
    # the simulator is flux-calibrated (a Planck continuum), so its config keeps the continuum channel
    assert mv.class_names == list(dm.class_names) and mv.manifest["inputs"] == ["flux", "mask", "continuum"]
    assert mv.manifest["modality"] == "spectra"
    assert mv.preprocessing() == dm.preprocessing
    fp = mv.manifest["data_fingerprint"]
    assert fp["dataset"] == dm.dataset_name and len(fp["content_hash"]) == 64 and sum(fp["rows"].values()) == 96
    assert {"config.yaml", "config_resolved.yaml", "calibrator.json", "metrics.json", "MODEL_CARD.md"} <= set(mv.files)
    assert mv.calibrator().to_dict() == objects["calibrator"].to_dict()
    model = mv.load_model()
    batch = dm.part("test")[list(range(4))]
    trained = objects["model"].eval()
    with torch.no_grad():
        a = model(*(batch[k] for k in model.inputs))["logits"].numpy()
        b = trained(batch["flux"], batch["mask"], batch["continuum"])["logits"].numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert "spectral_cnn v1" in mv.card and "accuracy" in mv.card
