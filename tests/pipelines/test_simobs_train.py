"""experiment=miles_simobs_pretrain (sim/obs contrastive pretraining on MILES) runs through train.py and leaves both
spectrum encoders; model.pretrained_modality loads the observed-spectrum one into the MILES neural model
(experiment=miles_simobs_finetune), and a wrong modality or shape is refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from stellar.models.contrastive import PRETRAINED_FILE, ContrastiveModule
from stellar.pipelines import train
from tests.pipelines.conftest import MILES

FOLD = ["split=group_kfold", "split.fold=0", "split.base.seed=7"]


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory) -> tuple[Path, dict]:
    from hydra import compose, initialize_config_dir

    from tests.conftest import REPO

    tmp = tmp_path_factory.mktemp("simobs_pretrain")
    ovs = ["experiment=miles_simobs_pretrain", MILES, *FOLD, "debug=fdr", "logger=none",
           f"paths.output_dir={tmp / 'run'}", f"paths.store_dir={tmp / 'store'}", f"paths.log_dir={tmp}"]  # fmt: skip
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=ovs)
    metrics, objs = train.run(cfg)
    return Path(cfg.paths.output_dir), {"metrics": metrics, **objs}


def test_the_pretrain_experiment_runs_and_leaves_both_spectrum_encoders(pretrain_run):
    run_dir, objs = pretrain_run
    metrics, model = objs["metrics"], objs["model"]
    assert isinstance(model, ContrastiveModule) and list(model.encoder.modalities) == ["spectrum", "spectrum_sim"]
    assert np.isfinite(metrics["train/loss"]) and metrics["pretrained"] == str(run_dir / PRETRAINED_FILE)
    assert "test_summary" not in metrics and not (run_dir / "calibrator.json").exists()
    saved = torch.load(run_dir / PRETRAINED_FILE, weights_only=True)["modalities"]
    assert sorted(saved) == ["spectrum", "spectrum_sim"]
    # pretraining sees training objects only: every pair of its training batches is a training star
    dm = objs["datamodule"]
    assert dm.split_result.audit["modalities"]["spectrum_sim"]["rows"] == {
        "train": len(dm.datasets["spectrum_sim"].meta), "val": 0, "test": 0}  # fmt: skip


def _finetune_model(make_cfg, run_dir: Path, *overrides: str):
    cfg = make_cfg("experiment=miles_simobs_finetune", MILES, *FOLD, f"model.pretrained={run_dir}", *overrides,
                   tiny=False)  # fmt: skip
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    dm.setup("fit")
    return cfg, instantiate(cfg.model, class_names=dm.class_names, target_stats=dm.target_stats)


def test_finetuning_starts_from_the_pretrained_observed_spectrum_encoder(make_cfg, pretrain_run):
    run_dir, _ = pretrain_run
    saved = torch.load(run_dir / PRETRAINED_FILE, weights_only=True)["modalities"]
    cfg, model = _finetune_model(make_cfg, run_dir)
    assert cfg.model.name == "spectral_multitask" and cfg.model.pretrained_modality == "spectrum"
    own = model.encoder.state_dict()
    assert set(own) == set(saved["spectrum"]["encoder"])
    for k, v in own.items():
        torch.testing.assert_close(v, saved["spectrum"]["encoder"][k])
    # not the simulated-spectrum encoder, and not what the same model starts from without pretraining
    weights = [k for k in own if k.endswith("weight")]
    assert any(not torch.equal(own[k], saved["spectrum_sim"]["encoder"][k]) for k in weights)
    scratch = make_cfg("experiment=miles_simobs_finetune", MILES, *FOLD, "model.pretrained=null",
                       "model.pretrained_modality=null", tiny=False)  # fmt: skip
    plain = instantiate(scratch.model, class_names=model.class_names, target_stats=model.target_stats)
    assert any(not torch.equal(own[k], plain.encoder.state_dict()[k]) for k in weights)


def test_a_bad_pretrained_modality_or_shape_is_refused_with_a_clear_error(make_cfg, pretrain_run):
    run_dir, _ = pretrain_run
    with pytest.raises(InstantiationException, match=r"pretrained_modality='sed' is not in .* it has the modalities "
                                                     r"\['spectrum', 'spectrum_sim'\]"):  # fmt: skip
        _finetune_model(make_cfg, run_dir, "model.pretrained_modality=sed")
    # both saved encoders fit a spectral CNN: without a modality the choice is ambiguous, and said so
    with pytest.raises(InstantiationException, match=r"matches 2 of the saved .* name one with pretrained_modality"):
        _finetune_model(make_cfg, run_dir, "model.pretrained_modality=null")
    with pytest.raises(InstantiationException, match="saved spectrum encoder does not fit this model's"):
        _finetune_model(make_cfg, run_dir, "model.encoder.channels=[4,8,16,32,48]")
    with pytest.raises(InstantiationException, match="pretrained_modality='spectrum' needs pretrained="):
        _finetune_model(make_cfg, run_dir, "model.pretrained=null")


def test_the_finetune_experiment_runs_fast_dev_from_the_pretraining_run(make_cfg, pretrain_run):
    run_dir, _ = pretrain_run
    cfg = make_cfg("experiment=miles_simobs_finetune", MILES, *FOLD, f"model.pretrained={run_dir}", "debug=fdr",
                   "logger=none", tiny=False)  # fmt: skip
    metrics, objs = train.run(cfg)
    assert objs["model"].hparams["pretrained"] == str(run_dir) and "test_summary" in metrics
    assert set(metrics["test_summary"]["regression"]) == {"teff", "logg", "feh"}


def test_the_finetuned_model_is_scored_and_reloaded_without_the_pretraining_run(make_cfg, pretrain_run, tmp_path):
    import shutil

    from omegaconf import open_dict

    from stellar.pipelines import evaluate
    from stellar.registry import ModelRegistry

    pre_dir = tmp_path / "pretrain"
    shutil.copytree(pretrain_run[0], pre_dir)
    registry = tmp_path / "registry"
    cfg = make_cfg("experiment=miles_simobs_finetune", MILES, *FOLD, f"model.pretrained={pre_dir}", "debug=limit",
                   "logger=none", "register=true", f"registry.root={registry}", tiny=False)  # fmt: skip
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "finetune")
    metrics, objs = train.run(cfg)
    shutil.rmtree(pre_dir)  # the fine-tuned weights are in the checkpoint: the pretraining run is not needed
    version = ModelRegistry(registry).get("spectral_multitask")
    assert version.training_config().model.pretrained_modality == "spectrum"  # provenance kept
    reloaded = version.load_model()
    for k, v in objs["model"].state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[k], v)
    ev = make_cfg(f"run_dir={cfg.paths.output_dir}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate",
                  tiny=False)  # fmt: skip
    report, _ = evaluate.run(ev)
    assert report["regression"]["logg"]["mae"] == pytest.approx(
        metrics["test_summary"]["regression"]["logg"]["mae"], rel=1e-5
    )
