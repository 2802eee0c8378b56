"""Plain numpy metrics on model outputs (the contract of DESIGN.md), shared by train.py and evaluate.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_summary(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 over the rows with a known label (label ≥ 0)."""
    ok = labels >= 0
    if not ok.any():
        return {}
    y, pred = labels[ok], logits[ok].argmax(axis=1)
    classes = np.unique(np.concatenate([y, pred]))
    f1s = []
    for c in classes:
        tp = np.sum((pred == c) & (y == c))
        denom = np.sum(pred == c) + np.sum(y == c)
        f1s.append(2.0 * tp / denom if denom else 0.0)
    return {"accuracy": float(np.mean(pred == y)), "macro_f1": float(np.mean(f1s)), "n_labelled": int(ok.sum())}


def regression_summary(mean: np.ndarray, logvar: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, median absolute error and the 68%/95% interval coverage over the finite truths."""
    ok = np.isfinite(truth)
    if not ok.any():
        return {}
    err = mean[ok] - truth[ok]
    sd = np.exp(0.5 * logvar[ok])
    z = np.abs(err) / sd
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "median_ae": float(np.median(np.abs(err))),
        "coverage_68": float(np.mean(z < 1.0)),
        "coverage_95": float(np.mean(z < 1.959964)),
        "n": int(ok.sum()),
    }


def summarise_outputs(
    outputs: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    truths: Mapping[str, np.ndarray],
    targets: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Summary of every head: ``{"classification": {...}, "<target>": {...}}``."""
    report: dict[str, dict[str, float]] = {}
    if "logits" in outputs and labels is not None:
        report["classification"] = classification_summary(outputs["logits"], labels)
    for t in targets:
        report[t] = regression_summary(outputs[f"{t}_mean"], outputs[f"{t}_logvar"], truths[t])
    return report
