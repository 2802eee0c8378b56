"""Write the train and validation parts of the SDSS17 sky split (features, labels) to one .npz for the sweeps.

    python experiments/sdss17_sed/sweep/dump_arrays.py ../shared/data/sdss17 sweep_arrays.npz

The test part is left out on purpose: nothing in the sweeps can see it.
"""

import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

REPO = Path(__file__).resolve().parents[3]


def main(data_dir: str, out: str) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(
            "train",
            overrides=[
                "experiment=sdss17_sed",
                f"datamodule.data_dir={Path(data_dir).resolve()}",
                "paths.output_dir=/tmp/sdss17_sweep",
            ],
        )
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    dm.setup("fit")
    arrays = {}
    for part in ("train", "val"):
        a = dm.arrays(part)
        arrays[f"{part}_x"], arrays[f"{part}_y"] = a["features"], a["label"]
        for col in ("ra", "dec"):
            arrays[f"{part}_{col}"] = dm.meta[col].to_numpy()[a["index"]]
    np.savez(out, names=np.array(dm.feature_names), **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:3])
