"""Where a registry's files live and how they are written: names, the layout under the root, hashed and atomic writes.

Layout under the registry root (a local path or an fsspec URL)::

    <name>/versions/v<N>/        one version, written once (see :mod:`stellar.registry.versions`)
        .claim.json              the number's claim: the writer's token, created exclusively before anything else
        manifest.json            created exclusively and last, carrying the same token: the version is complete
    <name>/aliases/<alias>.json  ``{"version": N, …}``: ``production``, ``staging``…

A file of a version is written once (:meth:`RegistryStore._put`, which returns its SHA-256); an alias is one small
file replaced atomically (:meth:`RegistryStore._replace`: ``os.replace`` locally, a single PUT on object stores).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from stellar.errors import StellarValueError
from stellar.utils import urls
from stellar.utils.claims import publish_local
from stellar.utils.names import is_valid_name, validate_name

DEFAULT_ROOT = "registry"
MANIFEST = "manifest.json"
#: the claim on a version number, created exclusively before any other file of the version
CLAIM = ".claim.json"
CARD = "MODEL_CARD.md"
_VERSION_RE = re.compile(r"^v?([0-9]{1,9})$")
#: reserved reference meaning "the highest version"
LATEST = "latest"


class RegistryStore:
    """The files under one registry root (path or fsspec URL): their paths and how they are written.

    Parameters
    ----------
    root : str or path
        A local folder or an fsspec URL (``memory://…``, ``s3://…``); ``""`` means :data:`DEFAULT_ROOT`.
    """

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT):
        self.root = str(root).rstrip("/") or DEFAULT_ROOT
        self.fs, self._path = urls.url_to_fs(self.root)
        self.is_local = urls.is_local(self.fs)
        if self.is_local:
            self._path = str(Path(self._path).resolve())

    # ---- paths -------------------------------------------------------------------------------------------
    def _mpath(self, name: str) -> str:
        return f"{self._path}/{validate_name(name, 'model name')}"

    def _vpath(self, name: str, version: int) -> str:
        return f"{self._mpath(name)}/versions/v{int(version)}"

    def _version_url(self, name: str, version: int) -> str:
        return f"{self.root}/{name}/versions/v{int(version)}"

    def _apath(self, name: str, alias: str) -> str:
        return f"{self._mpath(name)}/aliases/{validate_name(alias, 'alias')}.json"

    # ---- writing -----------------------------------------------------------------------------------------
    @staticmethod
    def _validate_rel(rel: str) -> str:
        parts = str(rel).split("/")
        if not parts or any(not is_valid_name(p) for p in parts) or rel in (MANIFEST, CARD):
            raise StellarValueError(f"file name {rel!r} in a version is not allowed (relative, no '..', not reserved)")
        return str(rel)

    def _put(self, path: str, src: bytes | str | os.PathLike[str]) -> str:
        """Write one file; returns its SHA-256."""
        h = hashlib.sha256()
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as out:
            if isinstance(src, bytes):
                h.update(src)
                out.write(src)
            else:
                with open(src, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
        return h.hexdigest()

    def _replace(self, path: str, payload: bytes) -> None:
        """Replace one small file atomically: readers see the old or the new content, never a part."""
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        if self.is_local:
            publish_local(path, payload, os.replace)
        else:
            self.fs.pipe_file(path, payload)  # a single PUT: readers see the old or the new alias
