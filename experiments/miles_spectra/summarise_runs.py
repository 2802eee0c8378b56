"""Test-part figures of a ``train.py -m`` multirun of ``experiment=miles_spectra``, grouped by the continuum channel.

Reads every job's ``config_resolved.yaml`` and ``metrics.json`` and prints, per setting of
``datamodule.preprocessing.continuum_channel``, the mean ± std over the jobs (folds × seeds) of Teff median and mean
absolute error, logg and [Fe/H] MAE and MK accuracy, then the per-job figures. Run from the repository root::

    python experiments/miles_spectra/summarise_runs.py outputs/miles_spectra/multiruns/<date>
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

COLS = ["teff_median_ae", "teff_mae", "logg_mae", "feh_mae", "mk_accuracy"]


def job_figures(job: Path) -> tuple[bool, int, int, dict[str, float]]:
    cfg = OmegaConf.load(job / "config_resolved.yaml")
    summary = json.loads((job / "metrics.json").read_text())["test_summary"]
    reg = summary["regression"]
    figures = {
        "teff_median_ae": reg["teff"]["median_ae"],
        "teff_mae": reg["teff"]["mae"],
        "logg_mae": reg["logg"]["mae"],
        "feh_mae": reg["feh"]["mae"],
        "mk_accuracy": summary["classification"]["accuracy"],
    }
    channel = bool(cfg.datamodule.preprocessing.get("continuum_channel", False))
    return channel, int(cfg.split.fold), int(cfg.seed), figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("multirun_dir", type=Path)
    args = ap.parse_args()
    groups: dict[bool, list[dict[str, float]]] = defaultdict(list)
    rows = []
    for metrics in sorted(args.multirun_dir.glob("*/metrics.json")):
        channel, fold, seed, fig = job_figures(metrics.parent)
        groups[channel].append(fig)
        rows.append((channel, fold, seed, fig))
    print("| continuum channel | jobs | " + " | ".join(COLS) + " |")
    print("|---|---|" + "---|" * len(COLS))
    for channel in sorted(groups, reverse=True):
        cells = [
            f"{np.mean([f[c] for f in groups[channel]]):.3g} ± {np.std([f[c] for f in groups[channel]]):.2g}"
            for c in COLS
        ]
        print(f"| {'on' if channel else 'off'} | {len(groups[channel])} | " + " | ".join(cells) + " |")
    print()
    for channel, fold, seed, fig in sorted(rows, key=lambda r: (r[1], r[2], not r[0])):
        print(
            f"fold {fold} seed {seed} channel {'on ' if channel else 'off'}: "
            + ", ".join(f"{c}={fig[c]:.3g}" for c in COLS)
        )


if __name__ == "__main__":
    main()
