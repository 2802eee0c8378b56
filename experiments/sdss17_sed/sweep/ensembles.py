"""Validation figures of probability averages and of a class-weighted decision rule, from the sweeps' outputs.

    python ensembles.py sweep_arrays.npz round1/ round2/      # folders holding xgb_probs.npz, mlp_probs*.npz

The decision rule argmax(w * p) is chosen on one half of the validation HEALPix blocks and scored on the other
(both ways, 5 random halvings), so its gain is not measured on the rows it was chosen on.
"""

import sys
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy_healpix import HEALPix


def score(p: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    pred = (p * (1 if w is None else w)).argmax(1)
    f1 = []
    for c in range(3):
        tp, fp, fn = ((pred == c) & (y == c)).sum(), ((pred == c) & (y != c)).sum(), ((pred != c) & (y == c)).sum()
        f1.append(2 * tp / max(2 * tp + fp + fn, 1))
    return round(float((pred == y).mean()), 4), round(float(np.mean(f1)), 4)


def main(arrays: str, *folders: str) -> None:
    d = np.load(arrays)
    y = d["val_y"]
    P: dict[str, np.ndarray] = {}
    for f in folders:
        for path in sorted(Path(f).glob("*.npz")):
            z = np.load(path)
            P.update({k: z[k] for k in z.files})

    def mean(keys: list[str]) -> np.ndarray:
        return np.mean([P[k] for k in keys], axis=0)

    xgb5 = [f"base_s{s}" for s in range(11, 16)]
    cur = [f"cur_s{s}_best" for s in range(1, 10)]
    ple = [f"ple32_s{s}_best" for s in range(1, 6)]
    per = [f"periodic_s{s}_best" for s in range(1, 6)]
    w256 = [f"w256x3_e100_s{s}_best" for s in range(1, 6)]
    rows = {
        "XGBoost, 5 seeds": mean(xgb5),
        "XGBoost, 5-fold bagging of train": mean([f"fold{k}" for k in range(5)]),
        "XGBoost lambda 5, 5 seeds": mean([f"l5_s{s}" for s in range(11, 16)]),
        "MLP 'cur', 9 seeds": mean(cur),
        "MLP w256x3, 5 seeds": mean(w256),
        "MLP PLE-32, 5 seeds": mean(ple),
        "MLP periodic, 5 seeds": mean(per),
        "XGBoost s11 + MLP cur s1": (P["base_s11"] + P["cur_s1_best"]) / 2,
        "XGBoost 5 + MLP cur 5 (sed_ensemble's recipe)": 0.5 * mean(xgb5) + 0.5 * mean(cur[:5]),
        "XGBoost 5 + MLP cur 9": 0.5 * mean(xgb5) + 0.5 * mean(cur),
        "XGBoost 5 + (MLP cur 5, PLE 5, periodic 5)": 0.5 * mean(xgb5) + 0.5 * mean(cur[:5] + ple + per),
    }
    for name, p in rows.items():
        print(f"{name}: acc, macro-F1 = {score(p, y)}")

    blocks = HEALPix(16, order="nested").lonlat_to_healpix(d["val_ra"] * u.deg, d["val_dec"] * u.deg)
    grid = [np.array([a, 1.0, c]) for a in np.arange(0.7, 1.61, 0.05) for c in np.arange(0.7, 1.61, 0.05)]
    rng = np.random.default_rng(0)
    ub = np.unique(blocks)
    for name in ("XGBoost, 5 seeds", "XGBoost 5 + MLP cur 5 (sed_ensemble's recipe)"):
        p = rows[name]
        gains = []
        for _ in range(5):
            half = np.isin(blocks, rng.permutation(ub)[: len(ub) // 2])
            for fit, held in ((half, ~half), (~half, half)):
                w = max(grid, key=lambda w, fit=fit: score(p[fit], y[fit], w)[1])
                gains.append(np.subtract(score(p[held], y[held], w), score(p[held], y[held])))
        print(f"decision rule on {name}: held-out gain in acc, macro-F1 = {np.mean(gains, 0).round(4)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
