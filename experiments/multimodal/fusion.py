"""Fused model vs each single modality, per modality subset, on the same test objects, over seeds.

    OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/multimodal/fusion.py \
        --out experiments/multimodal/results/<name>.json --seeds 0 1 2 \
        [--folds 0 1 2 3 4 [--split-seed 0]] [--variants fused spectrum sed lightcurve] -- [Hydra overrides]

Each variant is ``model=fusion`` trained through ``train.run`` on the same datamodule; ``seed`` sets the split (by
object, ``split.seed: ${seed}``), the weights and the batch order, so all variants of one seed share their test
objects and the spread over seeds covers split and initialisation: ``fused`` with every encoder, and one variant
per modality with the other encoders removed (``model.encoder.encoders.<other>=null``), i.e. that modality's
encoder and the same heads. Every model is scored by the pipeline's per-subset table (``test_summary.subsets``):
for each subset S of modalities, the test objects that have all of S, the others masked. A single-modality model
therefore has a row for every subset containing its modality, on exactly the objects of the fused model's row.
The row ``all`` is the whole test part, every object with all the modalities it has.

With ``--folds``, each run is one (fold, seed): ``split=group_kfold split.fold=K`` over objects with one fixed
``split.base.seed`` (``--split-seed``), so the folds' test parts partition the objects and every star is tested
once; ``seed`` then sets only the weights and batch order. Mean and std are over all (fold, seed) runs.
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

from stellar.pipelines.common import subset_row
from stellar.pipelines.train import run

MODALITIES = ("spectrum", "sed", "lightcurve")
KEYS = ("n", "accuracy", "teff_median_ae", "logg_mae", "feh_mae")


def _variant(name: str, modalities: list[str]) -> list[str]:
    if name == "fused":
        return [f"model.encoder.encoders.{m}=null" for m in MODALITIES if m not in modalities]
    return [f"model.encoder.encoders.{m}=null" for m in MODALITIES if m != name]


def markdown(summary: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    """Per subset: the fused model and the best single-modality model among the subset's modalities (by mean), for
    each metric."""
    metrics = [("accuracy", max, "{:.3f}"), ("teff_median_ae", min, "{:.0f}"), ("logg_mae", min, "{:.3f}"),
               ("feh_mae", min, "{:.3f}")]  # fmt: skip
    head = "| subset | n | " + " | ".join(f"{k}: fused | best single" for k, _, _ in metrics) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(metrics))]
    for subset, by_variant in summary.items():
        fused = by_variant.get("fused")
        # a single-modality model scored on a subset without its modality answers with its prior: not a candidate
        # on "all" (every object with its own modalities) every single-modality model is a candidate
        singles = {v: r for v, r in by_variant.items() if v != "fused" and (subset == "all" or v in subset.split("+"))}
        if fused is None:
            continue
        cells = [subset, f"{fused['n'][0]:.0f}"]
        for key, best, fmt in metrics:
            m, sd = fused[key]
            cells.append(f"{fmt.format(m)} ± {fmt.format(sd)}")
            if singles:
                name = best(singles, key=lambda v: singles[v][key][0])
                bm, bsd = singles[name][key]
                cells.append(f"{fmt.format(bm)} ± {fmt.format(bsd)} ({name})")
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_model(summary: dict[str, dict[str, dict[str, list[float]]]], subsets: list[str]) -> str:
    """One row per variant, one column group per subset: each model on the same objects of each subset."""
    metrics = [("accuracy", "{:.3f}"), ("teff_median_ae", "{:.0f}"), ("logg_mae", "{:.3f}"), ("feh_mae", "{:.3f}")]
    subsets = [s for s in subsets if s in summary]
    head = "| model | " + " | ".join(f"{k} ({s}, n = {summary[s]['fused']['n'][0]:.0f})" for s in subsets
                                     for k, _ in metrics) + " |"  # fmt: skip
    lines = [head, "|" + "---|" * (1 + len(subsets) * len(metrics))]
    for variant in summary[subsets[0]]:
        cells = [variant]
        for s in subsets:
            row = summary[s].get(variant)
            for key, fmt in metrics:
                cells.append(f"{fmt.format(row[key][0])} ± {fmt.format(row[key][1])}" if row else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def degradation(summary: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    """Per subset (fewest missing modalities first): the fused model, the best single modality among the subset's
    on the same objects (by mean), and the fused model's change from the subset with every modality."""
    metrics = [("accuracy", max, "{:.3f}", "{:+.3f}"), ("teff_median_ae", min, "{:.0f}", "{:+.0f}"),
               ("logg_mae", min, "{:.3f}", "{:+.3f}")]  # fmt: skip
    rows = sorted((s for s in summary if s != "all" and "fused" in summary[s]), key=lambda s: -len(s.split("+")))
    full = summary[rows[0]]["fused"]
    head = "| subset | missing | n | " + " | ".join(f"{k}: fused | best single | fused Δ" for k, *_ in metrics) + " |"
    lines = [head, "|" + "---|" * (3 + 3 * len(metrics))]
    n_all = len(rows[0].split("+"))
    for subset in rows:
        fused = summary[subset]["fused"]
        singles = {v: r for v, r in summary[subset].items() if v != "fused" and v in subset.split("+")}
        cells = [subset, str(n_all - len(subset.split("+"))), f"{fused['n'][0]:.0f}"]
        for key, best, fmt, dfmt in metrics:
            cells.append(f"{fmt.format(fused[key][0])} ± {fmt.format(fused[key][1])}")
            name = best(singles, key=lambda v: singles[v][key][0])
            cells.append(f"{fmt.format(singles[name][key][0])} ({name})")
            cells.append(dfmt.format(fused[key][0] - full[key][0]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="results JSON to write (required unless --table)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--folds", type=int, nargs="+", help="grouped k-fold test folds (split=group_kfold)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the fold assignment, fixed over folds")
    p.add_argument("--variants", nargs="+", default=["fused", *MODALITIES])
    p.add_argument("--table", help="print the markdown table of an existing results JSON and exit")
    p.add_argument(
        "--degradation", action="store_true", help="with --table: fused vs best single by missing modalities"
    )
    p.add_argument("--by-variant", nargs="+", metavar="SUBSET", help="with --table: one row per model on these subsets")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.table:
        summary = json.loads(Path(args.table).read_text())["summary_mean_std"]
        if args.degradation:
            print(degradation(summary))
        else:
            print(per_model(summary, args.by_variant) if args.by_variant else markdown(summary))
        return
    if not args.out:
        p.error("--out is required")
    runs: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    folds: list[int | None] = list(args.folds) if args.folds else [None]
    jobs = [(fold, seed) for fold in folds for seed in args.seeds]
    for variant in args.variants:
        for fold, seed in jobs:
            tag = f"s{seed}" if fold is None else f"f{fold}_s{seed}"
            split = (
                []
                if fold is None
                else ["split=group_kfold", f"split.fold={fold}", f"split.base.seed={args.split_seed}"]
            )
            base = ["model=fusion", "logger=none", "test=true", f"seed={seed}", *args.overrides, *split]
            with initialize_config_dir(config_dir=os.path.abspath("conf"), version_base="1.3"):
                probe = compose("train", overrides=base)
                present = [m for m, v in probe.datamodule.modalities.items() if v is not None]
                if variant != "fused" and variant not in present:
                    break
                out = f"{probe.paths.output_dir}/{variant}_{tag}"
                cfg = compose("train", overrides=[*base, *_variant(variant, present), f"paths.output_dir={out}"])
            start = time.perf_counter()
            metrics, _ = run(cfg)
            summary_all = {k: v for k, v in metrics["test_summary"].items() if k != "subsets"}
            subsets = {"all": subset_row(summary_all), **metrics["test_summary"]["subsets"]}
            runs.setdefault(variant, {})[tag] = {
                "subsets": {s: {k: r[k] for k in KEYS if k in r} for s, r in subsets.items()},
                "seconds": time.perf_counter() - start,
                "best_epoch_val_loss": metrics.get("val/loss"),
            }
            print(
                variant,
                tag,
                f"{time.perf_counter() - start:.0f}s",
                json.dumps(runs[variant][tag]["subsets"]),
                flush=True,
            )
            _write(args, runs, t0)
    summary = _write(args, runs, t0)
    print(markdown(summary))


def _write(args: argparse.Namespace, runs: dict[str, dict[str, Any]], t0: float) -> dict[str, Any]:
    """Write the results JSON of the runs so far (a partial result survives an interrupted study)."""
    # mean and std over seeds per variant and subset
    summary: dict[str, dict[str, dict[str, list[float]]]] = {}
    for variant, by_seed in runs.items():
        for subset in next(iter(by_seed.values()))["subsets"]:
            rows = [r["subsets"][subset] for r in by_seed.values()]
            summary.setdefault(subset, {})[variant] = {
                k: [float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))] for k in rows[0]
            }
    result = {
        "overrides": args.overrides,
        "seeds": args.seeds,
        "folds": args.folds,
        "split_seed": args.split_seed if args.folds else None,
        "summary_mean_std": summary,
        "runs": runs,
        "seconds": time.perf_counter() - t0,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return summary


if __name__ == "__main__":
    main()
