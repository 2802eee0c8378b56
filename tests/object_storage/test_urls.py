"""The URL helper (stellar.utils.urls) on a local folder, in memory and on the local S3 API."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest

from stellar.utils import urls


@pytest.fixture
def memory_folder() -> str:
    folder = f"memory://urls-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{folder[9:]}/b.csv", b"b")
    fs.pipe_file(f"{folder[9:]}/a.csv", b"a")
    fs.pipe_file(f"{folder[9:]}/sub/c.csv", b"c")
    fs.pipe_file(f"{folder[9:]}/sub/d.txt", b"d")
    return folder


def test_join_and_basename_keep_the_spelling_given():
    assert urls.join("s3://bucket/root/", "a", "b.npz") == "s3://bucket/root/a/b.npz"
    assert urls.join("relative/dir", "x.csv") == "relative/dir/x.csv"
    assert urls.join("/", "x") == "/x"
    assert urls.basename("s3://bucket/root/a.csv") == "a.csv" and urls.basename("gs://b/folder/") == "folder"


def test_listing_reading_and_kinds_in_memory(memory_folder):
    assert urls.glob(memory_folder, "*.csv") == [f"{memory_folder}/a.csv", f"{memory_folder}/b.csv"]
    assert urls.glob(memory_folder, "*/*.csv") == [f"{memory_folder}/sub/c.csv"]
    assert urls.find(memory_folder) == ["a.csv", "b.csv", "sub/c.csv", "sub/d.txt"]
    assert urls.read_bytes(urls.join(memory_folder, "sub", "c.csv")) == b"c"
    assert urls.is_dir(urls.join(memory_folder, "sub")) and not urls.is_file(urls.join(memory_folder, "sub"))
    assert urls.is_file(urls.join(memory_folder, "a.csv")) and not urls.is_dir(urls.join(memory_folder, "a.csv"))
    assert not urls.is_file(urls.join(memory_folder, "missing.csv"))
    assert not urls.is_local(memory_folder) and urls.display(memory_folder) == memory_folder
    fs, path = urls.url_to_fs(urls.join(memory_folder, "a.csv"))
    remote = urls.spelled(fs, path)  # the protocol back on a remote path, naming the same file
    assert remote.startswith("memory://") and urls.url_to_fs(remote)[1] == path and urls.read_bytes(remote) == b"a"
    assert urls.spelled(fsspec.filesystem("file"), "/data/a.csv") == "/data/a.csv"  # a local path stays a path


def test_local_paths_are_local_and_displayed_absolute(tmp_path, monkeypatch):
    (tmp_path / "f.txt").write_bytes(b"local")
    monkeypatch.chdir(tmp_path)
    assert urls.is_local("f.txt") and urls.display("f.txt") == str(tmp_path.resolve() / "f.txt")
    assert urls.display(f"file://{tmp_path}/f.txt") == str(tmp_path.resolve() / "f.txt")
    with urls.local_file("f.txt") as p:  # a local file is handed over as itself, never copied
        assert p == tmp_path.resolve() / "f.txt"
    assert (tmp_path / "f.txt").read_bytes() == b"local"
    assert urls.glob(str(tmp_path), "*.txt") == [str(tmp_path / "f.txt")]


def test_local_file_of_a_remote_file_is_a_copy_removed_afterwards(memory_folder):
    with urls.local_file(urls.join(memory_folder, "sub", "d.txt")) as p:
        assert isinstance(p, Path) and p.name == "d.txt" and p.read_bytes() == b"d"
        copy = p
    assert not copy.exists() and not copy.parent.exists()


def test_s3_listing_sees_what_another_client_wrote_after_a_first_listing(s3_bucket):
    folder = f"{s3_bucket}/batches"
    other = fsspec.filesystem("s3", skip_instance_cache=True)  # another process's client
    other.pipe_file(f"{folder[5:]}/one.parquet", b"1")
    assert urls.glob(folder, "*.parquet") == [f"{folder}/one.parquet"]
    other.pipe_file(f"{folder[5:]}/two.parquet", b"2")
    # s3fs caches listings per instance: a stale cache would hide the second file
    assert urls.glob(folder, "*.parquet") == [f"{folder}/one.parquet", f"{folder}/two.parquet"]
    assert urls.find(s3_bucket) == ["batches/one.parquet", "batches/two.parquet"]
    with urls.open_url(f"{folder}/two.parquet") as f:
        assert f.read() == b"2"
    assert urls.is_dir(folder) and urls.is_file(f"{folder}/one.parquet") and not urls.is_local(folder)
