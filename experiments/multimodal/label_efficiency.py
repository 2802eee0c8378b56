"""Label efficiency: fine-tuning ``model=fusion`` from contrastively pretrained encoders vs from scratch, with a
fraction of the training labels, on the same test objects, over seeds.

    OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/multimodal/label_efficiency.py \
        --out experiments/multimodal/results/label_efficiency.json --seeds 0 1 --fractions 0.01 0.1 1.0 \
        --pretrain-epochs 10 [--fixed-steps 264 --val-every 11] [--arms scratch pretrained probe] \
        -- [Hydra overrides of conf/train.yaml, for every run]

For each seed: one ``experiment=multimodal_pretrain`` run (no labels; the training part of the split of that seed),
then for each fraction the arms, ``model=fusion`` from scratch (``scratch``), fine-tuned from
``model.pretrained=<pretrain run>`` (``pretrained``) and on the frozen pretrained encoders
(``probe``: ``model.freeze_encoders=true``, only the fusion transformer and the heads learn), each with
``datamodule.label_fraction=<fraction>`` and ``datamodule.label_seed=<seed>`` (the same labelled objects for every
arm). ``seed`` sets the split by object (``split.seed: ${seed}``), so the pretraining never sees the test objects
and every arm and fraction of a seed is scored on the same test part.

By default every fine-tuning run has ``trainer.max_epochs`` epochs, so a 1% run takes 1/100 of the optimizer steps
of a 100% run. ``--fixed-steps N`` gives every run the same N optimizer steps whatever its fraction
(``trainer.max_steps=N`` with unbounded epochs, the cosine schedule stepped per optimizer step over N steps) and
validates every ``--val-every`` steps across epochs (``trainer.val_check_interval``), the checkpoint still being the
one of lowest ``val/loss``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir

from stellar.pipelines.train import run

#: per-subset columns kept from the pipeline's table (the single-modality subsets and all three)
KEYS = ("n", "accuracy", "teff_median_ae", "logg_mae")
SUBSETS = ("spectrum", "sed", "lightcurve", "spectrum+sed+lightcurve")
#: fine-tuning arms: extra overrides of each (``{pre}`` is the pretraining run folder)
ARMS = {
    "scratch": [],
    "pretrained": ["model.pretrained={pre}"],
    "probe": ["model.pretrained={pre}", "model.freeze_encoders=true"],
}


def fixed_steps_overrides(steps: int, val_every: int) -> list[str]:
    """Overrides that bound a fine-tuning run by ``steps`` optimizer steps instead of epochs, validating (and so
    choosing the checkpoint) every ``val_every`` steps across epochs."""
    if steps < 1 or not 1 <= val_every <= steps:
        raise SystemExit(f"--fixed-steps must be >= 1 and --val-every in [1, steps]; got {steps}, {val_every}")
    return [
        "trainer.max_epochs=-1",
        f"trainer.max_steps={steps}",
        "trainer.check_val_every_n_epoch=null",
        f"trainer.val_check_interval={val_every}",
        "model.scheduler_interval=step",
        f"model.scheduler.T_max={steps}",
        "callbacks.model_checkpoint.filename='step_{step:05d}'",  # several checkpoints may fall in one epoch
    ]


def _compose(overrides: list[str]) -> Any:
    with initialize_config_dir(config_dir=os.path.abspath("conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def _scores(metrics: dict[str, Any]) -> dict[str, Any]:
    summary = metrics["test_summary"]
    reg = summary.get("regression", {})
    out: dict[str, Any] = {
        "all": {
            "n": summary["classification"]["n"],
            "accuracy": summary["classification"]["accuracy"],
            "teff_median_ae": reg["teff"]["median_ae"],
            "logg_mae": reg["logg"]["mae"],
        }
    }
    for s in SUBSETS:
        if s in summary.get("subsets", {}):
            out[s] = {k: summary["subsets"][s][k] for k in KEYS}
    return out


def markdown(summary: dict[str, dict[str, dict[str, dict[str, list[float]]]]], subset: str = "all") -> str:
    """One row per label fraction: accuracy, Teff median error and logg MAE of each arm (mean ± std over seeds)."""
    cols = [("accuracy", "{:.3f}"), ("teff_median_ae", "{:.0f}"), ("logg_mae", "{:.3f}")]
    names = [a for a in ARMS if any(a in arms for arms in summary.values())]
    head = "| labels | n test | " + " | ".join(f"{k}: " + " | ".join(names) for k, _ in cols) + " |"
    lines = [head, "|" + "---|" * (2 + len(names) * len(cols))]
    for frac, arms in summary.items():
        if any(subset not in arms.get(arm, {}) for arm in names):
            continue
        cells = [f"{float(frac):.0%}", f"{arms[names[0]][subset]['n'][0]:.0f}"]
        for key, fmt in cols:
            for arm in names:
                m, sd = arms[arm][subset][key]
                cells.append(f"{fmt.format(m)} ± {fmt.format(sd)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checkpoint_steps(runs: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Per fraction and arm, the optimizer steps taken and the step of the kept (lowest ``val/loss``) checkpoint,
    for each seed (runs written before ``--fixed-steps`` existed have neither)."""
    lines = ["| labels | arm | steps taken | kept checkpoint (per seed) |", "|---|---|---|---|"]
    for frac, arms in runs.items():
        for arm, by_seed in arms.items():
            taken = sorted({str(r.get("steps", "?")) for r in by_seed.values()})
            kept = ", ".join(f"s{seed}: {r.get('best_checkpoint', '?')}" for seed, r in by_seed.items())
            lines.append(f"| {float(frac):.0%} | {arm} | {'/'.join(taken)} | {kept} |")
    return "\n".join(lines)


def paired(runs: dict[str, dict[str, dict[str, Any]]], subset: str = "all", base: str = "scratch") -> str:
    """Per fraction and arm, the per-seed differences arm − ``base`` on the same test objects (paired)."""
    cols = (("accuracy", "{:+.3f}"), ("teff_median_ae", "{:+.0f}"), ("logg_mae", "{:+.3f}"))
    lines = [f"| labels | arm − {base} | " + " | ".join(k for k, _ in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for frac, arms in runs.items():
        for arm, by_seed in arms.items():
            if arm == base or base not in arms:
                continue
            seeds = [sd for sd in by_seed if sd in arms[base] and subset in by_seed[sd]]
            cells = [", ".join(fmt.format(by_seed[sd][subset][k] - arms[base][sd][subset][k]) for sd in seeds)
                     for k, fmt in cols]  # fmt: skip
            lines.append(f"| {float(frac):.0%} | {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write(args: argparse.Namespace, runs: dict[str, dict[str, dict[int, Any]]], seconds: float) -> dict[str, Any]:
    """Mean and std over the seeds done so far, written with every run to ``args.out``; returns the summary."""
    summary: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}
    for frac, arms in runs.items():
        for arm, by_seed in arms.items():
            for subset in next(iter(by_seed.values())):
                if subset in ("seconds", "steps", "best_checkpoint"):
                    continue
                rows = [r[subset] for r in by_seed.values()]
                summary.setdefault(frac, {}).setdefault(arm, {})[subset] = {
                    k: [float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))] for k in rows[0]
                }
    result = {
        "overrides": args.overrides,
        "seeds": args.seeds,
        "fractions": args.fractions,
        "pretrain_epochs": args.pretrain_epochs,
        "arms": args.arms,
        "fixed_steps": args.fixed_steps,
        "val_every": args.val_every if args.fixed_steps else None,
        "summary_mean_std": summary,
        "runs": runs,
        "seconds": seconds,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="results JSON to write (required unless --table)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--arms", nargs="+", default=["scratch", "pretrained"], choices=list(ARMS))
    p.add_argument("--fixed-steps", type=int, help="every fine-tuning run takes this many optimizer steps")
    p.add_argument("--val-every", type=int, default=11, help="with --fixed-steps: validate every this many steps")
    p.add_argument("--table", help="print the markdown tables of an existing results JSON and exit")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.table:
        result = json.loads(Path(args.table).read_text())
        for subset in ("all", *SUBSETS):
            print(f"\n{subset}\n" + markdown(result["summary_mean_std"], subset))
        print("\n" + checkpoint_steps(result["runs"]))
        for subset in ("all", "sed"):
            print(f"\n{subset}, paired per seed\n" + paired(result["runs"], subset))
        return
    if not args.out:
        p.error("--out is required")
    steps = fixed_steps_overrides(args.fixed_steps, args.val_every) if args.fixed_steps else []
    t0 = time.perf_counter()
    runs: dict[str, dict[str, dict[int, Any]]] = {}
    for seed in args.seeds:
        common = ["datamodule=multimodal", "logger=none", f"seed={seed}", *args.overrides]
        probe = _compose(common)
        pre_dir = f"{probe.paths.output_dir}/pretrain_s{seed}"
        start = time.perf_counter()
        pre = _compose(["experiment=multimodal_pretrain", *common, f"trainer.max_epochs={args.pretrain_epochs}",
                        f"paths.output_dir={pre_dir}"])  # fmt: skip
        pre_metrics, _ = run(pre)
        print("pretrain", seed, f"{time.perf_counter() - start:.0f}s val/loss={pre_metrics.get('val/loss')}")
        for frac in args.fractions:
            for arm in args.arms:
                out = f"{probe.paths.output_dir}/{arm}_f{frac}_s{seed}"
                labels = [f"datamodule.label_fraction={frac}", f"datamodule.label_seed={seed}"]
                ovs = ["model=fusion", "test=true", *common, *labels, *steps, f"paths.output_dir={out}"]
                ovs += [o.format(pre=pre_dir) for o in ARMS[arm]]
                start = time.perf_counter()
                metrics, objs = run(_compose(ovs))
                scores = {**_scores(metrics), "seconds": time.perf_counter() - start,
                          "steps": int(objs["trainer"].global_step),
                          "best_checkpoint": Path(metrics["best_checkpoint"] or "").name}  # fmt: skip
                runs.setdefault(str(frac), {}).setdefault(arm, {})[seed] = scores
                print(arm, frac, seed, f"{scores['seconds']:.0f}s", json.dumps(scores["all"]))
                _write(args, runs, time.perf_counter() - t0)  # after every run: a partial result is usable
    summary = _write(args, runs, time.perf_counter() - t0)
    for subset in ("all", *SUBSETS):
        print(f"\n{subset}\n" + markdown(summary, subset))


if __name__ == "__main__":
    main()
