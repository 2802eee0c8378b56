"""Training on several processes (``trainer=ddp``): the ranks of one run, who writes, and outputs gathered in order.

Lightning starts the other ranks of ``strategy=ddp`` by running the script again with ``sys.argv``. Under
``python train.py -m …`` that command is the whole sweep: each child would launch the sweep again, and the next job
of the sweep would find the first job's process group (and ``LOCAL_RANK`` left in the environment) and wait forever.
:func:`local_ranks` starts them itself instead, once per run: ``python -m stellar.pipelines.train
<run>/config_resolved.yaml``, the run's own resolved config, with the environment Lightning reads for processes made
outside it (``LOCAL_RANK`` set, as under ``torchrun``), and ends the process group with the run. Where the processes
already exist (SLURM with one task per device, ``torchrun``) it starts nothing. Every rank runs the same
:func:`stellar.pipelines.train.run`; only global rank 0 writes run files.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import lightning as L
import numpy as np
import torch.distributed as dist
from lightning.fabric.plugins.environments.lightning import find_free_network_port
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from stellar.errors import StellarError

log = logging.getLogger(__name__)

#: what Lightning's environment reads of a process started outside it (LightningEnvironment)
RANK_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "RANK")


def is_rank_zero() -> bool:
    """Whether this process writes the run's files: global rank 0, or the only process.

    Lightning sets the rank from ``RANK``/``LOCAL_RANK``/``SLURM_PROCID`` when it is imported, and from the trainer's
    strategy once that is set up, so this holds before the trainer exists too."""
    return int(getattr(rank_zero_only, "rank", 0)) == 0


def starts_own_ranks(trainer: L.Trainer) -> bool:
    """Whether ``trainer`` would start its other ranks by re-running the script (``strategy=ddp`` on one node,
    no external launcher): then :func:`local_ranks` starts them instead."""
    strategy = trainer.strategy
    if not isinstance(strategy, DDPStrategy) or not isinstance(strategy.launcher, _SubprocessScriptLauncher):
        return False
    env = strategy.cluster_environment
    return env is not None and not env.creates_processes_externally and strategy.num_processes > 1


@contextmanager
def local_ranks(trainer: L.Trainer, command: Sequence[str], timeout: float = 600.0) -> Iterator[None]:
    """Start ranks 1… of ``trainer`` on this node for one run, each running ``command``; end them with the run.

    Inside the block this process is rank 0 of a fresh process group (Lightning initialises it at ``fit``); leaving
    it waits up to ``timeout`` seconds for the other ranks to finish their run, destroys the group and restores the
    environment, so that the next job of a sweep starts clean. When this process leaves by an exception the other
    ranks are ended. Nothing is started unless :func:`starts_own_ranks`.

    Parameters
    ----------
    trainer : lightning.Trainer
        The run's trainer, not yet fitted.
    command : sequence of str
        What each other rank runs: the same run, e.g. ``python -m stellar.pipelines.train <run>/config_resolved.yaml``.
    timeout : float
        Seconds to wait for the other ranks once this one is done.
    """
    if not starts_own_ranks(trainer):
        yield
        return
    n = int(trainer.strategy.num_processes)  # type: ignore[attr-defined]
    saved = {k: os.environ.get(k) for k in RANK_VARIABLES}
    common = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(find_free_network_port()), "NODE_RANK": "0"}
    os.environ.update(common, WORLD_SIZE=str(n), LOCAL_RANK="0", RANK="0")
    procs: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        for rank in range(1, n):
            env = {**os.environ, "LOCAL_RANK": str(rank), "RANK": str(rank)}
            procs.append(subprocess.Popen(list(command), env=env))
        log.info("DDP: started ranks 1-%d of this run (pids %s)", n - 1, [p.pid for p in procs])
        threading.Thread(target=_watch, args=(procs, stop), daemon=True, name="stellar-ddp-ranks").start()
        yield
        stop.set()
        failed = {p.pid: p.wait(timeout=timeout) for p in procs}
        failed = {pid: rc for pid, rc in failed.items() if rc != 0}
        if failed:
            raise StellarError(f"DDP ranks exited with errors (pid: exit status) {failed}; rank 0 finished")
    except BaseException:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
        raise
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _watch(procs: Sequence[subprocess.Popen[bytes]], stop: threading.Event, period: float = 2.0) -> None:
    """End this process when another rank dies during the run: rank 0 would otherwise wait in a collective for
    the length of the process group's timeout (Lightning's own launcher does the same)."""
    while not stop.wait(period):
        dead = [p for p in procs if p.poll() not in (None, 0)]
        if dead and not stop.is_set():
            log.error("DDP rank (pid %d) exited with %s: ending the run", dead[0].pid, dead[0].returncode)
            for p in procs:
                if p.poll() is None:
                    p.kill()
            os._exit(1)


def merge_shards(shards: Sequence[Mapping[str, np.ndarray] | None]) -> dict[str, np.ndarray]:
    """The rows of per-rank outputs in the order one process has them, each object once.

    Rank ``r`` of ``W`` holds the rows at positions ``r, r + W, r + 2W…`` of the part (Lightning's distributed
    samplers, unshuffled); a ``DistributedSampler`` pads the last round with the first rows again, which are dropped
    here by their ``index`` (the store row).

    Parameters
    ----------
    shards : sequence of mapping
        Rank ``r``'s outputs at ``shards[r]``: arrays with the row ``index`` (``None`` or empty for no rows).

    Returns
    -------
    dict
        The same keys, rows interleaved back into order and de-duplicated.

    Examples
    --------
    >>> out = merge_shards([{"index": np.array([0, 2, 4])}, {"index": np.array([1, 3, 0])}])
    >>> out["index"].tolist()
    [0, 1, 2, 3, 4]
    """
    full = [s for s in shards if s and len(s["index"])]
    if not full:
        return {}
    lengths = [len(s["index"]) if s else 0 for s in shards]
    offsets = np.cumsum([0, *lengths[:-1]])
    take = np.asarray(
        [offsets[r] + k for k in range(max(lengths)) for r in range(len(shards)) if k < lengths[r]], dtype=np.int64
    )
    stacked = {key: np.concatenate([np.asarray(s[key]) for s in full])[take] for key in full[0]}
    _, first = np.unique(stacked["index"], return_index=True)
    keep = np.sort(first)
    return {k: v[keep] for k, v in stacked.items()}


def gather_outputs(trainer: L.Trainer | None, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every rank's share of a part's outputs, on every rank, in order (:func:`merge_shards`); ``outputs``
    unchanged in one process."""
    if trainer is None or trainer.world_size < 2 or not (dist.is_available() and dist.is_initialized()):
        return outputs
    shards: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(shards, outputs)
    return merge_shards(shards)
