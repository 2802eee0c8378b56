"""EROS-2 on 5 grouped folds (field patches): transformer, XGBoost and their calibrated combinations.

Usage (from the repository root, 2 shared CPU cores: ~5 min a fold)::

    PYTHONPATH=. python experiments/eros_lightcurves/five_fold.py --data-dir ../shared/data/eros --out results
    PYTHONPATH=. python experiments/eros_lightcurves/five_fold.py --folds 0,1 --out results   # some folds
    PYTHONPATH=. python experiments/eros_lightcurves/five_fold.py --summarise-only --out results
    PYTHONPATH=. python experiments/eros_lightcurves/five_fold.py --out results_augment datamodule/augment=lightcurve
    PYTHONPATH=. python experiments/eros_lightcurves/five_fold.py --summarise-only --out results_augment \
        --paired-with results_baseline_rerun   # fold-paired differences
    PYTHONPATH=. python experiments/eros_lightcurves/five_fold.py --out pooled.json \
        --pool results_a_seed11:results_b_seed11 --pool results_a_seed12:results_b_seed12   # pooled over pairs

Each fold is one ``run(cfg)`` of ``experiment=eros_lightcurves model=lightcurve_combined`` with
``split=group_kfold`` on ``patch_id`` (seed 11, fold ``k`` test, fold ``k+1`` val, the rest train: every star is
in exactly one test fold). From that one fit, on the same test stars:

- ``transformer`` and ``xgboost``: each member alone, temperature-scaled on the validation part (its calibrator);
- ``mean``: the mean of the two calibrated members, then the pipeline's temperature scaling (what
  ``train.py experiment=eros_lightcurves model=lightcurve_combined`` scores);
- ``stacked``: a :class:`~stellar.models.combine.StackedPool` fitted on the validation part's calibrated member
  probabilities, then temperature scaling on the validation part (what ``model.stack=true``, the default of
  ``experiment=eros_lightcurves``, does inside the run).

ECE is after calibration (15 bins). Each row also holds ``val``: the transformer member's accuracy, macro-F1 and
log loss (before its temperature scaling) on the fold's validation part, the numbers variants are chosen on (never
the test folds). Variants are Hydra overrides after the options, e.g. ``datamodule/augment=lightcurve`` with their
own ``--out`` and ``--runs``. Per-fold rows go to ``<out>/fold_<k>.json``; the summary (mean ± std over the
folds present) to ``<out>/summary.json`` and ``<out>/summary.md``; the run folders to ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir

from stellar.evaluation.calibration import TemperatureScaler
from stellar.evaluation.metrics import classification_report
from stellar.models.combine import StackedPool
from stellar.models.ensemble import EnsembleClassifier
from stellar.pipelines.train import run

REPO = Path(__file__).resolve().parents[2]
ARMS = ("transformer", "xgboost", "mean", "stacked")
METRICS = ("accuracy", "macro_f1", "ece_after")
VAL_METRICS = ("accuracy", "macro_f1", "log_loss")
log = logging.getLogger("five_fold")


def fold_config(data_dir: str, fold: int, runs: Path, extra: list[str]) -> Any:
    overrides = [
        "experiment=eros_lightcurves",
        "model=lightcurve_combined",
        "model.stack=false",  # the run scores the mean; the stack is fitted below on the same members
        f"datamodule.data_dir={data_dir}",
        "split=group_kfold",
        "~split.group_key",
        "split.base.group_key=patch_id",
        f"split.fold={fold}",
        "model.members.xgb.n_jobs=1",
        f"paths.output_dir={runs / f'fold{fold}'}",
        f"paths.log_dir={runs}",
        *extra,
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose("train", overrides=overrides)


def _scores(before: np.ndarray, after: np.ndarray, y: np.ndarray, names: list[str]) -> dict[str, float]:
    rep = classification_report(before, after, y, names)
    return {k: float(rep[k]) for k in (*METRICS, "ece_before")}


def one_fold(data_dir: str, fold: int, runs: Path, extra: list[str]) -> dict[str, Any]:
    metrics, objs = run(fold_config(data_dir, fold, runs, extra))
    model, dm = objs["model"], objs["datamodule"]
    names = list(model.class_names)
    val, test = dm.arrays("val"), dm.arrays("test")
    y_val, y_test = val["label"], test["label"]
    ok = y_val >= 0
    raw_test = EnsembleClassifier.member_probs(model, test)  # the members before their calibrators
    cal_val, cal_test = model.member_probs(val), model.member_probs(test)
    row: dict[str, Any] = {"fold": fold, "n_test": int((y_test >= 0).sum())}
    for arm, key in (("transformer", "transformer_0"), ("xgboost", "xgb_0")):
        row[arm] = _scores(raw_test[key], cal_test[key], y_test, names)
    cls = metrics["test_summary"]["classification"]
    row["mean"] = {k: float(cls[k]) for k in (*METRICS, "ece_before")}
    pool = StackedPool().fit([p[ok] for p in cal_val.values()], y_val[ok])
    stacked_val, stacked_test = pool.transform(list(cal_val.values())), pool.transform(list(cal_test.values()))
    temp = TemperatureScaler().fit(np.log(np.clip(stacked_val[ok], 1e-12, 1)), y_val[ok])
    row["stacked"] = _scores(stacked_test, temp.transform(np.log(np.clip(stacked_test, 1e-12, 1))), y_test, names)
    row["stacked"]["weights"] = pool.to_dict()["weights"]
    row["temperatures"] = {k: c.temperature for k, c in model.member_calibrators.items()}
    raw_val = EnsembleClassifier.member_probs(model, val)["transformer_0"][ok]
    rep = classification_report(raw_val, raw_val, y_val[ok], names)
    nll = -np.log(np.clip(raw_val[np.arange(len(raw_val)), y_val[ok]], 1e-12, 1)).mean()
    row["val"] = {"accuracy": float(rep["accuracy"]), "macro_f1": float(rep["macro_f1"]), "log_loss": float(nll)}
    return row


def summarise(out: Path) -> dict[str, Any]:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("fold_*.json"))]
    if not rows:
        raise SystemExit(f"no fold_*.json in {out}")
    summary: dict[str, Any] = {"folds": [r["fold"] for r in rows]}
    lines = ["| model | accuracy | macro-F1 | ECE (after) |", "|---|---|---|---|"]
    for arm in ARMS:
        vals = {m: np.array([r[arm][m] for r in rows]) for m in METRICS}
        summary[arm] = {m: {"mean": float(v.mean()), "std": float(v.std(ddof=1) if len(v) > 1 else 0.0)}
                        for m, v in vals.items()}  # fmt: skip
        cells = [f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}" for v in vals.values()]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    if all("val" in r for r in rows):
        v = {m: np.array([r["val"][m] for r in rows]) for m in VAL_METRICS}
        summary["val_transformer"] = {m: {"mean": float(a.mean()), "std": float(a.std(ddof=1) if len(a) > 1 else 0.0)}
                                      for m, a in v.items()}  # fmt: skip
        lines += ["", "| validation parts, transformer member | accuracy | macro-F1 | log loss |", "|---|---|---|---|"]
        cells = [f"{a.mean():.3f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.3f}" for a in v.values()]
        lines.append("| transformer (val) | " + " | ".join(cells) + " |")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def paired(out: Path, base: Path) -> dict[str, Any]:
    """Fold-paired differences (``out`` minus ``base``) on the folds both hold: each arm's test metrics and, where
    both rows have them, the transformer's validation metrics."""
    rows = {int(p.stem.split("_")[1]): json.loads(p.read_text()) for p in out.glob("fold_*.json")}
    ref = {int(p.stem.split("_")[1]): json.loads(p.read_text()) for p in base.glob("fold_*.json")}
    folds = sorted(set(rows) & set(ref))
    if not folds:
        raise SystemExit(f"no fold in both {out} and {base}")
    res: dict[str, Any] = {"folds": folds, "base": str(base)}
    lines = [f"paired by fold ({folds}), {out.name} minus {base.name}: mean ± std (min to max)"]
    keys = [(arm, m) for arm in ARMS for m in METRICS]
    keys += [("val", m) for m in VAL_METRICS if all("val" in r for r in (*rows.values(), *ref.values()))]
    for arm, m in keys:
        d = np.array([rows[f][arm][m] - ref[f][arm][m] for f in folds])
        sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
        res[f"{arm}/{m}"] = {"mean": float(d.mean()), "std": sd, "per_fold": d.tolist()}
        lines.append(f"  {arm:11s} {m:9s} {d.mean():+.4f} ± {sd:.4f} ({d.min():+.4f} to {d.max():+.4f})")
    print("\n".join(lines))
    return res


def pooled(pairs: list[str], out: Path) -> dict[str, Any]:
    """Paired differences pooled over several ``BASE:VARIANT`` results folders (e.g. two seeds of both arms): one
    pair per fold both folders hold; mean ± std of each arm over the pooled runs and of the differences, with how
    many differences are positive. Written to ``out``."""
    runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for pair in pairs:
        base, var = (Path(x).resolve() for x in pair.split(":"))
        ref = {p.name: json.loads(p.read_text()) for p in base.glob("fold_*.json")}
        runs += [(ref[p.name], json.loads(p.read_text())) for p in sorted(var.glob("fold_*.json")) if p.name in ref]
    if not runs:
        raise SystemExit(f"no fold in both folders of {pairs}")
    res: dict[str, Any] = {"pairs": pairs, "n_runs": len(runs)}
    keys = [("val", m) for m in VAL_METRICS] + [(arm, m) for arm in ARMS for m in METRICS]
    for arm, m in keys:
        b, v = (np.array([r[i][arm][m] for r in runs]) for i in (0, 1))
        d = v - b
        res[f"{arm}/{m}"] = {
            name: {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0}
            for name, a in (("base", b), ("variant", v), ("diff", d))
        } | {"per_run": d.tolist(), "positive": int((d > 0).sum())}
        print(f"  {arm:11s} {m:9s} base {b.mean():.3f}  variant {v.mean():.3f}  diff {d.mean():+.4f} "
              f"± {res[f'{arm}/{m}']['diff']['std']:.4f} ({int((d > 0).sum())}/{len(d)} positive)")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="../shared/data/eros")
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--out", default="experiments/eros_lightcurves/results")
    ap.add_argument("--runs", default="outputs/eros_five_fold", help="where each fold's run folder goes")
    ap.add_argument("--summarise-only", action="store_true")
    ap.add_argument("--paired-with", action="append", default=[], help="results folder to pair with, by fold")
    ap.add_argument("--pool", action="append", default=[], metavar="BASE:VARIANT",
                    help="pool fold-paired differences over pairs of results folders into --out (a .json)")  # fmt: skip
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. trainer.max_epochs=6")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.pool:
        pooled(args.pool, Path(args.out).resolve())
        return
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.summarise_only:
        for fold in (int(f) for f in args.folds.split(",")):
            row = one_fold(args.data_dir, fold, Path(args.runs).resolve(), list(args.overrides))
            (out / f"fold_{fold}.json").write_text(json.dumps(row, indent=2))
            print(json.dumps({k: row[k] for k in ("fold", *ARMS)}))
    summary = summarise(out)
    if args.paired_with:
        summary["paired"] = [paired(out, Path(b).resolve()) for b in args.paired_with]
        (out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
