"""Where catalogue partitions are scored (``conf/cluster``): in this process, or on Dask distributed.

Both run a function over partitions and yield each result as it completes; :func:`stellar.serving.scoring.score`
does the rest (planning, skipping finished partitions, progress). Each Dask worker loads the model once
(:func:`stellar.serving.scoring.loaded_predictor` is cached per process), not once per partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)


class Synchronous:
    """In this process, one partition after another (``cluster=none``; the scorer before Dask)."""

    n_workers = 1

    def __enter__(self) -> Synchronous:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map_unordered(self, fn: Callable[..., Any], items: Iterable[Any], *args: Any) -> Iterator[Any]:
        """``fn(item, *args)`` of every item, in order."""
        for item in items:
            yield fn(item, *args)


class DaskCluster:
    """Partitions scored in parallel on Dask distributed: a ``LocalCluster`` started for the run (and closed after
    it), or the existing cluster at ``address``.

    Parameters
    ----------
    n_workers : int
        Workers of the local cluster.
    threads_per_worker : int
        Threads per worker (each worker holds one copy of the model, shared by its threads).
    processes : bool
        Workers as processes (true) or as threads of this process.
    address : str, optional
        Scheduler address of an existing cluster (``tcp://host:8786``); the local-cluster options are then unused.
    memory_limit : str
        Memory limit per local worker (``"auto"``: the machine's memory shared out; ``"4GiB"``…).
    dashboard_address : str
        Where the local cluster serves its dashboard (``":0"``: a free port; the link is logged).
    """

    def __init__(
        self,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        processes: bool = True,
        address: str | None = None,
        memory_limit: str = "auto",
        dashboard_address: str = ":0",
    ):
        self.n_workers = int(n_workers)
        self.threads_per_worker = int(threads_per_worker)
        self.processes = bool(processes)
        self.address = address
        self.memory_limit = memory_limit
        self.dashboard_address = dashboard_address
        self.client: Any = None
        self.cluster: Any = None

    def __enter__(self) -> DaskCluster:
        from distributed import Client, LocalCluster

        if self.address:
            self.client = Client(self.address)
        else:
            self.cluster = LocalCluster(
                n_workers=self.n_workers,
                threads_per_worker=self.threads_per_worker,
                processes=self.processes,
                memory_limit=self.memory_limit,
                dashboard_address=self.dashboard_address,
            )
            self.client = Client(self.cluster)
        log.info("scoring on %s (dashboard: %s)", self.client, self.client.dashboard_link)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    def map_unordered(self, fn: Callable[..., Any], items: Iterable[Any], *args: Any) -> Iterator[Any]:
        """``fn(item, *args)`` of every item on the cluster, as each completes (a failure is raised here)."""
        from distributed import as_completed

        futures = [self.client.submit(fn, item, *args, pure=False) for item in items]
        for future in as_completed(futures):
            yield future.result()
