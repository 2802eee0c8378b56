"""Linear baselines on MILES over grouped folds: does the flux-calibrated continuum carry what normalising drops?

Each fold's parts come from the same datamodule and split as ``python train.py experiment=miles_spectra
split=group_kfold split.fold=K`` (so the test stars are the network's), with the continuum channel on. Four inputs,
all on the training preprocessing's grid, each pixel standardised on the fitting part:

- ``normalised``: the continuum-normalised flux (masked pixels at 1);
- ``flux/median``: ``normalised · exp(continuum)``, i.e. the resampled flux, over its median good pixel;
- ``normalised+channel``: the normalised flux and the continuum channel side by side (the network's input);
- ``normalised+coefficients``: the normalised flux and the continuum channel's Chebyshev coefficients (degree 6).

Regression: ``RidgeCV`` (leave-one-out over 13 alphas) on log10 Teff, logg and [Fe/H], fitted on train + val (the
network uses val to choose its checkpoint; a ridge needs no such part). MK letter: logistic regression, its C
chosen on val among 1e-3, 1e-2, 1e-1, then refitted on train + val.

Run from the repository root::

    python experiments/miles_spectra/ridge_continuum.py --data-dir ../shared/data/miles --folds 0 1 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.preprocessing import StandardScaler

REPO = Path(__file__).resolve().parents[2]
ALPHAS = np.logspace(-2, 4, 13)


def fold_parts(data_dir: str, fold: int, store: str) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    overrides = [
        "experiment=miles_spectra",
        f"datamodule.data_dir={data_dir}",
        "split=group_kfold",
        f"split.fold={fold}",
        "datamodule.preprocessing.continuum_channel=true",
        f"paths.store_dir={store}",
        "paths.output_dir=/tmp/unused",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=overrides)
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    dm.setup()
    return {p: dm.arrays(p) for p in ("train", "val", "test")}, np.asarray(dm.preprocessing.grid)


def features(a: dict[str, np.ndarray], kind: str, grid: np.ndarray) -> np.ndarray:
    norm, cont, good = a["flux"], a["continuum"], ~a["mask"]
    if kind == "normalised":
        return norm
    if kind == "flux/median":
        f = norm * np.exp(cont)
        med = np.array([np.median(r[g]) if g.any() else 1.0 for r, g in zip(f, good, strict=True)])
        return f / med[:, None]
    if kind == "normalised+channel":
        return np.concatenate([norm, cont], axis=1)
    if kind == "normalised+coefficients":
        x = 2.0 * (grid - grid[0]) / (grid[-1] - grid[0]) - 1.0  # monotone in ln λ, as the fit's basis
        coef = np.polynomial.chebyshev.chebfit(x, cont.T, 6).T[:, 1:]  # the constant is the median, ~0
        return np.concatenate([norm, coef], axis=1)
    raise ValueError(kind)


def score(parts: dict[str, dict[str, np.ndarray]], kind: str, grid: np.ndarray) -> dict[str, float]:
    fit = {k: np.concatenate([parts["train"][k], parts["val"][k]]) for k in parts["train"]}
    x_fit, x_test = features(fit, kind, grid), features(parts["test"], kind, grid)
    scaler = StandardScaler().fit(x_fit)
    x_fit, x_test = scaler.transform(x_fit), scaler.transform(x_test)
    out: dict[str, float] = {}
    test = parts["test"]
    for t in ("teff", "logg", "feh"):
        y, yt = fit[t], test[t]
        ok, okt = np.isfinite(y), np.isfinite(yt)
        target = np.log10(y[ok]) if t == "teff" else y[ok]
        pred = RidgeCV(alphas=ALPHAS).fit(x_fit[ok], target).predict(x_test[okt])
        err = np.abs((10**pred if t == "teff" else pred) - yt[okt])
        out[f"{t}_mae"] = float(err.mean())
        if t == "teff":
            out["teff_median_ae"] = float(np.median(err))
    lab, labv, labt = fit["label"], parts["val"]["label"], test["label"]
    xtr = scaler.transform(features(parts["train"], kind, grid))
    xva = scaler.transform(features(parts["val"], kind, grid))
    ltr = parts["train"]["label"]
    best_c, best_acc = 1e-2, -1.0
    for c in (1e-3, 1e-2, 1e-1):
        clf = LogisticRegression(C=c, max_iter=2000).fit(xtr[ltr >= 0], ltr[ltr >= 0])
        acc = float((clf.predict(xva[labv >= 0]) == labv[labv >= 0]).mean())
        if acc > best_acc:
            best_c, best_acc = c, acc
    clf = LogisticRegression(C=best_c, max_iter=2000).fit(x_fit[lab >= 0], lab[lab >= 0])
    out["mk_accuracy"] = float((clf.predict(x_test[labt >= 0]) == labt[labt >= 0]).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--store", default="data/store")
    ap.add_argument("--out", default=None, help="JSON file for the per-fold figures")
    args = ap.parse_args()
    kinds = ["normalised", "flux/median", "normalised+channel", "normalised+coefficients"]
    per_fold: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for fold in args.folds:
        parts, grid = fold_parts(args.data_dir, fold, args.store)
        for kind in kinds:
            per_fold[kind].append(score(parts, kind, grid))
            print(f"fold {fold} {kind}: {per_fold[kind][-1]}", flush=True)
    cols = ["teff_median_ae", "teff_mae", "logg_mae", "feh_mae", "mk_accuracy"]
    print("| input | " + " | ".join(cols) + " |")
    for kind in kinds:
        cells = []
        for c in cols:
            v = np.array([r[c] for r in per_fold[kind]])
            cells.append(f"{v.mean():.3g} ± {v.std():.2g}")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(per_fold, indent=1))


if __name__ == "__main__":
    main()
