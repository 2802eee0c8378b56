"""MILES from scratch vs ``miles_finetune`` (supervised simulator pretraining) vs sim/obs contrastive pretraining, on
the grouped folds of ``experiments/miles_spectra/five_fold.py``, the same fine-tuning recipe and the same test stars.

    OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/multimodal/simobs_miles.py \
        --out experiments/multimodal/results/simobs_miles.json --folds 0 1 2 3 4 --epochs 30 \
        --simobs-epochs 20 --sim-pretrain-epochs 2 -- [Hydra overrides for every run]
    PYTHONPATH=. python experiments/multimodal/simobs_miles.py --table experiments/multimodal/results/simobs_miles.json

Folds: five_fold.py's ``BASE`` (``experiment=miles_spectra split=group_kfold split.base.seed=7``, continuum channel
on) with ``split.fold=K``: fold K is test, K+1 validation (checkpoint and calibrators), the other three train. Arms,
each fine-tuned as ``spectral_multitask`` for ``--epochs`` epochs with ``seed=7`` (the experiment's):

- ``scratch``: ``experiment=miles_spectra model=spectral_multitask`` (miles_spectra's neural model, no pretraining);
- ``miles_finetune``: ``experiment=miles_finetune``, its first stage (the whole model supervised on the simulator's
  20,000 spectra, split by the same strategy) cut to ``--sim-pretrain-epochs`` epochs (10 in the config) for time;
- ``simobs``: ``experiment=miles_simobs_pretrain`` on the same fold (no labels as targets; the simulated spectra exist
  for the fold's training stars only) for ``--simobs-epochs`` epochs, then ``experiment=miles_simobs_finetune
  model.pretrained=<that run>`` (the observed-spectrum encoder loaded into the spectral CNN).

Columns are five_fold.py's (``_row``); the table gives mean ± std over folds and, per fold, each pretrained arm minus
scratch on the same test stars. Nothing is chosen on a test fold (no choice is made at all: fixed epochs).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments.miles_spectra.five_fold import BASE, _cfg, _row
from stellar.pipelines.train import run

ARMS = ("scratch", "miles_finetune", "simobs")
#: (key, header, format, better is lower)
COLUMNS = [
    ("logg_mae", "log g MAE (dex)", "{:.3f}", True),
    ("teff_median_ae", "Teff median error (K)", "{:.0f}", True),
    ("feh_mae", "[Fe/H] MAE (dex)", "{:.3f}", True),
    ("mk_accuracy", "MK accuracy", "{:.3f}", False),
]


def _fold_runs(fold: int, args: argparse.Namespace, extra: list[str], root: Path) -> dict[str, Any]:
    split = [*BASE[1:], f"split.fold={fold}"]
    common = [*split, f"trainer.max_epochs={args.epochs}", "logger=none", *extra]
    out: dict[str, Any] = {}

    def one(name: str, overrides: list[str]) -> dict[str, Any]:
        start = time.perf_counter()
        metrics, objs = run(_cfg([*overrides, f"paths.output_dir={root / f'{name}_f{fold}'}"]))
        seconds = time.perf_counter() - start
        if "test_summary" in metrics:
            dm = objs["datamodule"]
            test_ids = sorted(dm.meta["object_id"].to_numpy()[dm.split_result.test].astype(str))
            row = {**_row(metrics["test_summary"]), "n_test": len(test_ids), "test_ids": test_ids}
        else:
            row = {}
        print(f"fold {fold} {name}: {seconds:.0f}s { ({k: v for k, v in row.items() if k != 'test_ids'}) }", flush=True)
        return {**row, "seconds": seconds}

    if "scratch" in args.arms:
        out["scratch"] = one("scratch", ["experiment=miles_spectra", "model=spectral_multitask", *common])
    if "simobs" in args.arms:
        # the same split; the continuum channel is on by default in both modalities of datamodule=miles_simobs
        pre_split = [o for o in split if o.startswith("split")]
        pre = one("simobs_pretrain", ["experiment=miles_simobs_pretrain", *pre_split,
                                      f"trainer.max_epochs={args.simobs_epochs}", "logger=none", *extra])  # fmt: skip
        out["simobs"] = one("simobs", ["experiment=miles_simobs_finetune", *common,
                                       f"model.pretrained={root / f'simobs_pretrain_f{fold}'}"])  # fmt: skip
        out["simobs"]["pretrain_seconds"] = pre["seconds"]
    if "miles_finetune" in args.arms:
        out["miles_finetune"] = one("miles_finetune", ["experiment=miles_finetune", *common,
                                                       f"pretrain.max_epochs={args.sim_pretrain_epochs}"])  # fmt: skip
    ids = [out[arm].pop("test_ids") for arm in ARMS if arm in out]
    if any(i != ids[0] for i in ids):
        raise RuntimeError(f"fold {fold}: the arms were scored on different test stars")
    return out


def table(result: dict[str, Any]) -> str:
    folds = result["folds"]
    keys = sorted(folds, key=int)
    n_test = [next(iter(folds[k].values()))["n_test"] for k in keys]
    lines = [f"Folds {', '.join(keys)} (n test stars per fold: {n_test}).", "",
             "| arm | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]  # fmt: skip
    for arm in [a for a in ARMS if a in folds[keys[0]]]:
        cells = []
        for key, _, fmt, _ in COLUMNS:
            v = np.array([folds[k][arm][key] for k in keys])
            cells.append(f"{fmt.format(v.mean())} ± {fmt.format(v.std(ddof=1) if len(v) > 1 else 0.0)}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "Paired differences, arm − scratch per fold (negative error / positive accuracy = better):", "",
              "| arm | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]  # fmt: skip
    for arm in [a for a in ARMS[1:] if a in folds[keys[0]] and "scratch" in folds[keys[0]]]:
        cells = []
        for key, _, fmt, lower in COLUMNS:
            d = np.array([folds[k][arm][key] - folds[k]["scratch"][key] for k in keys])
            wins = int(np.sum(d < 0) if lower else np.sum(d > 0))
            per = ", ".join(("{:+.3f}" if fmt == "{:.3f}" else "{:+.0f}").format(x) for x in d)
            cells.append(f"{fmt.format(d.mean()) if d.mean() < 0 else '+' + fmt.format(d.mean())} ({per}; better in "
                         f"{wins}/{len(d)})")  # fmt: skip
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs, every arm")
    ap.add_argument("--simobs-epochs", type=int, default=20, help="sim/obs contrastive pretraining epochs")
    ap.add_argument("--sim-pretrain-epochs", type=int, default=2, help="miles_finetune's simulator stage epochs")
    ap.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="the arms to run")
    ap.add_argument("--root", type=Path, default=Path("/tmp/simobs16/runs"), help="run folders")
    ap.add_argument("--table", type=Path, help="print the table of a results JSON and exit")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    result: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "base": BASE, "folds": {}}
    for fold in args.folds:
        result["folds"][str(fold)] = _fold_runs(fold, args, list(args.overrides), args.root)
        result["wall_s"] = time.perf_counter() - t0
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))  # after every fold: a partial result is usable
        print(table(result), flush=True)


if __name__ == "__main__":
    main()
