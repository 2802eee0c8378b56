"""train.py through compose(): every config option instantiates, fast_dev_run of each model and experiment,
a short real run leaves its artifacts, and a two-job multirun through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from stellar.pipelines.train import run
from tests.conftest import REPO
from tests.pipelines.conftest import DATA_DIRS, FAST_MULTIMODAL, FAST_XGB, MODEL_OVERRIDES, train_py_multirun

CONF = REPO / "conf"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# options kept for the studies that rejected them (experiments/multimodal/README.md 8c, 8e), each ~20-35 s here on
# the real MILES set, and the plain ridge baseline (its train.py path is tests/pipelines/test_ridge_train.py): their
# fast_dev_run is in -m slow, their code is tested in tests/models
SLOW_MODELS = {
    "late_fusion_cascade",
    "late_fusion_cascade_kr",
    "late_fusion_joint",
    "late_fusion_sed_kernel_ridge",
    "spectral_ridge",
}


@pytest.mark.parametrize(
    "model", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW_MODELS else m for m in _options("model")]
)
def test_every_model_instantiates_and_runs_fast_dev(make_cfg, model):
    extra = MODEL_OVERRIDES.get(model, [])
    real = "datamodule=miles_paired" in extra  # a real folder is already small: no simulated-source size to shrink
    metrics, objs = run(make_cfg(f"model={model}", "debug=fdr", *extra, tiny=not real))
    assert objs["model"].hparams["name"] == model
    losses = [v for k, v in metrics.items() if k.startswith("train/") and isinstance(v, float)]
    assert losses and all(v == v for v in losses)  # finite, not NaN


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_fast_dev(make_cfg, experiment):
    probe = make_cfg(f"experiment={experiment}", tiny=False)
    if probe.model.get("pretrained_modality") and not probe.model.get("pretrained"):  # needs a pretraining run
        pytest.skip("needs a pretraining run: its fast_dev_run is in tests/pipelines/test_simobs_train.py")
    data_dir = DATA_DIRS.get(probe.datamodule.source._target_.rsplit(".", 1)[-1])
    data_dirs = [data_dir] if isinstance(data_dir, str) else list(data_dir or [])
    overrides = [f"experiment={experiment}", "debug=fdr", *data_dirs]
    if "num_boost_round" in probe.model:
        overrides += FAST_XGB
    if probe.get("pretrain"):
        overrides += ["pretrain.datamodule.source.n=64", "pretrain.max_epochs=1"]
    if "PairedSimulatedSource" in probe.datamodule.source._target_:
        overrides += FAST_MULTIMODAL[1:]  # short light curves (the datamodule is the experiment's)
    metrics, _objs = run(make_cfg(*overrides, tiny="n" in probe.datamodule.source))
    # a pretraining model has no heads: its test loss, or only the encoders it leaves (no held-out pairs: sim/obs)
    assert "test_summary" in metrics or "test/loss" in metrics or "pretrained" in metrics


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in ("split", "trainer", "logger", "callbacks") for o in _options(g)]
)
def test_every_option_composes_and_instantiates(make_cfg, group, option):
    extra = ["split.train_surveys=[simulated]", "split.test_surveys=[simulated]"] if option == "survey" else []
    cfg = make_cfg(f"{group}={option}", *extra)
    node = cfg[group]
    if option == "survey":  # one survey in the built-in data: the option composes, and refuses a survey on both sides
        with pytest.raises(InstantiationException, match="both train_surveys and test_surveys"):
            instantiate(node)
        return
    if not node or (group, option) in {("trainer", "gpu"), ("trainer", "ddp")}:
        return  # 'none' options; GPU/DDP trainers compose here and are instantiated on the device machine
    if group in ("logger", "callbacks"):
        objs = [instantiate(v) for v in node.values()]
        assert objs
    else:
        assert instantiate(node) is not None


def test_logger_none_with_the_default_callbacks(make_cfg):
    # the default callbacks hold a LearningRateMonitor, which Lightning refuses to run without a logger
    metrics, objs = run(make_cfg("debug=limit", "logger=none", "test=false"))
    assert metrics["best_checkpoint"] and not objs["trainer"].loggers


def test_datamodule_options_instantiate(make_cfg):
    for dm in _options("datamodule"):
        probe = make_cfg(f"datamodule={dm}", tiny=False)
        data_dir = DATA_DIRS.get(probe.datamodule.source._target_.rsplit(".", 1)[-1])
        tiny = "n" in probe.datamodule.source  # simulated sources shrink; real folders are already small
        data_dirs = [data_dir] if isinstance(data_dir, str) else list(data_dir or [])
        cfg = make_cfg(f"datamodule={dm}", *data_dirs, tiny=tiny)
        assert instantiate(cfg.datamodule).dataset_name


def test_short_run_leaves_checkpoint_events_config_and_audit(make_cfg, tmp_path):
    cfg = make_cfg("model=spectral_multitask", "debug=limit")
    metrics, _objs = run(cfg)
    out = Path(cfg.paths.output_dir)
    assert Path(metrics["best_checkpoint"]).is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert (out / "config_resolved.yaml").read_text().count("${") == 0
    audit = json.loads((out / "split_audit.json").read_text())
    assert audit["overlap"]["object_id"] == {"train&val": 0, "train&test": 0, "val&test": 0}
    summary = json.loads((out / "metrics.json").read_text())["test_summary"]
    assert set(summary) == {"classification", "regression"}
    assert set(summary["regression"]) == {"teff", "logg", "feh"}
    assert summary["regression"]["teff"]["median_ae"] > 0
    assert summary["classification"]["ece_after"] >= 0
    # checkpoints hold plain data only: they load with weights_only=True
    assert "state_dict" in torch.load(metrics["best_checkpoint"], weights_only=True)
    assert json.loads((out / "calibrator.json").read_text())["type"] == "temperature"


def test_seed_makes_runs_reproducible(make_cfg, tmp_path):
    a, _ = run(make_cfg("debug=limit", "callbacks=none", "logger=none", "test=false"))
    b, _ = run(make_cfg("debug=limit", "callbacks=none", "logger=none", "test=false"))
    assert a["val/loss"] == pytest.approx(b["val/loss"], rel=1e-5)


def test_two_job_multirun_through_train_py(tmp_path, store_dir):
    code, stderr, jobs = train_py_multirun(
        tmp_path, store_dir, "model=spectral_cnn,spectral_transformer", artifact="config_resolved.yaml"
    )
    assert code == 0, stderr
    assert len(jobs) == 2
    assert {p.name for p in jobs} == {"0_spectral_cnn", "1_spectral_transformer"}


def test_logger_mlflow_records_the_config_and_metrics(make_cfg, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="mlflow-skinny is in the mlflow and dev extras")
    metrics, _ = run(make_cfg("debug=limit", "logger=mlflow", "trainer.max_epochs=1", "monitor_reference=null"))
    client = mlflow.tracking.MlflowClient(tracking_uri=f"file:{tmp_path / 'run' / 'mlruns'}")
    experiment = client.get_experiment_by_name("debug")  # the task name of debug=limit
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "spectral_cnn" and found.data.params["model/name"] == "spectral_cnn"
    assert found.data.params["trainer/max_epochs"] == "1"
    assert found.data.metrics["val/loss"] == pytest.approx(metrics["val/loss"], rel=1e-6)
    assert found.data.metrics["test/classification/accuracy"] == pytest.approx(
        metrics["test_summary"]["classification"]["accuracy"]
    )
