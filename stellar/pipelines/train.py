"""``run(cfg)`` behind ``python train.py``: compose objects from the config, fit, test, and save what a run leaves.

A run directory holds ``config_resolved.yaml``, ``split_audit.json``, ``metrics.json``, ``checkpoints/`` and the
TensorBoard event files. Tests call :func:`run` with a composed config.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from stellar.data.datamodules import StellarDataModule
from stellar.errors import StellarConfigError
from stellar.evaluation.metrics import summarise_outputs

log = logging.getLogger(__name__)


def _instantiate_dict(node: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a named collection (callbacks, loggers); ``None`` gives nothing."""
    if not node:
        return []
    return [instantiate(v) for v in node.values() if v is not None and "_target_" in v]


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{key}/"))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v
        else:
            out[key] = str(v)
    return out


def predict(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule) -> dict[str, np.ndarray]:
    """Model outputs (physical units) on the datamodule's predict part, concatenated, with row ``index``."""
    batches = cast(list[dict[str, torch.Tensor]], trainer.predict(model, datamodule=datamodule) or [])
    keys = list(batches[0]) if batches else []
    return {
        k: torch.cat([b[k] for b in batches]).float().numpy()
        if k != "index"
        else torch.cat([b[k] for b in batches]).numpy()
        for k in keys
    }


def score_part(outputs: Mapping[str, np.ndarray], dm: StellarDataModule, targets: list[str]) -> dict[str, Any]:
    """Numeric summary (accuracy, MAE, median error…) of outputs against the stored labels of their rows."""
    idx = outputs["index"]
    labels = dm.meta["label"].to_numpy()[idx]
    truths = {t: dm.meta[t].to_numpy(dtype=float)[idx] for t in targets}
    return summarise_outputs(outputs, labels, truths, targets)


def _pretrain(cfg: DictConfig, model: L.LightningModule, split: Any, output_dir: Path) -> dict[str, float]:
    """First stage: fit ``model`` on ``cfg.pretrain.datamodule`` (e.g. the simulator) for a few epochs."""
    pcfg = cfg.pretrain
    dm = instantiate(pcfg.datamodule, split=split)
    dm.setup("fit")
    if list(dm.class_names) != list(getattr(model, "class_names", [])):
        raise StellarConfigError("pretrain.datamodule must use the same class_names as datamodule")
    trainer = instantiate(
        cfg.trainer,
        max_epochs=pcfg.max_epochs,
        logger=L.pytorch.loggers.TensorBoardLogger(save_dir=str(output_dir), name="tensorboard", version="pretrain"),
        callbacks=[L.pytorch.callbacks.TQDMProgressBar(refresh_rate=5)],
        enable_checkpointing=False,
    )
    log.info("pretraining on %s for %d epochs", dm.dataset_name, pcfg.max_epochs)
    trainer.fit(model, datamodule=dm)
    return {f"pretrain/{k}": float(v) for k, v in trainer.callback_metrics.items()}


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train (and test) the configured model. Returns ``(metrics, objects)``."""
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    split = instantiate(cfg.split) if cfg.get("split") else None
    dm: StellarDataModule = instantiate(cfg.datamodule, split=split)
    dm.setup("fit")
    if dm.split_result is not None:
        dm.split_result.save_audit(output_dir / "split_audit.json")
    model = instantiate(cfg.model, class_names=dm.class_names, target_stats=dm.target_stats)
    unknown = sorted(set(model.targets) - set(dm.targets))
    if unknown:
        raise StellarConfigError(f"model targets {unknown} are not provided by the datamodule (it has {dm.targets})")

    metrics: dict[str, Any] = {}
    if cfg.get("pretrain"):
        metrics.update(_pretrain(cfg, model, split, output_dir))

    callbacks: list[Callback] = _instantiate_dict(cfg.get("callbacks"))
    loggers: list[Logger] = _instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    hparams = _flat(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    for lg in loggers:
        lg.log_hyperparams(hparams)

    trainer.fit(model, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    ckpt_cb = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
    metrics["best_checkpoint"] = best

    if cfg.get("test") and len(dm.part("test")):
        trainer.test(model, datamodule=dm, ckpt_path=best, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
        outputs = predict(trainer, model, dm)
        summary = score_part(outputs, dm, list(model.targets))
        metrics["test_summary"] = summary
        scalars = {f"test/{head}/{k}": v for head, s in summary.items() for k, v in s.items()}
        for lg in loggers:
            lg.log_metrics(scalars, step=trainer.global_step)
        _log_summary(summary)

    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return metrics, {"model": model, "datamodule": dm, "trainer": trainer, "cfg": cfg}


def _log_summary(summary: Mapping[str, Mapping[str, float]]) -> None:
    for head, s in summary.items():
        log.info("test %s: %s", head, ", ".join(f"{k}={v:.4g}" for k, v in s.items()))
