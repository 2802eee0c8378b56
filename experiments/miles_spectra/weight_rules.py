"""How should `spectral_starnet_kernel_ridge` choose its per-head member weights? Four rules, compared on the same
fitted members: the rule is chosen on the validation parts (cross-fitted halves), then every rule is scored on the
test folds.

The members (the StarNet seed ensemble and the kernel ridge, each calibrated on val) are the ones `five_fold.py
--rows ... --out <json>` saved per fold under its temporary folder (``<runs-dir>/spectral_starnet_kernel_ridge_<K>``);
only the weights change here, so the rules are compared without the networks' run-to-run noise. Rules
(`Ensemble` options):

- ``learned``: the lowest validation MAE of the mixture mean in the learned space (log10 Teff); the default before.
- ``learned_1se``: the same with ``weight_margin=1`` (one-standard-error rule).
- ``physical``: the MAE in the target's own units (K for Teff) (``weight_space=physical``).
- ``physical_1se``: both.
- ``trust_<q>`` (added after the first four, from a validation-only look at why fold 1 lost: the network fails on
  hot stars): ``learned`` with ``trust_quantile={net: q}``, the network answering a target only where the kernel
  ridge places the star between the ``1 - q`` and ``q`` quantiles of the training values.

Validation check (the decision): each fold's validation part split in two random halves (``--halves`` seeded
splits), weights chosen on one half by the rule, the other half scored (MAE of Teff in K and median, logg, [Fe/H]
MAE, MK log loss of the weighted mixture), both ways; mean over splits and folds. Test: weights chosen on the whole
validation part, then the ensemble calibrated on val and scored on test exactly as ``train.run`` does
(``five_fold.estimator_summary``). Run from the repository root::

    PYTHONPATH=. python experiments/miles_spectra/weight_rules.py --runs-dir /tmp/<five_fold tmp> \\
        --out experiments/miles_spectra/results/weight_rules.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent))
from five_fold import COMBINED_MODEL, _row, estimator_summary

#: rule: (weight_margin, weight_space, trust_quantile of the network); the trust rules were added after the first four
RULES = {"learned": (0.0, "learned", None), "learned_1se": (1.0, "learned", None),
         "physical": (0.0, "physical", None), "physical_1se": (1.0, "physical", None),
         "trust_0.99": (0.0, "learned", 0.99), "trust_0.98": (0.0, "learned", 0.98),
         "trust_0.95": (0.0, "learned", 0.95), "trust_0.9": (0.0, "learned", 0.9)}  # fmt: skip
VAL_COLUMNS = ["teff_mae", "teff_median_ae", "logg_mae", "feh_mae", "mk_logloss"]


def _rows(arrays: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    return {k: (np.asarray(v)[keep] if np.ndim(v) and len(v) == len(keep) else v) for k, v in arrays.items()}


def _val_scores(model: Any, part: dict[str, Any]) -> dict[str, float]:
    """The weighted ensemble's raw (uncalibrated) errors on ``part``."""
    out = model.predict_outputs(part)
    row: dict[str, float] = {}
    for t in ("teff", "logg", "feh"):
        ok = np.isfinite(part[t])
        err = np.abs(out[f"{t}_mean"][ok] - part[t][ok])
        row[f"{t}_mae"] = float(err.mean())
        if t == "teff":
            row["teff_median_ae"] = float(np.median(err))
    y = part["label"]
    ok = y >= 0
    z = out["logits"][ok].astype(np.float64)
    logp = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    row["mk_logloss"] = float(-np.mean(logp[np.arange(ok.sum()), y[ok]]))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", required=True, help="five_fold.py's temporary folder of the saved fold runs")
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--halves", type=int, default=5, help="random half splits of each validation part")
    ap.add_argument("--rules", nargs="+", choices=list(RULES), help="only these rules (default: all)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    res: dict[str, Any] = {"folds": args.folds, "rules": RULES, "val": {}, "test": {}, "weights": {}}
    for fold in args.folds:
        run_dir = Path(args.runs_dir) / f"{COMBINED_MODEL}_{fold}"
        cfg = OmegaConf.load(run_dir / "config_resolved.yaml")
        dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
        dm.setup("fit")
        model = instantiate(cfg.model, class_names=dm.class_names, target_stats=dm.target_stats)
        model.load(run_dir / "checkpoints" / "estimator.json")
        val = dm.arrays("val")
        n = len(val["label"])
        for rule, (margin, space, trust) in RULES.items():
            if args.rules and rule not in args.rules:
                continue
            model.weight_margin, model.weight_space = margin, space
            model.trust_quantile = {} if trust is None else {"net": trust}
            model.trust_range = model._fit_trust_range(dm.arrays("train"))
            scores = []
            for h in range(args.halves):
                half = np.random.default_rng(100 * fold + h).permutation(n) < n // 2
                for fit_on, score_on in ((half, ~half), (~half, half)):
                    model.weights = model._fit_weights(_rows(val, fit_on))
                    scores.append(_val_scores(model, _rows(val, score_on)))
            mean = {c: float(np.mean([s[c] for s in scores])) for c in VAL_COLUMNS}
            res["val"].setdefault(rule, {})[f"f{fold}"] = mean
            model.weights = model._fit_weights(val)
            res["weights"].setdefault(rule, {})[f"f{fold}"] = model.weights
            res["test"].setdefault(rule, {})[f"f{fold}"] = _row(estimator_summary(model, dm, cfg))
            print(fold, rule, json.dumps(res["val"][rule][f"f{fold}"]), json.dumps(res["test"][rule][f"f{fold}"]),
                  flush=True)  # fmt: skip
    for part in ("val", "test"):
        res[f"{part}_mean"] = {
            rule: {c: float(np.mean([r[c] for r in folds.values()])) for c in next(iter(folds.values()))}
            for rule, folds in res[part].items()
        }
    Path(args.out).write_text(json.dumps(res, indent=1))
    for part in ("val", "test"):
        print(part)
        for rule, m in res[f"{part}_mean"].items():
            print(f"  {rule:14s}", " ".join(f"{c}={v:.4g}" for c, v in m.items()))


if __name__ == "__main__":
    main()
