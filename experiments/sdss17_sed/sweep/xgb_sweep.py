"""XGBoost variants on the SDSS17 train part, early-stopped and scored on the validation part only.

    NPAR=5 NT=2 python xgb_sweep.py [specs.json]   # default: the first round of variants (SPECS)

Reads ``sweep_arrays.npz`` beside this file (see dump_arrays.py); writes the validation probabilities of every
variant to ``$OUT/xgb_probs.npz`` and prints accuracy and macro-F1.
"""

import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np
import xgboost as xgb
from sklearn.metrics import f1_score

OUT = Path(os.environ.get("OUT", "/tmp/sdss17_sweep"))
D = np.load(Path(__file__).with_name("sweep_arrays.npz"))
Xtr, ytr, Xva, yva = D["train_x"], D["train_y"], D["val_x"], D["val_y"]
NT = int(os.environ.get("NT", "2"))
#: sed_xgboost's parameters
BASE = {
    "tree_method": "hist",
    "objective": "multi:softprob",
    "num_class": 3,
    "eval_metric": "mlogloss",
    "max_depth": 8,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
    "lambda": 1.0,
}


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, labels=[0, 1, 2], average="macro", zero_division=0))


def job(spec: list) -> tuple[str, dict, np.ndarray]:
    name, params, seed, extra = spec
    t = time.time()
    rows = np.arange(len(ytr))
    if extra.get("fold") is not None:  # k-fold bagging: train on 4/5 of the training part
        perm = np.random.default_rng(seed).permutation(len(ytr))
        rows = np.sort(np.setdiff1d(perm, np.array_split(perm, extra.get("nfold", 5))[extra["fold"]]))
    weight = None
    if extra.get("balanced"):
        weight = (len(ytr) / (3 * np.bincount(ytr)))[ytr[rows]]
    dtr = xgb.DMatrix(Xtr[rows], label=ytr[rows], weight=weight)
    dva = xgb.DMatrix(Xva, label=yva)
    booster = xgb.train(
        {**BASE, **params, "seed": seed, "nthread": NT},
        dtr,
        4000,
        evals=[(dva, "val")],
        early_stopping_rounds=50,
        verbose_eval=False,
    )
    p = booster.predict(dva, iteration_range=(0, booster.best_iteration + 1))
    pred = p.argmax(1)
    r = {
        "acc": float((pred == yva).mean()),
        "f1": macro_f1(yva, pred),
        "best_it": int(booster.best_iteration),
        "sec": time.time() - t,
    }
    print(name, r, flush=True)
    return name, r, p.astype(np.float32)


SPECS = [
    *[[f"base_s{s}", {}, s, {}] for s in (11, 12, 13, 14, 15)],
    ["eta02", {"eta": 0.02}, 11, {}],
    ["maxbin1024", {"max_bin": 1024}, 11, {}],
    ["d6_eta02", {"max_depth": 6, "eta": 0.02}, 11, {}],
    ["d10_eta02", {"max_depth": 10, "eta": 0.02}, 11, {}],
    ["d12_eta02", {"max_depth": 12, "eta": 0.02}, 11, {}],
    ["mcw1", {"min_child_weight": 1}, 11, {}],
    ["mcw10", {"min_child_weight": 10}, 11, {}],
    ["mcw20", {"min_child_weight": 20}, 11, {}],
    ["lambda5", {"lambda": 5.0}, 11, {}],
    ["alpha1", {"alpha": 1.0}, 11, {}],
    ["col05", {"colsample_bytree": 0.5}, 11, {}],
    ["col10", {"colsample_bytree": 1.0}, 11, {}],
    ["sub06", {"subsample": 0.6}, 11, {}],
    ["sub10", {"subsample": 1.0}, 11, {}],
    ["lossguide255", {"grow_policy": "lossguide", "max_depth": 0, "max_leaves": 255}, 11, {}],
    ["balanced", {}, 11, {"balanced": True}],
    *[[f"fold{k}", {}, 11, {"fold": k}] for k in range(5)],
]

if __name__ == "__main__":
    specs = json.loads(Path(sys.argv[1]).read_text()) if len(sys.argv) > 1 else SPECS
    OUT.mkdir(parents=True, exist_ok=True)
    probs = {}
    with Pool(int(os.environ.get("NPAR", "4"))) as pool:
        for name, _r, p in pool.imap_unordered(job, specs):
            probs[name] = p
            np.savez_compressed(OUT / "xgb_probs.npz", **probs)
