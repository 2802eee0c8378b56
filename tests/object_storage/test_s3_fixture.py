"""The local S3 API the object-storage tests run against: a real S3 protocol, conditional writes included."""

from __future__ import annotations

import fsspec
import pytest


def test_round_trip_and_exclusive_create(s3_bucket: str) -> None:
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    path = f"{s3_bucket[5:]}/a/b.txt"
    fs.pipe_file(path, b"first")
    assert fs.cat_file(path) == b"first"
    assert fs.ls(f"{s3_bucket[5:]}/a", detail=False) == [path]
    # what a claim relies on: an exclusive create (If-None-Match: *) fails when the key exists
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"second", mode="create")
    assert fs.cat_file(path) == b"first"
