"""Writes that never overwrite: an exclusive create on every filesystem that has an honest one, and claims on it.

Object stores have no atomic rename, so "write under a temporary name, then rename" cannot publish anything
exactly once there. What they (and local disks) have is an exclusive create: a write that fails when the key
already exists. Of several writers racing for one path through :func:`create_exclusive`, exactly one wins; the
others learn that they lost and the winner's bytes stay as written. The registry claims a version number this way
(:mod:`stellar.registry.versions`) and the dataset store claims a dataset name (:class:`Lease`, used by
:meth:`stellar.data.store.DatasetStore.write`).

Which filesystems are honest, and how:

- a local disk: the bytes go to a temporary file beside the target, which is then hard-linked to the target name
  (``link`` fails when the name exists), so the file appears whole or not at all; a disk without hard links
  (FAT/exFAT, some network and FUSE mounts) is refused;
- S3 (``s3://``, ``s3a://``): a conditional PUT (``If-None-Match: *``), honoured by AWS S3, MinIO and moto; a
  server that ignores the header gives no guarantee;
- ``memory://``: a check and a create under one process-wide lock (a memory filesystem lives in one process, and
  fsspec's own ``mode="create"`` there is a check then a write, which two threads can interleave).

Any other filesystem raises :class:`~stellar.errors.StellarConfigError` rather than write without the guarantee.
:func:`publish_local` is the local half: a temporary file flushed to disk, then linked (an exclusive create) or
renamed (an atomic replace, as the registry's aliases are) into place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from stellar.errors import StellarConfigError, StellarDataError

log = logging.getLogger(__name__)

#: protocols whose ``pipe_file(..., mode="create")`` is one conditional request on the server
NATIVE_CREATE = frozenset({"s3", "s3a"})
_MEMORY_LOCK = threading.Lock()
#: errors of ``os.link`` on a filesystem that has no hard links
_NO_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _protocols(fs: AbstractFileSystem) -> set[str]:
    proto = fs.protocol
    return {proto} if isinstance(proto, str) else set(proto)


def publish_local(path: str, data: bytes, publish: Callable[[str, str], None]) -> None:
    """Write ``data`` to a temporary file beside the local ``path``, flush it to disk, then ``publish(tmp, path)``.

    With ``os.replace`` readers see the old or the new file whole (an atomic replace); with ``os.link`` the file
    appears whole or not at all, and ``FileExistsError`` is raised when ``path`` exists (an exclusive create).
    The temporary file is removed in every case.
    """
    # hidden, so that a leftover of a killed process is skipped by readers of the folder (pyarrow datasets, listings)
    head, tail = os.path.split(path)
    tmp = os.path.join(head, f".{tail}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _create_local(path: str, data: bytes) -> bool:
    try:
        publish_local(path, data, os.link)  # link is atomic, and fails when the name exists
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in _NO_LINKS:
            raise
        # FAT/exFAT, some network and FUSE mounts: no hard links, hence no exclusive create that appears whole
        raise StellarConfigError(
            f"{os.path.dirname(path)!r} is on a filesystem without hard links ({err.strerror}), so files cannot be "
            "created there exclusively and concurrent writers could overwrite each other; put the registry and the "
            "dataset store on a local disk with hard links (ext4, xfs, apfs, ntfs…), memory:// or s3://"
        ) from err
    return True


def create_exclusive(fs: AbstractFileSystem, path: str, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; never overwrites.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        A local, S3 or memory filesystem (see the module docstring for why only these).
    path : str
        The file to create, as ``fs`` spells paths (no protocol); its parent folder must exist on a local disk.
    data : bytes
        The whole content; readers see all of it or no file. It should be unique to the writer (claims and
        manifests carry its token): a retried request that finds these very bytes counts as this writer's create.

    Returns
    -------
    bool
        True when this call created the file, False when it existed already (its content is untouched).

    Raises
    ------
    StellarConfigError
        If ``fs`` cannot create a file exclusively.

    Examples
    --------
    >>> import fsspec
    >>> fs = fsspec.filesystem("memory")
    >>> create_exclusive(fs, "/doctest-claims/a", b"first"), create_exclusive(fs, "/doctest-claims/a", b"second")
    (True, False)
    >>> fs.cat_file("/doctest-claims/a")
    b'first'
    """
    if isinstance(fs, LocalFileSystem):
        return _create_local(path, data)
    if isinstance(fs, MemoryFileSystem):
        with _MEMORY_LOCK:
            return _pipe_create(fs, path, data)
    if not _protocols(fs) & NATIVE_CREATE:
        raise StellarConfigError(
            f"filesystem {sorted(_protocols(fs))} cannot create a file exclusively, so concurrent writers could "
            f"overwrite each other; the registry and the dataset store write to a local folder, memory:// or "
            f"{sorted(NATIVE_CREATE)}"
        )
    return _pipe_create(fs, path, data)


def _pipe_create(fs: AbstractFileSystem, path: str, data: bytes) -> bool:
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        # a client that retries a PUT whose answer was lost gets "exists" for the object its first try stored:
        # that object is ours when it holds our bytes (claims and manifests carry the writer's unique token)
        try:
            return bool(fs.cat_file(path) == data)
        except FileNotFoundError:  # removed meanwhile (a claim released): not ours
            return False
    return True


def read_jsons(fs: AbstractFileSystem, paths: list[str]) -> dict[str, dict[str, Any] | None]:
    """The JSON object stored at each of ``paths`` (None where there is no such file), fetched in one go.

    It reads the objects themselves (no listing, so an s3fs listing cached before another process wrote hides
    nothing), concurrently on object stores (one fsspec ``cat`` of all the paths).

    Raises
    ------
    StellarDataError
        If a file holds something other than a JSON object.
    OSError
        If a file cannot be read for another reason than being absent.
    """
    got = fs.cat(paths, on_error="return") if paths else {}
    out: dict[str, dict[str, Any] | None] = {}
    for path in paths:
        raw = got.get(path, FileNotFoundError(path))
        if isinstance(raw, FileNotFoundError):
            out[path] = None
            continue
        if isinstance(raw, BaseException):
            raise raw
        try:
            value = json.loads(raw)
        except ValueError as err:
            raise StellarDataError(f"{path} is not valid JSON; the store is corrupt") from err
        if not isinstance(value, dict):
            raise StellarDataError(f"{path} should hold a JSON object; the store is corrupt")
        out[path] = value
    return out


def read_json(fs: AbstractFileSystem, path: str) -> dict[str, Any] | None:
    """The JSON object stored at ``path``, or None when there is no such file (see :func:`read_jsons`)."""
    return read_jsons(fs, [path])[path]


def claim_payload(token: str, **extra: Any) -> bytes:
    """The bytes of a claim: the writer's unique ``token``, the time (s since the epoch), host and pid."""
    body = {"token": token, "created": time.time(), "host": socket.gethostname(), "pid": os.getpid(), **extra}
    return json.dumps(body).encode()


@dataclass
class Lease:
    """An exclusive claim on one name that a crashed holder cannot keep forever.

    Claims are numbered files ``<folder>/<k>.json``; the holder is the writer of the highest ``k``. A claim older
    than ``stale_after`` seconds is presumed abandoned (its writer crashed), and the next writer takes over by
    creating ``k + 1``: an exclusive create again, so of several writers taking over only one succeeds.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        Where the claims live.
    folder : str
        The folder of this name's claims (as ``fs`` spells paths).
    stale_after : float
        Seconds after which a claim is presumed abandoned. A writer that works longer than this loses its claim
        unless it renews it (:meth:`renew`, or :meth:`kept` around the work).

    Examples
    --------
    >>> import fsspec
    >>> fs = fsspec.filesystem("memory")
    >>> a, b = Lease(fs, "/doctest-lease/x", 60.0), Lease(fs, "/doctest-lease/x", 60.0)
    >>> a.acquire(), b.acquire()
    (True, False)
    >>> a.release(); b.acquire()
    True
    """

    fs: AbstractFileSystem
    folder: str
    stale_after: float
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    generation: int = 0

    def _path(self, k: int) -> str:
        return f"{self.folder}/{k}.json"

    def _latest(self) -> tuple[int, dict[str, Any]]:
        k, claim = 0, {}
        while (nxt := read_json(self.fs, self._path(k + 1))) is not None:
            k, claim = k + 1, nxt
        return k, claim

    def holder(self) -> dict[str, Any]:
        """The latest claim (``token``, ``created``, ``host``, ``pid``); empty when the name is not claimed."""
        return self._latest()[1]

    def acquire(self) -> bool:
        """Take the claim; False while another writer holds a claim younger than ``stale_after``."""
        k, claim = self._latest()
        age = time.time() - float(claim.get("created", 0.0))
        if k and age < self.stale_after:
            return False
        self.fs.makedirs(self.folder, exist_ok=True)
        try:
            if not create_exclusive(self.fs, self._path(k + 1), claim_payload(self.token)):
                return False
        except FileNotFoundError:  # the previous holder's release removed the folder meanwhile: look again
            return False
        if k:
            log.warning("took over %s: its claim by %s was %.0f s old", self.folder, claim.get("host"), age)
        self.generation = k + 1
        return True

    def held(self) -> bool:
        """Whether this writer still holds the claim: the latest claim is its own (by token, not by number: after a
        takeover and its release, a new writer's claim may carry this writer's number again)."""
        return bool(self.generation) and self._latest()[1].get("token") == self.token

    def renew(self) -> bool:
        """Claim the name afresh (the next number, this writer's token) while holding it, so that a write longer than
        ``stale_after`` is not presumed crashed; False when the claim was lost (taken over)."""
        k, claim = self._latest()
        if not self.generation or claim.get("token") != self.token:
            return False
        if not create_exclusive(self.fs, self._path(k + 1), claim_payload(self.token)):
            return False  # a writer that presumed us dead took over at k + 1
        self.generation = k + 1
        return True

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        """Renew the claim every ``stale_after / 4`` s in a background thread while the body runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.stale_after / 4):
                try:
                    if not self.renew():
                        return  # lost: the writer finds out when it checks held() before publishing
                except OSError as err:  # a storage hiccup: try again at the next beat
                    log.warning("could not renew the claim %s: %s", self.folder, err)

        thread = threading.Thread(target=beat, name="stellar-claim-renewal", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def release(self) -> None:
        """Remove every claim on the name (the holder's work is done, or undone), unless another writer took the
        claim over meanwhile: its claim stays, for it to release."""
        if self.held():
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.folder, recursive=True)
        self.generation = 0
