"""Helpers of the serving tests: untrained models registered in a few seconds, a batch-recording API."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from stellar.registry import ModelRegistry, ModelVersion, _modality
from stellar.serving.api import SpectralAPI
from tests.conftest import REPO


def register_untrained(
    root: str | Path, model: str = "spectral_cnn", datamodule: str = "spectra", *overrides: str
) -> ModelVersion:
    """Register a randomly initialised model of the given configs, as ``train.py register=true`` would store it.

    The checkpoint holds ``state_dict`` and ``hyper_parameters`` like a Lightning one; the preprocessing is the
    datamodule config's own (nothing is trained and no dataset is built).
    """
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=[f"model={model}", f"datamodule={datamodule}", *overrides])
    torch.manual_seed(0)
    class_names = list(cfg.datamodule.get("class_names") or _mk_classes())
    targets = list(cfg.model.targets)
    stats = {t: (3.7, 0.1) if t == "teff" else (0.0, 1.0) for t in targets}
    net = instantiate(cfg.model, class_names=class_names, target_stats=stats)
    buf = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "hyper_parameters": dict(net.hparams)}, buf)
    prep = instantiate(cfg.datamodule.preprocessing)
    params = {"_target_": f"{type(prep).__module__}.{type(prep).__qualname__}", **prep.to_dict()}
    cfg_yaml = OmegaConf.to_yaml(cfg, resolve=False).replace("${hydra:runtime.output_dir}", "/tmp")
    resolved = OmegaConf.create(cfg_yaml)
    files = {
        "checkpoints/epoch_000.ckpt": buf.getvalue(),
        "config_resolved.yaml": OmegaConf.to_yaml(resolved, resolve=True).encode(),
    }
    manifest = {
        "modality": _modality(cfg),
        "class_names": class_names,
        "targets": targets,
        "inputs": list(net.inputs),
        "preprocessing": params,
    }
    return ModelRegistry(root).register(str(cfg.model.name), files, manifest)


def _mk_classes() -> list[str]:
    from stellar.data.labels import MK_CLASSES

    return list(MK_CLASSES)


def wait_ready(client: Any, timeout: float = 180.0) -> None:
    """Wait until every inference worker has loaded its model (``/health`` answers 200)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health").status_code == 200:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the server was not ready within {timeout} s")


class RecordingSpectralAPI(SpectralAPI):
    """Appends the number of requests of every ``predict`` call to ``$STELLAR_TEST_BATCH_LOG``."""

    def predict(self, x: Any) -> Any:
        with open(os.environ["STELLAR_TEST_BATCH_LOG"], "a") as f:
            f.write(f"{len(x) if isinstance(x, list) else 1}\n")
        return super().predict(x)
