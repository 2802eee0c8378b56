"""Several processes preparing the same dataset on the local S3 API: one complete dataset, nothing torn, no failure."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import zarr

import stellar.data.store as store_mod
from stellar.data.store import DatasetStore
from tests.racing import race

N_ROWS, N_PIX = 1500, 100


def _build(seed: int) -> dict[str, Any]:
    """The kwargs of ``DatasetStore.write`` for a dataset that is the same for the same seed (~1.8 MB, 3 chunks)."""
    time.sleep(0.3)  # a build takes a while, so every process has looked for the dataset before any stores it
    rng = np.random.default_rng(seed)
    meta = pd.DataFrame(
        {
            "object_id": [f"s{i}" for i in range(N_ROWS)],
            "survey": "sim",
            "ra": rng.uniform(0, 360, N_ROWS),
            "dec": rng.uniform(-90, 90, N_ROWS),
        }
    )
    arrays = {"flux": rng.normal(1, 0.1, (N_ROWS, N_PIX)).astype("f4"), "ivar": rng.random((N_ROWS, N_PIX))}
    return {"arrays": arrays, "meta": meta, "modality": "spectra", "chunk_rows": 512}


def _prepare(ready: Callable[[], None], root: str, seed: int) -> dict[str, Any]:
    store = DatasetStore(root)
    store.list()  # open the connection before the race
    ready()
    try:
        ds = store.get_or_create("sims", lambda: _build(seed))
    except store_mod.StellarDataError as err:
        return {"error": str(err)}
    return {"hash": ds.attrs["content_hash"], "created": ds.attrs["created"], "flux_sum": float(ds.load("flux").sum())}


@pytest.mark.parametrize("n", [pytest.param(4, marks=pytest.mark.slow), pytest.param(8, marks=pytest.mark.slow)])
def test_concurrent_get_or_create_gives_one_complete_dataset(n, s3_bucket):
    """``n`` processes prepare the same dataset at once (sweep jobs, DDP ranks): all return the one stored dataset.

    What it catches: a writer that deleted an "incomplete leftover" which was another writer's dataset being
    written, writers interleaving their chunks, or a loser failing instead of reading the winner's dataset.
    """
    root = f"{s3_bucket}/store"
    results = race(_prepare, [(root, 0)] * n)
    expected = _build(0)
    store = DatasetStore(root)
    assert store.list() == ["sims"]
    ds = store.open("sims")
    np.testing.assert_array_equal(ds.load("flux"), expected["arrays"]["flux"])
    np.testing.assert_array_equal(ds.load("ivar"), expected["arrays"]["ivar"])
    assert list(ds.meta["object_id"]) == list(expected["meta"]["object_id"])
    # every process returned that very dataset: one writer stored it, the others read it
    assert {r.get("error") for r in results} == {None}
    assert {(r["hash"], r["created"]) for r in results} == {(ds.attrs["content_hash"], ds.attrs["created"])}
    assert {r["flux_sum"] for r in results} == {float(expected["arrays"]["flux"].sum())}
    store.fs.invalidate_cache()
    assert store.fs.find(f"{store._path}/.claim-sims") == []  # the winner released its claim


def test_concurrent_writers_of_different_content_fail_clearly(s3_bucket):
    """Two builds that disagree on what a name holds: one stores it, the other gets a clear error, nothing mixed.

    Two threads of one process (the claim is the same across threads and processes; threads start in no time).
    """
    root = f"{s3_bucket}/store"
    barrier = threading.Barrier(2)
    results: dict[int, dict[str, Any]] = {}

    def prepare(seed: int) -> None:
        results[seed] = _prepare(lambda: barrier.wait(timeout=60), root, seed)

    threads = [threading.Thread(target=prepare, args=(seed,)) for seed in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = {seed: r["error"] for seed, r in results.items() if "error" in r}
    stored = [seed for seed, r in results.items() if "error" not in r]
    assert len(errors) == 1 and len(stored) == 1, results
    assert "another writer with different content" in next(iter(errors.values()))
    np.testing.assert_array_equal(DatasetStore(root).open("sims").load("flux"), _build(stored[0])["arrays"]["flux"])


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_crashed_writers_claim_is_taken_over(where, tmp_path, request, monkeypatch, caplog):
    """A claim whose writer died (and its half-written group) blocks the name only until the claim is stale."""
    root = str(tmp_path / "store") if where == "local" else f"{request.getfixturevalue('s3_bucket')}/store"
    store = DatasetStore(root)
    kwargs = _build(0)
    claim = {"token": "dead", "created": time.time(), "host": "elsewhere", "pid": 1}
    store.fs.makedirs(f"{store._path}/.claim-sims", exist_ok=True)
    store.fs.pipe_file(f"{store._path}/.claim-sims/1.json", json.dumps(claim).encode())
    leftover = zarr.open_group(f"{root}/sims", mode="w")
    leftover.create_array("junk", data=np.zeros(3))
    monkeypatch.setattr(store_mod, "CLAIM_STALE_S", 1.0)
    with caplog.at_level("INFO"):
        ds = store.write("sims", kwargs.pop("arrays"), kwargs.pop("meta"), **kwargs)
    # it waited while the claim looked alive, then took it over (generation 2) and replaced the leftover
    assert "its claim by elsewhere was" in caplog.text and "removing incomplete dataset 'sims'" in caplog.text
    assert "being written by another writer (host elsewhere, pid 1, claimed" in caplog.text  # not a silent wait
    assert store.list() == ["sims"] and ds.fields == ["flux", "ivar"] and "junk" not in ds.group
    store.fs.invalidate_cache()
    assert store.fs.find(f"{store._path}/.claim-sims") == []
    if where == "local":  # nothing but the dataset is left in the folder
        assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["sims"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_writer_taken_over_leaves_its_successors_dataset_alone(where, tmp_path, request, monkeypatch):
    """A writer frozen (SIGSTOP, a suspended VM: it renews nothing) for ``CLAIM_STALE_S`` is presumed crashed and
    taken over. When it resumes, it must neither replace nor delete the dataset its successor stored meanwhile: it
    raises, and the successor's rows stay."""
    root = str(tmp_path / "store") if where == "local" else f"{request.getfixturevalue('s3_bucket')}/store"
    monkeypatch.setattr(store_mod, "CLAIM_STALE_S", 0.5)
    monkeypatch.setattr(store_mod.Lease, "kept", lambda self: contextlib.nullcontext())  # frozen: no renewal
    late, first = _build(1), _build(0)
    started, go, outcome = threading.Event(), threading.Event(), {}

    def blocks():  # the late writer stalls after its claim, before its first block
        started.set()
        go.wait(60)
        yield late["arrays"], late["meta"]

    def write_late() -> None:
        try:
            DatasetStore(root).write_blocks("sims", blocks(), n_rows=N_ROWS, modality="spectra", chunk_rows=512)
        except store_mod.StellarDataError as err:
            outcome["error"] = str(err)

    thread = threading.Thread(target=write_late)
    thread.start()
    assert started.wait(60)
    time.sleep(0.6)  # its claim is now stale
    DatasetStore(root).write("sims", first["arrays"], first["meta"], modality="spectra", chunk_rows=512)
    go.set()
    thread.join(60)
    assert "another writer took it over" in outcome.get("error", ""), outcome
    store = DatasetStore(root)
    assert store.list() == ["sims"]
    np.testing.assert_array_equal(store.open("sims").load("flux"), first["arrays"]["flux"])
    store.fs.invalidate_cache()
    assert store.fs.find(f"{store._path}/.claim-sims") == []


def test_a_write_longer_than_the_stale_time_keeps_its_claim(tmp_path, monkeypatch):
    """A live writer renews its claim while it writes, so a write longer than ``CLAIM_STALE_S`` (a large store built
    block by block) is not taken over: the second writer waits for it and gets a clear error (other content)."""
    monkeypatch.setattr(store_mod, "CLAIM_STALE_S", 0.4)
    root, slow, quick = str(tmp_path / "store"), _build(1), _build(0)
    started, outcome = threading.Event(), {}

    def blocks():  # 1.5 s of writing: several times the stale time
        started.set()
        for s in range(0, N_ROWS, 300):
            time.sleep(0.3)
            yield {k: v[s : s + 300] for k, v in slow["arrays"].items()}, slow["meta"].iloc[s : s + 300]

    def write_slowly() -> None:
        outcome["ds"] = DatasetStore(root).write_blocks("sims", blocks(), n_rows=N_ROWS, modality="spectra")

    thread = threading.Thread(target=write_slowly)
    thread.start()
    assert started.wait(60)
    time.sleep(0.2)
    with pytest.raises(store_mod.StellarDataError, match="stored meanwhile by another writer with different content"):
        DatasetStore(root).write("sims", quick["arrays"], quick["meta"], modality="spectra")
    thread.join(60)
    assert "ds" in outcome
    np.testing.assert_array_equal(DatasetStore(root).open("sims").load("flux"), slow["arrays"]["flux"])
