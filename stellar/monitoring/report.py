"""Figures and the HTML page of a monitor run (``monitor.html``, beside ``monitor.json``)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from stellar.evaluation.report import html_page, html_table
from stellar.monitoring.reference import TrainingReference

__all__ = ["monitor_figures", "render_monitor"]

#: most drifting features drawn (smallest adjusted p-values first)
MAX_FEATURE_PANELS = 6


def _hist_pair(ax: Any, ref: np.ndarray, batch: np.ndarray, title: str) -> None:
    r, b = ref[np.isfinite(ref)], batch[np.isfinite(batch)]
    if not len(r) and not len(b):
        ax.set_title(f"{title} (no values)")
        return
    both = np.concatenate([r, b])
    lo, hi = np.quantile(both, [0.005, 0.995]) if len(both) > 10 else (both.min(), both.max())
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 30)
    ax.hist(np.clip(r, lo, hi), bins=bins, density=True, alpha=0.5, label=f"reference (n={len(r)})")
    ax.hist(np.clip(b, lo, hi), bins=bins, density=True, alpha=0.5, label=f"batch (n={len(b)})")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def monitor_figures(
    report: Mapping[str, Any],
    reference: TrainingReference,
    summaries: pd.DataFrame,
    probs: np.ndarray | None = None,
    ood_score: np.ndarray | None = None,
    sketch_coords: np.ndarray | None = None,
) -> dict[str, Figure]:
    """The distributions behind the checks: the most drifting input summaries, predicted classes and confidence,
    the OOD scores, and the batch over the reference on the first two input-sketch components."""
    figs: dict[str, Figure] = {}
    checks = [c for c in report.get("data_drift", {}).get("checks", []) if c["test"] == "ks"]
    checks = sorted(checks, key=lambda c: (c["p_adjusted"] if c["p_adjusted"] is not None else 1.0, -c["effect"]))
    names = [c["name"] for c in checks[:MAX_FEATURE_PANELS] if c["name"] in summaries.columns]
    if names:
        cols = min(3, len(names))
        rows = int(np.ceil(len(names) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        for ax, name in zip(axes.ravel(), names, strict=False):
            _hist_pair(ax, reference.summaries[name].to_numpy(float), summaries[name].to_numpy(float), name)
        for ax in axes.ravel()[len(names) :]:
            ax.axis("off")
        fig.suptitle("input summaries: reference vs batch (most drifting first)")
        fig.tight_layout()
        figs["input_summaries"] = fig
    if probs is not None and reference.probs is not None and reference.class_names:
        k = len(reference.class_names)
        ok = np.isfinite(probs).all(axis=1)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
        x = np.arange(k)
        ref_frac = np.bincount(reference.probs.argmax(axis=1), minlength=k) / max(len(reference.probs), 1)
        batch_frac = np.bincount(probs[ok].argmax(axis=1), minlength=k) / max(int(ok.sum()), 1)
        a1.bar(x - 0.2, ref_frac, 0.4, label="reference")
        a1.bar(x + 0.2, batch_frac, 0.4, label="batch")
        a1.set_xticks(x, reference.class_names, rotation=45, fontsize=8)
        a1.set_title("predicted classes")
        a1.legend(fontsize=7)
        _hist_pair(a2, reference.probs.max(axis=1), probs[ok].max(axis=1), "confidence (max calibrated probability)")
        fig.tight_layout()
        figs["predictions"] = fig
    if ood_score is not None and len(ood_score):
        fig, ax = plt.subplots(figsize=(5, 3.4))
        score = np.log10(np.clip(ood_score, 1e-3, None))
        ax.hist(score, bins=40)
        ax.axvline(0.0, color="k", ls="--", label="threshold (score 1)")
        frac = float(np.mean(ood_score > 1.0))
        ax.set_title(f"OOD score: {frac:.1%} flagged (reference {reference.sketch.alpha:.1%})", fontsize=9)
        ax.set_xlabel("log10 score")
        ax.legend(fontsize=7)
        fig.tight_layout()
        figs["ood_score"] = fig
    if sketch_coords is not None and reference.sketch_coords is not None and reference.sketch_coords.shape[1] >= 2:
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(reference.sketch_coords[:, 0], reference.sketch_coords[:, 1], s=4, alpha=0.4, label="reference")
        ax.scatter(sketch_coords[:, 0], sketch_coords[:, 1], s=4, alpha=0.4, label="batch")
        ax.set_xlabel("input component 1 (σ)")
        ax.set_ylabel("input component 2 (σ)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        figs["input_sketch"] = fig
    return figs


def _verdict(alert: bool) -> str:
    return "<span class='alert'>ALERT</span>" if alert else "<span class='ok'>ok</span>"


def render_monitor(report: Mapping[str, Any], figure_blocks: list[str]) -> str:
    """``monitor.html``: the verdict, each family's checks as a table, performance and the figures."""
    meta = report.get("meta", {})
    parts = [
        f"<h1>stellar monitor: {html.escape(str(meta.get('model', '')))} — {_verdict(bool(report.get('alert')))}</h1>",
        f"<p>{html.escape(json.dumps(meta, default=str))}</p>",
        f"<p>alerts: {html.escape(', '.join(report.get('alerts', [])) or 'none')}</p>",
    ]
    keys = ("test", "statistic", "p_value", "p_adjusted", "effect", "min_effect", "n_batch", "n_reference", "alert")
    for family in ("data_drift", "prediction_drift"):
        checks = report.get(family, {}).get("checks", [])
        if checks:
            rows = {c["name"]: {k: c.get(k) for k in keys} for c in checks}
            parts += [f"<h2>{family.replace('_', ' ')} {_verdict(report[family]['alert'])}</h2>", html_table(rows)]
    if "ood" in report:
        parts += ["<h2>Out-of-distribution objects</h2>", html_table({"batch": report["ood"]})]
    est = report.get("performance_estimate")
    if est and est.get("n"):
        row = {k: v for k, v in est.items() if k != "per_class_f1"}
        parts += [f"<h2>Performance without labels {_verdict(bool(est.get('alert')))}</h2>", html_table({"": row})]
        parts.append(html_table({"estimated F1": est.get("per_class_f1", {})}))
    perf = report.get("performance")
    if perf:
        rows = {k: v for k, v in perf.items() if isinstance(v, dict) and "reference" in v}
        parts += ["<h2>Performance with labels</h2>", html_table(rows)]
    parts += ["<h2>Figures</h2>", *figure_blocks]
    return html_page("stellar monitor", parts)
