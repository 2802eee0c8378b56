"""The chain's steps as plain functions (no Airflow needed): DAG-run conf → Hydra overrides of each step, the
monitor step failing on an alert, and (slow) the whole chain on built-in simulated spectra."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stellar.errors import StellarConfigError
from stellar.orchestration import tasks
from stellar.orchestration.tasks import ChainParams, MonitorAlertError
from stellar.registry import ModelRegistry

RUN_ID = "manual__2026-12-03T18:00:00+00:00"
CONF = {
    "model": "spectral_transformer",
    "data_dir": "/data/miles",
    "datamodule": "miles",
    "store_dir": "/data/store",
    "registry_root": "s3://bucket/registry",
    "alias": "production",
    "runs_dir": "/runs",
    "ingest_dir": "/data/raw",
    "overrides": {"train": ["trainer.max_epochs=1"], "monitor": ["alpha=0.01"]},
}


def test_dag_run_conf_becomes_each_steps_hydra_overrides():
    p = ChainParams.from_conf(CONF)
    out = "/runs/manual__2026-12-03T18_00_00_00_00"  # Airflow's run id spelled for a folder
    assert tasks.train_overrides(p, RUN_ID) == [
        "datamodule=miles",
        "model=spectral_transformer",
        "register=false",
        f"paths.output_dir={out}/train",
        "paths.log_dir=/runs",
        "paths.store_dir=/data/store",
        "registry.root=s3://bucket/registry",
        "datamodule.data_dir=/data/miles",
        "trainer.max_epochs=1",
    ]
    # ingest has no registry; its raw cache stays with the run
    assert tasks.ingest_overrides(p, RUN_ID) == [
        f"paths.output_dir={out}/ingest",
        "paths.log_dir=/runs",
        "paths.store_dir=/data/store",
        f"cache_dir={out}/ingest/raw_cache",
        "progress=false",
        "input_dir=/data/raw",
    ]
    tag = "spectral_transformer:v3"  # what the register step returned: score and monitor read that very version
    assert tasks.score_overrides(p, RUN_ID, tasks.version_ref(tag))[:3] == [
        "model_ref=spectral_transformer@v3",
        "input=/data/miles",
        f"output={out}/score/scores.parquet",
    ]
    monitor = tasks.monitor_overrides(p, RUN_ID, "spectral_transformer@v3")
    assert monitor[0] == "model_ref=spectral_transformer@v3"
    assert monitor[-3:] == ["datamodule.data_dir=/data/miles", "split=none", "alpha=0.01"]
    assert tasks.run_overrides(p, RUN_ID, "evaluate", "/runs/x/train")[:2] == [
        "run_dir=/runs/x/train",
        f"paths.output_dir={out}/evaluate",
    ]


def test_every_steps_overrides_compose_with_its_config():
    """The overrides are ones the step's own config accepts, and land where they should."""
    p = ChainParams.from_conf(CONF)
    train = tasks.compose_config("train", tasks.train_overrides(p, RUN_ID))
    assert train.model.name == "spectral_transformer" and train.datamodule.data_dir == "/data/miles"
    assert train.registry.root == "s3://bucket/registry" and train.register is False
    assert train.trainer.max_epochs == 1 and train.datamodule.store_root == "/data/store"
    ingest = tasks.compose_config("ingest", tasks.ingest_overrides(p, RUN_ID))
    assert ingest.input_dir == "/data/raw" and ingest.store == "/data/store"
    evaluate = tasks.compose_config("evaluate", tasks.run_overrides(p, RUN_ID, "register", "/runs/x/train"))
    assert evaluate.run_dir == "/runs/x/train" and evaluate.registry.root == "s3://bucket/registry"
    score = tasks.compose_config("score", tasks.score_overrides(p, RUN_ID, "spectral_transformer@v3"))
    assert score.model_ref == "spectral_transformer@v3" and score.cluster._target_.endswith("Synchronous")
    monitor = tasks.compose_config("monitor", tasks.monitor_overrides(p, RUN_ID, "spectral_transformer@v3"))
    assert monitor.model_ref == "spectral_transformer@v3" and not monitor.split and monitor.alpha == 0.01


def test_defaults_and_refused_conf():
    p = ChainParams.from_conf({"model": None})  # None (an empty form field) takes the default
    assert p == ChainParams()
    assert "datamodule.data_dir" not in " ".join(tasks.train_overrides(p, RUN_ID))
    assert not any(o.startswith("registry.root") for o in tasks.train_overrides(p, RUN_ID))
    with pytest.raises(StellarConfigError, match=r"\['epochs'\] are not parameters.*allowed: \['model'"):
        ChainParams.from_conf({"epochs": 3})
    with pytest.raises(StellarConfigError, match=r"steps \['fit'\]; allowed: \['ingest', 'train'"):
        ChainParams.from_conf({"overrides": {"fit": ["x=1"]}})


def test_monitor_step_fails_the_run_on_an_alert_and_passes_otherwise(monkeypatch):
    import stellar.pipelines.monitor as monitor_pipeline

    seen = []

    def fake_monitor(cfg):
        seen.append(cfg.model_ref)
        return report, {"paths": {"html": "/runs/monitor.html"}}

    monkeypatch.setattr(monitor_pipeline, "run", fake_monitor)
    report = {"alert": True, "alerts": ["ood_fraction", "teff"]}
    with pytest.raises(MonitorAlertError, match=r"\['ood_fraction', 'teff'\]; report: /runs/monitor.html"):
        tasks.monitor({}, RUN_ID, "spectral_cnn:v2")
    assert seen == ["spectral_cnn@v2"]
    assert tasks.monitor({"fail_on_alert": False}, RUN_ID, "spectral_cnn:v2") == report
    report = {"alert": False, "alerts": []}
    assert tasks.monitor({}, RUN_ID, "spectral_cnn:v2") == {"alert": False, "alerts": []}


def test_steps_without_their_input_have_nothing_to_do():
    assert tasks.ingest({}, RUN_ID) == {"ingested": False}
    assert tasks.score({}, RUN_ID, "spectral_cnn:v1") == {"scored": False}


@pytest.mark.slow
def test_chain_of_steps_on_built_in_spectra(tmp_path):
    """train → evaluate → register → monitor in this process, as the DAG's tasks call them, on simulated spectra."""
    conf = {
        "store_dir": str(tmp_path / "store"),
        "registry_root": str(tmp_path / "registry"),
        "runs_dir": str(tmp_path / "runs"),
        "overrides": {"train": ["datamodule.source.n=300", "debug=limit", "trainer.max_epochs=1", "logger=none"]},
    }
    run_dir = tasks.train(conf, RUN_ID)
    assert Path(run_dir) == tmp_path / "runs" / "manual__2026-12-03T18_00_00_00_00" / "train"
    evaluation = tasks.evaluate(conf, RUN_ID, run_dir)
    trained = json.loads((Path(run_dir) / "metrics.json").read_text())["test_summary"]["classification"]
    assert evaluation["classification"]["accuracy"] == pytest.approx(trained["accuracy"])
    tag = tasks.register(conf, RUN_ID, run_dir)
    assert tag == "spectral_cnn:v1"
    version = ModelRegistry(tmp_path / "registry").get("spectral_cnn", "staging")
    assert version.version == 1 and {"reference.npz", "calibrator.json", "config.yaml"} <= set(version.files)
    assert tasks.monitor(conf, RUN_ID, tag) == {"alert": False, "alerts": []}
