"""The model registry: immutable, versioned model artifacts and movable aliases.

Layout under the registry root (a local path or an fsspec URL)::

    <name>/versions/v<N>/        one version, written once
        manifest.json            name, version, class names, targets, inputs, preprocessing, fingerprint, files
        checkpoints/<file>       the run's best checkpoint (or booster file(s))
        config.yaml              the composed training config (interpolations intact)
        config_resolved.yaml     the resolved training config (what the server rebuilds the model from)
        calibrator.json          ``BaseProbCalibrator.to_dict()`` (absent when the run had none)
        metrics.json             the run's metrics
        MODEL_CARD.md            a short model card
    <name>/aliases/<alias>.json  ``{"version": N, …}``: ``production``, ``staging``…

A version is complete only when its ``manifest.json`` exists. On a local disk the version is written in a
temporary folder beside ``versions/`` and renamed into place, so a crash never leaves a partial version under its
name; elsewhere (object stores) ``manifest.json`` is written last and versions without it are ignored. An alias is
one small file replaced atomically (``os.replace`` locally; a single PUT on object stores).

Command line (``registry.root=`` or ``--root`` picks the registry; default ``$STELLAR_REGISTRY`` or ``registry``)::

    python -m stellar.registry list
    python -m stellar.registry versions spectral_cnn
    python -m stellar.registry card spectral_cnn production
    python -m stellar.registry alias spectral_cnn production 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec

from stellar import __version__
from stellar.errors import StellarConfigError, StellarDataError, StellarValueError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from stellar.evaluation.calibration import BaseProbCalibrator

log = logging.getLogger(__name__)

DEFAULT_ROOT = "registry"
MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_VERSION_RE = re.compile(r"^v?([0-9]{1,9})$")
#: reserved reference meaning "the highest version"
LATEST = "latest"


def validate_name(value: Any, what: str = "name") -> str:
    """A model or alias name: letters, digits, ``_-.``, starting with a letter or digit, no ``..``.

    Examples
    --------
    >>> validate_name("spectral_cnn")
    'spectral_cnn'
    """
    if not isinstance(value, str) or not _NAME_RE.match(value) or ".." in value:
        raise StellarValueError(
            f"{what} {value!r} is not allowed: use up to 128 letters, digits, '_', '-', '.' "
            "starting with a letter or digit (no path separators or '..')"
        )
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ModelVersion:
    """One stored version: its manifest and read access to its files.

    Attributes
    ----------
    registry : ModelRegistry
    name : str
    version : int
    manifest : dict
    """

    registry: ModelRegistry
    name: str
    version: int
    manifest: dict[str, Any] = field(repr=False)

    @property
    def url(self) -> str:
        return self.registry._version_url(self.name, self.version)

    @property
    def tag(self) -> str:
        """``name:vN``."""
        return f"{self.name}:v{self.version}"

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.manifest.get("class_names", [])]

    @property
    def targets(self) -> list[str]:
        return [str(t) for t in self.manifest.get("targets", [])]

    @property
    def files(self) -> list[str]:
        return list(self.manifest.get("files", {}))

    def read_bytes(self, rel: str) -> bytes:
        """Bytes of one file of this version (``rel`` must be one of :attr:`files`)."""
        if rel not in self.manifest.get("files", {}) and rel != MANIFEST:
            raise StellarValueError(f"file {rel!r} is not part of {self.tag}; it has {self.files}")
        with self.registry.fs.open(f"{self.registry._vpath(self.name, self.version)}/{rel}", "rb") as f:
            return bytes(f.read())

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode()

    def local_path(self, rel: str) -> Path:
        """A local path of one file: the file itself on a local registry, else a verified cached copy."""
        data_path = f"{self.registry._vpath(self.name, self.version)}/{rel}"
        if rel not in self.manifest.get("files", {}):
            raise StellarValueError(f"file {rel!r} is not part of {self.tag}; it has {self.files}")
        if self.registry.is_local:
            return Path(data_path)
        digest = self.manifest["files"][rel]
        cache = Path(tempfile.gettempdir()) / "stellar-registry-cache" / digest
        if not cache.is_file():
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{uuid.uuid4().hex[:8]}")
            tmp.write_bytes(self.read_bytes(rel))
            os.replace(tmp, cache)
        return cache

    def _fetch_folder(self, folder: str) -> Path:
        """A local copy of every file of this version under ``folder`` (for artifacts made of several files)."""
        out = Path(tempfile.gettempdir()) / "stellar-registry-cache" / f"{self.name}-v{self.version}-{folder}"
        out.mkdir(parents=True, exist_ok=True)
        for rel in self.files:
            if rel.startswith(f"{folder}/") and not (out / Path(rel).name).is_file():
                tmp = out / f".{Path(rel).name}.{uuid.uuid4().hex[:8]}"
                tmp.write_bytes(self.read_bytes(rel))
                os.replace(tmp, out / Path(rel).name)
        return out

    @property
    def card(self) -> str:
        return self.read_text(CARD)

    @cached_property
    def metrics(self) -> dict[str, Any]:
        return json.loads(self.read_text("metrics.json")) if "metrics.json" in self.files else {}

    def calibrator(self) -> BaseProbCalibrator | None:
        """The probability calibrator fitted on the validation part, or ``None``."""
        from stellar.evaluation.calibration import BaseProbCalibrator

        if "calibrator.json" not in self.files:
            return None
        return BaseProbCalibrator.from_dict(json.loads(self.read_text("calibrator.json")))

    def preprocessing(self) -> Any:
        """The training preprocessing object, rebuilt from its stored parameters (``None`` if none stored)."""
        from hydra.utils import instantiate

        params = self.manifest.get("preprocessing")
        if not params:
            return None
        _check_targets(params, "preprocessing")
        return instantiate(params)

    def training_config(self) -> DictConfig:
        from omegaconf import DictConfig, OmegaConf

        cfg = OmegaConf.create(self.read_text("config_resolved.yaml"))
        if not isinstance(cfg, DictConfig):
            raise StellarDataError(f"{self.tag}: config_resolved.yaml does not hold a mapping")
        return cfg

    def load_model(self) -> Any:
        """Rebuild the model from the resolved config and load its weights (``weights_only=True``).

        Lightning checkpoints (``*.ckpt``) are loaded into the configured module; any other artifact (an
        XGBoost booster…) is handed to the configured estimator's ``load(path)``.
        """
        import torch
        from hydra.utils import instantiate
        from omegaconf import OmegaConf, open_dict

        cfg = self.training_config()
        model_cfg = cfg.get("model")
        if model_cfg is None:
            raise StellarDataError(f"{self.tag}: its config has no model section")
        with open_dict(model_cfg):  # training-only callables are not needed (nor trusted) for inference
            for key in ("optimizer", "scheduler"):
                if key in model_cfg:
                    model_cfg[key] = None
        _check_targets(OmegaConf.to_container(model_cfg), "model")
        primary = self.manifest.get("artifact", {}).get("primary")
        if not primary:
            raise StellarDataError(f"{self.tag}: its manifest names no primary artifact")
        path = self.local_path(primary)
        if path.suffix == ".ckpt":
            state = torch.load(path, map_location="cpu", weights_only=True)
            hp = state.get("hyper_parameters", {})
            model = instantiate(model_cfg, class_names=hp.get("class_names"), target_stats=hp.get("target_stats"))
            model.load_state_dict(state["state_dict"])
            model.eval()
            return model
        if not self.registry.is_local:  # an estimator reads the files beside its primary one: fetch them all
            path = self._fetch_folder("checkpoints") / Path(primary).name
        model = instantiate(model_cfg, class_names=self.class_names)
        loader = getattr(model, "load", None)
        if not callable(loader):
            raise StellarDataError(f"{self.tag}: {type(model).__name__} cannot load the artifact {primary!r}")
        loaded = loader(str(path))
        return model if loaded is None else loaded


def _check_targets(node: Any, what: str) -> None:
    """Refuse to instantiate anything outside ``stellar`` (and torch) from an artifact file."""
    if isinstance(node, Mapping):
        target = node.get("_target_")
        if target is not None and not str(target).startswith(("stellar.", "torch.")):
            raise StellarDataError(f"{what} of a registry version names _target_ {target!r}; only stellar.* is allowed")
        for v in node.values():
            _check_targets(v, what)
    elif isinstance(node, list):
        for v in node:
            _check_targets(v, what)


class ModelRegistry:
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

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_ROOT):
        self.root = str(root).rstrip("/") or DEFAULT_ROOT
        self.fs, self._path = fsspec.core.url_to_fs(self.root)
        self.is_local = isinstance(self.fs, fsspec.implementations.local.LocalFileSystem)
        if self.is_local:
            self._path = str(Path(self._path).resolve())

    def __repr__(self) -> str:
        return f"ModelRegistry({self.root!r})"

    # ---- paths -------------------------------------------------------------------------------------------
    def _mpath(self, name: str) -> str:
        return f"{self._path}/{validate_name(name, 'model name')}"

    def _vpath(self, name: str, version: int) -> str:
        return f"{self._mpath(name)}/versions/v{int(version)}"

    def _version_url(self, name: str, version: int) -> str:
        return f"{self.root}/{name}/versions/v{int(version)}"

    def _apath(self, name: str, alias: str) -> str:
        return f"{self._mpath(name)}/aliases/{validate_name(alias, 'alias')}.json"

    # ---- reading -----------------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Names of the models with at least one complete version."""
        if not self.fs.exists(self._path):
            return []
        names = [Path(p).name for p in self.fs.ls(self._path, detail=False)]
        return sorted(n for n in names if _NAME_RE.match(n) and self.versions(n))

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
            if stem.endswith(".json") and _NAME_RE.match(stem[:-5]):
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

    @staticmethod
    def _validate_rel(rel: str) -> str:
        parts = str(rel).split("/")
        if not parts or any(not _NAME_RE.match(p) or ".." in p for p in parts) or rel in (MANIFEST, CARD):
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

    def set_alias(self, name: str, alias: str, ref: str | int) -> int:
        """Point ``alias`` of ``name`` at the version ``ref`` names (atomically); returns that version."""
        validate_name(alias, "alias")
        if alias == LATEST or _VERSION_RE.match(alias):
            raise StellarValueError(f"alias {alias!r} is reserved (it reads as a version reference)")
        version = self.resolve(name, ref)
        payload = json.dumps({"version": version, "updated": _now()}).encode()
        path = self._apath(name, alias)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        if self.is_local:
            tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(payload)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            self.fs.pipe_file(path, payload)  # a single PUT: readers see the old or the new alias
        log.info("alias %s/%s -> v%d", name, alias, version)
        return version


def default_card(manifest: Mapping[str, Any]) -> str:
    """A short markdown model card from a manifest."""
    lines = [f"# {manifest.get('name')} v{manifest.get('version')}", ""]
    lines.append(f"- created: {manifest.get('created')} (stellar {manifest.get('code_version')})")
    if manifest.get("model_target"):
        lines.append(f"- model: `{manifest['model_target']}`, inputs {manifest.get('inputs')}")
    if manifest.get("class_names"):
        lines.append(f"- classes: {', '.join(manifest['class_names'])}")
    if manifest.get("targets"):
        lines.append(f"- regression targets: {', '.join(manifest['targets'])} (mean and standard deviation)")
    fp = manifest.get("data_fingerprint") or {}
    if fp:
        lines.append(f"- trained on: `{fp.get('dataset')}` (content hash `{str(fp.get('content_hash'))[:16]}`)")
    if manifest.get("calibrator"):
        lines.append(f"- calibration: {manifest['calibrator']} fitted on the validation part")
    summary = manifest.get("test_summary") or {}
    cls = summary.get("classification") or {}
    if cls:
        nan = float("nan")
        acc, f1 = cls.get("accuracy", nan), cls.get("macro_f1", nan)
        before, after = cls.get("ece_before", nan), cls.get("ece_after", nan)
        lines.append(
            f"- test: accuracy {acc:.3f}, macro-F1 {f1:.3f}, ECE {before:.3f} → {after:.3f} (n={cls.get('n')})"
        )
    for t, r in (summary.get("regression") or {}).items():
        lines.append(f"- test {t}: MAE {r.get('mae', float('nan')):.4g}, RMSE {r.get('rmse', float('nan')):.4g}")
    if manifest.get("run_dir"):
        lines.append(f"- run: `{manifest['run_dir']}`")
    lines += [
        "",
        "Limitations: trained on the dataset above; inputs far from it (other surveys, resolutions, wavelength or",
        "time coverage) are extrapolation. Probabilities are calibrated on the validation part only.",
    ]
    return "\n".join(lines) + "\n"


# ---- registration of a training run ------------------------------------------------------------------------


def _fingerprint(dm: Any) -> dict[str, Any]:
    """What the model was trained on: dataset name and content hash, rows per part, hash of the training ids."""
    fp: dict[str, Any] = {}
    dataset = getattr(dm, "dataset", None)
    name = getattr(dm, "dataset_name", None) if dataset is None else dataset.name
    fp["dataset"] = name
    attrs = getattr(dataset, "attrs", {}) or {}
    fp["content_hash"] = attrs.get("content_hash")
    split = getattr(dm, "split_result", None)
    if split is not None:
        fp["rows"] = {k: len(v) for k, v in split.parts().items()}
        meta = getattr(dm, "meta", None)
        if meta is not None and "object_id" in meta:
            ids = sorted(str(x) for x in meta["object_id"].to_numpy()[split.train])
            fp["train_ids_sha256"] = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    return fp


def _preprocessing_params(cfg: DictConfig, dm: Any) -> dict[str, Any] | None:
    from omegaconf import OmegaConf

    prep = getattr(dm, "preprocessing", None)
    if prep is not None and callable(getattr(prep, "to_dict", None)):
        params = dict(prep.to_dict())
        params.setdefault("_target_", f"{type(prep).__module__}.{type(prep).__qualname__}")  # rebuilt by instantiate
        return params
    node = cfg.datamodule.get("preprocessing") if cfg.get("datamodule") else None
    return OmegaConf.to_container(node, resolve=True) if node is not None else None  # type: ignore[return-value]


def register_run(
    cfg: DictConfig,
    run_dir: str | os.PathLike[str],
    objects: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Register the best model of a finished training run (what ``train.py register=true`` calls).

    Parameters
    ----------
    cfg : DictConfig
        The run's config; ``cfg.registry.root`` is the registry, ``cfg.model.name`` the model name and
        ``cfg.registry.aliases`` the aliases to point at the new version.
    run_dir : path
        The run folder (``checkpoints/``, ``config.yaml``, ``config_resolved.yaml``, ``calibrator.json``…).
    objects : mapping
        ``model``, ``datamodule`` and ``calibrator`` of the run.
    metrics : mapping, optional
        The run's metrics (default: its ``metrics.json``); ``best_checkpoint`` names the artifact. A ``.ckpt`` is
        stored alone; any other file (an estimator's JSON) is stored with every file of its folder (boosters).
    """
    from omegaconf import OmegaConf

    run = Path(run_dir)
    reg_cfg = cfg.get("registry") or {}
    registry = ModelRegistry(reg_cfg.get("root") or DEFAULT_ROOT)
    name = validate_name(str(reg_cfg.get("name") or cfg.model.get("name") or ""), "model name (model.name)")
    if metrics is None:
        metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    files: dict[str, bytes | str | os.PathLike[str]] = {}
    best = Path(str(metrics.get("best_checkpoint") or ""))
    primary = None
    if best.suffix == ".ckpt" and best.is_file():
        primary = f"checkpoints/{best.name}"
        files[primary] = best
    else:
        folder = best.parent if best.is_file() else run / "checkpoints"
        for p in sorted(folder.iterdir()) if folder.is_dir() else []:
            if p.is_file() and p.name != "last.ckpt":
                files[f"checkpoints/{p.name}"] = p
        primary = f"checkpoints/{best.name}" if best.is_file() else None
    if not files:
        raise StellarDataError(f"run {run} has no checkpoint to register (checkpoints/ is empty)")
    files["metrics.json"] = json.dumps(dict(metrics), indent=2, default=float).encode()
    for rel in ("config.yaml", "config_resolved.yaml", "calibrator.json", "split_audit.json"):
        if (run / rel).is_file():
            files[rel] = run / rel
    model, dm = objects.get("model"), objects.get("datamodule")
    calibrator = objects.get("calibrator")
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True) if cfg.get("model") else {}
    manifest = {
        "modality": _modality(cfg),
        "model_target": (model_cfg or {}).get("_target_") if isinstance(model_cfg, dict) else None,
        "class_names": list(getattr(model, "class_names", None) or getattr(dm, "class_names", []) or []),
        "targets": list(getattr(model, "targets", []) or []),
        "inputs": list(getattr(model, "inputs", ()) or ()),
        "preprocessing": _preprocessing_params(cfg, dm),
        # feature-table models (SED): the band order and feature columns the model was fitted on
        "bands": list(getattr(dm, "stored_bands", None) or []),
        "feature_names": list(getattr(dm, "feature_names", None) or []),
        "data_fingerprint": _fingerprint(dm),
        "calibrator": type(calibrator).__name__ if calibrator is not None else None,
        "test_summary": metrics.get("test_summary"),
        "run_dir": str(run.resolve()),
        "tags": list(cfg.get("tags") or []),
        "seed": cfg.get("seed"),
    }
    version = registry.register(name, files, manifest, primary=primary)
    for alias in reg_cfg.get("aliases") or []:
        registry.set_alias(name, str(alias), version.version)
    return version


def _modality(cfg: DictConfig) -> str | None:
    target = str((cfg.get("datamodule") or {}).get("_target_", ""))
    m = re.search(r"datamodules\.([a-z_]+)\.", target)
    return m.group(1) if m else None


# ---- command line --------------------------------------------------------------------------------------------


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m stellar.registry", description="List and manage registered models.")
    p.add_argument("--root", default=None, help="registry root (path or fsspec URL); or registry.root=…")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="models with their versions and aliases")
    s = sub.add_parser("versions", help="versions of one model")
    s.add_argument("name")
    s = sub.add_parser("card", help="the model card of one version")
    s.add_argument("name")
    s.add_argument("ref", nargs="?", default=LATEST, help="version (3, v3), alias or 'latest'")
    s = sub.add_parser("show", help="the manifest of one version (JSON)")
    s.add_argument("name")
    s.add_argument("ref", nargs="?", default=LATEST)
    s = sub.add_parser("alias", help="point an alias at a version")
    s.add_argument("name")
    s.add_argument("alias")
    s.add_argument("ref", help="version (3, v3), another alias or 'latest'")
    root = None
    rest = []
    for a in argv:  # the Hydra-style override that train.py and serve.py take
        if a.startswith("registry.root="):
            root = a.split("=", 1)[1]
        else:
            rest.append(a)
    ns = p.parse_args(rest)
    ns.root = ns.root or root or os.environ.get("STELLAR_REGISTRY") or DEFAULT_ROOT
    return ns


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m stellar.registry``; returns the exit status."""
    ns = _parse(sys.argv[1:] if argv is None else argv)
    reg = ModelRegistry(ns.root)
    try:
        if ns.cmd == "list":
            models = reg.models()
            if not models:
                print(f"no models in {reg.root}")
            for m in models:
                al = ", ".join(f"{a}→v{v}" for a, v in reg.aliases(m).items()) or "-"
                print(f"{m}\tversions {reg.versions(m)}\taliases {al}")
        elif ns.cmd == "versions":
            aliases = reg.aliases(ns.name)
            for v in reg.versions(ns.name):
                mv = reg.get(ns.name, v)
                tags = [a for a, av in aliases.items() if av == v]
                print(f"v{v}\t{mv.manifest.get('created')}\t{','.join(tags)}")
        elif ns.cmd == "card":
            print(reg.get(ns.name, ns.ref).card, end="")
        elif ns.cmd == "show":
            print(json.dumps(reg.get(ns.name, ns.ref).manifest, indent=2))
        elif ns.cmd == "alias":
            v = reg.set_alias(ns.name, ns.alias, ns.ref)
            print(f"{ns.name}/{ns.alias} -> v{v}")
    except (StellarValueError, StellarDataError, StellarConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
