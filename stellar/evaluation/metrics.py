"""Metrics on the model-output contract (``logits``; ``<t>_mean``/``<t>_logvar`` in physical units) against truths.

Shared by train.py (the test summary of a run) and evaluate.py (``report.json``), so neural and XGBoost models are
scored the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

from stellar.evaluation.calibration import (
    brier_score,
    expected_calibration_error,
    gaussian_factor,
    inside_interval,
)

log = logging.getLogger(__name__)


def _one_sided(pos: np.ndarray) -> str | None:
    """Why one-vs-rest curves and areas of a class are undefined on these rows (None when they are defined)."""
    if not pos.any():
        return "no positives"
    if pos.all():
        return "no negatives"
    return None


def _ovr_areas(pos: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """ROC-AUC and average precision (the PR-AUC) of one class against the rest."""
    return float(skm.roc_auc_score(pos, score)), float(skm.average_precision_score(pos, score))


@dataclass(frozen=True)
class OneVsRest:
    """ROC and precision-recall curves of one class against the rest, with their areas.

    ``roc_auc`` and ``average_precision`` are the values :func:`classification_report` gives the class under
    ``roc_auc_ovr`` and ``pr_auc_ovr``.
    """

    name: str
    fpr: np.ndarray
    tpr: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    roc_auc: float
    average_precision: float


def one_vs_rest_curves(
    probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> tuple[list[OneVsRest], dict[str, str]]:
    """One-vs-rest ROC and precision-recall curves of each class, over the rows with a known label.

    With two classes only the second (the positive class) is returned: the first's ROC curve is its mirror image
    and has the same area. A class without positives (absent from these rows) or without negatives has no curve;
    it is logged and returned in ``skipped``.

    Parameters
    ----------
    probs : numpy.ndarray, shape (N, C)
        Class probabilities (those the report scores, i.e. after calibration).
    labels : numpy.ndarray of int, shape (N,)
        True class indices; rows with label < 0 (unknown) are left out.
    class_names : sequence of str
        Name of each of the C classes.

    Returns
    -------
    curves : list of OneVsRest
        One per class with a curve, in class order.
    skipped : dict of str to str
        Class name → why it has no curve (``"no positives"`` or ``"no negatives"``).
    """
    ok = labels >= 0
    y, p = labels[ok], probs[ok]
    classes = [1] if len(class_names) == 2 else range(len(class_names))
    curves: list[OneVsRest] = []
    skipped: dict[str, str] = {}
    for c in classes:
        name, pos = class_names[c], y == c
        why = _one_sided(pos)
        if why is not None:
            skipped[name] = why
            log.warning("class %r has %s among the %d scored rows: no ROC or PR curve", name, why, len(y))
            continue
        fpr, tpr, _ = skm.roc_curve(pos, p[:, c])
        precision, recall, _ = skm.precision_recall_curve(pos, p[:, c])
        curves.append(OneVsRest(name, fpr, tpr, precision, recall, *_ovr_areas(pos, p[:, c])))
    return curves, skipped


def classification_report(
    probs_before: np.ndarray,
    probs_after: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    n_bins: int = 15,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1, MCC, one-vs-rest ROC-AUC and PR-AUC, the confusion
    matrix, and ECE and Brier score before and after calibration, over the rows with a known label.

    Metrics are computed on the calibrated probabilities (calibration may change the arg-max for isotonic).
    """
    ok = labels >= 0
    y, pb, pa = labels[ok], probs_before[ok], probs_after[ok]
    k = len(class_names)
    pred = pa.argmax(axis=1)
    present = np.unique(y)
    prec, rec, f1, support = skm.precision_recall_fscore_support(y, pred, labels=np.arange(k), zero_division=0)
    per_class: dict[str, dict[str, float]] = {}
    roc, pr = {}, {}
    for c, name in enumerate(class_names):
        per_class[name] = {
            "precision": float(prec[c]),
            "recall": float(rec[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
        }
        pos = y == c
        if _one_sided(pos) is None:  # AUCs need both positives and negatives
            roc[name], pr[name] = _ovr_areas(pos, pa[:, c])
    return {
        "n": int(ok.sum()),
        "class_names": list(class_names),
        "accuracy": float(np.mean(pred == y)),
        # macro over the classes present in the truth, so absent classes do not count as F1 = 0
        "macro_f1": float(np.mean(f1[present])),
        "mcc": float(skm.matthews_corrcoef(y, pred)),
        "per_class": per_class,
        "roc_auc_ovr": roc,
        "pr_auc_ovr": pr,
        "roc_auc_macro": float(np.mean(list(roc.values()))) if roc else float("nan"),
        "pr_auc_macro": float(np.mean(list(pr.values()))) if pr else float("nan"),
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=np.arange(k)).tolist(),
        "ece_before": float(expected_calibration_error(pb, y, n_bins=n_bins)),
        "ece_after": float(expected_calibration_error(pa, y, n_bins=n_bins)),
        "brier_before": float(brier_score(pb, y)),
        "brier_after": float(brier_score(pa, y)),
    }


def regression_report(
    mean: np.ndarray,
    logvar: np.ndarray,
    truth: np.ndarray,
    factors: tuple[Any, Any] | None = None,
    log_target: bool = False,
) -> dict[str, float]:
    """MAE, RMSE, R², median absolute error and the fraction of truths inside the 68% and 95% intervals.

    ``coverage_68`` and ``coverage_95`` are those of the model's own Gaussian intervals, ``mean ± σ`` and
    ``mean ± 1.96σ`` (before interval calibration); ``coverage_68_after`` and ``coverage_95_after`` those of
    ``mean ± k σ`` with ``factors = (k68, k95)`` from an interval calibrator
    (:meth:`~stellar.evaluation.calibration.BaseIntervalCalibrator.factor`), equal to the former without one;
    each factor is a number or one per row, shape (N,)
    (:meth:`~stellar.evaluation.calibration.BaseIntervalCalibrator.factors`). The intervals are taken in the
    space the model learns in, log10 for a ``log_target`` (:func:`~stellar.evaluation.calibration.inside_interval`),
    as the calibrator and the server take them; the errors are in physical units.
    """
    ok = np.isfinite(truth)
    t, m = truth[ok], mean[ok]
    err = m - t
    k68, k95 = (
        (np.broadcast_to(np.asarray(k, dtype=np.float64), truth.shape)[ok] for k in factors)
        if factors is not None
        else (1.0, gaussian_factor(0.95))
    )

    def cover(k: Any) -> float:
        return float(np.mean(inside_interval(m, logvar[ok], t, k, log_target)))

    return {
        "n": int(ok.sum()),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": float(skm.r2_score(t, m)) if len(t) > 1 else float("nan"),
        "median_ae": float(np.median(np.abs(err))),
        "coverage_68": cover(1.0),
        "coverage_95": cover(gaussian_factor(0.95)),
        "coverage_68_after": cover(k68),
        "coverage_95_after": cover(k95),
    }
