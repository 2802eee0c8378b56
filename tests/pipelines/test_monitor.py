"""train.py leaves the monitor's reference; ``python -m stellar.monitor`` on a run, a registered model, a shifted
folder (alert, exit status 3 with fail_on_alert) and a neural model's embeddings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stellar.errors import StellarConfigError
from stellar.monitoring import TrainingReference
from stellar.pipelines import monitor, train
from tests.conftest import REPO
from tests.pipelines.conftest import DATA_DIRS, FAST_XGB, SED

HIPPARCOS = ["experiment=hipparcos_sed", DATA_DIRS["HipparcosSource"], *FAST_XGB]


@pytest.fixture
def hipparcos_run(make_cfg, tmp_path) -> Path:
    cfg = make_cfg(*HIPPARCOS, "register=true", f"registry.root={tmp_path / 'registry'}", "logger=none", tiny=False)
    metrics, _ = train.run(cfg)
    assert Path(metrics["reference"]).name == "reference.npz"
    return Path(cfg.paths.output_dir)


def _shifted_folder(tmp_path: Path) -> Path:
    """The real Hipparcos rows, 2 mag fainter (a deeper survey): the same stars seen as another population."""
    src = SED / "hipparcos" / "hipparcos_giant_dwarf.csv"
    table = pd.read_csv(src)
    table["Vmag"] = table["Vmag"] + 2.0
    out = tmp_path / "faint"
    out.mkdir()
    table.to_csv(out / src.name, index=False)
    return out


def test_monitor_of_a_run_is_quiet_in_distribution_and_writes_its_files(make_cfg, hipparcos_run, tmp_path):
    ref = TrainingReference.load(hipparcos_run)
    assert ref.class_names and 0.5 < ref.metrics["accuracy"] <= 1.0
    cfg = make_cfg(f"run_dir={hipparcos_run}", f"paths.output_dir={tmp_path / 'mon'}", name="monitor", tiny=False)
    report, objs = monitor.run(cfg)
    assert report["alert"] is False, report["alerts"]
    assert {"data_drift", "prediction_drift", "performance_estimate", "performance", "ood"} <= set(report)
    measured = report["performance"]["accuracy"]
    assert measured["interval"][0] <= measured["value"] <= measured["interval"][1]
    assert abs(report["performance_estimate"]["accuracy"] - measured["value"]) < 0.15  # ~60 objects
    written = json.loads((tmp_path / "mon" / "monitor.json").read_text())
    assert written["alert"] is False and all("p_adjusted" in c for c in written["data_drift"]["checks"])
    assert "stellar monitor" in (tmp_path / "mon" / "monitor.html").read_text()
    assert len(pd.read_csv(tmp_path / "mon" / "objects.csv")) == report["n_objects"]
    assert list((tmp_path / "mon" / "tensorboard").rglob("events.out.tfevents.*"))
    assert objs["objects"]["ood"].mean() < 0.2


def test_monitor_by_registry_name_alerts_on_a_shifted_folder(make_cfg, hipparcos_run, tmp_path):
    folder = _shifted_folder(tmp_path)
    cfg = make_cfg(
        "model_ref=sed_xgboost@latest",
        f"registry.root={tmp_path / 'registry'}",
        f"datamodule.data_dir={folder}",
        "split=none",
        f"paths.output_dir={tmp_path / 'mon'}",
        name="monitor",
        tiny=False,
    )
    report, _ = monitor.run(cfg)
    assert report["alert"] is True
    assert "mag_johnson_v" in report["alerts"] and report["n_objects"] == 400
    with pytest.raises(StellarConfigError, match="exactly one of run_dir"):
        monitor.run(make_cfg(f"run_dir={hipparcos_run}", "model_ref=x", name="monitor", tiny=False))


def test_evaluate_scores_every_prediction_against_the_reference(make_cfg, hipparcos_run, tmp_path):
    from stellar.pipelines import evaluate

    cfg = make_cfg(f"run_dir={hipparcos_run}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False)
    report, _ = evaluate.run(cfg)
    table = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert len(table) == report["meta"]["n_scored"]
    assert {"predicted_class", "p_giant", "ood_score", "ood"} <= set(table.columns)
    assert report["ood"]["fraction"] == pytest.approx(table["ood"].mean()) and report["ood"]["fraction"] < 0.2
    accuracy = (table["predicted_class"] == table["true_class"]).mean()
    assert accuracy == pytest.approx(report["classification"]["accuracy"])


# a subprocess run (~8 s); the exit decision and the argument rewrite are tested in-process by default
@pytest.mark.slow
def test_fail_on_alert_exits_non_zero(hipparcos_run, tmp_path):
    from stellar.monitor import ALERT_EXIT_STATUS, exit_status
    from stellar.pipelines.common import registry_model_argument

    assert exit_status({"alert": False}, True) == 0 and exit_status({"alert": True}, False) == 0
    assert exit_status({"alert": True}, True) == ALERT_EXIT_STATUS == 3  # not 1: a crash's status
    assert registry_model_argument(["model=a@production", "split=none"]) == ["model_ref=a@production", "split=none"]
    folder = _shifted_folder(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "stellar.monitor",
        "model=sed_xgboost@latest",  # the command line's spelling of model_ref
        f"registry.root={tmp_path / 'registry'}",
        f"datamodule.data_dir={folder}",
        "split=none",
        "fail_on_alert=true",
        f"hydra.run.dir={tmp_path / 'h'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 3 and "ALERT" in proc.stderr, proc.stderr[-2000:]


def test_a_neural_models_reference_has_embeddings(make_cfg, tmp_path):
    cfg = make_cfg("debug=limit", "logger=none")
    train.run(cfg)
    ref = TrainingReference.load(cfg.paths.output_dir)
    assert ref.embeddings is not None and 0 < ref.embeddings.shape[0] <= len(ref.summaries)  # held-out rows (all < 20)
    assert {"snr_median", "wave_blue", "continuum_slope"} & set(ref.summaries.columns)
    report, _ = monitor.run(
        make_cfg(f"run_dir={cfg.paths.output_dir}", f"paths.output_dir={tmp_path / 'mon'}", name="monitor", tiny=False)
    )
    names = {c["name"] for c in report["data_drift"]["checks"]}
    assert {"embedding", "input_sketch", "snr_median"} <= names
    assert np.isfinite(report["performance_estimate"]["accuracy"])
