"""How far is MILES' catalogue log g from a log g made from the Hipparcos parallax? (the label floor of item 2's aim)

    OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/multimodal/logg_floor.py \\
        --out experiments/multimodal/results/logg_floor.json -- datamodule.data_dir=../shared/data/miles

For the MILES dwarfs with BSC5 V and a Hipparcos parallax (all objects of the paired set, every part: no model is
fitted), log g from physics: L from V, the parallax and the bolometric correction BC_V(Teff) of Flower (1996) with
the coefficients of Torres (2010), M_bol,sun = 4.73 (the scale of those coefficients); a main-sequence mass guess
M = L^(1/4) (solar units); then log g = 4.438 + log M + 4 log(Teff / 5772 K) - log L, with the catalogue Teff.
Compared with the catalogue log g: median offset, robust scatter (1.4826 x MAD) and mean absolute difference, for
a few cuts.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from stellar.models.luminosity import logg_from_parallax


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("overrides", nargs="*")
    args = p.parse_intermixed_args()
    with initialize_config_dir(config_dir=os.path.abspath("conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=miles_fusion", *args.overrides])
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    dm.setup("fit")
    parts = [dm.arrays(k) for k in ("train", "val", "test")]
    have = np.concatenate([a["present"]["sed"] for a in parts])
    feats = np.concatenate([a["sed"]["features"] for a in parts])[have]
    mag = np.concatenate([a["sed"]["mag"] for a in parts])[have]
    teff, logg = (np.concatenate([a[k] for a in parts])[have].astype(np.float64) for k in ("teff", "logg"))
    # features: U, B, V magnitudes, U-B, B-V, absolute V, parallax, parallax_err (datamodule=miles_paired)
    v, plx, eplx = mag[:, 2].astype(np.float64), feats[:, 6].astype(np.float64), feats[:, 7].astype(np.float64)
    ok = np.isfinite(v) & np.isfinite(plx) & (plx > 0) & np.isfinite(teff) & np.isfinite(logg)
    rows = {}
    cuts = {
        "dwarfs: logg >= 4, 4500-7000 K, plx error < 5%, d < 100 pc": (logg >= 4.0) & (teff > 4500) & (teff < 7000)
        & (eplx < 0.05 * plx) & (plx > 10),
        "dwarfs: logg >= 4, 4000-7500 K, plx error < 10%": (logg >= 4.0) & (teff > 4000) & (teff < 7500)
        & (eplx < 0.1 * plx),
    }  # fmt: skip
    for name, cut in cuts.items():
        sel = ok & cut
        for exp in (0.25, 0.2, 0.3):
            d = logg[sel] - logg_from_parallax(v[sel], plx[sel], teff[sel], exp)
            med = float(np.median(d))
            rows[f"{name}; M = L^{exp}"] = {
                "n": int(sel.sum()),
                "median_catalogue_minus_parallax": med,
                "robust_std": float(1.4826 * np.median(np.abs(d - med))),
                "mean_abs_difference": float(np.mean(np.abs(d))),
                "mean_abs_difference_after_median_offset": float(np.mean(np.abs(d - med))),
            }
            print(name, exp, json.dumps({k: round(x, 3) for k, x in rows[f"{name}; M = L^{exp}"].items()}))
    Path(args.out).write_text(json.dumps({"overrides": args.overrides, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
