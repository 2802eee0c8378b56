"""Which checkpoint a training run resumes from (``train.py resume=auto|never|<path>``), after a pre-emption.

A job stopped before its end leaves a checkpoint in its own run folder, by Lightning's mechanisms:
``SIGTERM`` (what SLURM and submitit send before killing a job) makes the Trainer stop after the current batch and
``OnExceptionCheckpoint`` (conf/callbacks/default.yaml) saves ``checkpoints/on_exception.ckpt``; on SLURM with
``SLURMEnvironment(auto_requeue=True)`` the requeue signal saves ``hpc_ckpt_<n>.ckpt`` in the run folder and requeues
the job. A requeued job runs again in the same folder; with ``resume=auto`` it continues from the furthest of these
(or ``checkpoints/last.ckpt``), with the optimizer, schedulers, loop counters and callbacks' states, and finishes with
the steps and epochs of an uninterrupted run. ``auto`` never reads another run's folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from stellar.errors import StellarConfigError

log = logging.getLogger(__name__)

#: what ``OnExceptionCheckpoint`` leaves in ``checkpoints/`` when a job is stopped (its ``filename`` in the config)
PREEMPTION_CHECKPOINT = "on_exception.ckpt"


def _global_step(path: Path) -> int:
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(ckpt.get("global_step", -1))


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints a stopped run of ``run_dir`` may continue from: the pre-emption checkpoint, SLURM's
    ``hpc_ckpt_<n>.ckpt`` and ``checkpoints/last.ckpt``, those that exist."""
    found = [run_dir / "checkpoints" / PREEMPTION_CHECKPOINT, run_dir / "checkpoints" / "last.ckpt"]
    found += sorted(run_dir.glob("hpc_ckpt_*.ckpt"))
    return [p for p in found if p.is_file()]


def resume_checkpoint(resume: str | None, run_dir: Path) -> str | None:
    """The checkpoint to pass to ``trainer.fit(ckpt_path=…)``, or ``None`` to start afresh.

    Parameters
    ----------
    resume : str or None
        ``auto``: this run folder's furthest checkpoint (by global step) of :func:`run_checkpoints`, if any;
        ``never`` (or ``None``): start afresh; anything else: the path of a checkpoint, which must exist.
    run_dir : Path
        The run folder (``paths.output_dir``).

    Raises
    ------
    StellarConfigError
        When ``resume`` is a path with no file.
    """
    if resume is None or resume == "never":
        return None
    if resume == "auto":
        found = run_checkpoints(run_dir)
        if not found:
            return None
        best = max(found, key=_global_step)
        log.info("resume=auto: continuing this run from %s (global step %d)", best, _global_step(best))
        return str(best)
    if not Path(resume).is_file():
        raise StellarConfigError(f"resume must be 'auto', 'never' or the path of a checkpoint; no file at {resume!r}")
    return str(resume)


def drop_preemption_checkpoints(run_dir: Path) -> None:
    """Remove the pre-emption checkpoints once the run they continued has finished, so the run folder keeps one set
    of checkpoints (the best and ``last.ckpt``), and a later ``resume=auto`` cannot pick a stale one."""
    for path in run_checkpoints(run_dir):
        if path.name != "last.ckpt":
            path.unlink(missing_ok=True)
