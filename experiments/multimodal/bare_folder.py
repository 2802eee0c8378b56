"""A bare MILES-format folder of test-part stars of a ``miles_fusion`` run, for ``evaluate.py … split=none``.

The folder holds only ``miles_spectra.npz`` and ``miles_params.csv`` (the rows of the chosen stars, copied unchanged
from the MILES folder the run trained on): no BSC5 or Hipparcos file, so the evaluation must find the stars'
photometry and parallaxes by their names. The stars are drawn (seeded) from the run's own test part, half of them
with BSC5 photometry in the run's store and half without, so the scores are on stars the model never trained on.

    PYTHONPATH=. python experiments/multimodal/bare_folder.py --run <miles_fusion run> \
        --miles ../shared/data/miles --out /tmp/bare_miles --n 12
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from stellar.data.sources.spectra import MilesSource


def test_stars(run: Path, n: int, seed: int) -> list[str]:
    """``n`` MILES names of the run's test part with a spectrum: ``n // 2`` with photometry, the rest without."""
    cfg = OmegaConf.load(run / "config_resolved.yaml")
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    dm.setup("test")
    test = dm.arrays("test")
    ids = dm.meta["object_id"].to_numpy()[test["index"]]
    spec, sed = np.asarray(test["present"]["spectrum"]), np.asarray(test["present"]["sed"])
    rng = np.random.default_rng(seed)
    with_sed = rng.choice(np.sort(ids[spec & sed]), n // 2, replace=False)
    without = rng.choice(np.sort(ids[spec & ~sed]), n - n // 2, replace=False)
    return [str(i).removeprefix("miles:") for i in (*with_sed, *without)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a train run folder of experiment=miles_fusion")
    ap.add_argument("--miles", type=Path, required=True, help="the MILES folder the run trained on")
    ap.add_argument("--out", type=Path, required=True, help="the bare folder to write")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = test_stars(args.run, args.n, args.seed)
    folder = MilesSource(str(args.miles)).write_subset(names, args.out)
    print(json.dumps({"folder": str(folder), "files": sorted(p.name for p in folder.iterdir()), "stars": names}))


if __name__ == "__main__":
    main()
