"""How often the periodogram period the transformer phases its tokens at is the catalogue period, per EROS class.

Usage (from the repository root)::

    PYTHONPATH=. python experiments/eros_lightcurves/period_diagnostic.py --data-dir ../shared/data/eros \
        --out experiments/eros_lightcurves/results_period/period_diagnostic.json

The ``best_period`` batch field (``period`` before the leak fix; Lomb-Scargle peak of the band with most points,
``LightCurvePreprocessing``) against the
``period`` label (catalogue period / ``div_period``, a label only): the fraction of each class within 2% of the
label, of half of it, of twice it, and elsewhere. Nothing is fitted; it says what a phase input at that period can see.
It also checks what the datamodule's batches carry as ``period``: the stored periodogram period, or the label (the
target column of the same name replaces the field in ``StellarDataModule._tensors``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="../shared/data/eros")
    ap.add_argument("--out", default="experiments/eros_lightcurves/results_period/period_diagnostic.json")
    ap.add_argument("--tolerance", type=float, default=0.02)
    args = ap.parse_args()
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=["experiment=eros_lightcurves", f"datamodule.data_dir={args.data_dir}"])
    dm = instantiate(cfg.datamodule, split=None)
    dm.setup()
    label = dm.meta["period"].to_numpy(float)
    stored = "best_period" if "best_period" in dm.dataset.fields else "period"  # the name before the fix
    ratio = dm.dataset.load(stored) / label  # the stored periodogram period, row-aligned with meta
    # what a batch hands the model as its period input (split=None: every star is in "test")
    batch = dm.arrays("test")
    batch_is_label = bool(np.allclose(batch["best_period"], label[batch["index"]].astype(np.float32), equal_nan=True))
    print("batch field 'best_period' (the model's period input) equals the label period:", batch_is_label)
    out: dict[str, dict[str, float]] = {}
    for name in dm.class_names:
        r = ratio[(dm.meta["var_class"] == name).to_numpy() & np.isfinite(ratio)]
        near = {k: float(np.mean(np.abs(r / f - 1) < args.tolerance)) for k, f in (("P", 1), ("P/2", 0.5), ("2P", 2))}
        out[name] = {"n": len(r), **near, "elsewhere": 1.0 - sum(near.values())}
        print(name, {k: round(v, 3) for k, v in out[name].items()})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = {"tolerance": args.tolerance, "batch_period_is_label": batch_is_label, "classes": out}
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
