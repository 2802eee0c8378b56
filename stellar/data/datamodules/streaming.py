"""Streaming parts of a store-backed datamodule, for training sets larger than memory (``datamodule.streaming=true``).

A :class:`StreamingPart` reads the stored dataset one whole zarr chunk (``chunk_rows`` rows) at a time and keeps only
the rows of its part. Per epoch the training part visits its chunks in a seeded order that changes with the epoch and
draws batches at random from a shuffle buffer of ``buffer_rows`` rows; validation and test parts stream in row order.
DataLoader workers and DDP ranks read disjoint chunks: the chunks are dealt once (seeded) to ``world_size ×
num_workers`` slots, and each epoch moves the slots round the ranks and workers and reads each slot's chunks in a new
order; the batch count is thus the same every epoch (``len`` is computed in the main process, whose copy of the part
does not iterate while persistent workers advance their epochs). Under DDP every rank must yield the same number of
batches (a rank that runs out first leaves the others waiting in a collective), so each slot yields as many rows as the
smallest slot of its worker index over the ranks: about one chunk's rows per slot are dropped per epoch, different rows
each epoch when the chunk order is shuffled (what ``DistributedSampler(drop_last=True)`` does for map-style datasets).
Without DDP nothing is dropped.

Memory held per slot: the shuffle buffer (``buffer_rows + chunk_rows`` rows), the chunks read ahead
(``read_ahead``) and one batch; it does not grow with the dataset. The metadata columns the batches carry
(``label``, the targets) are per-row numbers kept in memory, as the split needs the metadata table anyway.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from stellar.errors import StellarValueError

T = TypeVar("T")
Rows = dict[str, np.ndarray]
#: reads the batch fields of a contiguous range of stored rows (the datamodule's ``load_arrays`` on that range)
ReadRows = Callable[[slice], Rows]


def _n(rows: Rows) -> int:
    return len(rows["index"])


def _concat(pieces: list[Rows]) -> Rows:
    return pieces[0] if len(pieces) == 1 else {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


class ShuffleBuffer:
    """A fixed-capacity pool of rows from which batches are drawn at random without replacement.

    Rows are copied into preallocated arrays; a drawn batch's holes are filled from the pool's tail, so a draw costs
    its own rows, not the pool's.

    Parameters
    ----------
    capacity : int
        Most rows held at once.
    rng : numpy.random.Generator
        Source of the draws.
    """

    def __init__(self, capacity: int, rng: np.random.Generator):
        self.capacity, self.rng, self.n = int(capacity), rng, 0
        self.data: Rows = {}

    def add(self, rows: Rows) -> None:
        m = _n(rows)
        if self.n + m > self.capacity:
            raise StellarValueError(f"{m} rows do not fit a shuffle buffer holding {self.n} of {self.capacity}")
        if not self.data:
            self.data = {k: np.empty((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in rows.items()}
        for k, v in rows.items():
            self.data[k][self.n : self.n + m] = v
        self.n += m

    def take(self, k: int) -> Rows:
        """``k`` rows drawn at random and removed from the pool."""
        k = min(k, self.n)
        idx = self.rng.choice(self.n, size=k, replace=False)
        out = {key: a[idx] for key, a in self.data.items()}
        self.n -= k
        holes = idx[idx < self.n]
        tail = np.setdiff1d(np.arange(self.n, self.n + k), idx, assume_unique=True)
        for a in self.data.values():
            a[holes] = a[tail]
        return out


def shuffled_batches(pieces: Iterable[Rows], batch_size: int, buffer_rows: int, chunk_rows: int,
                     rng: np.random.Generator) -> Iterator[Rows]:  # fmt: skip
    """Batches drawn from a shuffle buffer that ``pieces`` (at most ``chunk_rows`` rows each) keep filled to
    ``buffer_rows`` rows; every row comes out exactly once."""
    full = max(buffer_rows, batch_size)
    pool = ShuffleBuffer(full + chunk_rows, rng)
    for piece in pieces:
        pool.add(piece)
        while pool.n >= full:
            yield pool.take(batch_size)
    while pool.n:
        yield pool.take(batch_size)


def ordered_batches(pieces: Iterable[Rows], batch_size: int) -> Iterator[Rows]:
    """Consecutive batches of the rows of ``pieces`` in their order (the last one may be short)."""
    pending: list[Rows] = []
    for piece in pieces:
        rows = _concat([*pending, piece])
        n_full = _n(rows) // batch_size * batch_size
        for s in range(0, n_full, batch_size):
            yield {k: v[s : s + batch_size] for k, v in rows.items()}
        pending = [{k: v[n_full:] for k, v in rows.items()}] if n_full < _n(rows) else []
    if pending:
        yield pending[0]


class _Failed:
    def __init__(self, err: BaseException):
        self.err = err


def read_ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """``items`` produced by a background thread up to ``depth`` ahead of the consumer (zarr reads and decoding
    release the GIL, so the next chunk is read while the model trains); ``depth`` 0 reads in the caller's thread."""
    if depth <= 0:
        yield from items
        return
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop, end = threading.Event(), object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as err:  # handed to the consumer, which re-raises it in its own thread
            put(_Failed(err))

    threading.Thread(target=work, name="stellar-read-ahead", daemon=True).start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, _Failed):
                raise item.err
            yield item
    finally:
        stop.set()  # an abandoned epoch (the consumer stopped early) ends the thread too


class StreamingPart(IterableDataset):
    """One part (train, val or test) of a stored dataset as an iterable of batches read chunk by chunk.

    Each item is a batch: the same dict as the in-memory part's (the batch fields, ``label``, the targets, ``index``),
    so a DataLoader over it takes ``batch_size=None``. Each iteration is one epoch; the epoch number advances by one
    per iteration (also in persistent DataLoader workers, each of which iterates its own copy once per epoch) or is
    set with :meth:`set_epoch`.

    Parameters
    ----------
    read : callable
        ``read(slice) -> dict of arrays``: the batch fields of a contiguous range of stored rows.
    rows : ndarray of int
        Stored rows of the part (any order; served in store order, or shuffled).
    n_rows : int
        Rows of the stored dataset.
    chunk_rows : int
        Rows per stored zarr chunk; reads are whole chunks.
    columns : mapping of str to ndarray
        Per-row values of the whole dataset added to each batch (``label``, the targets), (n_rows,).
    batch_size : int
        Rows per batch.
    shuffle : bool
        Shuffle chunk order (per epoch) and rows (through the buffer); ``False`` streams in store order.
    buffer_rows : int
        Rows of the shuffle buffer.
    seed : int
        Seed of the chunk order and the draws, combined with the epoch, rank and worker.
    read_ahead : int
        Chunks read ahead by a background thread (0: none).
    num_workers : int
        DataLoader workers that will iterate this part (for :meth:`__len__`; the iteration itself asks
        ``get_worker_info()``).
    rank, world_size : int, optional
        DDP rank and world size; ``None`` takes them from ``torch.distributed`` when it is initialised, else 0 and 1.
    """

    def __init__(
        self,
        read: ReadRows,
        rows: np.ndarray,
        n_rows: int,
        chunk_rows: int,
        columns: Mapping[str, np.ndarray],
        batch_size: int,
        *,
        shuffle: bool = False,
        buffer_rows: int = 4096,
        seed: int = 0,
        read_ahead: int = 2,
        num_workers: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        self.read, self.n_rows, self.chunk_rows = read, int(n_rows), int(chunk_rows)
        self.columns = dict(columns)
        self.batch_size, self.shuffle, self.buffer_rows = int(batch_size), bool(shuffle), int(buffer_rows)
        self.seed, self.read_ahead, self.num_workers = int(seed), int(read_ahead), int(num_workers)
        self.rank, self.world_size = rank, world_size
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        chunk_of = rows // self.chunk_rows
        self.chunks, starts = np.unique(chunk_of, return_index=True)
        #: the part's rows in each chunk of ``chunks``
        self.chunk_part_rows: list[np.ndarray] = np.split(rows, starts[1:]) if len(rows) else []
        self.n_part_rows = len(rows)
        self.epoch = 0
        self._validate()

    def _validate(self) -> None:
        if min(self.chunk_rows, self.batch_size, self.buffer_rows) < 1:
            raise StellarValueError(f"chunk_rows, batch_size and buffer_rows must be >= 1; got {self.chunk_rows}, "
                                    f"{self.batch_size}, {self.buffer_rows}")  # fmt: skip
        rank, world = self.rank, self.world_size
        if (rank is None) != (world is None) or (rank is not None and world is not None and not 0 <= rank < world):
            raise StellarValueError(f"rank and world_size must be given together, 0 <= rank < world_size; got {rank}, "
                                    f"{world}")  # fmt: skip

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its chunk order and draws)."""
        self.epoch = int(epoch)

    def replace(self, **changes: Any) -> StreamingPart:
        """A copy of this part, starting at epoch 0, with some of ``shuffle``, ``rank``, ``world_size``, ``seed``,
        ``batch_size``, ``buffer_rows``, ``read_ahead`` or ``num_workers`` changed (e.g. ``shuffle=True`` for the
        training loader)."""
        allowed = {"shuffle", "rank", "world_size", "seed", "batch_size", "buffer_rows", "read_ahead", "num_workers"}
        if set(changes) - allowed:
            raise StellarValueError(f"replace() takes {sorted(allowed)}; got {sorted(changes)}")
        copy = object.__new__(StreamingPart)
        copy.__dict__.update(self.__dict__, **changes, epoch=0)
        copy._validate()
        return copy

    def with_world(self) -> StreamingPart:
        """A copy whose rank and world size are fixed now (from ``torch.distributed`` when it is initialised), for a
        DataLoader: workers started by spawn or forkserver do not see the parent's process group, and would read
        every rank's chunks."""
        rank, world = self._world()
        return self.replace(rank=rank, world_size=world)

    def _world(self) -> tuple[int, int]:
        if self.world_size is not None:
            return int(self.rank or 0), int(self.world_size)
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def plan(self, epoch: int, worker: int, n_workers: int) -> tuple[np.ndarray, int]:
        """The chunks (positions in :attr:`chunks`) that this rank's ``worker`` reads in ``epoch``, in reading order,
        and how many of their part rows it yields (equal over the ranks, see the module docstring)."""
        rank, world = self._world()
        slots = world * n_workers
        # Chunks are dealt to the slots once (seeded), and slots move between ranks and workers by the epoch: the
        # batch count (a sum over workers) is then the same every epoch, so the length reported by the main process,
        # whose copy never iterates while persistent workers advance their epochs, is what each epoch yields.
        order = np.arange(len(self.chunks))
        if self.shuffle:
            order = np.random.default_rng(self.seed).permutation(order)
        counts = np.asarray([len(r) for r in self.chunk_part_rows], dtype=np.int64)
        w = (worker + epoch) % n_workers if self.shuffle else worker
        r0 = (rank + epoch) % world if self.shuffle else rank
        quota = min(int(counts[order[r * n_workers + w :: slots]].sum()) for r in range(world))
        mine = order[r0 * n_workers + w :: slots]
        if self.shuffle:  # the slot's chunks in a new order each epoch (so other rows are left out under DDP)
            mine = np.random.default_rng([self.seed, epoch, r0 * n_workers + w]).permutation(mine)
        return mine, quota

    def __len__(self) -> int:
        """Batches of this rank's next epoch over all its workers (what ``len(DataLoader)`` reports)."""
        n_workers = max(1, self.num_workers)
        quotas = (self.plan(self.epoch, w, n_workers)[1] for w in range(n_workers))
        return sum(-(-q // self.batch_size) for q in quotas)

    def pieces(self, chunks: Iterable[int], limit: int) -> Iterator[Rows]:
        """The part's rows of ``chunks`` (positions in :attr:`chunks`), read chunk by chunk, ``limit`` rows in all."""
        left = limit
        for c in chunks:
            take = self.chunk_part_rows[c][:left]
            if not len(take):
                break
            start = int(self.chunks[c]) * self.chunk_rows
            stored = self.read(slice(start, min(start + self.chunk_rows, self.n_rows)))
            piece = {k: v[take - start] for k, v in stored.items()}
            piece.update({k: v[take] for k, v in self.columns.items()})
            piece["index"] = take
            left -= len(take)
            yield piece

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, self.epoch = self.epoch, self.epoch + 1
        chunks, quota = self.plan(epoch, worker, n_workers)
        pieces = read_ahead(self.pieces(chunks, quota), self.read_ahead)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch, *self._world(), worker])
            batches = shuffled_batches(pieces, self.batch_size, self.buffer_rows, self.chunk_rows, rng)
        else:
            batches = ordered_batches(pieces, self.batch_size)
        for b in batches:
            yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()}

    def materialise(self) -> Rows:
        """Every row of the part as numpy arrays, in store order, read chunk by chunk (for the small val and test
        parts; ignores ranks and workers)."""
        pieces = list(self.pieces(range(len(self.chunks)), self.n_part_rows))
        if pieces:
            return _concat(pieces)
        empty = self.read(slice(0, 0))
        return {**empty, **{k: v[:0] for k, v in self.columns.items()}, "index": np.zeros(0, dtype=np.int64)}
