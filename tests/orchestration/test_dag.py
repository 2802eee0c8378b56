"""The Airflow DAG ``stellar_chain`` run by ``dag.test()`` (slow; skipped where Airflow is not installed, as in CI's
default environment: ``pip install -e ".[airflow]"`` brings it). Each run is a subprocess with its own Airflow home
(a SQLite metadata database), as ``python -m stellar.orchestration.dag '<conf>'`` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from stellar.registry import ModelRegistry
from tests.conftest import DATA, REPO

pytestmark = pytest.mark.slow
pytest.importorskip("airflow.sdk", reason="Airflow is the optional airflow extra: pip install -e '.[airflow]'")

STEPS = ["evaluate", "ingest", "monitor", "register", "score", "train"]


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    """The environment of an Airflow home with a migrated SQLite database and this repository's DAG folder."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "stellar" / "orchestration"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(REPO),
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    return env


def _dag_test(env: dict[str, str], conf: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "stellar.orchestration.dag", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_dag_test_runs_the_chain_on_built_in_spectra(airflow_env, tmp_path):
    conf = {
        "store_dir": str(tmp_path / "store"),
        "registry_root": str(tmp_path / "registry"),
        "runs_dir": str(tmp_path / "runs"),
        "overrides": {"train": ["datamodule.source.n=600", "trainer.max_epochs=1", "logger=none"]},
    }
    result = _dag_test(airflow_env, conf)
    assert result == {"dag_run": "success", "tasks": dict.fromkeys(STEPS, "success")}
    assert ModelRegistry(tmp_path / "registry").get("spectral_cnn", "staging").version == 1
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "monitor" / "monitor.json").read_text())["alert"] is False


def test_dag_run_on_a_real_folder_fails_when_the_monitor_alerts(airflow_env, tmp_path):
    """Ingest FITS files, train on the MILES subset, score all its stars; the monitor compares them with a reference
    of a few validation stars, flags most out of distribution, and the alert fails the run after the others passed."""
    conf = {
        "datamodule": "miles",
        "data_dir": str(DATA / "miles_subset"),
        "ingest_dir": str(DATA / "miles_fits"),
        "store_dir": str(tmp_path / "store"),
        "registry_root": str(tmp_path / "registry"),
        "runs_dir": str(tmp_path / "runs"),
        "overrides": {"train": ["trainer.max_epochs=1", "logger=none"]},
    }
    result = _dag_test(airflow_env, conf)
    assert result == {"dag_run": "failed", "tasks": {**dict.fromkeys(STEPS, "success"), "monitor": "failed"}}
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "monitor" / "monitor.json").read_text())["alert"] is True
    scores = pd.read_parquet(run / "score" / "scores.parquet")
    assert len(scores) == 43  # every star of the subset
