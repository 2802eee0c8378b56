"""Which checkpoint a training run resumes from (``train.py resume=auto|never|<path>``), after a pre-emption.

A job stopped before its end leaves a checkpoint in its own run folder, by Lightning's mechanisms:
``SIGTERM`` (what SLURM and submitit send before killing a job) makes the Trainer stop after the current batch and
``OnExceptionCheckpoint`` (conf/callbacks/default.yaml) saves ``checkpoints/on_exception.ckpt``; on SLURM with
``SLURMEnvironment(auto_requeue=True)`` the requeue signal saves ``hpc_ckpt_<n>.ckpt`` in the run folder and requeues
the job. A requeued job runs again in the same folder; with ``resume=auto`` it continues from the furthest of these
(or ``checkpoints/last.ckpt``), with the optimizer, schedulers, loop counters and callbacks' states, and finishes with
the steps and epochs of an uninterrupted run. ``auto`` never reads another run's folder.

A folder can be reused by a different run, e.g. a sweep re-launched into the same ``hydra.sweep.dir`` with other
overrides, where job 0 of the new sweep lands in job 0's folder of the old one. So each run records what defines it
(:data:`IDENTITY_KEYS` of its resolved config) in ``checkpoints/run_identity.json``, and ``auto`` refuses, with the
keys that differ, to continue a checkpoint that another configuration left, instead of training the new
configuration from the old one's weights.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from stellar.errors import StellarConfigError

log = logging.getLogger(__name__)

#: what ``OnExceptionCheckpoint`` leaves in ``checkpoints/`` when a job is stopped (its ``filename`` in the config)
PREEMPTION_CHECKPOINT = "on_exception.ckpt"
#: the file in ``checkpoints/`` that records what defines the run whose checkpoints these are
IDENTITY_FILE = "run_identity.json"
#: the parts of the resolved config that define a run (a checkpoint of another value of any is another run's)
IDENTITY_KEYS = ("model", "datamodule", "split", "seed", "pretrain")


def _global_step(path: Path) -> int:
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(ckpt.get("global_step", -1))


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoints a stopped run of ``run_dir`` may continue from: the pre-emption checkpoint, SLURM's
    ``hpc_ckpt_<n>.ckpt`` and ``checkpoints/last.ckpt``, those that exist."""
    found = [run_dir / "checkpoints" / PREEMPTION_CHECKPOINT, run_dir / "checkpoints" / "last.ckpt"]
    found += sorted(run_dir.glob("hpc_ckpt_*.ckpt"))
    return [p for p in found if p.is_file()]


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


def record_run_identity(run_dir: Path, identity: Mapping[str, Any]) -> None:
    """Write ``identity`` (JSON-serialisable: the run's :data:`IDENTITY_KEYS`) to ``checkpoints/run_identity.json``,
    atomically, so that a later ``resume=auto`` in this folder can tell whose checkpoints it finds."""
    path = run_dir / "checkpoints" / IDENTITY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(identity, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def _check_identity(run_dir: Path, identity: Mapping[str, Any], found: list[Path]) -> None:
    path = run_dir / "checkpoints" / IDENTITY_FILE
    if not path.is_file():  # checkpoints of a run made before the record existed: nothing to compare
        log.warning(
            "resume=auto: %s has no %s; resuming without checking whose checkpoints these are", run_dir, path.name
        )
        return
    stored = _flat(json.loads(path.read_text()))
    now = _flat(json.loads(json.dumps(identity, default=str)))
    differ = sorted(k for k in stored.keys() | now.keys() if stored.get(k, "<absent>") != now.get(k, "<absent>"))
    if differ:
        shown = ", ".join(f"{k}: {stored.get(k, '<absent>')!r} -> {now.get(k, '<absent>')!r}" for k in differ[:5])
        more = f" (and {len(differ) - 5} more)" if len(differ) > 5 else ""
        raise StellarConfigError(
            f"resume=auto: the checkpoints in {run_dir} ({', '.join(p.name for p in found)}) belong to a run with "
            f"another configuration ({shown}{more}); run this one in a new folder, pass resume=never to train it "
            "afresh here (replacing those checkpoints), or resume=<path> to start it from one of them on purpose"
        )


def resume_checkpoint(resume: str | None, run_dir: Path, identity: Mapping[str, Any] | None = None) -> str | None:
    """The checkpoint to pass to ``trainer.fit(ckpt_path=…)``, or ``None`` to start afresh.

    Parameters
    ----------
    resume : str or None
        ``auto``: this run folder's furthest checkpoint (by global step) of :func:`run_checkpoints`, if any;
        ``never`` (or ``None``): start afresh; anything else: the path of a checkpoint, which must exist.
    run_dir : Path
        The run folder (``paths.output_dir``).
    identity : mapping, optional
        What defines this run (:data:`IDENTITY_KEYS` of its resolved config). With ``auto``, the checkpoints found
        are continued only if the folder's recorded identity (:func:`record_run_identity`) is the same.

    Raises
    ------
    StellarConfigError
        When ``resume`` is a path with no file, or ``auto`` finds checkpoints that another configuration left.
    """
    if resume is None or resume == "never":
        return None
    if resume == "auto":
        found = run_checkpoints(run_dir)
        if not found:
            return None
        if identity is not None:
            _check_identity(run_dir, identity, found)
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
