"""The raw cache: answers exactly as downloaded, content-addressed, indexed by query key.

Layout under ``root``::

    blobs/<sha[:2]>/<sha256>     the bytes as downloaded (identical answers are stored once)
    keys/<key[:2]>/<key>.json    {"sha256", "size", "url", "params", "fetched"} for one query

Both are written to a temporary name and renamed, blob first, so a crash leaves at worst an orphan blob and
never a key that points at a partial file. A read re-hashes the blob and runs the caller's check; a blob that
fails either is deleted (with its key) and reported as a miss, so it is fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RawCache:
    """A folder of raw answers keyed by query (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def _key_path(self, key: str) -> Path:
        return self.root / "keys" / key[:2] / f"{key}.json"

    def _blob_path(self, sha: str) -> Path:
        return self.root / "blobs" / sha[:2] / sha

    def entry(self, key: str) -> dict[str, Any] | None:
        """The index record of ``key``, or ``None``."""
        p = self._key_path(key)
        try:
            return dict(json.loads(p.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def get(self, key: str, check: Callable[[bytes], None] | None = None) -> Path | None:
        """Path of the cached body of ``key`` when present and intact, else ``None`` (a bad copy is removed)."""
        rec = self.entry(key)
        if rec is None:
            return None
        blob = self._blob_path(str(rec["sha256"]))
        try:
            body = blob.read_bytes()
        except FileNotFoundError:
            self._key_path(key).unlink(missing_ok=True)
            return None
        problem = None
        if len(body) != rec.get("size") or hashlib.sha256(body).hexdigest() != rec["sha256"]:
            problem = "size or SHA-256 differs from the index"
        elif check is not None:
            try:
                check(body)
            except Exception as err:  # any failed check means: fetch again
                problem = str(err)
        if problem:
            log.warning("cached answer for %s is corrupt (%s); it will be fetched again", rec.get("url"), problem)
            self._key_path(key).unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
            return None
        return blob

    def put(self, key: str, body: bytes, info: Mapping[str, Any]) -> Path:
        """Store ``body`` (already validated) under ``key`` and return the blob's path."""
        sha = hashlib.sha256(body).hexdigest()
        blob = self._blob_path(sha)
        if not blob.exists() or blob.stat().st_size != len(body):
            _atomic_write(blob, body)
        rec = {**dict(info), "sha256": sha, "size": len(body), "fetched": datetime.now(timezone.utc).isoformat()}
        _atomic_write(self._key_path(key), json.dumps(rec).encode())
        return blob

    def keys(self) -> list[str]:
        """Every query key with an index record."""
        return sorted(p.stem for p in (self.root / "keys").glob("*/*.json"))
