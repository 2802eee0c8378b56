"""One monitor run: a batch against the training reference, every check, its verdict and the top-level alert.

:func:`build_reference` makes the reference of a run from its validation part; :func:`check_batch` compares a batch
with it and returns the ``monitor.json`` mapping:

- ``data_drift``: one check per input summary (KS / χ²), the MMD of the input sketch and, for neural models, of the
  embeddings, and a one-sided Fisher test of the fraction of objects flagged out of distribution against the
  reference rows its threshold was set on;
- ``prediction_drift``: χ² of the predicted-class distribution and KS of the confidence (max calibrated probability);
- ``performance_estimate``: the label-free accuracy and per-class F1 (:func:`estimate_performance`), alerting when the
  estimated accuracy is more than ``max_accuracy_drop`` below the reference's;
- ``performance`` (only where the batch has labels or truths): measured accuracy, macro F1, ECE and per target MAE,
  median error and 68% coverage, with bootstrap intervals, alerting when the whole interval is worse than the
  reference by more than the configured tolerance.

Every p-value of the run is corrected together (Holm), so the chance that any drift test alarms on an
in-distribution batch is at most ``alpha``; the performance checks are threshold rules outside that family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from stellar.monitoring.drift import (
    Check,
    binomial_excess,
    chi2_counts,
    feature_checks,
    flagged_excess,
    holm,
    ks_check,
    mmd_check,
)
from stellar.monitoring.performance import estimate_performance, measured_classification, measured_regression
from stellar.monitoring.reference import InputSketch, TrainingReference, halves, input_matrix
from stellar.monitoring.summaries import summarize

__all__ = ["DEFAULTS", "build_reference", "check_batch"]

#: thresholds when a config leaves them out (conf/monitor.yaml sets them all)
DEFAULTS: dict[str, Any] = {
    "alpha": 0.05,
    "min_effect": {"feature": 0.1, "sketch": 0.0, "embedding": 0.0, "prediction": 0.1, "ood": 0.02},
    "mmd": {"n_permutations": 500, "max_reference": 1000, "max_batch": 2000},
    "performance": {
        "max_accuracy_drop": 0.05,
        "max_ece_rise": 0.05,
        "max_relative_error_rise": 0.25,
        "max_coverage_drop": 0.1,
        "n_boot": 200,
        "level": 0.95,
    },
    "seed": 0,
}


def _setting(cfg: Mapping[str, Any] | None, *keys: str) -> Any:
    node: Any = cfg or {}
    default: Any = DEFAULTS
    for k in keys:
        default = default[k]
        node = node.get(k) if isinstance(node, Mapping) and node.get(k) is not None else None
    return default if node is None else node


def build_reference(
    arrays: Mapping[str, Any],
    prep: Any = None,
    *,
    probs: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    metrics: Mapping[str, Any] | None = None,
    class_names: Sequence[str] = (),
    targets: Sequence[str] = (),
    max_rows: int = 2000,
    n_components: int = 16,
    ood_alpha: float = 0.01,
    seed: int = 0,
    info: Mapping[str, Any] | None = None,
) -> TrainingReference:
    """The training reference of model inputs ``arrays`` (the validation part), with the model's calibrated
    ``probs``, the true ``labels`` (-1 unknown), encoder ``embeddings`` and the validation ``metrics``
    (``score_outputs`` form) when there are any; at most ``max_rows`` objects are kept (a seeded draw)."""
    summaries = summarize(arrays, prep)
    matrix, columns = input_matrix(summaries, arrays)
    n = len(summaries)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, max_rows, replace=False)) if n > max_rows else np.arange(n)
    sketch = InputSketch.fit(matrix, columns, n_components, ood_alpha, seed)
    # the MMD's reference sample: kept rows that neither basis was fitted on (both fits split the rows alike)
    unseen = np.intersect1d(keep, halves(n, seed)[1])
    basis = emb = None
    if embeddings is not None and len(embeddings) == n:
        dims = [f"e{j}" for j in range(embeddings.shape[1])]
        basis = InputSketch.fit(np.asarray(embeddings, np.float64), dims, n_components, ood_alpha, seed)
        emb = basis.project(embeddings)[unseen]
    meta: dict[str, Any] = {
        "n_objects": int(n),
        "n_kept": len(keep),
        "class_names": [str(c) for c in class_names],
        "targets": [str(t) for t in targets],
        "metrics": _reference_metrics(metrics or {}),
        "ood_flagged_fraction": float(np.mean(sketch.ood_score(matrix) > 1.0)) if n else float("nan"),
        **dict(info or {}),
    }
    if labels is not None and len(class_names):
        known = np.asarray(labels)[np.asarray(labels) >= 0]
        meta["class_prior"] = (np.bincount(known, minlength=len(class_names)) / max(len(known), 1)).tolist()
    return TrainingReference(
        summaries=summaries.iloc[keep].reset_index(drop=True),
        sketch=sketch,
        meta=meta,
        probs=None if probs is None else np.asarray(probs, np.float64)[keep],
        sketch_coords=sketch.project(matrix)[unseen],
        embedding_basis=basis,
        embeddings=emb,
    )


def _reference_metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cls = report.get("classification")
    if cls:
        out.update(accuracy=cls["accuracy"], macro_f1=cls["macro_f1"], ece=cls["ece_after"], n=cls["n"])
    for t, r in (report.get("regression") or {}).items():
        out[t] = {"mae": r["mae"], "median_ae": r["median_ae"], "coverage_68": r["coverage_68_after"], "n": r["n"]}
    return out


def check_batch(
    reference: TrainingReference,
    summaries: pd.DataFrame,
    *,
    arrays: Mapping[str, Any] | None = None,
    embeddings: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    outputs: Mapping[str, np.ndarray] | None = None,
    truths: Mapping[str, np.ndarray] | None = None,
    factors68: Mapping[str, Any] | None = None,
    ood_score: np.ndarray | None = None,
    cfg: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every check of one batch against ``reference`` (see the module docstring); the ``monitor.json`` mapping.

    ``summaries`` are the batch's input summaries; ``arrays`` its model inputs (for the input sketch and the OOD
    score; a request log without payloads has none, and gives the ``ood_score`` the server computed instead);
    ``probs`` its calibrated probabilities; ``labels``,
    ``outputs`` + ``truths`` (+ ``factors68``, the interval calibrator's 68% factors) where it has labels.
    """
    alpha = float(_setting(cfg, "alpha"))
    seed = int(_setting(cfg, "seed"))
    n_perm, max_ref = int(_setting(cfg, "mmd", "n_permutations")), int(_setting(cfg, "mmd", "max_reference"))
    max_batch = int(_setting(cfg, "mmd", "max_batch"))
    report: dict[str, Any] = {"n_objects": len(summaries), "n_reference": len(reference.summaries)}

    data: list[Check] = feature_checks(reference.summaries, summaries, float(_setting(cfg, "min_effect", "feature")))
    # a permutation p-value is at least 1/(n_permutations + 1): enough permutations that it can clear Holm's first
    # step over every check of the run (the summaries', two MMDs, the OOD fraction, two prediction checks) at half
    # of alpha, or the MMD could never alert beside the many summaries of a light-curve model
    n_perm = max(n_perm, int(np.ceil(2.0 * (len(data) + 5) / alpha)))
    if arrays is not None:
        matrix = reference.input_sketch(summaries, arrays)
        ood_score = reference.sketch.ood_score(matrix)
        if reference.sketch_coords is not None:
            mmd = mmd_check(
                "input_sketch",
                reference.sketch_coords,
                reference.sketch.project(matrix),
                float(_setting(cfg, "min_effect", "sketch")),
                n_perm,
                max_ref,
                seed,
                max_batch,
            )
            if mmd is not None:
                data.append(mmd)
    if ood_score is not None:
        ood_score = np.asarray(ood_score, np.float64)
        ood_score = ood_score[np.isfinite(ood_score)]
        rate, sketch = float(reference.sketch.alpha), reference.sketch
        flagged = int((ood_score > 1.0).sum())
        min_ood = float(_setting(cfg, "min_effect", "ood"))
        if sketch.n_held:  # against the rows the threshold was set on (references from before: an exact alpha)
            ood = flagged_excess("ood_fraction", flagged, len(ood_score), sketch.held_flagged, sketch.n_held, min_ood)
        else:
            ood = binomial_excess("ood_fraction", flagged, len(ood_score), rate, min_ood)
        if ood is not None:
            data.append(ood)
    if embeddings is not None and reference.embedding_basis is not None and reference.embeddings is not None:
        mmd = mmd_check(
            "embedding",
            reference.embeddings,
            reference.embedding_basis.project(embeddings),
            float(_setting(cfg, "min_effect", "embedding")),
            n_perm,
            max_ref,
            seed + 1,
            max_batch,
        )
        if mmd is not None:
            data.append(mmd)

    prediction: list[Check] = []
    min_pred = float(_setting(cfg, "min_effect", "prediction"))
    names = reference.class_names
    if probs is not None and reference.probs is not None and len(names):
        ok = np.isfinite(probs).all(axis=1)
        p = np.asarray(probs)[ok]
        k = len(names)
        ref_counts = np.bincount(reference.probs.argmax(axis=1), minlength=k)
        check = chi2_counts("predicted_class", ref_counts, np.bincount(p.argmax(axis=1), minlength=k), min_pred, names)
        if check is not None:
            prediction.append(check)
        # both at the precision the reference keeps probabilities in (float32): a float64 confidence of 1 - 1e-9
        # beside its stored twin, 1.0, is another number, and a confident model's batch would differ entirely
        conf = ks_check("confidence", _stored(reference.probs.max(axis=1)), _stored(p.max(axis=1)), min_pred)
        if conf is not None:
            prediction.append(conf)

    holm([*data, *prediction], alpha)
    report["data_drift"] = _family(data)
    report["prediction_drift"] = _family(prediction)
    if ood_score is not None:
        report["ood"] = {
            "flagged": int((ood_score > 1.0).sum()),
            "fraction": float(np.mean(ood_score > 1.0)) if len(ood_score) else None,
            "expected_fraction": float(reference.sketch.alpha),
            "score_median": float(np.median(ood_score)) if len(ood_score) else None,
        }
    perf_cfg = {k: _setting(cfg, "performance", k) for k in DEFAULTS["performance"]}
    ref_metrics = reference.metrics
    if probs is not None and len(names):
        est = estimate_performance(probs, names, float(perf_cfg["level"]))
        ref_acc = ref_metrics.get("accuracy")
        drop = float(perf_cfg["max_accuracy_drop"])
        est["reference_accuracy"] = ref_acc
        est["threshold"] = None if ref_acc is None else ref_acc - drop
        est["alert"] = bool(ref_acc is not None and est.get("accuracy", 1.0) < ref_acc - drop)
        report["performance_estimate"] = est
    log_targets = reference.meta.get("log_targets", [])  # references from before it was stored: linear space
    measured = _measured(probs, labels, outputs, truths, factors68, ref_metrics, perf_cfg, seed, log_targets)
    if measured:
        report["performance"] = measured
    alerts = [c["name"] for fam in ("data_drift", "prediction_drift") for c in report[fam]["checks"] if c["alert"]]
    if report.get("performance_estimate", {}).get("alert"):
        alerts.append("performance_estimate")
    alerts += [f"performance:{k}" for k, v in (measured or {}).items() if isinstance(v, dict) and v.get("alert")]
    report["alerts"] = alerts
    report["alert"] = bool(alerts)
    report["settings"] = {"alpha": alpha, "performance": perf_cfg, "n_permutations": n_perm}
    return report


def _stored(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to float32, the precision of a saved reference."""
    return np.asarray(values, np.float32).astype(np.float64)


def _family(checks: list[Check]) -> dict[str, Any]:
    return {"alert": any(c.alert for c in checks), "checks": [c.to_dict() for c in checks]}


def _measured(
    probs: np.ndarray | None,
    labels: np.ndarray | None,
    outputs: Mapping[str, np.ndarray] | None,
    truths: Mapping[str, np.ndarray] | None,
    factors68: Mapping[str, Any] | None,
    ref: Mapping[str, Any],
    perf: Mapping[str, Any],
    seed: int,
    log_targets: Sequence[str] = (),
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n_boot, level = int(perf["n_boot"]), float(perf["level"])
    if probs is not None and labels is not None and (np.asarray(labels) >= 0).sum() >= 2:
        m = measured_classification(probs, labels, n_boot, level, seed)
        for key, worse, tol in (("accuracy", -1, perf["max_accuracy_drop"]), ("ece", 1, perf["max_ece_rise"])):
            r = ref.get(key)
            if r is None or f"{key}_interval" not in m:
                continue
            lo, hi = m[f"{key}_interval"]
            bad = hi < r - tol if worse < 0 else lo > r + tol
            out[key] = {
                "value": m[key],
                "interval": m[f"{key}_interval"],
                "reference": r,
                "tolerance": tol,
                "alert": bool(bad),
            }
        out["classification"] = m
    if outputs is not None and truths:
        reg = measured_regression(outputs, truths, factors68, n_boot, level, seed, log_targets)
        rel, cov_drop = float(perf["max_relative_error_rise"]), float(perf["max_coverage_drop"])
        for t, row in reg.items():
            r = ref.get(t) or {}
            if "mae" in r:
                lo = row["mae_interval"][0]
                out[f"{t}_mae"] = {
                    "value": row["mae"],
                    "interval": row["mae_interval"],
                    "reference": r["mae"],
                    "tolerance": rel,
                    "alert": bool(lo > r["mae"] * (1.0 + rel)),
                }
            if "coverage_68" in r:
                hi = row["coverage_68_interval"][1]
                out[f"{t}_coverage_68"] = {
                    "value": row["coverage_68"],
                    "interval": row["coverage_68_interval"],
                    "reference": r["coverage_68"],
                    "tolerance": cov_drop,
                    "alert": bool(hi < r["coverage_68"] - cov_drop),
                }
        out["regression"] = reg
    return out
