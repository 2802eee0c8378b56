"""Start several processes and release them together: what the concurrency tests race with.

Each process runs ``target(ready, *args)``; the target prepares (clients, payloads), calls ``ready()`` and then
does the racing work, so all processes start it within milliseconds of each other. The processes are forked from a
fresh forkserver that has imported the heavy modules once (no state of the test process, no fork of its threads),
and they get the test process's environment at the time of the race (the local S3 endpoint and credentials).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from collections.abc import Callable, Sequence
from typing import Any

_PRELOAD = ["tests.racing", "stellar.registry", "stellar.data.store", "s3fs"]


def _run(
    target: Callable[..., Any], barrier: Any, queue: Any, i: int, args: tuple[Any, ...], env: dict[str, str]
) -> None:
    os.environ.update(env)
    try:
        queue.put((i, True, target(lambda: barrier.wait(timeout=120), *args)))
    except BaseException:  # reported to the parent, which fails the test with it
        queue.put((i, False, traceback.format_exc()))


def race(target: Callable[..., Any], args: Sequence[tuple[Any, ...]], timeout: float = 180.0) -> list[Any]:
    """Run ``target(ready, *a)`` for each ``a`` in its own process; returns their results in order.

    Raises ``AssertionError`` with a child's traceback if any process failed.
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)  # effective when the server starts (the first race of the session)
    barrier, queue, env = ctx.Barrier(len(args)), ctx.Queue(), dict(os.environ)
    procs = [ctx.Process(target=_run, args=(target, barrier, queue, i, a, env)) for i, a in enumerate(args)]
    for p in procs:
        p.start()
    results = {i: (ok, value) for i, ok, value in (queue.get(timeout=timeout) for _ in procs)}
    for p in procs:
        p.join(timeout=timeout)
    failed = [value for ok, value in results.values() if not ok]
    assert not failed, f"{len(failed)} of {len(procs)} processes failed; the first:\n{failed[0]}"
    return [results[i][1] for i in range(len(procs))]
