"""The exclusive create every claim rests on, on each filesystem we write to, and its refusal elsewhere."""

from __future__ import annotations

import threading
import time

import fsspec
import pytest
from fsspec import AbstractFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from stellar.errors import StellarConfigError
from stellar.registry import ModelRegistry
from stellar.utils.claims import Lease, create_exclusive


@pytest.fixture(params=["local", "memory", "s3"])
def fs_and_dir(request, tmp_path) -> tuple[AbstractFileSystem, str]:
    if request.param == "local":
        return fsspec.filesystem("file"), str(tmp_path)
    if request.param == "memory":
        return fsspec.filesystem("memory"), f"/claims-{tmp_path.name}"
    bucket = request.getfixturevalue("s3_bucket")
    return fsspec.filesystem("s3", skip_instance_cache=True), bucket[len("s3://") :]


def test_create_exclusive_never_overwrites(fs_and_dir):
    fs, folder = fs_and_dir
    fs.makedirs(folder, exist_ok=True)
    path = f"{folder}/claim.json"
    assert create_exclusive(fs, path, b"first") is True
    assert create_exclusive(fs, path, b"second") is False
    assert fs.cat_file(path) == b"first"
    assert fs.find(folder) == [path]  # and no temporary file left


def _slow_memory_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    """fsspec's memory ``mode="create"`` is ``exists`` then a write; a slow ``exists`` lets threads interleave them
    on every run (without our lock every thread would win), instead of when the GIL happens to switch there."""
    real = MemoryFileSystem.exists

    def slow(self: MemoryFileSystem, path: str, **kwargs: object) -> bool:
        out = real(self, path, **kwargs)
        time.sleep(0.005)
        return out

    monkeypatch.setattr(MemoryFileSystem, "exists", slow)


def test_threads_racing_for_one_path_have_one_winner(fs_and_dir, monkeypatch):
    """16 threads of one process: exactly one creates the file (memory:// included, through its process lock)."""
    fs, folder = fs_and_dir
    _slow_memory_exists(monkeypatch)
    fs.makedirs(folder, exist_ok=True)
    barrier, wins = threading.Barrier(16), []

    def claim(i: int) -> None:
        barrier.wait()
        if create_exclusive(fs, f"{folder}/x", str(i).encode()):
            wins.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and fs.cat_file(f"{folder}/x") == str(wins[0]).encode()


def test_a_filesystem_without_exclusive_create_is_refused():
    class Plain(AbstractFileSystem):
        protocol = "plain"

    with pytest.raises(StellarConfigError, match=r"\['plain'\] cannot create a file exclusively"):
        create_exclusive(Plain(), "/a", b"x")


def test_lease_is_exclusive_until_released_or_stale(tmp_path):
    fs = fsspec.filesystem("file")
    a, b = Lease(fs, str(tmp_path / "name"), 3600.0), Lease(fs, str(tmp_path / "name"), 3600.0)
    assert a.acquire() and not b.acquire() and a.generation == 1
    a.release()
    assert b.acquire() and b.generation == 1
    c = Lease(fs, str(tmp_path / "name"), 0.0)  # everything is stale to it: it takes over as generation 2
    assert c.acquire() and c.generation == 2 and not Lease(fs, str(tmp_path / "name"), 3600.0).acquire()
    b.release()  # the writer presumed dead finishes late: it leaves the new holder's claim alone
    assert not Lease(fs, str(tmp_path / "name"), 3600.0).acquire()
    c.release()
    assert not (tmp_path / "name").exists() and Lease(fs, str(tmp_path / "name"), 3600.0).acquire()


def test_threads_registering_on_memory_get_distinct_versions(monkeypatch):
    _slow_memory_exists(monkeypatch)
    reg = ModelRegistry("memory://claims-threads")
    barrier, got = threading.Barrier(12), []

    def register(i: int) -> None:
        barrier.wait()
        got.append(reg.register("m", {"checkpoints/w.bin": str(i).encode()}, {"i": i}).version)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 13)) and reg.versions("m") == list(range(1, 13))
    for v in got:
        mv = reg.get("m", v)
        assert mv.read_bytes("checkpoints/w.bin") == str(mv.manifest["i"]).encode()


def test_a_late_holder_does_not_release_a_successors_claim_with_its_number(tmp_path):
    """Taken over (b), and the taker done (c released): a new writer (d) claims the same number 1 again. The writer
    presumed dead (a, also number 1) neither thinks it still holds the name nor removes d's claim."""
    fs, folder = fsspec.filesystem("file"), str(tmp_path / "name")
    a = Lease(fs, folder, 3600.0)
    assert a.acquire() and a.held()
    c = Lease(fs, folder, 0.0)
    assert c.acquire() and not a.held() and c.held()
    c.release()
    d = Lease(fs, folder, 3600.0)
    assert d.acquire() and d.generation == a.generation == 1
    assert not a.held() and d.held()
    a.release()
    assert d.held() and not Lease(fs, folder, 3600.0).acquire()


def test_a_local_filesystem_without_hard_links_is_refused_clearly(tmp_path, monkeypatch):
    """FAT/exFAT or a FUSE mount: ``os.link`` fails with EPERM; the claim says why instead of a bare OSError, and
    leaves neither the file nor its temporary copy behind."""
    import errno
    import os

    def no_links(src: str, dst: str) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", src)

    monkeypatch.setattr(os, "link", no_links)
    with pytest.raises(StellarConfigError, match="without hard links"):
        create_exclusive(fsspec.filesystem("file"), str(tmp_path / "claim.json"), b"x")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StellarConfigError, match="without hard links"):
        ModelRegistry(tmp_path / "registry").register("m", {"checkpoints/w.bin": b"w"})


def _retried_put(fs: AbstractFileSystem, only: str = "") -> None:
    """The conditional PUT stores the object but its answer is lost, and the client's retry gets 412 (exists)."""
    real = fs.pipe_file

    def pipe_file(path: str, data: bytes, **kwargs: object) -> None:
        real(path, data, **kwargs)
        if kwargs.get("mode") == "create" and path.endswith(only):
            raise FileExistsError(path)

    fs.pipe_file = pipe_file  # type: ignore[method-assign]


def test_a_retried_exclusive_create_that_had_succeeded_is_ours(s3_bucket):
    """A retry after a lost answer must not make the writer think another one created its file: a registration
    then deleted its own files after its manifest was stored (a complete version with no checkpoint)."""
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    _retried_put(fs)
    assert create_exclusive(fs, f"{s3_bucket[5:]}/x.json", b'{"token": "mine"}') is True
    assert create_exclusive(fs, f"{s3_bucket[5:]}/x.json", b'{"token": "theirs"}') is False
    reg = ModelRegistry(f"{s3_bucket}/registry")
    _retried_put(reg.fs, only="manifest.json")
    v = reg.register("m", {"checkpoints/w.bin": b"weights"})
    assert ModelRegistry(f"{s3_bucket}/registry").get("m", v.version).read_bytes("checkpoints/w.bin") == b"weights"
