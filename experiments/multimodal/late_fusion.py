"""Late fusion of the best per-modality estimators on MILES × BSC5 × Hipparcos, on grouped folds (issue 16, item 2).

    # the photometry + parallax member, chosen on the validation parts of the folds (the SED member alone)
    OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/multimodal/late_fusion.py choose-sed \\
        --out experiments/multimodal/results/late_fusion_sed_choice.json --folds 0 1 2 3 4 -- [Hydra overrides]
    # spectrum only, photometry + parallax only and late fused, every test star once
    OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/multimodal/late_fusion.py folds \\
        --out experiments/multimodal/results/late_fusion_folds.json --folds 0 1 2 3 4 --split-seed 0 -- [overrides]
    PYTHONPATH=. python experiments/multimodal/late_fusion.py table \\
        --out experiments/multimodal/results/late_fusion_folds.json
    # 68%/95% interval coverage per modality subset and target on the test folds: the model's own σ, the pooled
    # interval calibrator and the per-subset one (section 8d), both fitted on the validation parts by train.run
    OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/multimodal/late_fusion.py coverage \\
        --out experiments/multimodal/results/late_fusion_subset_coverage.json --folds 0 1 2 3 4 --split-seed 0 -- …
    # a variant (e.g. model=late_fusion_joint, section 8c) against the late fusion on the same folds: ``folds`` with
    # the variant's override, then
    PYTHONPATH=. python experiments/multimodal/late_fusion.py compare \\
        --out experiments/multimodal/results/late_fusion_joint_compare.json \\
        --runs experiments/multimodal/results/late_fusion_joint_folds_k0.json ... \\
        --baseline experiments/multimodal/results/late_fusion_folds.json ...
    # each member alone on the validation objects that have a member's modalities, log g on dwarfs / the rest
    # (saved runs of ``folds``; section 8e)
    OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/multimodal/late_fusion.py val-members --member cascade \\
        --out experiments/multimodal/results/late_fusion_cascade_val_members_k0.json --split-seed 0 -- \\
        model=late_fusion_cascade …
    # is that third member worth it on the validation parts (pool weights out of sample; saved runs of ``folds``)
    OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/multimodal/late_fusion.py val-check --member joint \\
        --out experiments/multimodal/results/late_fusion_joint_val_check_k0.json --split-seed 0 -- \\
        model=late_fusion_joint …

``folds``: per fold, one ``train.run`` of ``experiment=miles_fusion`` (``model=late_fusion``) with
``split=group_kfold split.fold=K split.base.seed=<split seed>`` (the test folds partition the objects; fold K+1 is
the validation part that fits the members' calibrators, the pooling weights and the run's calibrators). The one
fitted model gives the three rows on the same test stars, by its presence masks: *spectrum only* (every object's
SED masked: the kernel-ridge member alone, the training prior for a star without a spectrum), *photometry +
parallax only* (the spectrum masked: the SED member alone, the prior for the ~40% of stars without photometry) and
*fused* (every modality the star has). Columns as section 5: MK accuracy, Teff median absolute error, logg and
[Fe/H] MAE, on all test stars and on the stars with a spectrum and an SED (with a parallax; section 5's
``spectrum+sed`` subset).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from stellar.evaluation.calibration import (
    REPORT_LEVELS,
    NoIntervalCalibration,
    SubsetIntervalCalibrator,
    log_loss_per_row,
    negative_log_likelihood,
    softmax,
)
from stellar.models.ensemble import log_linear_pool
from stellar.models.late_fusion import ModalityMember
from stellar.pipelines.common import (
    build_interval_calibrator,
    predict,
    score_outputs,
    subset_outputs,
    subset_row,
    truths_of,
)
from stellar.pipelines.train import run

KEYS = ("n", "accuracy", "teff_median_ae", "logg_mae", "feh_mae")
VARIANTS = {"spectrum": ("sed",), "sed": ("spectrum",), "fused": ()}  # variant: the modalities masked
SED_CANDIDATES = {
    "depth8": [],  # conf/model/sed_xgboost.yaml as it is (chosen on SDSS17)
    "depth4": ["model.members.sed.params.max_depth=4"],
    "depth2": ["model.members.sed.params.max_depth=2"],
    "depth4_mcw1": ["model.members.sed.params.max_depth=4", "model.members.sed.params.min_child_weight=1"],
    # a smooth member: kernel ridge on U - B, B - V, M_V (conf/model/late_fusion_sed_kernel_ridge.yaml)
    "kernel_ridge": ["model=late_fusion_sed_kernel_ridge"],
    # the same XGBoost member reading Cousins I too (the Hipparcos V - I): I and V - I are features
    "with_i": ["datamodule.modalities.sed.bands=null"],
}


def _cfg(overrides: list[str]) -> Any:
    with initialize_config_dir(config_dir=os.path.abspath("conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def _split(fold: int, split_seed: int) -> list[str]:
    return ["split=group_kfold", f"split.fold={fold}", f"split.base.seed={split_seed}"]


def masked(arrays: dict[str, Any], modalities: tuple[str, ...]) -> dict[str, Any]:
    """``arrays`` with ``modalities`` marked absent for every object."""
    out = copy.copy(arrays)
    out["present"] = {m: (np.zeros_like(p) if m in modalities else p) for m, p in arrays["present"].items()}
    return out


def score_fold(model: Any, dm: Any, calibrator: Any, intervals: Any) -> dict[str, dict[str, dict[str, float]]]:
    """Per variant, the rows ``all`` and ``spectrum+sed`` on the test part."""
    arrays = dm.arrays("test")
    both = np.asarray(arrays["present"]["spectrum"]) & np.asarray(arrays["present"]["sed"])
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for variant, hidden in VARIANTS.items():
        out = {**model.predict_outputs(masked(arrays, hidden)), "index": arrays["index"]}
        rows[variant] = {}
        for subset, keep in (("all", np.ones_like(both)), ("spectrum+sed", both)):
            part = {k: np.asarray(v)[keep] for k, v in out.items()}
            report = score_outputs(part, dm, model.class_names, model.targets, calibrator, intervals)
            row = subset_row(report)
            rows[variant][subset] = {k: float(row[k]) for k in KEYS if k in row}
    return rows


def folds(args: argparse.Namespace) -> None:
    runs: dict[str, Any] = {}
    t0 = time.perf_counter()
    for fold in args.folds:
        base = ["experiment=miles_fusion", "logger=none", "test=true", *args.overrides, *_split(fold, args.split_seed)]
        probe = _cfg(base)
        cfg = _cfg([*base, f"paths.output_dir={probe.paths.output_dir}/late_f{fold}_k{args.split_seed}"])
        start = time.perf_counter()
        metrics, objs = run(cfg)
        model = objs["model"]
        rows = score_fold(model, objs["datamodule"], objs["calibrator"], objs["interval_calibrator"])
        runs[f"f{fold}"] = {
            "rows": rows,
            "weights": model.weights,
            "val": {k: v for k, v in metrics.items() if k.startswith("val/") and "." not in k.split("/", 1)[1]},
            "seconds": time.perf_counter() - start,
        }
        print(f"fold {fold}", f"{time.perf_counter() - start:.0f}s", json.dumps(rows), flush=True)
        _write(args, runs, t0)
    print(table(_write(args, runs, t0)))


CALIBRATIONS = ("none", "pooled", "by_subset")


def subset_coverage(model: Any, dm: Any, cal: SubsetIntervalCalibrator) -> dict[str, Any]:
    """Per modality subset (the test objects that have it, the other modalities masked) and target: ``n`` and the
    fraction of truths inside the 68.27% and 95% intervals of the model's own σ (``none``), of the pooled calibrator
    and of the per-subset one."""
    res: dict[str, Any] = {}
    for name, out in subset_outputs(None, model, dm, "test"):
        for t, truth in truths_of(out, dm, list(model.targets)).items():
            ok = np.isfinite(truth)
            row: dict[str, Any] = {"n": int(ok.sum())}
            for how, c in zip(CALIBRATIONS, (NoIntervalCalibration(), cal.pooled, cal), strict=True):
                for level, tag in zip(REPORT_LEVELS, ("68", "95"), strict=True):
                    lo, hi = c.interval(out, t, level, [name] * len(truth))
                    row[f"{how}_{tag}"] = float(np.mean((truth[ok] >= lo[ok]) & (truth[ok] <= hi[ok])))
            res.setdefault(name, {})[t] = row
    return res


def _hits(cal: Any, out: dict[str, Any], truth: np.ndarray, t: str, name: str, level: float) -> tuple[int, int]:
    ok = np.isfinite(truth)
    lo, hi = cal.interval(out, t, level, [name] * len(truth))
    return int(((truth >= lo) & (truth <= hi))[ok].sum()), int(ok.sum())


def val_crossfit(cfg: Any, model: Any, dm: Any) -> dict[str, Any]:
    """The choice pooled vs per subset on the validation part alone: its objects in two random halves; both
    calibrators fitted on one half (as ``train.run`` fits them) and scored on the other, then the other way round;
    coverage per subset, target and level over both held-out halves."""
    val, subs = predict(None, model, dm, "val"), dict(subset_outputs(None, model, dm, "val"))
    side = dict(zip(val["index"].tolist(), np.random.default_rng(0).permutation(len(val["index"])) % 2, strict=True))

    def half(out: dict[str, Any], h: int) -> dict[str, Any]:
        keep = np.array([side[int(i)] == h for i in out["index"]])
        return {k: np.asarray(v)[keep] for k, v in out.items()}

    targets, counts = list(model.targets), {}
    for h in (0, 1):
        cal = build_interval_calibrator(cfg.interval_calibrator, dm)
        fit = {n: (half(o, h), truths_of(half(o, h), dm, targets)) for n, o in subs.items()}
        cal.fit_subsets(half(val, h), truths_of(half(val, h), dm, targets), fit, model.log_targets)
        for name, out in subs.items():
            held = half(out, 1 - h)
            for t, truth in truths_of(held, dm, targets).items():
                for how, c in (("pooled", cal.pooled), ("by_subset", cal)):
                    for level, tag in zip(REPORT_LEVELS, ("68", "95"), strict=True):
                        got = counts.setdefault(name, {}).setdefault(t, {}).setdefault(f"{how}_{tag}", [0, 0])
                        k, n = _hits(c, held, truth, t, name, level)
                        got[0], got[1] = got[0] + k, got[1] + n
    return {name: {t: {k: h / n for k, (h, n) in row.items()} for t, row in ts.items()} for name, ts in counts.items()}


def coverage(args: argparse.Namespace) -> None:
    """Per fold one ``train.run`` (its interval calibrator per subset, ``interval_calibrator.by_subset=true``, whose
    ``pooled`` member is the single calibrator of ``by_subset=false``: both fitted on the validation part), then
    :func:`subset_coverage` on the test part; mean ± std over folds and the paired per-fold |coverage − nominal|
    differences per-subset − pooled."""
    runs: dict[str, Any] = {}
    t0 = time.perf_counter()
    for fold in args.folds:
        base = ["experiment=miles_fusion", "logger=none", "test=true", "interval_calibrator.by_subset=true",
                *args.overrides, *_split(fold, args.split_seed)]  # fmt: skip
        probe = _cfg(base)
        cfg = _cfg([*base, f"paths.output_dir={probe.paths.output_dir}/late_f{fold}_k{args.split_seed}"])
        start = time.perf_counter()
        _, objs = run(cfg)
        cal = objs["interval_calibrator"]
        if not isinstance(cal, SubsetIntervalCalibrator):
            raise SystemExit(f"fold {fold}: the run's interval calibrator is {cal!r}, not one per subset")
        runs[f"f{fold}"] = {
            "coverage": subset_coverage(objs["model"], objs["datamodule"], cal),
            "val_crossfit": val_crossfit(cfg, objs["model"], objs["datamodule"]),
            "own_subsets": {s: c.targets for s, c in cal.subsets_.items()},
            "n_val": {s: {t: p["n"] for t, p in (c.params_ or {}).items()} for s, c in cal.subsets_.items()},
            "seconds": time.perf_counter() - start,
        }
        print(f"fold {fold}", f"{time.perf_counter() - start:.0f}s", flush=True)
        result = _coverage_summary(args, runs, t0)
    print(coverage_table(result))


def _coverage_summary(args: argparse.Namespace, runs: dict[str, Any], t0: float) -> dict[str, Any]:
    first = next(iter(runs.values()))["coverage"]
    summary: dict[str, Any] = {}
    gain: dict[str, Any] = {}
    for name, targets in first.items():
        for t in targets:
            rows = [r["coverage"][name][t] for r in runs.values()]
            summary.setdefault(name, {})[t] = {
                k: [float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))] for k in rows[0]
            }
            # paired per fold: how much closer to nominal the per-subset calibrator is (positive: closer)
            gain.setdefault(name, {})[t] = {
                tag: [abs(r[f"pooled_{tag}"] - lv) - abs(r[f"by_subset_{tag}"] - lv) for r in rows]
                for lv, tag in zip(REPORT_LEVELS, ("68", "95"), strict=True)
            }
    # the decision figure, on the validation parts only: mean |coverage - nominal| over subsets, targets and folds
    val_dev = {
        f"{how}_{tag}": float(np.mean([abs(row[f"{how}_{tag}"] - lv) for r in runs.values()
                                       for ts in r["val_crossfit"].values() for row in ts.values()]))
        for how in ("pooled", "by_subset") for lv, tag in zip(REPORT_LEVELS, ("68", "95"), strict=True)
    }  # fmt: skip
    body = {"summary_mean_std": summary, "closer_to_nominal_by_subset_minus_pooled": gain,
            "val_crossfit_mean_abs_dev": val_dev, "runs": runs}  # fmt: skip
    return _save(args, body, t0)


def coverage_table(result: dict[str, Any]) -> str:
    """Markdown: one row per subset and target, coverage at 68.27% and 95% (mean ± std over folds)."""
    cols = [f"{how}_{tag}" for tag in ("68", "95") for how in CALIBRATIONS]
    lines = ["| subset | target | n | " + " | ".join(cols) + " | closer to nominal 68 / 95 (per fold mean) |",
             "|" + "---|" * (4 + len(cols))]  # fmt: skip
    for name, targets in result["summary_mean_std"].items():
        for t, r in targets.items():
            g = result["closer_to_nominal_by_subset_minus_pooled"][name][t]
            cells = [f"{r[c][0]:.3f} ± {r[c][1]:.3f}" for c in cols]
            closer = f"{np.mean(g['68']):+.3f} / {np.mean(g['95']):+.3f}"
            lines.append(f"| {name} | {t} | {r['n'][0]:.0f} | " + " | ".join(cells) + f" | {closer} |")
    dev = result.get("val_crossfit_mean_abs_dev", {})
    lines.append("\nvalidation parts, cross-fitted halves, mean |coverage − nominal|: "
                 + ", ".join(f"{k} {v:.3f}" for k, v in dev.items()))  # fmt: skip
    return "\n".join(lines)


def _write(args: argparse.Namespace, runs: dict[str, Any], t0: float) -> dict[str, Any]:
    """Mean ± std over folds per variant and subset, the paired per-fold differences fused − spectrum only, and the
    runs; written at once so an interrupted study keeps its folds."""
    summary: dict[str, Any] = {}
    diffs: dict[str, Any] = {}
    for subset in ("all", "spectrum+sed"):
        for variant in VARIANTS:
            rs = [r["rows"][variant][subset] for r in runs.values()]
            summary.setdefault(subset, {})[variant] = {
                k: [float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs]))] for k in rs[0]
            }
        diffs[subset] = {
            k: [r["rows"]["fused"][subset][k] - r["rows"]["spectrum"][subset][k] for r in runs.values()]
            for k in KEYS[1:]
        }
    return _save(args, {"summary_mean_std": summary, "fused_minus_spectrum": diffs, "runs": runs}, t0)


def _save(args: argparse.Namespace, body: dict[str, Any], t0: float) -> dict[str, Any]:
    """``body`` with the study's settings and its seconds so far, written to ``args.out``."""
    result = {"overrides": args.overrides, "folds": args.folds, "split_seed": args.split_seed, **body,
              "seconds": time.perf_counter() - t0}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=float))
    return result


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per variant, all stars then stars with a parallax; then the paired differences."""
    fmt = {"accuracy": "{:.3f}", "teff_median_ae": "{:.0f}", "logg_mae": "{:.3f}", "feh_mae": "{:.3f}"}
    names = {"spectrum": "spectrum only (kernel ridge)", "sed": "photometry + parallax only", "fused": "late fused"}
    s = result["summary_mean_std"]
    lines = ["| model | " + " | ".join(f"{sub}: {k}" for sub in s for k in fmt) + " |",
             "|" + "---|" * (1 + len(s) * len(fmt))]  # fmt: skip
    for v, name in names.items():
        cells = [f"{f.format(s[sub][v][k][0])} ± {f.format(s[sub][v][k][1])}" for sub in s for k, f in fmt.items()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    n = {sub: s[sub]["fused"]["n"][0] for sub in s}
    lines.append(f"\nn per fold (mean): {n}\n\nfused − spectrum only, per fold:")
    for sub, ks in result["fused_minus_spectrum"].items():
        lines.append(f"- {sub}: " + "; ".join(f"{k} " + ", ".join(fmt[k].replace(":", ":+").format(d) for d in ds)
                                                for k, ds in ks.items()))  # fmt: skip
    return "\n".join(lines)


def compare(args: argparse.Namespace) -> None:
    """A variant's ``folds`` results (``--runs``) against the late fusion's (``--baseline``) on the same folds, one
    file each per fold assignment, in the same order: per subset, spectrum only, late fused and the variant fused
    (mean ± std over every fold of every assignment), the paired per-fold differences variant − late fused and
    variant − spectrum only on the test parts, and the decision figures on the validation parts (the runs' ``val/``
    metrics of the fused model, per fold, and their paired differences). Refuses files whose spectrum-only rows
    differ (then the two are not the same folds and members)."""
    if len(args.runs) != len(args.baseline):
        raise SystemExit(f"--runs and --baseline need one file per fold assignment each; got {args.runs}, "
                         f"{args.baseline}")  # fmt: skip
    rows: dict[str, dict[str, list[dict[str, float]]]] = {}
    val: dict[str, list[dict[str, float]]] = {"late": [], "variant": []}
    for run_file, base_file in zip(args.runs, args.baseline, strict=True):
        new, old = json.loads(Path(run_file).read_text()), json.loads(Path(base_file).read_text())
        if new["split_seed"] != old["split_seed"] or sorted(new["runs"]) != sorted(old["runs"]):
            raise SystemExit(f"{run_file} and {base_file} are not the same folds")
        for fold, r in new["runs"].items():
            b = old["runs"][fold]
            if r["rows"]["spectrum"] != b["rows"]["spectrum"]:
                raise SystemExit(f"{fold} of {run_file}: the spectrum-only rows differ from {base_file}'s")
            for subset in r["rows"]["fused"]:
                got = rows.setdefault(subset, {"spectrum": [], "late": [], "variant": []})
                got["spectrum"].append(r["rows"]["spectrum"][subset])
                got["late"].append(b["rows"]["fused"][subset])
                got["variant"].append(r["rows"]["fused"][subset])
            val["late"].append(b["val"])
            val["variant"].append(r["val"])

    def ms(xs: list[float]) -> list[float]:
        return [float(np.mean(xs)), float(np.std(xs))]

    summary = {sub: {v: {k: ms([r[k] for r in rs]) for k in KEYS} for v, rs in got.items()}
               for sub, got in rows.items()}  # fmt: skip
    diffs = {
        f"variant_minus_{ref}": {sub: {k: [a[k] - b[k] for a, b in zip(got["variant"], got[ref], strict=True)]
                                       for k in KEYS[1:]} for sub, got in rows.items()}
        for ref in ("late", "spectrum")
    }  # fmt: skip
    val_keys = sorted(val["variant"][0])
    val_summary = {v: {k: ms([r[k] for r in rs]) for k in val_keys} for v, rs in val.items()}
    val_diff = {k: [a[k] - b[k] for a, b in zip(val["variant"], val["late"], strict=True)] for k in val_keys}
    result = {"runs": args.runs, "baseline": args.baseline, "summary_mean_std": summary, **diffs,
              "val_mean_std": val_summary, "val_variant_minus_late": val_diff}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    fmt = {"accuracy": "{:.3f}", "teff_median_ae": "{:.0f}", "logg_mae": "{:.3f}", "feh_mae": "{:.3f}"}
    names = {"spectrum": "spectrum only", "late": "late fused", "variant": args.variant_name}
    print("| model | " + " | ".join(f"{sub}: {k}" for sub in summary for k in fmt) + " |")
    print("|" + "---|" * (1 + len(summary) * len(fmt)))
    for v, name in names.items():
        cells = [f"{f.format(summary[sub][v][k][0])} ± {f.format(summary[sub][v][k][1])}"
                 for sub in summary for k, f in fmt.items()]  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + " |")
    for key in diffs:
        print(f"\n{key}, per fold (mean ± std):")
        for sub, ks in result[key].items():
            cells = [f"{k} " + ", ".join(fmt[k].replace(":", ":+").format(d) for d in ds)
                     + f" ({np.mean(ds):+.4f} ± {np.std(ds):.4f})" for k, ds in ks.items()]  # fmt: skip
            print(f"- {sub}: " + "; ".join(cells))
    print("\nvalidation parts (fused model, mean ± std): " + json.dumps(val_summary))
    print("variant − late per fold: " + json.dumps({k: [round(d, 4) for d in ds] for k, ds in val_diff.items()}))


def _saved_run(args: argparse.Namespace, fold: int) -> tuple[Any, dict[str, Any]]:
    """The model of a fold's saved ``folds`` run (``paths.output_dir``) and that fold's validation part."""
    cfg = _cfg(["experiment=miles_fusion", *args.overrides, *_split(fold, args.split_seed)])
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    dm.setup("fit")
    model = instantiate(cfg.model, class_names=dm.class_names, target_stats=dm.target_stats)
    model.load(Path(cfg.paths.output_dir) / f"late_f{fold}_k{args.split_seed}" / "checkpoints")
    return model, dm.arrays("val")


def _rows(x: Any, keep: np.ndarray) -> Any:
    """The rows ``keep`` of (nested) per-object arrays or of a member's ``(outputs, probs)``."""
    if isinstance(x, dict):
        return {k: _rows(v, keep) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_rows(v, keep) for v in x)
    return None if x is None else np.asarray(x)[keep]


def _pool_loss(model: Any, head: str, arrays: dict[str, Any], outs: dict[str, Any], w: Any) -> np.ndarray:
    """``LateFusion``'s validation loss of one head's weights ``w``, per object: log loss of the pool (class),
    absolute error of the pooled mean in the learned space (a target)."""
    pooled, regs, none = model._pooled(arrays, {head: w}, outs)
    if head == "class":
        y = np.asarray(arrays["label"])
        ok = (y >= 0) & ~none["class"]
        return log_loss_per_row(pooled["class"][ok], y[ok])
    truth = model._learned(head, np.asarray(arrays[head], dtype=np.float64))
    ok = np.isfinite(truth) & ~none[head]
    return np.abs(regs[head][0][ok] - truth[ok])


def val_check(args: argparse.Namespace) -> None:
    """Does a third member (``--member``, e.g. the joint kernel ridge) improve the pool on the validation parts, with
    the pooling weights chosen out of sample? For each fold's saved run of the variant (``folds`` mode), its validation
    objects are split 5 ways; each way is pooled by the members without and with ``--member``, the weights of each
    head chosen on the other four ways (the grid and losses of ``LateFusion``), from the members' calibrated outputs.
    Scores on all validation objects and on those with both modalities. Never reads a test part."""
    from stellar.models.ensemble import best_weights

    res: dict[str, Any] = {}
    for fold in args.folds:
        model, val = _saved_run(args, fold)
        outs = {key: model._member_outputs(key, val) for key in model.models}
        y = np.asarray(val["label"])
        n = len(y)
        ways = np.random.default_rng(fold).permutation(n) % 5
        pools = {"without": [k for k in outs if not k.startswith(f"{args.member}_")], "with": list(outs)}
        heads = ["class", *model.targets]
        pred: dict[str, dict[str, np.ndarray]] = {
            p: {"class": np.zeros((n, len(model.class_names))), **{t: np.zeros(n) for t in model.targets}}
            for p in pools
        }
        for k in range(5):
            tr, te = ways != k, ways == k
            val_tr, val_te = _rows(val, tr), _rows(val, te)
            for pool, keys in pools.items():
                o_tr = {key: _rows(outs[key], tr) for key in keys}
                o_te = {key: _rows(outs[key], te) for key in keys}
                chosen: dict[str, dict[str, float]] = {}
                for head in heads:
                    w = best_weights(keys, model.weight_step, partial(_pool_loss, model, head, val_tr, o_tr),
                                     args.margin)  # fmt: skip
                    if w is not None:
                        chosen[head] = w
                pooled, regs, _ = model._pooled(val_te, chosen, o_te)
                pred[pool]["class"][te] = pooled["class"]
                for t in model.targets:
                    pred[pool][t][te] = regs[t][0]
        both = np.asarray(val["present"]["spectrum"]) & np.asarray(val["present"]["sed"])
        # the objects every pool answers (with --member sed the pool without it has no answer for an SED-only star)
        answered = np.logical_and.reduce([np.isfinite(pred[pool]["class"]).all(1) for pool in pools])
        row: dict[str, Any] = {}
        for subset, keep in (("all", answered), ("spectrum+sed", both & answered)):
            for pool in pools:
                ok = keep & (y >= 0)
                r = {"n": int(ok.sum()), "logloss": negative_log_likelihood(pred[pool]["class"][ok], y[ok]),
                     "accuracy": float(np.mean(pred[pool]["class"][ok].argmax(1) == y[ok]))}  # fmt: skip
                for t in model.targets:
                    est = 10.0 ** pred[pool][t] if t in model.log_targets else pred[pool][t]
                    err = np.abs(est - np.asarray(val[t], dtype=np.float64))[keep]
                    r[f"{t}_median_ae" if t == "teff" else f"{t}_mae"] = float(
                        np.nanmedian(err) if t == "teff" else np.nanmean(err)
                    )
                row.setdefault(subset, {})[pool] = r
        member = next(m.model for k, m in model.models.items() if k.startswith(f"{args.member}_"))
        # what the member chose on its training part (a kernel ridge: the first block's weight, width, penalty, C)
        row["member_choices"] = {k: getattr(member, k) for k in ("weight", "gamma", "alpha", "mk_c")
                                 if hasattr(member, k)}  # fmt: skip
        res[f"f{fold}"] = row
        print(fold, json.dumps(row), flush=True)
    first = {sub: r for sub, r in next(iter(res.values())).items() if sub != "member_choices"}
    mean = {sub: {pool: {k: float(np.mean([r[sub][pool][k] for r in res.values()])) for k in rs}
                  for pool, rs in first[sub].items()} for sub in first}  # fmt: skip
    diff = {sub: {k: [r[sub]["with"][k] - r[sub]["without"][k] for r in res.values()]
                  for k in next(iter(res.values()))[sub]["with"] if k != "n"} for sub in mean}  # fmt: skip
    print("mean", json.dumps(mean))
    print("with − without per fold", json.dumps(diff))
    out = {"overrides": args.overrides, "folds": args.folds, "split_seed": args.split_seed, "member": args.member,
           "margin": args.margin,
           "mean_over_val_folds": mean, "with_minus_without": diff, "per_fold": res}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


def val_members(args: argparse.Namespace) -> None:
    """Each member alone, and the cascade's physical log g column, on the validation objects of each fold's saved
    run (``folds`` mode) that have every modality of ``--member``: log g MAE on all of them, on the dwarfs
    (catalogue log g >= 4) and on the rest, and the log g pool weights the run chose. Never reads a test part."""
    res: dict[str, Any] = {}
    t0 = time.perf_counter()
    for fold in args.folds:
        model, val = _saved_run(args, fold)
        member = model.models[f"{args.member}_0"]
        keep = member.present(val)
        part = member.part(val)
        truth = np.asarray(part["logg"], dtype=np.float64)
        ok = np.isfinite(truth)
        dwarf = ok & (truth >= 4.0)
        errs = {key: np.abs(model._member_outputs(key, val)[0]["logg_mean"][keep] - truth) for key in model.models}
        columns = list(getattr(member, "columns", []))
        if "logg_phys" in columns:
            errs["physical_logg"] = np.abs(part["cascade"][:, columns.index("logg_phys")] - truth)
        row: dict[str, Any] = {"n": [int(ok.sum()), int(dwarf.sum())], "weights_logg": model.weights.get("logg")}
        for name, e in errs.items():
            row[name] = {"all": float(np.nanmean(e[ok])), "dwarfs": float(np.nanmean(e[dwarf])),
                         "rest": float(np.nanmean(e[ok & ~dwarf]))}  # fmt: skip
        res[f"f{fold}"] = row
        print(fold, json.dumps(row), flush=True)
    names = [k for k in next(iter(res.values())) if k not in ("n", "weights_logg")]
    mean = {n: {s: float(np.mean([r[n][s] for r in res.values()])) for s in ("all", "dwarfs", "rest")} for n in names}
    print("mean", json.dumps(mean))
    _save(args, {"member": args.member, "logg_mae_mean_over_folds": mean, "per_fold": res}, t0)


def choose_sed(args: argparse.Namespace) -> None:
    """The SED member alone, per candidate (``--candidates``, default all), on each fold's validation part (its SED
    objects): log loss, accuracy, Teff median error, logg and [Fe/H] MAE. A candidate that changes the datamodule (its
    bands) gets its own. Never reads a test part."""
    res: dict[str, Any] = {}
    t0 = time.perf_counter()
    candidates = {name: SED_CANDIDATES[name] for name in (args.candidates or SED_CANDIDATES)}
    for fold in args.folds:
        base = ["experiment=miles_fusion", *args.overrides, *_split(fold, args.split_seed)]
        datamodules: dict[str, Any] = {}
        for name, extra in candidates.items():
            cfg = _cfg([*base, *extra])
            key = OmegaConf.to_yaml(cfg.datamodule)
            if key not in datamodules:
                dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
                dm.setup("fit")
                datamodules[key] = dm
            dm = datamodules[key]
            train, val = dm.arrays("train"), dm.arrays("val")
            member_cfg = cfg.model.members.sed
            factory = instantiate(member_cfg)  # the member's estimator factory (_partial_: true)
            model = factory(class_names=dm.class_names, target_stats=dm.target_stats, seed=0, name="sed")
            member = ModalityMember(model, "sed")
            member.fit(train, val)
            part = member.part(val)
            out = model.predict_outputs(part)
            y = part["label"]
            ok = y >= 0
            p = softmax(out["logits"].astype(np.float64))[ok]
            row = {"n": len(y), "logloss": negative_log_likelihood(p, y[ok]),
                   "accuracy": float(np.mean(p.argmax(1) == y[ok])),
                   "teff_median_ae": float(np.nanmedian(np.abs(out["teff_mean"] - part["teff"]))),
                   "logg_mae": float(np.nanmean(np.abs(out["logg_mean"] - part["logg"]))),
                   "feh_mae": float(np.nanmean(np.abs(out["feh_mean"] - part["feh"])))}  # fmt: skip
            res.setdefault(name, {})[f"f{fold}"] = row
            print(fold, name, json.dumps(row), flush=True)
    mean = {name: {k: float(np.mean([r[k] for r in rs.values()])) for k in next(iter(rs.values()))}
            for name, rs in res.items()}  # fmt: skip
    out = {"overrides": args.overrides, "folds": args.folds, "split_seed": args.split_seed,
           "candidates": candidates, "mean_over_val_folds": mean, "per_fold": res,
           "seconds": time.perf_counter() - t0}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    for name, m in mean.items():
        print(name, json.dumps({k: round(v, 4) for k, v in m.items()}))


def stack_check(args: argparse.Namespace) -> None:
    """Would a stacked pool (``StackedPool``: one weight per member and one bias per class, fitted by maximum
    likelihood) beat the grid-weighted log-linear pool for the MK letter? Judged on the validation parts only: for
    each fold's saved run (``folds`` mode, ``paths.output_dir``), its validation objects with both modalities are
    split 5 ways; each way is predicted by the stack and by the grid pool (weight re-chosen on the other four), from
    the members' calibrated probabilities. Never reads a test part."""
    from stellar.models.combine import StackedPool
    from stellar.models.ensemble import simplex_grid

    res: dict[str, Any] = {}
    for fold in args.folds:
        model, val = _saved_run(args, fold)
        probs = model.member_probs(val)
        y = np.asarray(val["label"])
        keep = (y >= 0) & np.all([np.isfinite(p).all(axis=1) for p in probs.values()], axis=0)
        p_s, p_p, y = probs["spectrum_0"][keep], probs["sed_0"][keep], y[keep]
        ways = np.random.default_rng(fold).permutation(len(y)) % 5
        pooled, stacked = np.zeros_like(p_s), np.zeros_like(p_s)
        for k in range(5):
            tr, te = ways != k, ways == k
            best = min(simplex_grid(2, 0.1), key=lambda w: negative_log_likelihood(
                log_linear_pool([p_s[tr], p_p[tr]], list(w)), y[tr]))  # fmt: skip
            pooled[te] = log_linear_pool([p_s[te], p_p[te]], list(best))
            stacked[te] = StackedPool().fit([p_s[tr], p_p[tr]], y[tr]).transform([p_s[te], p_p[te]])
        row = {"n": len(y)}
        for name, p in (("spectrum", p_s), ("pool", pooled), ("stack", stacked)):
            row[f"{name}_logloss"] = negative_log_likelihood(p, y)
            row[f"{name}_accuracy"] = float(np.mean(p.argmax(1) == y))
        res[f"f{fold}"] = row
        print(fold, json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
    mean = {k: float(np.mean([r[k] for r in res.values()])) for k in next(iter(res.values()))}
    print("mean", json.dumps({k: round(v, 4) for k, v in mean.items()}))
    Path(args.out).write_text(
        json.dumps(
            {
                "overrides": args.overrides,
                "folds": args.folds,
                "split_seed": args.split_seed,
                "mean": mean,
                "per_fold": res,
            },
            indent=2,
        )
    )


def _robust_var(x: np.ndarray) -> float:
    """(1.4826 × the median absolute deviation)², the variance of a Gaussian core, ignoring NaN."""
    x = x[np.isfinite(x)]
    return float((1.4826 * np.median(np.abs(x - np.median(x)))) ** 2)


def limits(args: argparse.Namespace) -> None:
    """How far can a second modality move the MK letter and Teff? Three checks, none reading a test part:
    (1) the MILES and BSC5 spectral types of the same stars, as MK letters (two independent classifications);
    (2) the catalogue Teff (and log g, [Fe/H]) as the only input of a letter classifier (5-fold cross-validated gradient
    boosting on every labelled star); (3) on each fold's validation objects with both modalities (saved ``folds``
    runs): the spectrum member's accuracy against fixed pools of the two calibrated members (log-linear with the
    spectrum's weight w; the Bayes product p_spec p_sed / prior with the training class frequencies), the Teff
    median error of fixed mixtures of the two members' log Teff, and the three-cornered hat of log Teff (catalogue,
    spectrum member, SED member: robust variances of the three pairwise differences give each one's own scatter,
    if their errors are independent)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from stellar.data.labels import mk_letter_from_sptype
    from stellar.data.sources.paired import MilesPairedSource

    t0 = time.perf_counter()
    cfg = _cfg(["experiment=miles_fusion", *args.overrides])
    source = MilesPairedSource(cfg.datamodule.data_dir)
    t = source.objects().table
    with_hr = t[t["id_hr"] != ""]
    bsc5 = source._bsc5.set_index(source._bsc5["hr"].astype(str)).loc[with_hr["id_hr"]]
    letter_bsc5 = np.array([mk_letter_from_sptype(x) or "" for x in bsc5["sptype"].fillna("")])
    letter_miles = with_hr["mk_class"].to_numpy()
    both_typed = (letter_bsc5 != "") & (letter_miles != "")
    agreement = {
        "n": int(both_typed.sum()),
        "agree": float(np.mean(letter_bsc5[both_typed] == letter_miles[both_typed])),
    }
    print("MILES vs BSC5 letters", agreement, flush=True)
    typed = (t["mk_class"] != "") & np.isfinite(t["teff"]) & np.isfinite(t["logg"]) & np.isfinite(t["feh"])
    y_all = t.loc[typed, "mk_class"].to_numpy()
    from_labels: dict[str, float] = {}
    for name, cols in (("teff", ["teff"]), ("teff+logg", ["teff", "logg"]), ("teff+logg+feh", ["teff", "logg", "feh"])):
        x = np.column_stack([np.log10(t.loc[typed, c]) if c == "teff" else t.loc[typed, c] for c in cols])
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        pred = cross_val_predict(HistGradientBoostingClassifier(max_depth=3, max_iter=100), x, y_all, cv=cv)
        from_labels[name] = float(np.mean(pred == y_all))
    print("letter from the catalogue's own parameters", from_labels, flush=True)
    ws = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    res: dict[str, Any] = {}
    hat_rows: list[np.ndarray] = []
    for fold in args.folds:
        model, val = _saved_run(args, fold)
        log_prior = np.log(model.prior["class"])  # the training part's class frequencies (add-one), saved with it
        (o_s, p_s), (o_p, p_p) = model._member_outputs("spectrum_0", val), model._member_outputs("sed_0", val)
        y = np.asarray(val["label"])
        both = np.asarray(val["present"]["spectrum"]) & np.asarray(val["present"]["sed"])
        lab = both & (y >= 0)
        l_s, l_p = (np.log(np.clip(np.asarray(p)[lab], 1e-12, 1.0)) for p in (p_s, p_p))
        acc = {"spectrum": float(np.mean(l_s.argmax(1) == y[lab])), "sed": float(np.mean(l_p.argmax(1) == y[lab]))}
        for w in ws[:-1]:
            acc[f"log_linear_w{w}"] = float(np.mean((w * l_s + (1 - w) * l_p).argmax(1) == y[lab]))
        acc["bayes_product"] = float(np.mean((l_s + l_p - log_prior).argmax(1) == y[lab]))
        truth = np.asarray(val["teff"], dtype=np.float64)[both]
        ls, lp = (np.log10(np.asarray(o["teff_mean"], dtype=np.float64)[both]) for o in (o_s, o_p))
        teff = {f"w{w}": float(np.nanmedian(np.abs(10 ** (w * ls + (1 - w) * lp) - truth))) for w in ws}
        hat_rows.append(np.column_stack([np.log10(truth), ls, lp]))
        res[f"f{fold}"] = {"n": int(lab.sum()), "accuracy": acc, "teff_median_ae": teff}
        print(fold, json.dumps(res[f"f{fold}"]), flush=True)
    lt = np.concatenate(hat_rows)
    lt = lt[np.isfinite(lt).all(1)]
    v_sl, v_pl, v_sp = (_robust_var(lt[:, a] - lt[:, b]) for a, b in ((1, 0), (2, 0), (1, 2)))
    to_k = 5500.0 * np.log(10.0)  # dex of log Teff → K at 5,500 K
    hat = {
        "n": len(lt),
        "spectrum_minus_catalogue": v_sl,
        "sed_minus_catalogue": v_pl,
        "spectrum_minus_sed": v_sp,
        "catalogue": (v_sl + v_pl - v_sp) / 2,
        "spectrum": (v_sl + v_sp - v_pl) / 2,
        "sed": (v_pl + v_sp - v_sl) / 2,
    }
    hat_k = {k: (float(np.sqrt(max(v, 0.0)) * to_k) if k != "n" else v) for k, v in hat.items()}
    print("three-cornered hat, robust sigma in K at 5500 K", hat_k)
    mean = {part: {k: float(np.mean([r[part][k] for r in res.values()])) for k in next(iter(res.values()))[part]}
            for part in ("accuracy", "teff_median_ae")}  # fmt: skip
    print("mean", json.dumps(mean))
    _save(
        args,
        {
            "mk_letter_agreement_miles_bsc5": agreement,
            "letter_from_catalogue_parameters_cv": from_labels,
            "validation_mean_over_folds": mean,
            "three_cornered_hat_sigma_K": hat_k,
            "per_fold": res,
        },
        t0,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes_list = ["folds", "choose-sed", "stack-check", "table", "compare", "val-check", "val-members", "coverage",
                  "coverage-table", "limits"]  # fmt: skip
    p.add_argument("mode", choices=modes_list)
    p.add_argument("--out", required=True, help="results JSON to write (table: to read)")
    p.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--split-seed", type=int, default=0, help="seed of the fold assignment (split.base.seed)")
    p.add_argument("--runs", nargs="+", default=[], help="compare: the variant's folds JSONs, one per assignment")
    p.add_argument("--baseline", nargs="+", default=[], help="compare: the late fusion's, in the same order")
    p.add_argument("--member", default="joint", help="val-check: the member whose worth is checked")
    p.add_argument("--candidates", nargs="+", choices=list(SED_CANDIDATES), help="choose-sed: these only")
    p.add_argument("--margin", type=float, default=0.0, help="val-check: the pool weights' weight_margin")
    p.add_argument("--variant-name", default="late fused + joint", help="compare: the variant's row name")
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args()
    if args.mode in ("table", "coverage-table"):
        show = table if args.mode == "table" else coverage_table
        print(show(json.loads(Path(args.out).read_text())))
        return
    modes = {"folds": folds, "choose-sed": choose_sed, "stack-check": stack_check, "compare": compare,
             "val-check": val_check, "val-members": val_members, "coverage": coverage, "limits": limits}  # fmt: skip
    modes[args.mode](args)


if __name__ == "__main__":
    main()
