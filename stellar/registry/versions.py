"""The model registry: immutable, versioned model artifacts and movable aliases.

A version is written once and never torn or overwritten, on a local disk and on object stores alike (where there
is no atomic rename). A writer first claims a number ``N``: it creates ``versions/v<N>/.claim.json`` holding a
unique token, exclusively (a conditional PUT on S3, a hard link locally: see :mod:`stellar.utils.claims`), and
moves on to ``N + 1`` when another writer holds it. Only the claim's holder writes under ``v<N>/``; it creates
``manifest.json`` last, exclusively again, with the same token. A version is complete when its manifest exists and
carries its claim's token; anything else (a crash between claim and manifest) is ignored by readers and skipped by
writers, so a crashed writer costs a number, never a block. Versions written before claims (a manifest and no
claim) stay complete. An alias is one small file replaced atomically (see :mod:`stellar.registry.store`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stellar._version import __version__
from stellar.errors import StellarDataError, StellarValueError
from stellar.registry.cards import default_card
from stellar.registry.model_version import ModelVersion
from stellar.registry.store import _VERSION_RE, CARD, CLAIM, LATEST, MANIFEST, RegistryStore, validate_name
from stellar.utils.claims import claim_payload, create_exclusive, read_jsons
from stellar.utils.names import is_valid_name

log = logging.getLogger(__name__)

#: numbers a registration tries before it gives up (each failure is a number another writer claimed)
MAX_CLAIMS = 1000


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _complete(manifest: Mapping[str, Any] | None, claim: Mapping[str, Any] | None) -> bool:
    """A version is complete when its manifest exists and carries its claim's token (or, from before claims, neither
    has one)."""
    return manifest is not None and manifest.get("claim") == (claim or {}).get("token")


class ModelRegistry(RegistryStore):
    """Versions and aliases of named models under one root (path or fsspec URL).

    Examples
    --------
    >>> reg = ModelRegistry("memory://doctest-registry")
    >>> v = reg.register("demo", {"checkpoints/model.bin": b"weights"}, {"class_names": ["A", "B"]})
    >>> v.tag, reg.resolve("demo", "latest")
    ('demo:v1', 1)
    >>> reg.set_alias("demo", "production", 1)
    1
    >>> reg.get("demo", "production").class_names
    ['A', 'B']
    """

    def __repr__(self) -> str:
        return f"ModelRegistry({self.root!r})"

    # ---- reading -----------------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Names of the models with at least one complete version."""
        self.fs.invalidate_cache(self._path)  # other processes may have registered models since we last listed
        if not self.fs.exists(self._path):
            return []
        names = [Path(p).name for p in self.fs.ls(self._path, detail=False)]
        return sorted(n for n in names if is_valid_name(n) and self.versions(n))

    def versions(self, name: str) -> list[int]:
        """Complete versions of ``name``, ascending (claimed numbers without their manifest are ignored)."""
        pairs = {
            v: (f"{self._vpath(name, v)}/{MANIFEST}", f"{self._vpath(name, v)}/{CLAIM}") for v in self._numbers(name)
        }
        files = read_jsons(self.fs, [path for pair in pairs.values() for path in pair])  # concurrently on S3
        return [v for v, (manifest, claim) in pairs.items() if _complete(files[manifest], files[claim])]

    def _numbers(self, name: str) -> list[int]:
        """Every number under ``versions/``, ascending: complete, being written, or left by a crash."""
        vdir = f"{self._mpath(name)}/versions"
        self.fs.invalidate_cache(vdir)  # another process may have claimed a number since we last listed
        if not self.fs.exists(vdir):
            return []
        found = (re.fullmatch(r"v([0-9]+)", Path(p).name) for p in self.fs.ls(vdir, detail=False))
        return sorted(int(m.group(1)) for m in found if m)

    def _complete(self, name: str, version: int) -> bool:
        """Whether ``version`` is complete (see :func:`_complete`); two small reads, not every version's."""
        manifest, claim = f"{self._vpath(name, version)}/{MANIFEST}", f"{self._vpath(name, version)}/{CLAIM}"
        files = read_jsons(self.fs, [manifest, claim])
        return _complete(files[manifest], files[claim])

    def aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}`` of ``name``."""
        adir = f"{self._mpath(name)}/aliases"
        self.fs.invalidate_cache(adir)
        if not self.fs.exists(adir):
            return {}
        out = {}
        for p in self.fs.ls(adir, detail=False):
            stem = Path(p).name
            if stem.endswith(".json") and is_valid_name(stem[:-5]):
                out[stem[:-5]] = self._read_alias(name, stem[:-5])
        return dict(sorted(out.items()))

    def _read_alias(self, name: str, alias: str) -> int:
        try:
            with self.fs.open(self._apath(name, alias), "rb") as f:
                return int(json.loads(f.read())["version"])
        except FileNotFoundError as err:
            raise StellarValueError(f"model {name!r} has no alias {alias!r}; it has {self._alias_names(name)}") from err
        except (ValueError, KeyError, TypeError) as err:
            raise StellarDataError(f"alias {alias!r} of model {name!r} is corrupt") from err

    def _alias_names(self, name: str) -> list[str]:
        adir = f"{self._mpath(name)}/aliases"
        if not self.fs.exists(adir):
            return []
        return sorted(Path(p).name[:-5] for p in self.fs.ls(adir, detail=False) if str(p).endswith(".json"))

    def resolve(self, name: str, ref: str | int | None = LATEST) -> int:
        """The version number that ``ref`` names: ``"latest"``/``None``, a number (``3``, ``"v3"``) or an alias."""
        m = _VERSION_RE.match(str(ref))
        number = ref if isinstance(ref, int) else int(m.group(1)) if m else None
        if number is not None and self._complete(name, number):  # two small reads, not every version's
            return number
        versions = self.versions(name)
        if not versions:
            raise StellarValueError(f"unknown model {name!r}: registry {self.root!r} has {self.models()}")
        if ref is None or ref == LATEST:
            return versions[-1]
        if number is not None:
            raise StellarValueError(f"model {name!r} has no version {ref!r}; it has {versions}")
        return self._read_alias(name, validate_name(ref, "alias"))

    def get(self, name: str, ref: str | int | None = LATEST) -> ModelVersion:
        """One version of ``name`` (see :meth:`resolve` for ``ref``)."""
        v = self.resolve(name, ref)
        with self.fs.open(f"{self._vpath(name, v)}/{MANIFEST}", "rb") as f:
            manifest = json.loads(f.read())
        return ModelVersion(self, name, v, manifest)

    # ---- writing -----------------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        files: Mapping[str, bytes | str | os.PathLike[str]],
        manifest: Mapping[str, Any] | None = None,
        card: str | None = None,
        primary: str | None = None,
    ) -> ModelVersion:
        """Store a new version of ``name`` under a number claimed for this call alone; returns it.

        Concurrent calls (threads, processes, machines sharing an object store) get distinct numbers, and each
        version becomes visible complete or not at all (see the module docstring).

        Parameters
        ----------
        name : str
            Model name.
        files : mapping of str to bytes or path
            Relative path inside the version (``checkpoints/epoch_003.ckpt``) → content or a local file to copy.
        manifest : mapping, optional
            JSON-serialisable description (class names, targets, preprocessing, fingerprint…).
        card : str, optional
            Model card (markdown); a minimal one is written when omitted.
        primary : str, optional
            The file that holds the model (default: the first one under ``checkpoints/``).
        """
        validate_name(name, "model name")
        rels = [self._validate_rel(r) for r in files]
        if primary is None:
            primary = next((r for r in rels if r.startswith("checkpoints/")), None)
        body = {k: v for k, v in dict(manifest or {}).items() if k not in ("files", "version", "name", "claim")}
        json.dumps(body)  # fail before writing anything if the manifest is not JSON-serialisable
        token = uuid.uuid4().hex
        version = self._claim(name, token)
        vpath = self._vpath(name, version)
        written: list[str] = []
        try:
            digests = {}
            for rel, src in zip(rels, files.values(), strict=True):
                written.append(f"{vpath}/{rel}")
                digests[rel] = self._put(written[-1], src)
            full = {
                "name": name,
                "version": version,
                "created": _now(),
                "code_version": __version__,
                **body,
                "artifact": {**dict(body.get("artifact", {})), "primary": primary},
            }
            text = card if card is not None else default_card(full)
            written.append(f"{vpath}/{CARD}")
            digests[CARD] = self._put(written[-1], text.encode())
            full["files"] = digests
            full["claim"] = token
            payload = json.dumps(full, indent=2, default=str).encode()
            if not create_exclusive(self.fs, f"{vpath}/{MANIFEST}", payload):  # last: the version is complete
                raise StellarDataError(f"{name}:v{version} got a manifest from another writer despite our claim")
        except BaseException:
            for path in written:  # ours alone (we hold the claim); the claim stays, so the number is skipped
                with contextlib.suppress(OSError):
                    self.fs.rm_file(path)
            raise
        log.info("registered %s:v%d in %s", name, version, self.root)
        return self.get(name, version)

    def _claim(self, name: str, token: str) -> int:
        """Claim the lowest free number above every existing one for the writer ``token``; returns it."""
        version = (self._numbers(name) or [0])[-1] + 1
        for _ in range(MAX_CLAIMS):
            vpath = self._vpath(name, version)
            self.fs.makedirs(vpath, exist_ok=True)
            if create_exclusive(self.fs, f"{vpath}/{CLAIM}", claim_payload(token)):
                return version
            version += 1  # another writer holds this number (or crashed holding it)
        raise StellarDataError(f"could not claim a new version of {name!r} in {self.root!r} in {MAX_CLAIMS} tries")

    def set_alias(self, name: str, alias: str, ref: str | int) -> int:
        """Point ``alias`` of ``name`` at the version ``ref`` names (atomically); returns that version."""
        validate_name(alias, "alias")
        if alias == LATEST or _VERSION_RE.match(alias):
            raise StellarValueError(f"alias {alias!r} is reserved (it reads as a version reference)")
        version = self.resolve(name, ref)
        payload = json.dumps({"version": version, "updated": _now()}).encode()
        self._replace(self._apath(name, alias), payload)
        log.info("alias %s/%s -> v%d", name, alias, version)
        return version
