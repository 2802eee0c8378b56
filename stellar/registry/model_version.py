"""One stored version of a model: its manifest, read access to its files, and the objects rebuilt from them.

A version folder holds ``manifest.json`` (name, version, class names, targets, inputs, preprocessing,
fingerprint, files), ``checkpoints/<file>`` (the run's best checkpoint or booster file(s)), ``config.yaml`` and
``config_resolved.yaml`` (the training config as composed and resolved: the server rebuilds the model from the
latter), ``calibrator.json`` (``BaseProbCalibrator.to_dict()``, absent when the run had none),
``interval_calibrator.json`` (``BaseIntervalCalibrator.to_dict()``, absent in versions from before interval
calibration or without regression targets), ``reference.npz`` (the training reference of the monitor, absent in
versions from before monitoring), ``metrics.json`` and ``MODEL_CARD.md``. Only ``stellar.*`` (and
``torch.*``) ``_target_``s in those files are ever instantiated.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stellar.errors import StellarDataError, StellarValueError
from stellar.registry.store import CARD, MANIFEST, RegistryStore

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from stellar.evaluation.calibration import BaseIntervalCalibrator, BaseProbCalibrator
    from stellar.monitoring import TrainingReference


@dataclass(frozen=True)
class ModelVersion:
    """One stored version: its manifest and read access to its files.

    Attributes
    ----------
    registry : RegistryStore
        The registry it belongs to (a :class:`~stellar.registry.ModelRegistry`).
    name : str
    version : int
    manifest : dict
    """

    registry: RegistryStore
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
        # named by content, keeping the file name: loaders tell a checkpoint (.ckpt) from a booster by its suffix
        cache = Path(tempfile.gettempdir()) / "stellar-registry-cache" / "sha256" / digest / Path(rel).name
        if not cache.is_file():
            data = self.read_bytes(rel)
            if hashlib.sha256(data).hexdigest() != digest:
                raise StellarDataError(f"{self.tag}: {rel} does not match the SHA-256 its manifest records")
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{uuid.uuid4().hex[:8]}")
            tmp.write_bytes(data)
            os.replace(tmp, cache)
        return cache

    def _fetch_folder(self, folder: str) -> Path:
        """A local copy of every file of this version under ``folder`` (for artifacts made of several files).

        The copy is named by the hashes of its files, not by ``name-vN``: two registries (or a version number
        claimed again after a crash) may hold different files under the same name and version."""
        files = {rel: h for rel, h in self.manifest.get("files", {}).items() if rel.startswith(f"{folder}/")}
        key = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
        out = Path(tempfile.gettempdir()) / "stellar-registry-cache" / f"{self.name}-{folder}-{key}"
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

    def interval_calibrator(self) -> BaseIntervalCalibrator | None:
        """The regression interval calibrator fitted on the validation part, or ``None`` (then the model's own σ)."""
        from stellar.evaluation.calibration import BaseIntervalCalibrator

        if "interval_calibrator.json" not in self.files:
            return None
        return BaseIntervalCalibrator.from_dict(json.loads(self.read_text("interval_calibrator.json")))

    def reference(self) -> TrainingReference:
        """The training reference the monitor compares against (``reference.npz``); a clear error for versions
        registered before monitoring."""
        from stellar.monitoring import REFERENCE_FILE, TrainingReference

        if REFERENCE_FILE not in self.files:
            raise StellarDataError(
                f"{self.tag} has no {REFERENCE_FILE} (registered before monitoring): register a new run"
            )
        return TrainingReference.from_bytes(self.read_bytes(REFERENCE_FILE))

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
            # the weights come from the checkpoint
            for key in ("optimizer", "scheduler", "pretrained", "pretrained_modality"):
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
