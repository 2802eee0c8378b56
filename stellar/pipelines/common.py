"""Pieces shared by the train and evaluate pipelines: predictions on a part, calibration, summaries."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any, cast

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader

from stellar.data.datamodules import StellarDataModule
from stellar.data.datamodules.multimodal import MultiModalDataModule
from stellar.errors import StellarConfigError
from stellar.evaluation.calibration import (
    REPORT_LEVELS,
    BaseIntervalCalibrator,
    BaseProbCalibrator,
    SubsetIntervalCalibrator,
    calibrated_probs,
    softmax,
    subset_names,
)
from stellar.evaluation.metrics import classification_report, regression_report
from stellar.pipelines.distributed import gather_outputs

log = logging.getLogger(__name__)

#: the repository's Hydra configs, for entry points composed in-process (the package installs in editable mode)
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")

CALIBRATOR_FILE = "calibrator.json"
#: the regression interval calibrator of a run (``BaseIntervalCalibrator.to_dict()``), beside ``calibrator.json``
INTERVAL_CALIBRATOR_FILE = "interval_calibrator.json"


def registry_model_argument(argv: list[str]) -> list[str]:
    """Command-line arguments with ``model=<name>[@ref]`` read as ``model_ref=<name>[@ref]``, others unchanged.

    ``model`` is the name of train's config group, which Hydra will not let a command line of ``evaluate.py`` or
    ``python -m stellar.monitor`` set as a value; their entry points rewrite the argument with this."""
    return [f"model_ref={a[len('model=') :]}" if a.startswith("model=") else a for a in argv]


def predict(
    trainer: L.Trainer | None, model: L.LightningModule | Any, dm: StellarDataModule, part: str
) -> dict[str, np.ndarray]:
    """Model outputs (physical units) on one part of the datamodule, concatenated, with the row ``index``.

    A LightningModule predicts through ``trainer``; an estimator (``predict_outputs(arrays)``) on the part's numpy
    arrays, and needs no trainer.
    """
    if not isinstance(model, L.LightningModule):
        arrays = dm.arrays(part)
        if not len(arrays["index"]):
            return {}
        return {**model.predict_outputs(arrays), "index": arrays["index"]}
    return predict_loader(trainer, model, dm.loader(part))


def predict_loader(trainer: L.Trainer | None, model: L.LightningModule, loader: DataLoader) -> dict[str, np.ndarray]:
    """Outputs (physical units) of a LightningModule over ``loader``, concatenated, with the row ``index``."""
    if trainer is None:
        raise StellarConfigError("trainer must be given to predict with a LightningModule")
    batches = cast(list[dict[str, torch.Tensor]], trainer.predict(model, dataloaders=loader) or [])
    out = {k: torch.cat([b[k] for b in batches]) for k in batches[0]} if batches else {}
    # under DDP each rank predicted a share of the rows: every rank gets all of them, in order, each once
    return gather_outputs(trainer, {k: v.numpy() if k == "index" else v.float().numpy() for k, v in out.items()})


def model_embeddings(model: L.LightningModule | Any, loader: DataLoader) -> np.ndarray | None:
    """The encoder output (one vector per object) of a neural model over ``loader``, for the monitor; ``None`` for
    models without an encoder (estimators)."""
    encoder, inputs_of = getattr(model, "encoder", None), getattr(model, "_inputs_of", None)
    if not isinstance(model, L.LightningModule) or encoder is None or not callable(inputs_of):
        return None
    model.eval()
    parts = []
    with torch.inference_mode():
        for batch in loader:
            h = encoder(*inputs_of(batch))
            parts.append(h.float().reshape(len(h), -1).cpu().numpy())
    return np.concatenate(parts) if parts else None


def checkpoint_hparams(path: Path) -> dict[str, Any]:
    """What a checkpoint says about its model (name, class names, target statistics): the hyper-parameters of a
    Lightning ``.ckpt``, or the metadata JSON an estimator saves beside its boosters."""
    if path.suffix == ".json":
        return dict(json.loads(path.read_text()))
    return dict(torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters", {}))


def load_weights(model: L.LightningModule | Any, path: Path) -> None:
    """Load a checkpoint into ``model``: a Lightning state dict (``weights_only``), or an estimator's boosters."""
    if isinstance(model, L.LightningModule):
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        model.eval()
    else:
        model.load(path)


def rows_of(arrays: dict[str, Any], index: np.ndarray) -> dict[str, Any]:
    """The rows of a part's (possibly nested) arrays whose ``index`` is ``index``, in that order."""
    where = {int(i): k for k, i in enumerate(np.asarray(arrays["index"]))}
    take = np.array([where[int(i)] for i in index], dtype=np.int64)

    def pick(x: Any) -> Any:
        return {k: pick(v) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x)[take]

    return {k: pick(v) for k, v in arrays.items()}


def labels_of(outputs: Mapping[str, np.ndarray], dm: StellarDataModule) -> np.ndarray:
    """Class index (-1 where unknown) of the rows of ``outputs``."""
    return dm.meta["label"].to_numpy()[outputs["index"]]


def fit_calibrator(
    calibrator: BaseProbCalibrator | None, outputs: Mapping[str, np.ndarray], labels: np.ndarray
) -> BaseProbCalibrator | None:
    """Fit on the labelled validation rows; ``None`` when there is no calibrator or no class head."""
    if calibrator is None or "logits" not in outputs:
        return None
    ok = labels >= 0
    if ok.sum() < 2:
        log.warning("calibrator not fitted: only %d labelled validation rows", int(ok.sum()))
        return None
    logits = outputs["logits"][ok]
    calibrator.fit(logits if calibrator.input_kind == "logits" else softmax(logits), labels[ok])
    return calibrator


def save_calibrator(
    calibrator: BaseProbCalibrator | BaseIntervalCalibrator | None, run_dir: Path, name: str = CALIBRATOR_FILE
) -> Path | None:
    """Write ``calibrator.to_dict()`` as ``run_dir/name`` (nothing without a calibrator)."""
    if calibrator is None:
        return None
    path = run_dir / name
    path.write_text(json.dumps(calibrator.to_dict(), indent=2))
    return path


def load_calibrator(run_dir: Path) -> BaseProbCalibrator | None:
    path = run_dir / CALIBRATOR_FILE
    return BaseProbCalibrator.from_dict(json.loads(path.read_text())) if path.is_file() else None


def load_interval_calibrator(run_dir: Path) -> BaseIntervalCalibrator | None:
    """The run's interval calibrator, or ``None`` (runs from before interval calibration have no file)."""
    path = run_dir / INTERVAL_CALIBRATOR_FILE
    return BaseIntervalCalibrator.from_dict(json.loads(path.read_text())) if path.is_file() else None


def truths_of(outputs: Mapping[str, np.ndarray], dm: StellarDataModule, targets: list[str]) -> dict[str, np.ndarray]:
    """True values (physical units, NaN where unknown) of each target for the rows of ``outputs``."""
    return {t: dm.meta[t].to_numpy(dtype=float)[outputs["index"]] for t in targets}


def build_interval_calibrator(node: Any, dm: StellarDataModule) -> BaseIntervalCalibrator | None:
    """The ``interval_calibrator`` config group's calibrator, unfitted (``None`` without one).

    ``by_subset`` (default true) and ``min_subset_rows`` (default 30) are read here, not by the calibrator: on a
    multi-modal datamodule with ``by_subset`` the calibrator is wrapped in a
    :class:`~stellar.evaluation.calibration.SubsetIntervalCalibrator` (one per modality subset, the pooled one for
    a subset or target with fewer than ``min_subset_rows`` usable validation rows); elsewhere they are ignored.
    """
    if not node:
        return None
    cfg = node.copy() if isinstance(node, DictConfig) else OmegaConf.create(dict(node))
    with open_dict(cfg):
        by_subset, min_rows = cfg.pop("by_subset", True), cfg.pop("min_subset_rows", 30)
    calibrator = cast(BaseIntervalCalibrator, instantiate(cfg))
    if by_subset and isinstance(dm, MultiModalDataModule) and len(dm.modalities) > 1:
        return SubsetIntervalCalibrator(calibrator, min_rows=int(min_rows))
    return calibrator


def fit_interval_calibrator(
    calibrator: BaseIntervalCalibrator | None,
    outputs: Mapping[str, np.ndarray],
    dm: StellarDataModule,
    model: Any,
    trainer: L.Trainer | None = None,
    part: str = "val",
) -> BaseIntervalCalibrator | None:
    """Fit on the validation rows with a known truth, in the model's learned space (its ``log_targets``);
    ``None`` when there is no calibrator, no regression target or too few truths.

    A :class:`~stellar.evaluation.calibration.SubsetIntervalCalibrator` is also fitted per modality subset, on the
    model's outputs over the objects of ``part`` that have the subset, with only it present (:func:`subset_outputs`;
    ``trainer`` predicts with a LightningModule)."""
    targets = list(getattr(model, "targets", ()) or ())
    if calibrator is None or not targets or not outputs:
        return None
    truths = {t: v for t, v in truths_of(outputs, dm, targets).items() if np.isfinite(v).sum() >= 2}
    if not truths:
        log.warning("interval calibrator not fitted: no target has 2 or more validation truths")
        return None
    log_targets = getattr(model, "log_targets", ()) or ()
    if isinstance(calibrator, SubsetIntervalCalibrator):
        by_subset = {
            name: (out, truths_of(out, dm, list(truths))) for name, out in subset_outputs(trainer, model, dm, part)
        }
        return calibrator.fit_subsets(outputs, truths, by_subset, log_targets=log_targets)
    return calibrator.fit(outputs, truths, log_targets=log_targets)


def row_subsets(dm: StellarDataModule, part: str, outputs: Mapping[str, np.ndarray]) -> list[str] | None:
    """The modality subset (``spectrum+sed``…) each row of ``outputs`` has in ``part`` (all its modalities
    present), for a per-subset interval calibrator; ``None`` for a single-modality datamodule."""
    if not isinstance(dm, MultiModalDataModule) or not outputs:
        return None
    ds = cast(Any, dm.part(part))
    names = subset_names({m: (r >= 0).numpy() for m, r in ds.rows.items()})
    where = dict(zip(ds.common["index"].numpy().tolist(), names, strict=True))
    return [str(where[int(i)]) for i in outputs["index"]]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested mapping as ``a/b/c`` → value; non-scalar leaves become strings (for hparams)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}/"))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


def flat_scalars(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numeric leaves of a nested report (for TensorBoard)."""
    return {
        k: float(v)
        for k, v in flatten(tree, prefix).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
    }


def score_outputs(
    outputs: Mapping[str, np.ndarray],
    dm: StellarDataModule,
    class_names: list[str],
    targets: list[str],
    calibrator: BaseProbCalibrator | None,
    interval_calibrator: BaseIntervalCalibrator | None = None,
    groups: Sequence[str] | None = None,
    log_targets: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``{"classification": …, "regression": {target: …}}`` of outputs against the stored truths of their rows;
    regression coverage is reported before and after ``interval_calibrator`` (``groups``: the modality subset of
    each row, for a per-subset one; see :func:`row_subsets`), with the intervals taken in log10 for
    ``log_targets`` (default: the interval calibrator's, i.e. the model's learned space; none without one)."""
    report: dict[str, Any] = {}
    if "logits" in outputs:
        labels = labels_of(outputs, dm)
        if (labels >= 0).any():
            before = softmax(outputs["logits"])
            after = calibrated_probs(calibrator, outputs["logits"])
            report["classification"] = classification_report(before, after, labels, class_names)
    regression = {}
    in_log10 = set(log_targets if log_targets is not None else getattr(interval_calibrator, "log_targets", ()))
    for t, truth in truths_of(outputs, dm, targets).items():
        if np.isfinite(truth).any():
            factors = None
            if interval_calibrator is not None:
                k68, k95 = (interval_calibrator.factors(t, level, len(truth), groups) for level in REPORT_LEVELS)
                factors = (k68, k95)
            regression[t] = regression_report(
                outputs[f"{t}_mean"], outputs[f"{t}_logvar"], truth, factors, log_target=t in in_log10
            )
    if regression:
        report["regression"] = regression
    return report


def subset_row(report: Mapping[str, Any]) -> dict[str, float]:
    """One row of a per-subset table: ``n``, class accuracy, macro F1 and calibrated ECE, and per target its MAE,
    median absolute error (physical units) and calibrated 68% coverage."""
    row: dict[str, float] = {}
    cls = report.get("classification")
    if cls:
        row.update(n=cls["n"], accuracy=cls["accuracy"], macro_f1=cls["macro_f1"], ece_after=cls["ece_after"])
    for t, r in report.get("regression", {}).items():
        row.setdefault("n", r["n"])
        row.update({f"{t}_mae": r["mae"], f"{t}_median_ae": r["median_ae"], f"{t}_coverage_68": r["coverage_68_after"]})
    return row


def subset_outputs(
    trainer: L.Trainer | None, model: L.LightningModule | Any, dm: StellarDataModule, part: str
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """``(subset name, outputs)`` for every non-empty subset of a multi-modal datamodule's modalities
    (``spectrum``, ``sed``, ``spectrum+sed``…): the model's outputs over the objects of ``part`` that have all of the
    subset, with the other modalities masked. Nothing for a single-modality datamodule, or a model that does not read
    the presence masks."""
    lightning = isinstance(model, L.LightningModule)
    # a LightningModule, or an estimator that reads the presence masks (late fusion): a model of the objects
    if not isinstance(dm, MultiModalDataModule) or not (lightning or "present" in getattr(model, "inputs", ())):
        return
    for k in range(1, len(dm.modalities) + 1):
        for subset in combinations(dm.modalities, k):
            if lightning:
                loader = dm.subset_loader(part, subset)
                if not len(loader.dataset):  # type: ignore[arg-type]
                    continue
                outputs = predict_loader(trainer, model, loader)
            else:
                arrays = dm.arrays(part, subset)
                if not len(arrays["index"]):
                    continue
                outputs = {**cast(Any, model).predict_outputs(arrays), "index": arrays["index"]}
            yield "+".join(subset), outputs


def score_subsets(
    trainer: L.Trainer | None,
    model: L.LightningModule | Any,
    dm: StellarDataModule,
    part: str,
    calibrator: BaseProbCalibrator | None,
    interval_calibrator: BaseIntervalCalibrator | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of a multi-modal model for every non-empty subset of the datamodule's modalities (``spectrum``,
    ``sed``, ``spectrum+sed``…): each over the objects of ``part`` that have all of the subset, with the other
    modalities masked (:func:`subset_outputs`), so every subset is scored on objects that could be scored by it, and
    its intervals calibrated as that subset's; ``{}`` for a single-modality datamodule. Rows are :func:`subset_row`."""
    class_names, targets = list(getattr(model, "class_names", [])), list(getattr(model, "targets", []))
    table: dict[str, dict[str, float]] = {}
    for name, outputs in subset_outputs(trainer, model, dm, part):
        groups = [name] * len(outputs["index"])
        report = score_outputs(outputs, dm, class_names, targets, calibrator, interval_calibrator, groups)
        table[name] = subset_row(report)
    return table
