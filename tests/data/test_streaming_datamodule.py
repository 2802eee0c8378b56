"""datamodule.streaming=true: parts read the store chunk by chunk, every row once per epoch, reshuffled per epoch,
disjoint chunks per worker and per DDP rank with equal batch counts, and the same batches as in memory."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, get_worker_info

from stellar.data.datamodules import LightCurveDataModule, SEDDataModule, SpectraDataModule
from stellar.data.datamodules.streaming import StreamingPart, read_ahead, shuffled_batches
from stellar.data.preprocess.lightcurve_inputs import LightCurvePreprocessing
from stellar.data.simulate.spectra import SpectrumSimulator
from stellar.data.sources import SimulatedSpectraSource
from stellar.data.sources.lightcurve import SesarRRLyraeSource
from stellar.data.sources.sed import SimulatedSEDSource
from stellar.errors import StellarConfigError, StellarValueError
from stellar.evaluation.splits import RandomSplit
from tests.conftest import DATA

CHUNK = 16


def _pair(cls, source, root, **kwargs):
    """A streaming and an in-memory datamodule over one dataset stored in chunks of ``CHUNK`` rows."""
    mem = cls(source, str(root), split=RandomSplit(seed=0), batch_size=8, **kwargs)
    mem.store.write(mem.dataset_name, **mem.build_kwargs(), chunk_rows=CHUNK)
    stream = cls(source, str(root), split=RandomSplit(seed=0), batch_size=8, streaming=True, shuffle_buffer=24,
                 **kwargs)  # fmt: skip
    mem.setup("fit")
    stream.setup("fit")
    return stream, mem


@pytest.fixture(scope="module")
def spectra(tmp_path_factory):
    return _pair(SpectraDataModule, SimulatedSpectraSource(n=120, seed=3, simulator=SpectrumSimulator()),
                 tmp_path_factory.mktemp("store"))  # fmt: skip


def _index(batches) -> np.ndarray:
    return np.concatenate([b["index"].numpy() for b in batches])


def _with_worker(batch):
    """Collate run in the DataLoader worker: tag the batch with the worker that read it."""
    return {**batch, "worker": torch.tensor(get_worker_info().id)}


def test_each_epoch_yields_every_train_row_once_in_a_new_order(spectra):
    stream, _ = spectra
    train = stream.split_result.train
    assert isinstance(stream.part("train"), StreamingPart) and stream.dataset.chunk_rows == CHUNK
    loader = stream.train_dataloader()
    first, second = list(loader), list(loader)
    a, b = _index(first), _index(second)
    np.testing.assert_array_equal(np.sort(a), np.sort(train))
    np.testing.assert_array_equal(np.sort(b), np.sort(train))
    assert not np.array_equal(a, b)  # epoch 1 has its own chunk order and draws
    assert len(loader) == len(first) == len(second) == -(-len(train) // 8)
    # rows are mixed across chunks within a batch (the shuffle buffer), not read chunk after chunk
    assert any(len(set(bt["index"].numpy() // CHUNK)) > 1 for bt in first)
    # a fresh loader replays epoch 0: seeded
    np.testing.assert_array_equal(_index(stream.train_dataloader()), a)


def test_streamed_batches_are_the_in_memory_rows(spectra):
    stream, mem = spectra
    val = list(stream.val_dataloader())
    ref = mem.part("val").tensors
    assert list(val[0]) == list(ref)  # same keys, same order
    where = {int(i): k for k, i in enumerate(ref["index"])}
    for batch in [*val, *stream.train_dataloader()]:
        rows = [where.get(int(i)) for i in batch["index"]]
        if rows[0] is None:  # a training batch: compare with the in-memory train part
            tr = mem.part("train").tensors
            pos = {int(i): k for k, i in enumerate(tr["index"])}
            rows, ref_part = [pos[int(i)] for i in batch["index"]], tr
        else:
            ref_part = ref
        for k, v in batch.items():
            assert v.dtype == ref_part[k].dtype
            torch.testing.assert_close(v, ref_part[k][rows], rtol=0, atol=0, equal_nan=True)
    # val streams in store order without shuffling; arrays() materialises it
    np.testing.assert_array_equal(_index(val), np.sort(stream.split_result.val))
    arrays = stream.arrays("val")
    np.testing.assert_array_equal(arrays["flux"], ref["flux"].numpy()[np.argsort(ref["index"].numpy())])


def test_two_workers_read_disjoint_chunks_that_cover_the_part(spectra):
    stream, _ = spectra
    part = stream.part("train").replace(shuffle=True, num_workers=2)
    loader = DataLoader(part, batch_size=None, num_workers=2, collate_fn=_with_worker, persistent_workers=True)
    for _epoch in range(2):  # persistent workers advance their own epoch
        batches = list(loader)
        chunks = {w: {int(c) for b in batches if int(b["worker"]) == w for c in b["index"].numpy() // CHUNK}
                  for w in (0, 1)}  # fmt: skip
        assert chunks[0] and chunks[1] and not chunks[0] & chunks[1]
        idx = _index(batches)
        np.testing.assert_array_equal(np.sort(idx), np.sort(stream.split_result.train))
        assert len(batches) == len(part)


def test_the_length_the_loader_reports_is_what_every_epoch_yields():
    """``len(DataLoader)`` is read in the main process, whose copy of the part never iterates while persistent workers
    advance their own epochs: the batch count must not depend on the epoch (it did with 2 workers: 18 reported, 19
    yielded in epoch 2, so Lightning would cut the epoch at 18 batches and drop rows)."""
    n, chunk = 200, 16
    rows = np.sort(np.random.default_rng(0).choice(n, 140, replace=False))

    def read(s: slice) -> dict[str, np.ndarray]:
        return {"x": np.arange(s.start, s.stop, dtype=np.float32)}

    part = StreamingPart(read, rows, n, chunk, {"label": np.zeros(n, dtype=np.int64)}, 8, shuffle=True,
                         num_workers=2, read_ahead=0)  # fmt: skip
    loader = DataLoader(part, batch_size=None, num_workers=2, persistent_workers=True)
    epochs = [list(loader) for _ in range(6)]
    assert [len(b) for b in epochs] == [len(loader)] * 6
    for batches in epochs:  # each epoch still every row once, in its own order
        np.testing.assert_array_equal(np.sort(_index(batches)), rows)
    assert len({tuple(_index(b)) for b in epochs}) == 6
    for world in (2, 3):  # under DDP too: equal over the ranks, and over the epochs
        lens = set()
        for epoch in range(6):
            for r in range(world):
                p = part.replace(rank=r, world_size=world, num_workers=1)
                p.set_epoch(epoch)
                lens |= {len(p), len(list(p))}
        assert len(lens) == 1


def test_ddp_ranks_get_disjoint_rows_and_equal_batch_counts(spectra):
    stream, _ = spectra
    train = stream.split_result.train
    for epoch in range(3):
        ranks = [stream.part("train").replace(shuffle=True, rank=r, world_size=2) for r in (0, 1)]
        for p in ranks:
            p.set_epoch(epoch)
        lens = [len(p) for p in ranks]
        batches = [list(p) for p in ranks]
        rows = [_index(b) for b in batches]
        assert len(batches[0]) == len(batches[1]) == lens[0] == lens[1]
        assert not set(rows[0]) & set(rows[1])
        assert len(rows[0]) == len(rows[1]) and set(rows[0]) | set(rows[1]) <= set(train)
        assert len(train) - 2 * len(rows[0]) < CHUNK  # at most one chunk's rows left out to equalise the ranks
    with pytest.raises(StellarValueError, match="rank and world_size"):
        stream.part("train").replace(rank=2, world_size=2)


def test_shuffle_buffer_draws_each_row_once():
    pieces = [{"index": np.arange(s, s + 10), "x": np.arange(s, s + 10) * 2.0} for s in range(0, 100, 10)]
    out = list(shuffled_batches(pieces, batch_size=7, buffer_rows=30, chunk_rows=10, rng=np.random.default_rng(0)))
    idx = np.concatenate([b["index"] for b in out])
    np.testing.assert_array_equal(np.sort(idx), np.arange(100))
    assert all(np.array_equal(b["x"], b["index"] * 2.0) for b in out)  # fields stay row-aligned
    assert [len(b["index"]) for b in out][:-1] == [7] * 14 and not np.array_equal(idx, np.arange(100))


def test_sed_features_are_derived_per_chunk_as_in_memory(tmp_path):
    stream, mem = _pair(SEDDataModule, SimulatedSEDSource(n=100, seed=2), tmp_path, targets=["teff", "logg"])
    got, ref = stream.arrays("test"), mem.arrays("test")
    order = np.argsort(ref["index"])
    assert set(got) == set(ref) and got["features"].shape[1] == len(mem.feature_names)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k][order])


def test_light_curve_batches_stream_as_in_memory(tmp_path):
    prep = LightCurvePreprocessing(bands=("u", "g", "r", "i", "z"), n_points=64, min_period=0.2)
    stream, mem = _pair(LightCurveDataModule, SesarRRLyraeSource(str(DATA / "lightcurves" / "sesar_subset")),
                        tmp_path, preprocessing=prep, class_names=["rr_lyrae_ab", "rr_lyrae_c"],
                        class_key="var_class", targets=["period"])  # fmt: skip
    batch = next(iter(stream.loader("train")))
    ref = mem.part("train").tensors
    pos = {int(i): k for k, i in enumerate(ref["index"])}
    rows = [pos[int(i)] for i in batch["index"]]
    assert list(batch) == list(ref) and {"best_period", "features", "period"} <= set(batch)
    for k, v in batch.items():
        torch.testing.assert_close(v, ref[k][rows], rtol=0, atol=0, equal_nan=True)


def test_streaming_refuses_to_materialise_the_train_part(spectra):
    stream, _ = spectra
    with pytest.raises(StellarConfigError, match="streaming=true"):
        stream.arrays("train")


def test_read_ahead_hands_over_errors_and_stops_when_abandoned():
    def failing():
        yield 1
        raise OSError("chunk unreadable")

    it = read_ahead(failing(), 2)
    assert next(it) == 1
    with pytest.raises(OSError, match="chunk unreadable"):
        next(it)
    endless = read_ahead(iter(range(10**9)), 2)
    assert next(endless) == 0
    endless.close()  # an epoch cut short: the reader thread must not live on, holding chunks
    deadline = time.monotonic() + 5
    while any(t.name == "stellar-read-ahead" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "stellar-read-ahead" for t in threading.enumerate())


def test_the_loader_fixes_the_ddp_rank_when_it_is_made(spectra, monkeypatch):
    """DataLoader workers started by spawn or forkserver (macOS; Python 3.14's default on Linux) do not see the
    parent's process group; a part that asks ``torch.distributed`` only when it iterates would read every rank's
    chunks there. The loader made under DDP (rank 1 of 2) keeps serving rank 1's half where no group is visible."""
    import torch.distributed as dist

    stream, _ = spectra
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda *a, **k: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    loader = stream.loader("train", shuffle=True)
    monkeypatch.undo()  # iterated where no process group is initialised, as in a spawned worker
    served = _index(list(loader))
    rank1 = _index(list(stream.part("train").replace(shuffle=True, rank=1, world_size=2)))
    np.testing.assert_array_equal(served, rank1)
    assert len(served) < len(stream.split_result.train) / 2 + CHUNK
