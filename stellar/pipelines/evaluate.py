"""``run(cfg)`` behind ``python evaluate.py``: rebuild a trained model and score a part of its data.

The model is a train run (``run_dir=``, a local folder) or a registry version (``model=<name>[@ref]``, from
``registry.root``, a path or an fsspec URL such as ``s3://bucket/registry``). The run folder's (or version's)
``config.yaml`` (as composed, interpolations intact) rebuilds the datamodule and the model, with
this evaluation's paths and any ``datamodule.*`` overrides; the best checkpoint is loaded with
``weights_only=True`` (an estimator run's boosters from ``checkpoints/estimator.json``); the run's calibrator and
interval calibrator (``interval_calibrator.json``; runs without one are scored with the model's own σ) are applied.
Writes ``report.json``, PNG figures (confusion matrix, reliability diagram, one-vs-rest ROC and precision-recall
curves of a classifier; predicted vs true per regression target, with calibrated error bars), ``report.html`` and
TensorBoard events in this evaluation's own run folder, and ``predictions.csv``: one row per object with its
calibrated prediction and, for runs with a training reference, its out-of-distribution score and flag.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.tensorboard import SummaryWriter

from stellar.data.datamodules import StellarDataModule
from stellar.errors import StellarConfigError, StellarDataError
from stellar.evaluation.calibration import calibrated_outputs, calibrated_probs, softmax
from stellar.evaluation.metrics import one_vs_rest_curves
from stellar.evaluation.report import (
    confusion_figure,
    pr_figure,
    regression_figure,
    reliability_figure,
    roc_figure,
    write_report,
)
from stellar.models.estimators import META_FILE as ESTIMATOR_META
from stellar.monitoring import TrainingReference
from stellar.pipelines.common import (
    checkpoint_hparams,
    flat_scalars,
    labels_of,
    load_calibrator,
    load_interval_calibrator,
    load_weights,
    predict,
    row_subsets,
    rows_of,
    score_outputs,
    score_subsets,
    truths_of,
)
from stellar.utils import urls
from stellar.utils.units import TARGET_UNITS

if TYPE_CHECKING:
    from stellar.registry import ModelVersion

log = logging.getLogger(__name__)


def best_checkpoint(run_dir: Path) -> Path:
    """The run's best checkpoint (from its ``metrics.json``), else an estimator's ``estimator.json``, else its only
    epoch checkpoint, else ``last.ckpt``."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        best = json.loads(metrics.read_text()).get("best_checkpoint")
        if best and Path(best).is_file():
            return Path(best)
    estimator = run_dir / "checkpoints" / ESTIMATOR_META
    if estimator.is_file():
        return estimator
    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    epochs = [p for p in ckpts if p.name != "last.ckpt"]
    if len(epochs) == 1:
        return epochs[0]
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return run_dir / "checkpoints" / "last.ckpt"
    raise StellarDataError(f"no checkpoint found in {run_dir}/checkpoints (give ckpt_path=…)")


def run_folder(cfg: DictConfig) -> Path:
    """``cfg.run_dir`` as a local folder: Hydra writes train runs on this machine, so a URL is refused, naming the
    registry as the way to reach a run's model from elsewhere."""
    if not urls.is_local(cfg.run_dir):
        raise StellarConfigError(
            f"run_dir={cfg.run_dir!r}: a train run folder is local (Hydra writes it on this machine); register the "
            "run (register=true registry.root=<URL>) and use it as model=<name>[@<version or alias>]"
        )
    return Path(cfg.run_dir)


def load_run_config(cfg: DictConfig) -> DictConfig:
    """The training config of ``cfg.run_dir`` with this evaluation's paths, data overrides and split."""
    run_dir = run_folder(cfg)
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise StellarDataError(f"run_dir={str(run_dir)!r} is not a train run folder: it has no config.yaml")
    train_cfg = OmegaConf.load(path)
    if not isinstance(train_cfg, DictConfig):
        raise StellarDataError(f"{path} does not hold a mapping")
    return with_overrides(train_cfg, cfg)


def with_overrides(train_cfg: DictConfig, cfg: DictConfig) -> DictConfig:
    """``train_cfg`` (changed in place) with the paths, non-null ``datamodule.*`` values and split of ``cfg``."""
    with open_dict(train_cfg):
        train_cfg.paths = cfg.paths
        for key, value in (cfg.get("datamodule") or {}).items():
            if value is not None:
                train_cfg.datamodule[key] = value
        if "split" in cfg:  # split=none (or another split) on the command line replaces the run's split
            train_cfg.split = cfg.split or None
    return train_cfg


def load_run(cfg: DictConfig, stage: str = "test") -> dict[str, Any]:
    """The trained run of ``cfg.run_dir`` rebuilt for scoring: its datamodule (this command's data overrides and
    split, set up for ``stage``), model with the best checkpoint (or ``cfg.ckpt_path``), calibrators and checkpoint
    hyper-parameters, as ``dm``, ``model``, ``calibrator``, ``interval_calibrator``, ``class_names``, ``ckpt_path``,
    ``hparams`` and ``train_cfg``."""
    run_dir = run_folder(cfg)
    train_cfg = load_run_config(cfg)
    ckpt_path = Path(cfg.ckpt_path) if cfg.get("ckpt_path") else best_checkpoint(run_dir)
    hp = checkpoint_hparams(ckpt_path)

    split = instantiate(train_cfg.split) if train_cfg.get("split") else None
    dm: StellarDataModule = instantiate(train_cfg.datamodule, split=split)
    dm.setup(stage)
    class_names = list(hp.get("class_names", []))
    if class_names and class_names != list(dm.class_names):
        raise StellarConfigError(f"model classes {class_names} differ from the datamodule's {dm.class_names}")
    if train_cfg.model.get("pretrained"):  # the fine-tuned weights come from the checkpoint
        with open_dict(train_cfg):
            train_cfg.model.pretrained = None
            if "pretrained_modality" in train_cfg.model:
                train_cfg.model.pretrained_modality = None
    model = instantiate(train_cfg.model, class_names=class_names, target_stats=hp.get("target_stats"))
    load_weights(model, ckpt_path)
    return {
        "dm": dm,
        "model": model,
        "calibrator": load_calibrator(run_dir),
        "interval_calibrator": load_interval_calibrator(run_dir),
        "class_names": class_names,
        "ckpt_path": ckpt_path,
        "hparams": hp,
        "train_cfg": train_cfg,
    }


def registered(cfg: DictConfig) -> ModelVersion:
    """The registry version ``model_ref=<name>[@<version or alias>]`` names (latest without one), in
    ``cfg.registry.root`` (a path or an fsspec URL)."""
    from stellar.registry import LATEST, ModelRegistry

    name, _, ref = str(cfg.model_ref).partition("@")
    return ModelRegistry(cfg.registry.root).get(name, ref or LATEST)


def load_registered(cfg: DictConfig, stage: str = "test") -> dict[str, Any]:
    """The registered model of ``cfg.model_ref`` rebuilt for scoring, with the keys of :func:`load_run` and
    ``source`` (the version's ``name:vN``): its datamodule from the version's config as composed (so that
    ``datamodule.data_dir=`` reaches the source), this command's overrides and split, the model, calibrators and
    the version's class names. The registry root may be an fsspec URL."""
    version = registered(cfg)
    composed = OmegaConf.create(version.read_text("config.yaml")) if "config.yaml" in version.files else None
    train_cfg = with_overrides(composed if isinstance(composed, DictConfig) else version.training_config(), cfg)
    split = instantiate(train_cfg.split) if train_cfg.get("split") else None
    dm: StellarDataModule = instantiate(train_cfg.datamodule, split=split)
    dm.setup(stage)
    return {
        "dm": dm,
        "model": version.load_model(),
        "calibrator": version.calibrator(),
        "interval_calibrator": version.interval_calibrator(),
        "class_names": version.class_names,
        "ckpt_path": f"{version.url}/{version.manifest.get('artifact', {}).get('primary')}",
        "hparams": {"name": version.name},
        "train_cfg": train_cfg,
        "source": version.tag,
    }


def load(cfg: DictConfig, stage: str = "test") -> dict[str, Any]:
    """The model of ``run_dir=`` (:func:`load_run`) or of ``model_ref=`` (:func:`load_registered`), plus ``source``:
    the run folder or the version's ``name:vN``."""
    if bool(cfg.get("run_dir")) == bool(cfg.get("model_ref")):
        raise StellarConfigError(
            "give exactly one of run_dir=<train run> or model=<name>[@<version or alias>] (model_ref=); "
            f"got run_dir={cfg.get('run_dir')!r}, model_ref={cfg.get('model_ref')!r}"
        )
    if cfg.get("run_dir"):
        return {**load_run(cfg, stage), "source": str(cfg.run_dir)}
    return load_registered(cfg, stage)


def training_reference(cfg: DictConfig) -> TrainingReference:
    """The training reference of ``run_dir=`` (its ``reference.npz``) or of the version ``model_ref=`` names."""
    if cfg.get("run_dir"):
        return TrainingReference.load(run_folder(cfg))
    return registered(cfg).reference()


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score the model of ``run_dir=`` or ``model=<name>[@ref]``; returns ``(report, objects)``."""
    loaded = load(cfg)
    dm, model, class_names = loaded["dm"], loaded["model"], loaded["class_names"]
    calibrator, interval_calibrator = loaded["calibrator"], loaded["interval_calibrator"]
    train_cfg, ckpt_path, hp = loaded["train_cfg"], loaded["ckpt_path"], loaded["hparams"]

    trainer = L.Trainer(accelerator=cfg.accelerator, devices=1, logger=False, enable_checkpointing=False)
    outputs = predict(trainer, model, dm, "test")
    if not outputs:
        raise StellarDataError(f"nothing to score: the test part of {dm.dataset_name} is empty")
    groups = row_subsets(dm, "test", outputs)  # the modality subset of each object, for a per-subset calibrator
    report = score_outputs(outputs, dm, class_names, list(model.targets), calibrator, interval_calibrator, groups)
    subsets = score_subsets(trainer, model, dm, "test", calibrator, interval_calibrator)
    if subsets:
        report["subsets"] = subsets
    report["meta"] = {
        "model": hp.get("name", ""),
        "source": loaded["source"],
        "run_dir": str(cfg.run_dir) if cfg.get("run_dir") else None,
        "checkpoint": str(ckpt_path),
        "dataset": dm.dataset_name,
        "split": OmegaConf.to_container(train_cfg.split, resolve=True) if train_cfg.get("split") else "none",
        "calibrator": type(calibrator).__name__ if calibrator is not None else None,
        "interval_calibrator": type(interval_calibrator).__name__ if interval_calibrator is not None else None,
        "n_scored": len(outputs["index"]),
    }
    table = prediction_table(outputs, dm, class_names, list(model.targets), calibrator, interval_calibrator, groups)
    reference = _reference_or_none(cfg)
    if reference is not None:  # every prediction's out-of-distribution score against the training reference
        score, flag = reference.ood(rows_of(dm.arrays("test"), outputs["index"]), dm.preprocessing)
        table["ood_score"], table["ood"] = score, flag
        report["ood"] = {"flagged": int(flag.sum()), "fraction": float(flag.mean()), "expected": reference.sketch.alpha}
    figures = _figures(report, outputs, dm, calibrator, interval_calibrator, int(cfg.n_bins), groups)
    out_dir = Path(cfg.paths.output_dir)
    paths = write_report(out_dir, report, figures)
    table.to_csv(out_dir / "predictions.csv", index=False)
    paths["predictions"] = out_dir / "predictions.csv"
    _to_tensorboard(out_dir / "tensorboard", report, paths)
    log.info("report written to %s", paths["html"])
    return report, {"model": model, "datamodule": dm, "outputs": outputs, "paths": paths}


def _reference_or_none(cfg: DictConfig) -> TrainingReference | None:
    try:
        return training_reference(cfg)
    except StellarDataError as err:
        log.warning("no out-of-distribution scores: %s", err)
        return None


def prediction_table(
    outputs: dict[str, np.ndarray],
    dm: StellarDataModule,
    class_names: list[str],
    targets: list[str],
    calibrator: Any,
    interval_calibrator: Any,
    groups: Any = None,
) -> pd.DataFrame:
    """One row per scored object: its row ``index`` and ``object_id``, the true ``label`` and class, calibrated
    ``p_<class>`` and ``predicted_class``, and per target the truth, ``<t>_mean`` and calibrated ``<t>_std``."""
    index = outputs["index"]
    table = pd.DataFrame({"index": index})
    if "object_id" in dm.meta:
        table["object_id"] = dm.meta["object_id"].to_numpy()[index]
    if "logits" in outputs and class_names:
        probs = calibrated_probs(calibrator, outputs["logits"])
        labels = labels_of(outputs, dm)
        table["true_class"] = [class_names[k] if k >= 0 else "" for k in labels]
        table["predicted_class"] = [class_names[k] for k in probs.argmax(axis=1)]
        for j, c in enumerate(class_names):
            table[f"p_{c}"] = probs[:, j]
    calibrated = calibrated_outputs(interval_calibrator, outputs, groups)
    for t, truth in truths_of(outputs, dm, targets).items():
        table[t] = truth
        table[f"{t}_mean"] = calibrated[f"{t}_mean"]
        table[f"{t}_std"] = np.exp(0.5 * calibrated[f"{t}_logvar"])
    return table


def _figures(
    report: dict[str, Any],
    outputs: dict[str, np.ndarray],
    dm: StellarDataModule,
    calibrator: Any,
    interval_calibrator: Any,
    n_bins: int,
    groups: Any = None,
) -> dict[str, Any]:
    figs: dict[str, Any] = {}
    cls = report.get("classification")
    if cls:
        labels = labels_of(outputs, dm)
        figs["confusion_matrix"] = confusion_figure(cls["confusion_matrix"], cls["class_names"])
        before, after = softmax(outputs["logits"]), calibrated_probs(calibrator, outputs["logits"])
        figs["reliability"] = reliability_figure(before, after, labels, n_bins=n_bins)
        curves, skipped = one_vs_rest_curves(after, labels, cls["class_names"])
        figs["roc"] = roc_figure(curves, skipped)
        figs["precision_recall"] = pr_figure(curves, skipped)
    calibrated = calibrated_outputs(interval_calibrator, outputs, groups)  # error bars: the calibrated 1-sigma
    for t, truth in truths_of(outputs, dm, list(report.get("regression", {}))).items():
        figs[f"regression_{t}"] = regression_figure(
            t, truth, calibrated[f"{t}_mean"], calibrated[f"{t}_logvar"], TARGET_UNITS.get(t, "")
        )
    return figs


def _to_tensorboard(log_dir: Path, report: dict[str, Any], paths: dict[str, Path]) -> None:
    """The report's scalars and figures, so evaluations sit beside training runs in TensorBoard."""
    import matplotlib.image as mpimg

    with SummaryWriter(str(log_dir)) as writer:
        for key, value in flat_scalars({k: v for k, v in report.items() if k != "meta"}, "eval/").items():
            writer.add_scalar(key, value)
        for name, path in paths.items():
            if path.suffix == ".png":
                img = mpimg.imread(path)[..., :3]
                writer.add_image(f"eval/{name}", img, dataformats="HWC")
