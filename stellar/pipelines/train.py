"""``run(cfg)`` behind ``python train.py``: compose objects from the config, fit, test, and save what a run leaves.

A run directory holds ``config_resolved.yaml``, ``split_audit.json``, ``metrics.json``, ``checkpoints/`` and the
TensorBoard event files. Tests call :func:`run` with a composed config.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from stellar.data.datamodules import StellarDataModule
from stellar.errors import PreemptedError, StellarConfigError
from stellar.pipelines.common import (
    INTERVAL_CALIBRATOR_FILE,
    build_interval_calibrator,
    fit_calibrator,
    fit_interval_calibrator,
    flat_scalars,
    flatten,
    labels_of,
    predict,
    row_subsets,
    save_calibrator,
    score_outputs,
    score_subsets,
)
from stellar.pipelines.distributed import is_rank_zero, local_ranks
from stellar.pipelines.resume import IDENTITY_KEYS, drop_preemption_checkpoints, record_run_identity, resume_checkpoint

log = logging.getLogger(__name__)


def _instantiate_dict(node: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a named collection (callbacks, loggers); ``None`` gives nothing."""
    if not node:
        return []
    return [instantiate(v) for v in node.values() if v is not None and "_target_" in v]


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
    """Train the configured model, calibrate its probabilities and intervals on the validation part and score the
    test part.

    The model is a LightningModule (fitted by the configured Trainer) or an estimator (anything else with
    ``fit(train, val)``, ``predict_outputs(arrays)`` and ``save(folder)``, e.g. an XGBoost model), fitted on the
    datamodule's numpy arrays. Both are calibrated, scored, logged and saved the same way.

    With ``trainer=ddp`` every rank runs this function (:mod:`stellar.pipelines.distributed` starts them): each
    trains and predicts on its share of the rows, predictions are gathered, and only global rank 0 writes files.
    ``resume=auto`` continues a pre-empted run from its own checkpoint (:mod:`stellar.pipelines.resume`).

    Returns ``(metrics, objects)``; the run folder gets ``config.yaml`` (as composed, for evaluate.py),
    ``config_resolved.yaml``, ``split_audit.json``, ``checkpoints/``, ``calibrator.json`` (class probabilities),
    ``interval_calibrator.json`` (regression intervals) and ``metrics.json``.
    """
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)
    output_dir = Path(cfg.paths.output_dir)
    writer = is_rank_zero()  # the other ranks of a DDP run train and predict with rank 0, and write nothing
    if writer:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    split = instantiate(cfg.split) if cfg.get("split") else None
    dm: StellarDataModule = instantiate(cfg.datamodule, split=split)
    dm.setup("fit")
    if writer and dm.split_result is not None:
        dm.split_result.save_audit(output_dir / "split_audit.json")
    model = instantiate(cfg.model, class_names=dm.class_names, target_stats=dm.target_stats)
    unknown = sorted(set(model.targets) - set(dm.targets))
    if unknown:
        raise StellarConfigError(f"model targets {unknown} are not provided by the datamodule (it has {dm.targets})")

    loggers: list[Logger] = _instantiate_dict(cfg.get("logger"))
    hparams = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    metrics: dict[str, Any] = {}
    trainer: L.Trainer | None = None
    with ExitStack() as ranks:
        if isinstance(model, L.LightningModule):
            trainer = _build_trainer(cfg, loggers)
            rank_command = [sys.executable, "-m", __name__, str(output_dir / "config_resolved.yaml")]
            ranks.enter_context(local_ranks(trainer, rank_command))
            _fit_lightning(cfg, trainer, model, dm, split, output_dir, loggers, hparams, metrics)
            step = trainer.global_step
        else:
            step = _fit_estimator(cfg, model, dm, output_dir, loggers, hparams, metrics)
        calibrators = _calibrate_and_test(cfg, trainer, model, dm, output_dir, loggers, metrics, step, writer)
    calibrator, interval_calibrator = calibrators

    if writer and cfg.get("register"):  # a registry version of the best model (stellar.registry; registry.root=)
        from stellar.registry.runs import register_run

        objs = {"model": model, "datamodule": dm, "calibrator": calibrator, "interval_calibrator": interval_calibrator}
        metrics["registered"] = register_run(cfg, output_dir, objs, metrics).tag
    if writer:
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    objects = {"model": model, "datamodule": dm, "trainer": trainer, "calibrator": calibrator, "cfg": cfg}
    return metrics, {**objects, "interval_calibrator": interval_calibrator}


def _calibrate_and_test(
    cfg: DictConfig,
    trainer: L.Trainer | None,
    model: Any,
    dm: StellarDataModule,
    output_dir: Path,
    loggers: list[Logger],
    metrics: dict[str, Any],
    step: int,
    writer: bool,
) -> tuple[Any, Any]:
    """Calibrate on the validation part, make the monitor's reference and score the test part; returns the fitted
    ``(calibrator, interval_calibrator)``.

    Every rank of a DDP run comes here (predicting is collective: each rank predicts a share, all get every row);
    each then fits the same calibrators on the same, full validation outputs, and only ``writer`` saves them."""
    # calibration of class probabilities and of regression intervals: fitted on the validation part only, never on test
    calibrator = interval_calibrator = None
    val_out: dict[str, Any] | None = None
    want_probs = bool(cfg.get("calibrator") and model.class_names)
    want_intervals = bool(cfg.get("interval_calibrator") and model.targets)
    if (want_probs or want_intervals) and len(dm.part("val")):
        val_out = predict(trainer, model, dm, "val")
        if want_probs:
            calibrator = fit_calibrator(instantiate(cfg.calibrator), val_out, labels_of(val_out, dm))
            if writer:
                metrics["calibrator"] = str(save_calibrator(calibrator, output_dir))
        if want_intervals:
            unfitted = build_interval_calibrator(cfg.interval_calibrator, dm)
            interval_calibrator = fit_interval_calibrator(unfitted, val_out, dm, model, trainer)
            if writer:
                path = save_calibrator(interval_calibrator, output_dir, INTERVAL_CALIBRATOR_FILE)
                metrics["interval_calibrator"] = str(path)

    # the training reference of the monitor: the validation part's inputs, embeddings, calibrated confidences, metrics
    if writer and cfg.get("monitor_reference") and len(dm.part("val")) and (model.class_names or model.targets):
        from stellar.pipelines.monitor import reference_of

        val_out = val_out if val_out is not None else predict(trainer, model, dm, "val")
        ref = reference_of(trainer, model, dm, val_out, calibrator, interval_calibrator, cfg.monitor_reference)
        if ref is not None:
            metrics["reference"] = str(ref.save(output_dir))

    save_pretrained = getattr(model, "save_pretrained", None)  # a pretraining model leaves its encoders for fine-tuning
    if writer and callable(save_pretrained):
        metrics["pretrained"] = str(save_pretrained(output_dir))

    testing = bool(cfg.get("test") and len(dm.part("test")))
    if testing and trainer is not None:
        trainer.test(model, datamodule=dm, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    if testing and (model.class_names or model.targets):  # a model with heads to score (not a pretraining one)
        test_out = predict(trainer, model, dm, "test")
        groups = row_subsets(dm, "test", test_out)
        summary = score_outputs(test_out, dm, model.class_names, model.targets, calibrator, interval_calibrator, groups)
        subsets = score_subsets(trainer, model, dm, "test", calibrator, interval_calibrator)
        if subsets:
            summary["subsets"] = subsets
        metrics["test_summary"] = summary
        for lg in loggers:
            lg.log_metrics(flat_scalars(summary, "test/"), step=step)
        if writer:
            _log_summary(summary)
    for lg in loggers:
        lg.save()
    return calibrator, interval_calibrator


def _build_trainer(cfg: DictConfig, loggers: list[Logger]) -> L.Trainer:
    """The configured Trainer with the configured callbacks and ``loggers``."""
    callbacks: list[Callback] = _instantiate_dict(cfg.get("callbacks"))
    if not loggers:  # a learning-rate monitor has nowhere to write without a logger (Lightning refuses to start)
        dropped = [c for c in callbacks if isinstance(c, LearningRateMonitor)]
        if dropped:
            log.info("logger=none: the learning-rate monitor is left out (it needs a logger)")
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return trainer


def _fit_lightning(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: L.LightningModule,
    dm: StellarDataModule,
    split: Any,
    output_dir: Path,
    loggers: list[Logger],
    hparams: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    """Optional pretraining, then ``trainer.fit`` (resumed as ``cfg.resume`` says); loads the best checkpoint into
    ``model``.

    Raises
    ------
    PreemptedError
        When the job is stopped by ``SIGTERM``; its checkpoint is saved (``OnExceptionCheckpoint``).
    """
    if cfg.get("pretrain"):
        metrics.update(_pretrain(cfg, model, split, output_dir))
    for lg in loggers:
        lg.log_hyperparams(hparams)
    identity = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg.get(k), DictConfig) else cfg.get(k)
        for k in IDENTITY_KEYS
    }
    ckpt_path = resume_checkpoint(cfg.get("resume"), output_dir, identity)
    if is_rank_zero():
        record_run_identity(output_dir, identity)
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    except SIGTERMException as err:
        raise PreemptedError(
            f"training stopped by SIGTERM at global step {trainer.global_step} (epoch {trainer.current_epoch}); "
            f"its checkpoint is in {output_dir / 'checkpoints'}: run again in this folder with resume=auto"
        ) from err
    if is_rank_zero():
        drop_preemption_checkpoints(output_dir)
    metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    ckpt_cb = trainer.checkpoint_callback if isinstance(trainer.checkpoint_callback, ModelCheckpoint) else None
    best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
    metrics["best_checkpoint"] = best
    if best:
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])


def _fit_estimator(
    cfg: DictConfig,
    model: Any,
    dm: StellarDataModule,
    output_dir: Path,
    loggers: list[Logger],
    hparams: dict[str, Any],
    metrics: dict[str, Any],
) -> int:
    """Fit an estimator on the train part (early stopping on val), log its per-round losses and save it under
    ``checkpoints/``; returns the number of rounds (the step of the test scalars)."""
    if cfg.get("pretrain"):
        raise StellarConfigError("pretrain is only for Lightning models; this model is an estimator")
    if cfg.get("resume") not in (None, "auto", "never"):
        raise StellarConfigError("resume=<checkpoint> is only for Lightning models; this model is an estimator")
    val = dm.arrays("val") if len(dm.part("val")) else None
    start = time.perf_counter()
    metrics.update(model.fit(dm.arrays("train"), val))
    metrics["fit_seconds"] = time.perf_counter() - start
    history: dict[str, dict[str, dict[str, list[float]]]] = getattr(model, "history", {})
    n_rounds = 0
    for lg in loggers:
        lg.log_hyperparams(hparams)
        for key, parts in history.items():
            for part, series in parts.items():
                for metric, values in series.items():
                    n_rounds = max(n_rounds, len(values))
                    for i, v in enumerate(values):
                        lg.log_metrics({f"{part}/{key}_{metric}": v}, step=i)
        lg.log_metrics({"fit_seconds": metrics["fit_seconds"]}, step=0)
    metrics["best_checkpoint"] = str(model.save(output_dir / "checkpoints"))
    log.info("estimator fitted in %.1f s, saved to %s", metrics["fit_seconds"], metrics["best_checkpoint"])
    return n_rounds


def _log_summary(summary: Mapping[str, Any]) -> None:
    cls = summary.get("classification")
    if cls:
        log.info(
            "test classification: accuracy=%.4f macro_f1=%.4f ECE %.4f -> %.4f (n=%d)",
            cls["accuracy"],
            cls["macro_f1"],
            cls["ece_before"],
            cls["ece_after"],
            cls["n"],
        )
    for t, r in summary.get("regression", {}).items():
        log.info("test %s: %s", t, ", ".join(f"{k}={v:.4g}" for k, v in r.items()))
    for name, row in summary.get("subsets", {}).items():
        log.info("test with %s: %s", name, ", ".join(f"{k}={v:.4g}" for k, v in row.items()))


def main(argv: list[str] | None = None) -> None:
    """A rank > 0 of a DDP run (started by :func:`stellar.pipelines.distributed.local_ranks`):
    ``python -m stellar.pipelines.train <run>/config_resolved.yaml`` runs :func:`run` on the run's resolved config."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        raise StellarConfigError(f"usage: python -m {__name__} <run>/config_resolved.yaml (got arguments {args})")
    logging.basicConfig(level=logging.WARNING, format=f"[rank {os.environ.get('RANK', '?')}] %(name)s: %(message)s")
    cfg = OmegaConf.load(args[0])
    if not isinstance(cfg, DictConfig):
        raise StellarConfigError(f"{args[0]} is not a run config (a mapping)")
    run(cfg)


if __name__ == "__main__":
    main()
