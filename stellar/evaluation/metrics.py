"""Metrics on the model-output contract (``logits``; ``<t>_mean``/``<t>_logvar`` in physical units) against truths.

Shared by train.py (the test summary of a run) and evaluate.py (``report.json``), so neural and XGBoost models are
scored the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from stellar.evaluation.calibration import brier_score, expected_calibration_error


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
        if 0 < pos.sum() < len(y):  # AUCs need both classes present
            roc[name] = float(skm.roc_auc_score(pos, pa[:, c]))
            pr[name] = float(skm.average_precision_score(pos, pa[:, c]))
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


def regression_report(mean: np.ndarray, logvar: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R², median absolute error and the fraction of truths inside the predicted 68% and 95% intervals."""
    ok = np.isfinite(truth)
    t, m, sd = truth[ok], mean[ok], np.exp(0.5 * logvar[ok])
    err = m - t
    return {
        "n": int(ok.sum()),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": float(skm.r2_score(t, m)) if len(t) > 1 else float("nan"),
        "median_ae": float(np.median(np.abs(err))),
        "coverage_68": float(np.mean(np.abs(err) <= sd)),
        "coverage_95": float(np.mean(np.abs(err) <= 1.959964 * sd)),
    }
