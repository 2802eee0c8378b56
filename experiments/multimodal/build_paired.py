"""Build a paired set into the store through the multi-modal datamodule and report what it holds.

    PYTHONPATH=. python experiments/multimodal/build_paired.py --out experiments/multimodal/results/<name>.json \
        datamodule=miles_paired datamodule.data_dir=../shared/data/miles [more Hydra overrides of conf/train.yaml]

Writes the object table and one dataset per modality to the store (``paths.store_dir`` unless overridden), sets
the datamodule up with the configured split and prints/writes: objects per modality subset, rows per part and
modality, the object-level leakage audit, label coverage and (for simulations) variability classes per population.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    with initialize_config_dir(config_dir=os.path.abspath("conf"), version_base="1.3"):
        cfg = compose("train", overrides=args.overrides)
    t0 = time.perf_counter()
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    dm.setup()
    objects = dm.objects
    present = {m: (objects["object_id"].isin(ids)).to_numpy() for m, ids in dm.row_ids.items()}
    subsets: dict[str, int] = {}
    for i in range(len(objects)):
        key = "+".join(m for m in dm.modalities if present[m][i]) or "none"
        subsets[key] = subsets.get(key, 0) + 1
    results = {
        "overrides": args.overrides,
        "store": str(dm.store.root),
        "objects_table": dm.dataset_name,
        "datasets": {m: ds.name for m, ds in dm.datasets.items()},
        "objects_served": len(objects),
        "objects_per_modality_subset": dict(sorted(subsets.items())),
        "split_audit": dm.split_result.audit,
        "labelled": {c: int(np.isfinite(objects[c].to_numpy(float)).sum()) for c in dm.targets},
        "class_counts": {str(k): int(v) for k, v in objects["class_name"].value_counts().items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if "var_class" in objects.columns:
        tab = objects.groupby(["population", "var_class"]).size()
        results["var_class_by_population"] = {f"{a}/{b}": int(v) for (a, b), v in tab.items()}
        results["presence_rate"] = {
            m: float(objects[f"has_{m}"].mean()) for m in dm.modalities if f"has_{m}" in objects
        }
    if "sed" in dm.datasets and "parallax" in dm.datasets["sed"].meta.columns:
        plx = dm.datasets["sed"].meta["parallax"].to_numpy(float)
        results["sed_rows_with_parallax"] = int(np.isfinite(plx).sum())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps({k: results[k] for k in ("objects_served", "objects_per_modality_subset", "seconds")}, indent=1))


if __name__ == "__main__":
    main()
