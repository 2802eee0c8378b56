"""A thread map for array kernels that release the GIL (numpy sorts and ufuncs, finufft)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from stellar.errors import StellarValueError

T = TypeVar("T")
R = TypeVar("R")


def check_workers(workers: object) -> None:
    """Refuse a thread count that is not an integer >= 1 (numpy integers are fine)."""
    if not (isinstance(workers, numbers.Integral) and int(workers) >= 1):
        raise StellarValueError(f"workers must be an int >= 1; got {workers!r}")


def thread_map(fn: Callable[[T], R], items: Sequence[T], workers: int = 1) -> list[R]:
    """``[fn(item) for item in items]``, on up to ``workers`` threads (in order; 1 runs inline)."""
    check_workers(workers)
    if workers == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(int(workers), len(items))) as pool:
        return list(pool.map(fn, items))
