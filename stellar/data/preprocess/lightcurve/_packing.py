"""The valid points of all light curves packed into 1-D arrays, for the kernels that work on every row at once."""

from __future__ import annotations

import numpy as np


class _Packing:
    """The valid points of every row, in time order, packed row after row into 1-D arrays (``t``: the times).

    Rows already in time order (the usual case) are packed by one boolean gather and unpacked by one boolean
    assignment; otherwise through a stable argsort of the times."""

    def __init__(self, t: np.ndarray, m: np.ndarray) -> None:
        self.shape, self.valid = t.shape, ~m
        self.n = self.valid.sum(axis=1)
        self.row = np.repeat(np.arange(t.shape[0]), self.n)
        self.t = t[self.valid]  # the packed times
        in_order = np.diff(self.t) >= 0
        in_order[self.row[1:] != self.row[:-1]] = True  # a step into the next row
        self.order = None if in_order.all() else np.argsort(np.where(m, np.inf, t), axis=1, kind="stable")
        self.front = np.arange(t.shape[1])[None, :] < self.n[:, None]  # the valid slots after sorting
        if self.order is not None:
            self.t = self.pack(t)

    def pack(self, a: np.ndarray) -> np.ndarray:
        if self.order is None:
            return a[self.valid]
        return np.take_along_axis(a, self.order, axis=1)[self.front]

    def unpack(self, packed: np.ndarray, fill: float = np.nan) -> np.ndarray:
        out = np.full(self.shape, fill, dtype=packed.dtype)
        if self.order is None:
            out[self.valid] = packed
            return out
        np.put_along_axis(out, self.order, self.front_rows(packed, fill), axis=1)
        return out

    def front_rows(self, packed: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """A packed array back in ``(N, T)``, each row's valid points first in time order, ``fill`` after."""
        out = np.full(self.shape, fill, dtype=packed.dtype)
        out[self.front] = packed
        return out

    def rows(self, packed: np.ndarray) -> list[np.ndarray]:
        """Each row's slice (a view) of a packed array."""
        return np.split(packed, np.cumsum(self.n)[:-1])
