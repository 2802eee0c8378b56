"""The Cannon (``model=spectral_cannon``) beside RidgeCV on the same continuum-normalised pixels and the same stars.

For each grouped fold, ``train.run`` fits and scores the Cannon exactly as ``python train.py`` does; the ridge
baseline reads the same datamodule's parts (so the stars are identical): RidgeCV on standardised pixels for log10
Teff, logg and [Fe/H] (its alpha chosen by leave-one-out on the training part), and a multinomial logistic regression
(C by 5-fold CV on the training part) for the MK letter. Nothing is tuned on a test fold.

    python experiments/miles_spectra/cannon_vs_ridge.py --data-dir ../shared/data/miles --folds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.preprocessing import StandardScaler

from stellar.pipelines.train import run

REPO = Path(__file__).resolve().parents[2]
COLUMNS = ["logg_mae", "teff_median_ae", "teff_mae", "feh_mae", "mk_accuracy"]


def _scores(pred: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for t in ("teff", "logg", "feh"):
        ok = np.isfinite(test[t])
        err = np.abs(pred[t][ok] - test[t][ok])
        out[f"{t}_mae"], out[f"{t}_median_ae"] = float(err.mean()), float(np.median(err))
    lab = test["label"] >= 0
    out["mk_accuracy"] = float(np.mean(pred["label"][lab] == test["label"][lab]))
    return out


def ridge(train: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict[str, float]:
    """RidgeCV per target (log10 Teff) and logistic regression for MK on standardised normalised flux."""
    scaler = StandardScaler().fit(train["flux"])
    xtr, xte = scaler.transform(train["flux"]), scaler.transform(test["flux"])
    pred = {}
    for t in ("teff", "logg", "feh"):
        y = np.log10(train[t]) if t == "teff" else train[t].astype(float)
        ok = np.isfinite(y)
        p = RidgeCV(alphas=np.logspace(-1, 5, 13)).fit(xtr[ok], y[ok]).predict(xte)
        pred[t] = 10.0**p if t == "teff" else p
    lab = train["label"] >= 0
    clf = LogisticRegressionCV(Cs=np.logspace(-4, 0, 5), cv=5, max_iter=3000).fit(xtr[lab], train["label"][lab])
    pred["label"] = clf.predict(xte)
    return _scores(pred, test)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "miles"))
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cannon_vs_ridge.json"))
    args = ap.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"spectral_cannon": [], "ridge": []}
    tmp = Path(tempfile.mkdtemp())
    for fold in args.folds:
        overrides = ["experiment=miles_spectra", "model=spectral_cannon", f"datamodule.data_dir={args.data_dir}",
                     "split=group_kfold", f"split.fold={fold}", f"paths.output_dir={tmp / f'fold{fold}'}",
                     f"paths.store_dir={tmp / 'store'}", f"paths.log_dir={tmp}", "logger=none"]  # fmt: skip
        with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
            cfg = compose("train", overrides=overrides)
        metrics, objs = run(cfg)
        s = metrics["test_summary"]
        reg, cls = s["regression"], s["classification"]
        cannon = {"logg_mae": reg["logg"]["mae"], "teff_median_ae": reg["teff"]["median_ae"],
                  "teff_mae": reg["teff"]["mae"], "feh_mae": reg["feh"]["mae"], "mk_accuracy": cls["accuracy"],
                  **{f"{t}_coverage_{c}": reg[t][f"coverage_{c}"] for t in ("teff", "logg", "feh") for c in (68, 95)},
                  "mk_ece_after": cls["ece_after"], "fit_seconds": metrics["fit_seconds"]}  # fmt: skip
        dm = objs["datamodule"]
        rows["spectral_cannon"].append(cannon)
        rows["ridge"].append(ridge(dm.arrays("train"), dm.arrays("test")))
        print(f"fold {fold}: cannon {cannon}\n        ridge {rows['ridge'][-1]}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"folds": args.folds, "rows": rows}, indent=2))
    print("| method | " + " | ".join(COLUMNS) + " |")
    for name, per_fold in rows.items():
        cells = [f"{np.mean([r[c] for r in per_fold]):.3g} ± {np.std([r[c] for r in per_fold]):.2g}" for c in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
