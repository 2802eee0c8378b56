"""Pre-emption: a ``train.py`` job signalled mid-epoch saves a checkpoint and stops; run again in the same folder
(what a requeued SLURM/submitit job does) it resumes and ends with the steps and epochs of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stellar.errors import StellarConfigError
from stellar.pipelines.resume import (
    IDENTITY_FILE,
    IDENTITY_KEYS,
    PREEMPTION_CHECKPOINT,
    drop_preemption_checkpoints,
    record_run_identity,
    resume_checkpoint,
)
from tests.conftest import REPO


def _ckpt(path: Path, step: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "epoch": 0}, path)
    return path


def test_resume_auto_takes_the_furthest_checkpoint_of_its_own_run(tmp_path):
    run, other = tmp_path / "run", tmp_path / "other"
    assert resume_checkpoint("auto", run) is None  # a fresh folder starts afresh
    _ckpt(other / "checkpoints" / "last.ckpt", 99)  # another run's checkpoint is never read
    assert resume_checkpoint("auto", run) is None
    last = _ckpt(run / "checkpoints" / "last.ckpt", 6)
    stopped = _ckpt(run / "checkpoints" / PREEMPTION_CHECKPOINT, 8)
    hpc = _ckpt(run / "hpc_ckpt_1.ckpt", 7)
    assert resume_checkpoint("auto", run) == str(stopped)
    assert resume_checkpoint("never", run) is None and resume_checkpoint(None, run) is None
    assert resume_checkpoint(str(hpc), run) == str(hpc)  # an explicit path, used as given
    with pytest.raises(StellarConfigError, match="resume must be 'auto', 'never' or the path"):
        resume_checkpoint(str(tmp_path / "missing.ckpt"), run)
    drop_preemption_checkpoints(run)  # a finished run keeps one set: last (and the best)
    assert not stopped.exists() and not hpc.exists() and last.exists()
    assert resume_checkpoint("auto", run) == str(last)


def test_resume_auto_refuses_a_checkpoint_another_configuration_left(tmp_path):
    # a sweep re-launched into the same folder with other overrides: job 0 finds the old job 0's checkpoint
    run = tmp_path / "multirun" / "0"
    old = {"model": {"name": "a", "optimizer": {"lr": 0.001}}, "seed": 7}
    record_run_identity(run, old)
    stopped = _ckpt(run / "checkpoints" / PREEMPTION_CHECKPOINT, 8)
    assert resume_checkpoint("auto", run, old) == str(stopped)  # the same run, requeued: continued
    new = {"model": {"name": "a", "optimizer": {"lr": 0.01}}, "seed": 7}
    with pytest.raises(StellarConfigError, match=r"another configuration \(model\.optimizer\.lr: 0\.001 -> 0\.01\)"):
        resume_checkpoint("auto", run, new)
    with pytest.raises(StellarConfigError, match=r"seed: 7 -> '<absent>'"):
        resume_checkpoint("auto", run, {"model": old["model"]})
    assert stopped.exists()  # refusing touches nothing
    assert resume_checkpoint("never", run, new) is None  # the way to replace them, on purpose
    assert resume_checkpoint(str(stopped), run, new) == str(stopped)  # or to start from one, on purpose
    bare = tmp_path / "before_the_record"  # checkpoints of a run made before the record existed: resumed
    last = _ckpt(bare / "checkpoints" / "last.ckpt", 3)
    assert resume_checkpoint("auto", bare, new) == str(last)


def _train(tmp_path: Path, store_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "train.py"),
        "datamodule.source.n=96",
        "datamodule.batch_size=16",
        "trainer.max_epochs=3",
        "trainer.check_val_every_n_epoch=1",
        "test=false",
        "monitor_reference=null",
        "logger=none",
        f"paths.store_dir={store_dir}",
        f"paths.log_dir={tmp_path}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def _state(run_dir: Path) -> tuple[int, int]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return int(ckpt["global_step"]), int(ckpt["epoch"])


@pytest.mark.slow
def test_sigterm_mid_epoch_then_rerun_resumes_to_the_same_steps(tmp_path, store_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    plain = tmp_path / "plain"
    done = subprocess.run(_train(tmp_path, store_dir, plain), cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    steps, epochs = _state(plain)
    per_epoch = steps // 3
    stop_at = per_epoch + max(1, per_epoch // 2)  # inside the second epoch
    assert per_epoch >= 2 and stop_at % per_epoch

    run_dir, marker = tmp_path / "stopped", tmp_path / "paused_at_step"
    pause = [
        "+callbacks.pause._target_=tests.pipelines.pause.PauseAtStep",
        f"+callbacks.pause.marker={marker}",
        f"+callbacks.pause.step={stop_at}",
    ]
    cmd = _train(tmp_path, store_dir, run_dir, *pause)
    job = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not marker.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the job never reached the step to be signalled at"
    job.send_signal(signal.SIGTERM)  # what SLURM/submitit send before the time limit
    _, stderr = job.communicate(timeout=120)
    assert job.returncode != 0 and "PreemptedError" in stderr, stderr[-3000:]
    stopped = torch.load(run_dir / "checkpoints" / PREEMPTION_CHECKPOINT, map_location="cpu", weights_only=True)
    assert stopped["global_step"] == stop_at and stopped["epoch"] == 1

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)  # the requeued job
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resume=auto: continuing this run" in again.stdout  # Hydra logs to stdout
    assert _state(run_dir) == (steps, epochs)
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.suffix == ".ckpt")
    assert len(ckpts) == 2 and "last.ckpt" in ckpts and PREEMPTION_CHECKPOINT not in ckpts, ckpts
    # the record of whose checkpoints these are, written by the first job and unchanged by the requeued one
    identity = json.loads((run_dir / "checkpoints" / IDENTITY_FILE).read_text())
    assert set(identity) == set(IDENTITY_KEYS) and isinstance(identity["model"], dict), identity
