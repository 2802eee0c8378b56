"""``spectral_kernel_ridge`` variants on the 5 grouped folds, each fold through ``train.run`` (as ``python train.py``).

Every variant is a list of config overrides on top of ``python train.py experiment=miles_spectra
model=spectral_kernel_ridge split=group_kfold split.base.seed=7 split.fold=K``; per fold and variant the script keeps
the table columns of ``five_fold.py`` and, per target, the 68% / 95% coverage before and after the run's conformal
interval calibrator (fitted on the validation part, fold K+1). Nothing is chosen on a test fold here: the variants
are fixed beforehand and the estimator picks its own settings on the training and validation parts. Run from the
repository root::

    PYTHONPATH=. python experiments/miles_spectra/kernel_ridge_folds.py --data-dir ../shared/data/miles \\
        --variant "one sigma=model.per_star_sigma=false" --variant "per-star sigma="
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir

from stellar.pipelines.train import run

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("teff", "logg", "feh")
BASE = ["experiment=miles_spectra", "model=spectral_kernel_ridge", "split=group_kfold", "split.base.seed=7",
        "logger=none"]  # fmt: skip


def columns(summary: dict[str, Any]) -> dict[str, float]:
    """The five_fold.py columns and the per-target coverage before and after calibration."""
    reg, cls = summary["regression"], summary["classification"]
    row = {"logg_mae": reg["logg"]["mae"], "teff_median_ae": reg["teff"]["median_ae"], "teff_mae": reg["teff"]["mae"],
           "feh_mae": reg["feh"]["mae"], "mk_accuracy": cls["accuracy"], "mk_ece": cls["ece_after"]}  # fmt: skip
    for lv in ("68", "95"):
        for when in ("", "_after"):
            per = {t: float(reg[t][f"coverage_{lv}{when}"]) for t in TARGETS}
            row.update({f"{t}_coverage_{lv}{when}": v for t, v in per.items()})
            row[f"coverage_{lv}{when}"] = float(np.mean(list(per.values())))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data/miles")
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--variant", action="append", required=True,
                    help='"NAME=override1,override2" (overrides may be empty: the config as it is)')  # fmt: skip
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "kernel_ridge_folds.json"))
    args = ap.parse_args()
    variants = {v.split("=", 1)[0]: [o for o in v.split("=", 1)[1].split(",") if o] for v in args.variant}
    tmp = Path(tempfile.mkdtemp())
    out: dict[str, Any] = {"base": BASE, "variants": variants, "folds": args.folds, "rows": {}}
    for fold in args.folds:
        for i, (name, overrides) in enumerate(variants.items()):
            over = [*BASE, f"datamodule.data_dir={args.data_dir}", f"split.fold={fold}", *overrides,
                    f"paths.output_dir={tmp / f'fold{fold}_variant{i}'}"]  # fmt: skip
            with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
                cfg = compose("train", overrides=over)
            metrics, _ = run(cfg)
            row = {"fold": fold, **columns(metrics["test_summary"])}
            out["rows"].setdefault(name, []).append(row)
            print(f"fold {fold} {name}: " + json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
            Path(args.out).write_text(json.dumps(out, indent=1))
    print_table(out["rows"])


def print_table(rows: dict[str, list[dict[str, float]]]) -> None:
    """Mean ± std over folds of the main columns, then the per-fold coverage after calibration."""
    cols = ["logg_mae", "teff_median_ae", "teff_mae", "feh_mae", "mk_accuracy", "mk_ece", "coverage_68",
            "coverage_95", "coverage_68_after", "coverage_95_after"]  # fmt: skip
    print("| variant | " + " | ".join(cols) + " |\n" + "|---" * (len(cols) + 1) + "|")
    for name, per_fold in rows.items():
        cells = [f"{np.mean([r[c] for r in per_fold]):.3f} ± {np.std([r[c] for r in per_fold]):.3f}" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, per_fold in rows.items():
        for lv in ("68", "95"):
            for t in (*TARGETS, "mean"):
                key = f"coverage_{lv}_after" if t == "mean" else f"{t}_coverage_{lv}_after"
                print(f"{name} {lv}% after {t}: " + " ".join(f"{r[key]:.2f}" for r in per_fold))


if __name__ == "__main__":
    main()
