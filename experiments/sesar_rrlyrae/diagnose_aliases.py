"""Why the one-day aliases that ``prior="rr_lyrae"`` leaves are left: the fit's shape and score at each star's
winner and at its catalogue period (error analysis after the run, not a choice of anything).

Usage (from the repository root, after ``period_recovery.py`` has written ``results/period_recovery.csv``)::

    PYTHONPATH=. python experiments/sesar_rrlyrae/diagnose_aliases.py --data-dir ../shared/data/sesar_rrlyrae

For every star whose multi-band period (``ours_multiband_rrlyrae``) is a one-day alias: A₂/A₁ and the
peak-to-peak (g band) of the fit at the winner and at the truth, each with the harmonics the search gave that
candidate, and ΔBIC = score(truth) − score(winner), prior included (NaN: the truth was not among the candidates).
A prior of strength 2 ln 20 ≈ 6 can only turn ΔBIC < 6. Writes ``results/aliases_left.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.preprocess.lightcurve import frequency_grid
from stellar.data.preprocess.period import _shape, best_period

HERE = Path(__file__).resolve().parent


def diagnose(d: pd.DataFrame, true: float) -> dict[str, Any]:
    t, y, e, band = (d[c].to_numpy() for c in ("time", "mag", "magerr", "band"))
    grid = frequency_grid(t, 0.1, 10.0, 5.0)
    s = best_period(t, y, e, band=band, min_period=0.1, max_period=1 / grid[0], prior="rr_lyrae", full_output=True)
    names, b = np.unique(band, return_inverse=True)
    nb, w = names.size, 1 / e**2
    yc = y.copy()
    for j in range(nb):  # the search's per-band centring
        yc[b == j] -= np.sum(w[b == j] * y[b == j]) / np.sum(w[b == j])
    win = int(np.argmin(s.bic))
    near = int(np.argmin(np.abs(s.candidates - 1 / true)))
    found = abs(s.candidates[near] * true - 1) < 1e-3

    def shape(i: int) -> dict[str, float]:
        k = int((s.n_params[i] - nb - 2 * (nb - 1)) // 2)  # shared harmonics (one extra per band beyond the first)
        out = _shape(t, yc, w, b, nb, float(s.candidates[i]), (k, 1))
        return {"period": float(1 / s.candidates[i]), "n_terms": k} | {key: round(v, 3) for key, v in out.items()}

    return {
        "winner": shape(win),
        "truth": shape(near) if found else None,
        "delta_bic": round(float(s.bic[near] - s.bic[win]), 1) if found else None,
        "first_band": str(names[0]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=HERE.parents[1].parent / "shared" / "data" / "sesar_rrlyrae")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    df = pd.read_csv(args.results / "period_recovery.csv")
    left = df[df["ours_multiband_rrlyrae_outcome"] == "one_day_alias"]
    out = {}
    for star in left.itertuples():
        d = pd.read_csv(args.data_dir / "light-curves" / f"{star.Num}.csv")
        out[str(star.Num)] = {"type": star.Type, "catalogue_period": star.Per} | diagnose(d, star.Per)
        print(star.Num, star.Type, json.dumps(out[str(star.Num)]), flush=True)
    (args.results / "aliases_left.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
