"""Paths or fsspec URLs: the one place where stellar turns either into a file system and reads from it.

Every folder or file argument (a source's ``data_dir``, the dataset store, the registry, a run's reference, a
request log) may be a local path or an fsspec URL (``s3://bucket/key``, ``gs://…``, ``memory://…``); fsspec does
the work. Credentials are never ours to hold: each file system reads its own usual environment or configuration
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_ENDPOINT_URL`` or ``~/.aws`` for S3,
``GOOGLE_APPLICATION_CREDENTIALS`` for GCS…), and no stellar config file names them.

URLs keep the spelling they were given: :func:`join` and :func:`glob` return ``s3://…`` for an ``s3://`` folder and a
plain path for a local one, so messages and provenance show what the user typed.

Examples
--------
>>> import fsspec
>>> fsspec.filesystem("memory").pipe_file("/urls-doctest/a.csv", b"x\\n1\\n")
>>> folder = "memory://urls-doctest"
>>> join(folder, "a.csv"), is_file(join(folder, "a.csv")), is_dir(folder)
('memory://urls-doctest/a.csv', True, True)
>>> glob(folder, "*.csv"), read_bytes(join(folder, "a.csv"))
(['memory://urls-doctest/a.csv'], b'x\\n1\\n')
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

#: a path or an fsspec URL
PathOrURL = str | os.PathLike[str]


def url_to_fs(url: PathOrURL) -> tuple[fsspec.AbstractFileSystem, str]:
    """The file system of ``url`` and the path on it (credentials from that file system's environment)."""
    return fsspec.core.url_to_fs(str(url))


def is_local(url_or_fs: PathOrURL | fsspec.AbstractFileSystem) -> bool:
    """True when a URL (or a file system) is the local disk."""
    fs = url_or_fs if isinstance(url_or_fs, fsspec.AbstractFileSystem) else url_to_fs(url_or_fs)[0]
    return isinstance(fs, LocalFileSystem)


def spelled(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """``path`` on ``fs`` as a user would write it: a plain path on the local disk, else a URL with its protocol
    (``bucket/key`` on S3 → ``s3://bucket/key``)."""
    return path if is_local(fs) else str(fs.unstrip_protocol(path))


def join(url: PathOrURL, *parts: str) -> str:
    """``url`` with ``parts`` appended by ``/``, in the spelling of ``url`` (a path stays a path)."""
    return posixpath.join(str(url).rstrip("/") or "/", *parts)


def basename(url: PathOrURL) -> str:
    """The last part of a path or URL (``s3://b/x/y.csv`` → ``y.csv``)."""
    return posixpath.basename(str(url).rstrip("/"))


def is_file(url: PathOrURL) -> bool:
    """True when a file is at ``url``."""
    fs, path = url_to_fs(url)
    return bool(fs.isfile(path))


def is_dir(url: PathOrURL) -> bool:
    """True when a folder (on object stores: a key prefix with keys below it) is at ``url``."""
    fs, path = url_to_fs(url)
    return bool(fs.isdir(path))


def read_bytes(url: PathOrURL) -> bytes:
    """The whole content of the file at ``url``."""
    fs, path = url_to_fs(url)
    return bytes(fs.cat_file(path))


def open_url(url: PathOrURL, mode: str = "rb", compression: str | None = None) -> Any:
    """An opened-on-enter file of ``url`` (``with open_url(u) as f: …``); ``compression="infer"`` decompresses by
    suffix (``.gz``…). Seekable, so ``np.load`` and astropy read from it directly."""
    return fsspec.open(str(url), mode, compression=compression)


def glob(url: PathOrURL, pattern: str) -> list[str]:
    """The entries of folder ``url`` whose relative path matches ``pattern`` (``*.csv``, ``*/requests-*.parquet``),
    sorted, as URLs in the spelling of ``url``."""
    fs, path = url_to_fs(url)
    fs.invalidate_cache(path)  # another process (a server, an upload) may have written since the last listing
    root = path.rstrip("/")
    return sorted(join(url, posixpath.relpath(p, root)) for p in fs.glob(f"{root}/{pattern}"))


def find(url: PathOrURL) -> list[str]:
    """Relative paths (``/``-separated, sorted) of every file under folder ``url``, at any depth."""
    fs, path = url_to_fs(url)
    fs.invalidate_cache(path)
    root = path.rstrip("/")
    return sorted(posixpath.relpath(p, root) for p in fs.find(root))


def display(url: PathOrURL) -> str:
    """How provenance records a location: a local path made absolute, a URL as given (never a cached copy)."""
    fs, path = url_to_fs(url)
    return str(Path(path).resolve()) if is_local(fs) else str(url)


@contextmanager
def local_file(url: PathOrURL) -> Iterator[Path]:
    """A local path of the file at ``url`` for libraries that need one: the file itself when it is local, else a
    temporary copy (with the same name) removed on exit."""
    if is_local(url):
        yield Path(url_to_fs(url)[1])
        return
    folder = Path(tempfile.mkdtemp(prefix="stellar-url-"))
    try:
        copy = folder / basename(url)
        with open_url(url) as src, open(copy, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)
