"""The model registry: immutable, versioned model artifacts and movable aliases.

A version is complete only when its ``manifest.json`` exists. On a local disk the version is written in a
temporary folder beside ``versions/`` and renamed into place, so a crash never leaves a partial version under its
name; elsewhere (object stores) ``manifest.json`` is written last and versions without it are ignored. An alias is
one small file replaced atomically (see :mod:`stellar.registry.store` for the layout).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stellar import __version__
from stellar.errors import StellarDataError, StellarValueError
from stellar.registry.cards import default_card
from stellar.registry.model_version import ModelVersion
from stellar.registry.store import _VERSION_RE, CARD, LATEST, MANIFEST, RegistryStore, validate_name
from stellar.utils.names import is_valid_name

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
        if not self.fs.exists(self._path):
            return []
        names = [Path(p).name for p in self.fs.ls(self._path, detail=False)]
        return sorted(n for n in names if is_valid_name(n) and self.versions(n))

    def versions(self, name: str) -> list[int]:
        """Complete versions of ``name``, ascending (partial leftovers of a crash are ignored)."""
        vdir = f"{self._mpath(name)}/versions"
        if not self.fs.exists(vdir):
            return []
        out = []
        for p in self.fs.ls(vdir, detail=False):
            m = re.fullmatch(r"v([0-9]+)", Path(p).name)
            if m and self.fs.exists(f"{vdir}/{Path(p).name}/{MANIFEST}"):
                out.append(int(m.group(1)))
        return sorted(out)

    def aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}`` of ``name``."""
        adir = f"{self._mpath(name)}/aliases"
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
        versions = self.versions(name)
        if not versions:
            raise StellarValueError(f"unknown model {name!r}: registry {self.root!r} has {self.models()}")
        if ref is None or ref == LATEST:
            return versions[-1]
        m = _VERSION_RE.match(str(ref))
        if isinstance(ref, int) or m:
            v = int(ref) if isinstance(ref, int) else int(m.group(1))  # type: ignore[union-attr]
            if v not in versions:
                raise StellarValueError(f"model {name!r} has no version {ref!r}; it has {versions}")
            return v
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
        """Store a new version of ``name``, written once and atomically; returns it.

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
        body = {k: v for k, v in dict(manifest or {}).items() if k not in ("files", "version", "name")}
        json.dumps(body)  # fail before writing anything if the manifest is not JSON-serialisable
        for attempt in range(20):  # a concurrent registration may take the number first
            version = (self.versions(name) or [0])[-1] + 1 + attempt
            final = self._vpath(name, version)
            if self.fs.exists(final):
                continue
            target = f"{self._mpath(name)}/.tmp-v{version}-{uuid.uuid4().hex[:8]}" if self.is_local else final
            try:
                digests = {
                    rel: self._put(f"{target}/{rel}", src) for rel, src in zip(rels, files.values(), strict=True)
                }
                full = {
                    "name": name,
                    "version": version,
                    "created": _now(),
                    "code_version": __version__,
                    **body,
                    "artifact": {**dict(body.get("artifact", {})), "primary": primary},
                }
                text = card if card is not None else default_card(full)
                digests[CARD] = self._put(f"{target}/{CARD}", text.encode())
                full["files"] = digests
                self._put(f"{target}/{MANIFEST}", json.dumps(full, indent=2, default=str).encode())  # last
                if self.is_local:
                    Path(final).parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.rename(target, final)  # atomic; fails if another writer took this number
                    except OSError:
                        shutil.rmtree(target, ignore_errors=True)
                        continue
            except BaseException:
                if self.is_local:
                    shutil.rmtree(target, ignore_errors=True)
                raise
            log.info("registered %s:v%d in %s", name, version, self.root)
            return self.get(name, version)
        raise StellarDataError(f"could not allocate a new version of {name!r} in {self.root!r}")

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
