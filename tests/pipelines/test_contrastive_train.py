"""experiment=multimodal_pretrain through train.py leaves the encoders in its run folder, model.pretrained= loads them
into model=fusion, and datamodule.label_fraction keeps the requested fraction of training labels on the same
validation and test objects."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import open_dict

from stellar.models.contrastive import PRETRAINED_FILE, ContrastiveModule, pairwise_info_nce
from stellar.pipelines import train
from stellar.pipelines.common import predict
from stellar.registry import ModelRegistry
from stellar.serving.api import MultiModalAPI
from tests.pipelines.conftest import FAST_MULTIMODAL


def test_pretrain_experiment_smoke_saves_encoders_that_fusion_loads(make_cfg, tmp_path):
    cfg = make_cfg("experiment=multimodal_pretrain", *FAST_MULTIMODAL, "debug=fdr", "logger=none")
    metrics, objs = train.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert isinstance(objs["model"], ContrastiveModule) and np.isfinite(metrics["train/loss"])
    assert metrics["pretrained"] == str(run_dir / PRETRAINED_FILE) and "test_summary" not in metrics
    assert np.isfinite(metrics["test/loss"])  # the held-out InfoNCE (no heads to score)
    assert not (run_dir / "calibrator.json").exists()  # no heads: nothing calibrated
    # no labels reach the loss: one batch with every label hidden gives the same loss
    batch = next(iter(objs["datamodule"].train_dataloader()))
    model = objs["model"].eval()

    def loss(b: dict) -> float:
        with torch.no_grad():
            return float(pairwise_info_nce(*model.embeddings(b), model.logit_scale)[0])

    hidden = {**batch, "label": torch.full_like(batch["label"], -1), "teff": batch["teff"] * np.nan}
    assert loss(hidden) == pytest.approx(loss(batch))

    ft = make_cfg("model=fusion", *FAST_MULTIMODAL, f"model.pretrained={run_dir}", "logger=none")
    dm = instantiate(ft.datamodule, split=instantiate(ft.split))
    dm.setup("fit")
    fusion = instantiate(ft.model, class_names=dm.class_names, target_stats=dm.target_stats)
    saved = objs["model"].encoder.encoders["spectrum"].state_dict()
    for k, v in fusion.encoder.encoders["spectrum"].state_dict().items():
        torch.testing.assert_close(v, saved[k])
    bad = make_cfg("model=fusion", *FAST_MULTIMODAL, f"model.pretrained={run_dir}", "model.encoder.d_model=32")
    with pytest.raises(InstantiationException, match="spectrum projection does not fit"):  # Hydra wraps the error
        instantiate(bad.model, class_names=dm.class_names, target_stats=dm.target_stats)


def test_label_fraction_keeps_the_fraction_of_training_labels_and_the_same_test_objects(make_cfg):
    parts = {}
    for frac, seed in ((1.0, 0), (0.1, 0), (0.1, 1)):
        cfg = make_cfg("model=fusion", *FAST_MULTIMODAL, f"datamodule.label_fraction={frac}",
                       f"datamodule.label_seed={seed}")  # fmt: skip
        dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
        dm.setup("fit")
        parts[frac, seed] = {p: dm.arrays(p)["index"] for p in ("train", "val", "test")}
    full = parts[1.0, 0]["train"]
    for key in ((0.1, 0), (0.1, 1)):
        kept = parts[key]["train"]
        assert len(kept) == round(0.1 * len(full)) and set(kept) <= set(full)
        for p in ("val", "test"):
            np.testing.assert_array_equal(parts[key][p], parts[1.0, 0][p])
    assert set(parts[0.1, 0]["train"]) != set(parts[0.1, 1]["train"])  # the seed draws the labelled objects
    with pytest.raises(InstantiationException, match="label_fraction must be in"):
        instantiate(make_cfg(*FAST_MULTIMODAL, "datamodule.label_fraction=0").datamodule)


def test_a_model_fine_tuned_from_pretraining_registers_and_reloads_by_name_without_the_pretraining_run(
    make_cfg, tmp_path
):
    pre = make_cfg("experiment=multimodal_pretrain", *FAST_MULTIMODAL, "debug=fdr", "logger=none")
    train.run(pre)
    pre_dir = Path(pre.paths.output_dir)
    registry = tmp_path / "registry"
    ft = make_cfg(
        "model=fusion", *FAST_MULTIMODAL, f"model.pretrained={pre_dir}", "debug=limit", "logger=none",
        "register=true", f"registry.root={registry}",
    )  # fmt: skip
    with open_dict(ft):
        ft.paths.output_dir = str(tmp_path / "finetune")
    metrics, objs = train.run(ft)
    assert metrics["registered"]
    # the version holds the fine-tuned weights: it loads by name after the pretraining run is gone
    shutil.rmtree(pre_dir)
    version = ModelRegistry(registry).get("fusion")
    assert version.training_config().model.pretrained == str(pre_dir)  # provenance kept in the config
    dm = objs["datamodule"]
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    before = predict(trainer, objs["model"], dm, "test")
    after = predict(trainer, version.load_model(), dm, "test")
    assert set(before) == set(after) and len(before["index"])
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    # and the multi-modal endpoint serves it
    api = MultiModalAPI("fusion", registry_root=str(registry), api_path="/predict/multimodal")
    api.setup("cpu")
    assert api.load_error is None and sorted(api.used) == ["lightcurve", "photometry", "spectrum"]


def test_fixed_steps_give_every_label_fraction_the_same_optimizer_steps_and_a_probe_keeps_the_encoders(make_cfg):
    pre = make_cfg("experiment=multimodal_pretrain", *FAST_MULTIMODAL, "debug=fdr", "logger=none")
    train.run(pre)
    pre_dir = Path(pre.paths.output_dir)
    saved = torch.load(pre_dir / PRETRAINED_FILE, weights_only=True)["modalities"]["spectrum"]["encoder"]
    # the overrides of label_efficiency.py --fixed-steps 4 --val-every 2
    steps = ["trainer.max_epochs=-1", "trainer.max_steps=4", "trainer.check_val_every_n_epoch=null",
             "trainer.val_check_interval=2", "model.scheduler_interval=step", "model.scheduler.T_max=4",
             "callbacks.model_checkpoint.filename='step_{step:05d}'", "logger=none", "test=false"]  # fmt: skip
    seen = {}
    for frac in (0.1, 1.0):
        cfg = make_cfg("model=fusion", *FAST_MULTIMODAL, f"datamodule.label_fraction={frac}", *steps,
                       f"model.pretrained={pre_dir}", "model.freeze_encoders=true")  # fmt: skip
        with open_dict(cfg):
            cfg.paths.output_dir = f"{cfg.paths.output_dir}_f{frac}"
        metrics, objs = train.run(cfg)
        trainer, model = objs["trainer"], objs["model"]
        n_batches = len(objs["datamodule"].train_dataloader())
        assert trainer.global_step == 4  # whatever the size of the training part
        seen[frac] = (n_batches, trainer.current_epoch)
        # the cosine schedule went over the 4 steps: the learning rate is back to ~0 at the end
        assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)
        assert Path(metrics["best_checkpoint"]).name.startswith("step_")
        for k, v in model.encoder.encoders["spectrum"].state_dict().items():  # the probe left them as loaded
            torch.testing.assert_close(v, saved[k])
    assert seen[0.1][0] < seen[1.0][0]  # fewer batches per epoch...
    assert seen[0.1][1] > seen[1.0][1]  # ...so more epochs for the same steps
