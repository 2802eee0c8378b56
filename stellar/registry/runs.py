"""Registration of a finished training run (what ``train.py register=true`` calls): its best model, config,
calibrator and metrics become a new registry version."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stellar.errors import StellarDataError
from stellar.registry.cards import fingerprint
from stellar.registry.model_version import ModelVersion
from stellar.registry.store import DEFAULT_ROOT, validate_name
from stellar.registry.versions import ModelRegistry

if TYPE_CHECKING:
    from omegaconf import DictConfig


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
        The run folder (``checkpoints/``, ``config.yaml``, ``config_resolved.yaml``, ``calibrator.json``,
        ``interval_calibrator.json``…).
    objects : mapping
        ``model``, ``datamodule``, ``calibrator`` and ``interval_calibrator`` of the run.
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
    for rel in (
        "config.yaml",
        "config_resolved.yaml",
        "calibrator.json",
        "interval_calibrator.json",
        "split_audit.json",
        "reference.npz",
    ):
        if (run / rel).is_file():
            files[rel] = run / rel
    model, dm = objects.get("model"), objects.get("datamodule")
    calibrator, interval_calibrator = objects.get("calibrator"), objects.get("interval_calibrator")
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
        "data_fingerprint": fingerprint(dm),
        "calibrator": type(calibrator).__name__ if calibrator is not None else None,
        "interval_calibrator": type(interval_calibrator).__name__ if interval_calibrator is not None else None,
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
