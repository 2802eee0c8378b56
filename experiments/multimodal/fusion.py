"""Fused model vs each single modality, per modality subset, on the same test objects, over seeds.

    OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/multimodal/fusion.py \
        --out experiments/multimodal/results/<name>.json --seeds 0 1 2 \
        [--variants fused spectrum sed lightcurve] -- [Hydra overrides of conf/train.yaml]

Each variant is ``model=fusion`` trained through ``train.run`` on the same datamodule; ``seed`` sets the split (by
object, ``split.seed: ${seed}``), the weights and the batch order, so all variants of one seed share their test
objects and the spread over seeds covers split and initialisation: ``fused`` with every encoder, and one variant
per modality with the other encoders removed (``model.encoder.encoders.<other>=null``), i.e. that modality's
encoder and the same heads. Every model is scored by the pipeline's per-subset table (``test_summary.subsets``):
for each subset S of modalities, the test objects that have all of S, the others masked. A single-modality model
therefore has a row for every subset containing its modality, on exactly the objects of the fused model's row.
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
        singles = {v: r for v, r in by_variant.items() if v != "fused" and v in subset.split("+")}
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="results JSON to write (required unless --table)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=["fused", *MODALITIES])
    p.add_argument("--table", help="print the markdown table of an existing results JSON and exit")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.table:
        print(markdown(json.loads(Path(args.table).read_text())["summary_mean_std"]))
        return
    if not args.out:
        p.error("--out is required")
    runs: dict[str, dict[int, Any]] = {}
    t0 = time.perf_counter()
    for variant in args.variants:
        for seed in args.seeds:
            base = ["model=fusion", "logger=none", "test=true", f"seed={seed}", *args.overrides]
            with initialize_config_dir(config_dir=os.path.abspath("conf"), version_base="1.3"):
                probe = compose("train", overrides=base)
                present = [m for m, v in probe.datamodule.modalities.items() if v is not None]
                if variant != "fused" and variant not in present:
                    break
                out = f"{probe.paths.output_dir}/{variant}_s{seed}"
                cfg = compose("train", overrides=[*base, *_variant(variant, present), f"paths.output_dir={out}"])
            start = time.perf_counter()
            metrics, _ = run(cfg)
            subsets = metrics["test_summary"]["subsets"]
            runs.setdefault(variant, {})[seed] = {
                "subsets": {s: {k: r[k] for k in KEYS if k in r} for s, r in subsets.items()},
                "seconds": time.perf_counter() - start,
                "best_epoch_val_loss": metrics.get("val/loss"),
            }
            print(variant, seed, f"{time.perf_counter() - start:.0f}s", json.dumps(runs[variant][seed]["subsets"]))
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
        "summary_mean_std": summary,
        "runs": runs,
        "seconds": time.perf_counter() - t0,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(markdown(summary))


if __name__ == "__main__":
    main()
