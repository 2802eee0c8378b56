"""Concurrent registrations of one model from separate processes, on a local folder and on the local S3 API."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable

import pytest

from stellar.registry import ModelRegistry, main
from tests.racing import race

FILES = ("checkpoints/model.ckpt", "config_resolved.yaml", "calibrator.json", "metrics.json")


def _register(ready: Callable[[], None], root: str) -> tuple[int, int]:
    """One writer: its pid in every file, so a file of another writer in its version is detectable."""
    pid = os.getpid()
    files = {rel: f"{rel} of writer {pid}\n".encode() * 2000 for rel in FILES}  # ~60-90 kB each
    reg = ModelRegistry(root)
    reg.models()  # open the connection before the race
    listing = ModelRegistry._numbers

    def slow_listing(self: ModelRegistry, name: str) -> list[int]:
        # an object store's latency between listing the versions and claiming one, in this process alone: every
        # writer lists before any claims, so the race is certain instead of left to the scheduler of 2 cores
        out = listing(self, name)
        time.sleep(0.3)
        return out

    ModelRegistry._numbers = slow_listing  # type: ignore[method-assign]
    ready()
    return reg.register("m", files, {"writer": pid}).version, pid


def _check_race(root: str, n: int, capsys: pytest.CaptureFixture[str]) -> None:
    results = race(_register, [(root,)] * n)
    got = sorted(v for v, _ in results)
    assert got == list(range(1, n + 1)), f"versions returned: {got}"
    reg = ModelRegistry(root)
    assert reg.versions("m") == list(range(1, n + 1)) and reg.resolve("m") == n
    writer_of = {v: pid for v, pid in results}
    for v in range(1, n + 1):
        mv = reg.get("m", v)
        pid = mv.manifest["writer"]
        assert pid == writer_of[v] and mv.version == v
        assert sorted(mv.files) == sorted([*FILES, "MODEL_CARD.md"])
        for rel in FILES:
            data = mv.read_bytes(rel)
            assert hashlib.sha256(data).hexdigest() == mv.manifest["files"][rel], f"v{v}/{rel} was overwritten"
            assert data == f"{rel} of writer {pid}\n".encode() * 2000, f"v{v}/{rel} is another writer's"
    capsys.readouterr()
    assert main(["--root", root, "versions", "m"]) == 0  # the CLI lists the same versions
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == [f"v{v}" for v in range(1, n + 1)]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_concurrent_registrations_get_distinct_complete_versions(where, tmp_path, request, capsys):
    """8 processes released together register the same model: versions 1..8, each whole and its writer's own.

    What it catches: without the claim (an exclusive create of ``v<N>/.claim.json`` before any file), writers pick
    the same ``N`` and interleave their files (a torn version: one writer's manifest beside another's checkpoint),
    overwrite each other's version, or fail on the manifest another writer created first.
    """
    root = str(tmp_path / "registry") if where == "local" else f"{request.getfixturevalue('s3_bucket')}/registry"
    _check_race(root, 8, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_many_concurrent_registrations(where, tmp_path, request, capsys):
    """The same with 24 processes: more writers collide on each number."""
    root = str(tmp_path / "registry") if where == "local" else f"{request.getfixturevalue('s3_bucket')}/registry"
    _check_race(root, 24, capsys)
