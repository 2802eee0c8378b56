"""Sweeps through the Hydra submitit launchers: the SLURM GPU-partition defaults as submitit will submit them, the
requeue contract the pre-emption resume relies on, and a real ``submitit_local`` sweep of two models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from stellar.registry import ModelRegistry
from tests.conftest import REPO
from tests.pipelines.conftest import train_py_multirun

submitit = pytest.importorskip("submitit", reason="hydra-submitit-launcher is in the cluster and dev extras")

#: what every complete train run directory holds (``checkpoints/`` with best and last)
RUN_FILES = {"config.yaml", "config_resolved.yaml", "metrics.json", "calibrator.json", "split_audit.json"}


def _launcher(*overrides: str) -> dict:
    """``hydra.launcher`` of train's config, resolved as the launcher resolves it when a sweep starts."""
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    hydra_config = HydraConfig.instance()
    before = hydra_config.cfg
    hydra_config.set_config(cfg)  # ${hydra:runtime.cwd}, as in a launched sweep
    try:
        return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)  # type: ignore[return-value]
    finally:
        hydra_config.cfg = before  # no Hydra runtime leaks into the other tests' composed configs


def test_slurm_gpu_launcher_resolves_the_project_defaults():
    params = _launcher("hydra/launcher=slurm_gpu", "trainer=ddp", "trainer.devices=4", "hydra.launcher.partition=a100")
    assert params["_target_"].endswith("submitit_launcher.SlurmLauncher")
    # one SLURM task per DDP rank, as many GPUs as ranks on the node
    assert (params["gpus_per_node"], params["tasks_per_node"], params["nodes"]) == (4, 4, 1)
    assert params["partition"] == "a100"
    assert (params["cpus_per_task"], params["mem_gb"], params["timeout_min"]) == (8, 64, 720)
    assert params["array_parallelism"] == 4
    assert params["additional_parameters"] == {"signal": "USR1@120", "chdir": str(Path.cwd())}
    # the sweep's jobs and submitit's own files stay under the sweep directory
    assert params["submitit_folder"].endswith("/.submitit/%j")
    assert (
        _launcher("hydra/launcher=slurm_gpu", "hydra.launcher.signal_delay_s=300")["additional_parameters"]["signal"]
        == "USR1@300"
    )


def test_slurm_gpu_sbatch_script_sends_sigusr1_and_starts_where_the_sweep_was_launched(tmp_path):
    """The sbatch header submitit writes from those parameters: our SIGUSR1 (Lightning's auto-requeue signal)
    replaces submitit's default SIGUSR2, and the job's working directory is the launch directory."""
    from submitit.slurm.slurm import _make_sbatch_string

    p = _launcher("hydra/launcher=slurm_gpu", "trainer=ddp", "trainer.devices=2")
    header = _make_sbatch_string(
        command="python -m submitit.core._submit",
        folder=tmp_path,
        partition=p["partition"],
        time=p["timeout_min"],
        nodes=p["nodes"],
        ntasks_per_node=p["tasks_per_node"],
        gpus_per_node=p["gpus_per_node"],
        cpus_per_task=p["cpus_per_task"],
        mem=f"{p['mem_gb']}GB",
        signal_delay_s=p["signal_delay_s"],
        array_parallelism=p["array_parallelism"],
        map_count=6,
        additional_parameters=p["additional_parameters"],
    )
    lines = set(header.splitlines())
    assert "#SBATCH --signal=USR1@120" in lines
    assert not any("USR2" in line for line in lines)
    assert f"#SBATCH --chdir={Path.cwd()}" in lines
    assert {"#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2", "#SBATCH --partition=gpu"} <= lines
    assert "#SBATCH --array=0-5%4" in lines  # six sweep jobs, at most array_parallelism at once
    assert "#SBATCH --time=720" in lines


def test_submitit_checkpoint_requeues_the_same_sweep_job():
    """On pre-emption the plugin's ``checkpoint`` resubmits the launcher with the very arguments of the job: the
    same overrides, job number and sweep directory key, hence the same run directory to resume in."""
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    args = (["model=spectral_cnn"], "hydra.sweep.dir", 3, "job_id_for_3", {})
    launcher = SlurmLauncher(partition="gpu")
    delayed = launcher.checkpoint(*args)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is launcher
    assert delayed.args == args and delayed.kwargs == {}


@pytest.mark.slow
def test_submitit_local_sweep_of_two_models_leaves_two_complete_runs(tmp_path, store_dir):
    """``python train.py -m hydra/launcher=submitit_local model=spectral_cnn,spectral_transformer
    trainer.max_epochs=1``: both jobs run as processes of their own (started together: they race to build the same
    simulated set) and register into the relative registry root, resolved against the launch directory."""
    code, stderr, jobs = train_py_multirun(
        tmp_path,
        store_dir,
        "hydra/launcher=submitit_local",
        "model=spectral_cnn,spectral_transformer",
        "trainer.max_epochs=1",
        "register=true",
        "registry.root=registry",
        debug="limit",
    )
    assert code == 0, stderr
    assert [p.name for p in jobs] == ["0_spectral_cnn", "1_spectral_transformer"]
    sweep = jobs[0].parent
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # two submitit jobs, each finished
    for job in jobs:
        assert {p.name for p in job.iterdir()} >= RUN_FILES
        assert {p.name for p in (job / "checkpoints").iterdir()} == {"epoch_000.ckpt", "last.ckpt", "run_identity.json"}
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["test_summary"]["classification"]["n"] > 0
        assert Path(metrics["best_checkpoint"]).parent == job / "checkpoints"
    registry = ModelRegistry(tmp_path / "registry")
    assert registry.models() == ["spectral_cnn", "spectral_transformer"]
