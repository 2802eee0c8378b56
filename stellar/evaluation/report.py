"""Evaluation reports: metrics (``report.json``), figures (PNG), one self-contained ``report.html``.

The numbers come from :mod:`stellar.evaluation.metrics`; this module draws them and writes the files.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are written headless
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from stellar.evaluation.calibration import expected_calibration_error, reliability_curve
from stellar.evaluation.metrics import OneVsRest


# ---- figures ---------------------------------------------------------------------------------------------
def confusion_figure(cm: Sequence[Sequence[int]], class_names: Sequence[str]) -> Figure:
    """Row-normalised confusion matrix with counts in each cell."""
    cm_arr = np.asarray(cm, dtype=float)
    frac = cm_arr / np.maximum(cm_arr.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(class_names), 0.6 + 0.6 * len(class_names)))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm_arr.shape[0]):
        for j in range(cm_arr.shape[1]):
            ax.text(j, i, f"{int(cm_arr[i, j])}", ha="center", va="center", color="white" if frac[i, j] > 0.5 else "k")
    ax.set(xticks=range(len(class_names)), yticks=range(len(class_names)), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(class_names)
    ax.set_yticklabels(class_names)
    fig.colorbar(im, ax=ax, label="fraction of true class")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return fig


def reliability_figure(
    probs_before: np.ndarray, probs_after: np.ndarray, labels: np.ndarray, n_bins: int = 15
) -> Figure:
    """Reliability diagram (accuracy vs confidence of the top class) before and after calibration."""
    ok = labels >= 0
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect")
    for probs, name in ((probs_before, "before"), (probs_after, "after")):
        centers, acc, conf, counts = reliability_curve(probs[ok], labels[ok], n_bins=n_bins)
        ece = expected_calibration_error(probs[ok], labels[ok], n_bins=n_bins)
        ax.plot(conf, acc, "o-", ms=4, label=f"{name} calibration (ECE {ece:.3f})")
        axh.step(centers, counts, where="mid", label=name)
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="Reliability diagram")
    ax.legend(fontsize=8)
    axh.set(xlabel="confidence of the predicted class", ylabel="count")
    axh.set_yscale("log")
    fig.tight_layout()
    return fig


def _class_colors(n: int) -> list[Any]:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _ovr_axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Any]:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.01))
    return fig, ax


def _ovr_legend(fig: Figure, ax: Any, skipped: Mapping[str, str] | None, loc: str) -> Figure:
    """The legend, with a line (no curve) for each class without one saying why."""
    for name, why in (skipped or {}).items():
        ax.plot([], [], " ", label=f"{name}: {why}, no curve")
    ax.legend(fontsize=8, loc=loc)
    fig.tight_layout()
    return fig


def roc_figure(curves: Sequence[OneVsRest], skipped: Mapping[str, str] | None = None) -> Figure:
    """One-vs-rest ROC curves, each class's ROC-AUC in the legend; classes without a curve are listed there too."""
    fig, ax = _ovr_axes("ROC, one vs rest", "false positive rate", "true positive rate")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    for c, color in zip(curves, _class_colors(len(curves)), strict=True):
        ax.plot(c.fpr, c.tpr, color=color, lw=1.2, label=f"{c.name} (AUC {c.roc_auc:.3f})")
    return _ovr_legend(fig, ax, skipped, "lower right")


def pr_figure(curves: Sequence[OneVsRest], skipped: Mapping[str, str] | None = None) -> Figure:
    """One-vs-rest precision-recall curves, each class's PR-AUC (average precision) in the legend."""
    fig, ax = _ovr_axes("Precision-recall, one vs rest", "recall", "precision")
    for c, color in zip(curves, _class_colors(len(curves)), strict=True):
        label = f"{c.name} (PR-AUC {c.average_precision:.3f})"
        ax.step(c.recall, c.precision, where="post", color=color, lw=1.2, label=label)
    return _ovr_legend(fig, ax, skipped, "best")


def regression_figure(name: str, truth: np.ndarray, mean: np.ndarray, logvar: np.ndarray, unit: str = "") -> Figure:
    """Predicted vs true (with 1σ bars) and residuals vs truth for one target."""
    ok = np.isfinite(truth)
    t, m, sd = truth[ok], mean[ok], np.exp(0.5 * logvar[ok])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.errorbar(t, m, yerr=sd, fmt=".", ms=3, alpha=0.5, elinewidth=0.5)
    lo, hi = float(np.nanmin([t.min(), m.min()])), float(np.nanmax([t.max(), m.max()]))
    a1.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    label = f"{name} [{unit}]" if unit else name
    a1.set(xlabel=f"true {label}", ylabel=f"predicted {label}", title=f"{name}: predicted vs true")
    a2.axhline(0, color="k", lw=0.8)
    a2.plot(t, m - t, ".", ms=3, alpha=0.5)
    a2.set(xlabel=f"true {label}", ylabel=f"predicted − true {label}", title=f"{name}: residuals")
    if name == "teff":
        for a in (a1, a2):
            a.set_xscale("log")
        a1.set_yscale("log")
    fig.tight_layout()
    return fig


# ---- files -----------------------------------------------------------------------------------------------
def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def write_report(
    out_dir: str | Path,
    report: Mapping[str, Any],
    figures: Mapping[str, Figure],
    name: str = "report",
    render: Callable[[Mapping[str, Any], list[str]], str] | None = None,
) -> dict[str, Path]:
    """Write ``<name>.json``, one PNG per figure and a self-contained ``<name>.html`` (images inlined) made by
    ``render(report, figure_blocks)`` (default: the evaluation report's page)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{name}.json", "html": out / f"{name}.html"}
    paths["json"].write_text(json.dumps(report, indent=2, default=float))
    blocks = []
    for fig_name, fig in figures.items():
        data = _png_bytes(fig)
        plt.close(fig)
        (out / f"{fig_name}.png").write_bytes(data)
        paths[fig_name] = out / f"{fig_name}.png"
        b64 = base64.b64encode(data).decode()
        blocks.append(
            f'<figure><img alt="{html.escape(fig_name)}" src="data:image/png;base64,{b64}"/>'
            f"<figcaption>{html.escape(fig_name)}</figcaption></figure>"
        )
    paths["html"].write_text((render or _html)(report, blocks))
    return paths


def html_table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """An HTML table: one row per key of ``rows``, one column per key of any row."""
    cols = sorted({k for r in rows.values() for k in r})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        f"<tr><th>{html.escape(str(name))}</th>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>"
        for name, r in rows.items()
    )
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v)) if v is not None else ""


def _html(report: Mapping[str, Any], figure_blocks: list[str]) -> str:
    meta = report.get("meta", {})
    parts = [
        f"<h1>stellar evaluation: {html.escape(str(meta.get('model', '')))}</h1>",
        f"<p>{html.escape(json.dumps(meta, default=str))}</p>",
    ]
    cls = report.get("classification")
    if cls:
        scalars = {k: v for k, v in cls.items() if isinstance(v, (int, float))}
        parts += [
            "<h2>Classification</h2>",
            html_table({"all": scalars}),
            "<h3>Per class</h3>",
            html_table(cls["per_class"]),
        ]
    reg = report.get("regression")
    if reg:
        parts += ["<h2>Regression</h2>", html_table(reg)]
    subsets = report.get("subsets")
    if subsets:  # multi-modal models: the same objects scored with each subset of their modalities
        parts += ["<h2>Per modality subset</h2>", html_table(subsets)]
    parts += ["<h2>Figures</h2>", *figure_blocks]
    return html_page("stellar report", parts)


def html_page(title: str, parts: Sequence[str]) -> str:
    """A self-contained HTML page of ``parts`` (with the reports' style)."""
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;margin:8px 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}figure{display:inline-block;margin:8px}"
        "img{max-width:100%}.alert{color:#b00;font-weight:bold}.ok{color:#070}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
        f"</head><body>{''.join(parts)}</body></html>"
    )
