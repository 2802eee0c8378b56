"""``run(cfg)`` behind ``python -m stellar.monitor``: a batch of objects against a model's training reference.

The model comes from a train run (``run_dir=``) or the registry (``model=<name>[@<version or alias>]``); the batch
is the test part of a datamodule (``datamodule.data_dir=<folder> split=none``: every object of a folder) or a
server's request log (``requests=<log dir>``: the input summaries and predictions it kept for that model version).
Writes ``monitor.json``, ``monitor.html`` with figures, ``objects.csv`` (per-object OOD score and flag) and
TensorBoard scalars in the run directory; ``fail_on_alert=true`` makes the command exit with status 3 (a crash: 1)
when any check alerts.

:func:`reference_of` makes the training reference that ``train.py`` saves in every run (``reference.npz``) and
``register=true`` stores in the registry version.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

from stellar.data.datamodules import StellarDataModule
from stellar.errors import StellarConfigError, StellarDataError
from stellar.evaluation.calibration import REPORT_LEVELS, calibrated_probs
from stellar.evaluation.report import write_report
from stellar.monitoring import TrainingReference, build_reference, check_batch, summarize
from stellar.monitoring.report import monitor_figures, render_monitor
from stellar.pipelines.common import (
    flat_scalars,
    labels_of,
    model_embeddings,
    predict,
    row_subsets,
    rows_of,
    score_outputs,
    truths_of,
)

log = logging.getLogger(__name__)


def reference_of(
    trainer: L.Trainer | None,
    model: Any,
    dm: StellarDataModule,
    outputs: dict[str, np.ndarray],
    calibrator: Any,
    interval_calibrator: Any,
    settings: Any = None,
    part: str = "val",
) -> TrainingReference | None:
    """The training reference of a fitted model from its outputs on ``part`` (``None`` when the part is empty).

    ``settings``: ``max_rows``, ``n_components``, ``ood_alpha`` and ``seed`` (``conf/train.yaml``'s
    ``monitor_reference``)."""
    if not outputs or not len(outputs["index"]):
        return None
    s = dict(settings or {})
    arrays = rows_of(dm.arrays(part), outputs["index"])
    class_names, targets = list(getattr(model, "class_names", []) or []), list(getattr(model, "targets", []) or [])
    probs = calibrated_probs(calibrator, outputs["logits"]) if "logits" in outputs and class_names else None
    groups = row_subsets(dm, part, outputs)
    metrics = score_outputs(outputs, dm, class_names, targets, calibrator, interval_calibrator, groups)
    return build_reference(
        arrays,
        dm.preprocessing,
        probs=probs,
        labels=labels_of(outputs, dm) if class_names else None,
        embeddings=model_embeddings(model, dm.loader(part)),
        metrics=metrics,
        class_names=class_names,
        targets=targets,
        max_rows=int(s.get("max_rows", 2000)),
        n_components=int(s.get("n_components", 16)),
        ood_alpha=float(s.get("ood_alpha", 0.01)),
        seed=int(s.get("seed", 0)),
        info={
            "part": part,
            "dataset": dm.dataset_name,
            "model": type(model).__name__,
            "log_targets": sorted(str(t) for t in getattr(model, "log_targets", ()) or ()),
        },
    )


def _load(cfg: DictConfig) -> dict[str, Any]:
    """Model, datamodule (set up for scoring), calibrators, reference and ``source`` of ``run_dir=`` or
    ``model=name@ref``."""
    from stellar.pipelines.evaluate import load, training_reference

    loaded = load(cfg)
    return {**loaded, "reference": training_reference(cfg)}


def batch_inputs(
    trainer: L.Trainer | None,
    model: Any,
    dm: StellarDataModule,
    part: str,
    reference: TrainingReference,
    calibrator: Any,
    interval_calibrator: Any,
) -> dict[str, Any]:
    """The keyword arguments of :func:`~stellar.monitoring.check_batch` (and ``summaries``) for every object of
    one part of ``dm``: the model is run once, so that batches can be drawn from the result by row
    (:func:`batch_rows`). Empty when the part is."""
    outputs = predict(trainer, model, dm, part)
    if not outputs:
        return {}
    arrays = rows_of(dm.arrays(part), outputs["index"])
    class_names = reference.class_names
    probs = calibrated_probs(calibrator, outputs["logits"]) if "logits" in outputs and class_names else None
    labels = labels_of(outputs, dm) if probs is not None else None
    targets = [t for t in reference.meta.get("targets", []) if f"{t}_mean" in outputs]
    truths = {t: v for t, v in truths_of(outputs, dm, targets).items() if np.isfinite(v).any()}
    factors68 = None
    if interval_calibrator is not None and truths:
        groups = row_subsets(dm, part, outputs)
        n = len(outputs["index"])
        factors68 = {t: interval_calibrator.factors(t, REPORT_LEVELS[0], n, groups) for t in truths}
    return {
        "summaries": summarize(arrays, dm.preprocessing),
        "arrays": arrays,
        "embeddings": model_embeddings(model, dm.loader(part)),
        "probs": probs,
        "labels": labels if labels is not None and (labels >= 0).any() else None,
        "outputs": outputs,
        "truths": truths,
        "factors68": factors68,
    }


def batch_rows(inputs: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """The :func:`batch_inputs` of the objects at positions ``rows`` (a batch drawn without re-running the model)."""

    def take(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, pd.DataFrame):
            return v.iloc[rows].reset_index(drop=True)
        if isinstance(v, dict):
            return {k: take(x) for k, x in v.items()}
        return np.asarray(v)[rows]

    return {k: take(v) for k, v in inputs.items()}


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Monitor one batch; returns ``(monitor report, objects)``."""
    if cfg.get("requests"):
        return _run_requests(cfg)
    loaded = _load(cfg)
    dm, model, reference = loaded["dm"], loaded["model"], loaded["reference"]
    calibrator, interval_calibrator = loaded["calibrator"], loaded["interval_calibrator"]
    trainer = L.Trainer(accelerator=cfg.accelerator, devices=1, logger=False, enable_checkpointing=False)
    inputs = batch_inputs(trainer, model, dm, "test", reference, calibrator, interval_calibrator)
    if not inputs:
        raise StellarDataError(f"nothing to monitor: the test part of {dm.dataset_name} is empty")
    summaries, arrays, probs, outputs = inputs["summaries"], inputs["arrays"], inputs["probs"], inputs["outputs"]
    report = check_batch(reference, cfg=OmegaConf.to_container(cfg, resolve=True), **inputs)  # type: ignore[arg-type]
    report["meta"] = {
        "model": loaded["source"],
        "dataset": dm.dataset_name,
        "batch": "datamodule test part",
        "reference": {k: v for k, v in reference.meta.items() if k != "metrics"},
    }
    sketch = reference.input_sketch(summaries, arrays)  # once, for the per-object scores and the figure
    score = reference.sketch.ood_score(sketch)
    objects = pd.DataFrame({"index": outputs["index"], "ood_score": score, "ood": score > 1.0})
    if "object_id" in dm.meta:
        objects.insert(1, "object_id", dm.meta["object_id"].to_numpy()[outputs["index"]])
    coords = reference.sketch.project(sketch)
    figures = monitor_figures(report, reference, summaries, probs, score, coords)
    paths = _write(cfg, report, figures, objects)
    return report, {"model": model, "datamodule": dm, "reference": reference, "objects": objects, "paths": paths}


def _run_requests(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Monitor a server's request log: its input summaries and predictions against the model's reference."""
    from stellar.serving.request_log import read_request_log

    if not cfg.get("model_ref") and not cfg.get("run_dir"):
        raise StellarConfigError("requests= needs the model it logged: model=<name>[@ref] or run_dir=<train run>")
    reference, logged_as = _reference_only(cfg)
    log_rows = _rows_of_model(read_request_log(str(cfg.requests), endpoint=cfg.get("endpoint")), logged_as, cfg)
    summaries = pd.DataFrame(
        {c[3:]: pd.to_numeric(log_rows[c], errors="coerce") for c in log_rows.columns if c.startswith("in_")}
    )
    names = reference.class_names
    prob_cols = [f"p_{c}" for c in names]
    probs = log_rows[prob_cols].to_numpy(dtype=float) if names and set(prob_cols) <= set(log_rows.columns) else None
    ood = log_rows["ood_score"].to_numpy(dtype=float) if "ood_score" in log_rows.columns else None
    settings = OmegaConf.to_container(cfg, resolve=True)
    report = check_batch(reference, summaries, probs=probs, ood_score=ood, cfg=settings)  # type: ignore[arg-type]
    report["meta"] = {"model": str(cfg.get("model_ref") or cfg.get("run_dir")), "batch": f"request log {cfg.requests}"}
    figures = monitor_figures(report, reference, summaries, probs)
    paths = _write(cfg, report, figures, None)
    return report, {"reference": reference, "requests": log_rows, "paths": paths}


def _reference_only(cfg: DictConfig) -> tuple[TrainingReference, tuple[str, int] | None]:
    """The reference of ``run_dir=`` or ``model=``, and the registered (name, version) a server logs it as."""
    from stellar.pipelines.evaluate import registered, training_reference

    if cfg.get("run_dir"):
        return training_reference(cfg), None
    version = registered(cfg)
    return version.reference(), (version.name, int(version.version))


def _rows_of_model(rows: pd.DataFrame, logged_as: tuple[str, int] | None, cfg: DictConfig) -> pd.DataFrame:
    """The log rows of the monitored model: a server logs every endpoint (and every version it served) under one
    folder, and another model's rows are no sample of this one's inputs. A train run is not known to the log by
    name: its rows must then be the only model's."""
    if "model" not in rows.columns or "version" not in rows.columns:
        return rows
    held = sorted({f"{m}:v{v}" for m, v in zip(rows["model"], rows["version"], strict=True)})
    if logged_as is None:
        if len(held) > 1:
            raise StellarConfigError(
                f"the request log {cfg.requests} holds rows of {held}: pick one with endpoint= or monitor it by "
                "model=<name>@<version>"
            )
        return rows
    name, version = logged_as
    mine = (rows["model"].astype(str) == name) & (pd.to_numeric(rows["version"], errors="coerce") == version)
    if not mine.any():
        raise StellarDataError(f"the request log {cfg.requests} holds no rows of {name}:v{version}, only of {held}")
    return rows[mine].reset_index(drop=True)


def _write(cfg: DictConfig, report: dict[str, Any], figures: dict[str, Any], objects: pd.DataFrame | None) -> dict:
    out_dir = Path(cfg.paths.output_dir)
    paths = write_report(out_dir, report, figures, name="monitor", render=render_monitor)
    if objects is not None:
        objects.to_csv(out_dir / "objects.csv", index=False)
        paths["objects"] = out_dir / "objects.csv"
    with SummaryWriter(str(out_dir / "tensorboard")) as writer:
        writer.add_scalar("monitor/alert", float(report["alert"]))
        for fam in ("data_drift", "prediction_drift"):
            for c in report.get(fam, {}).get("checks", []):
                if c.get("p_adjusted") is not None:
                    writer.add_scalar(f"monitor/{fam}/{c['name']}/p_adjusted", c["p_adjusted"])
                writer.add_scalar(f"monitor/{fam}/{c['name']}/effect", c["effect"])
        for key in ("performance_estimate", "ood"):
            for k, v in flat_scalars({k: v for k, v in report.get(key, {}).items() if k != "per_class_f1"}).items():
                writer.add_scalar(f"monitor/{key}/{k}", v)
    level = logging.WARNING if report["alert"] else logging.INFO
    log.log(level, "monitor: alert=%s %s; written to %s", report["alert"], report["alerts"], paths["html"])
    return paths
