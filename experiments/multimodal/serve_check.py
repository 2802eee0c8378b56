"""Ask a running ``python serve.py`` for ``/predict/multimodal`` answers: the README example, one real MILES star with
each modality missing, and bad input; write every status and answer to a JSON file.

The star's parts are real: its MILES spectrum (air wavelengths, as in the folder), its BSC5 UBV photometry and its
Hipparcos parallax, found by name as the ``miles_paired`` datamodule finds them (the folder holds only MILES files).

    PYTHONPATH=. python experiments/multimodal/serve_check.py --url http://127.0.0.1:8716 \
        --folder /tmp/bare_miles --star HD060179 --out experiments/multimodal/results/serve_multimodal.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from stellar.data.sources.paired import MilesPairedSource

ROUTE = "/predict/multimodal"


def star_parts(folder: Path, star: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The star's spectrum part, photometry part (with parallax) and its catalogue labels."""
    params = pd.read_csv(folder / "miles_params.csv", dtype={"miles_id": str})
    row = params[params["name"].str.strip() == star].iloc[0]
    with np.load(folder / "miles_spectra.npz") as z:
        k = int(np.flatnonzero(np.char.strip(z["miles_id"].astype(str)) == row["miles_id"].strip())[0])
        wave, flux = z["wave_air_angstrom"].astype(float), z["flux"][k].astype(float)
    spectrum = {"flux": flux.tolist(), "wavelengths": wave.tolist(), "medium": "air"}
    sed = MilesPairedSource(str(folder)).build_sed()
    i = int(np.flatnonzero(sed["meta"]["object_id"].to_numpy() == f"miles:{star}")[0])
    meta = sed["meta"].iloc[i]
    photometry = {
        "magnitudes": [float(m) for m in sed["arrays"]["mag"][i]],
        "bands": list(sed["attrs"]["bands"]),
        "parallax": float(meta["parallax"]),
        "parallax_err": float(meta["parallax_err"]),
    }
    labels = {"sptype": str(row["sptype"]), "teff": row["teff"], "logg": row["logg"], "feh": row["feh"]}
    return spectrum, photometry, {**labels, "hr": str(meta["hr"]), "hip": str(meta["hip"])}


def summary(r: httpx.Response) -> dict[str, Any]:
    """Status and the parts of the answer worth reading (the whole JSON of an error)."""
    out: dict[str, Any] = {"status": r.status_code}
    body = r.json()
    if r.status_code != 200:  # FastAPI's errors echo the input (4,300 values here): left out
        detail = body["detail"]
        return {
            **out,
            "detail": [{k: v for k, v in d.items() if k != "input"} for d in detail]
            if isinstance(detail, list)
            else detail,
        }
    preds = []
    for p in body["predictions"]:
        t = {k: f"{v['mean']:.3g} ± {v['std']:.2g}" for k, v in p["targets"].items()}
        pc = p["predicted_class"]
        preds.append({"used": p["modalities_used"], "class": f"{pc} ({p['probabilities'][pc]:.2f})", **t})
    return {**out, "model": f"{body['model']} v{body['version']}", "predictions": preds, "assumed": body["assumed"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--folder", type=Path, required=True, help="a MILES-format folder holding --star")
    ap.add_argument("--star", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    spectrum, photometry, labels = star_parts(args.folder, args.star)
    line = next(x for x in Path("README.md").read_text().splitlines() if x.startswith("curl") and ROUTE in x)
    match = re.search(r"-d '(.*)'$", line)
    if match is None:
        raise SystemExit("no README curl example of /predict/multimodal")
    no_plx = {k: v for k, v in photometry.items() if not k.startswith("parallax")}
    cases: dict[str, Any] = {
        "readme_example": json.loads(match.group(1)),
        "spectrum_only": {"objects": [{"spectrum": spectrum}]},
        "photometry_parallax_only": {"objects": [{"photometry": photometry}]},
        "photometry_without_parallax": {"objects": [{"photometry": no_plx}]},
        "spectrum_photometry_parallax": {"objects": [{"spectrum": spectrum, "photometry": photometry}]},
        "lightcurve_only": {"objects": [{"lightcurve": {"values": [5.1, 5.3, 5.0, 5.2], "times": [0, 1, 2, 3]}}]},
        "missing_flux": {"objects": [{"spectrum": {"wavelengths": spectrum["wavelengths"]}}]},
        "wavelengths_length": {"objects": [{"spectrum": {**spectrum, "wavelengths": spectrum["wavelengths"][:-1]}}]},
        "flux_all_nan": {"objects": [{"spectrum": {**spectrum, "flux": [float("nan")] * len(spectrum["flux"])}}]},
        "unknown_modality": {"objects": [{"radio": {"flux": [1.0, 2.0]}}]},
        "negative_parallax_err": {"objects": [{"photometry": {**photometry, "parallax_err": -0.2}}]},
        "unknown_model": {"objects": [{"photometry": photometry}], "model": "no_such_model"},
    }
    results: dict[str, Any] = {"star": {"name": args.star, **labels}, "url": args.url + ROUTE, "cases": {}}
    with httpx.Client(timeout=60) as client:
        for name, body in cases.items():
            # NaN travels as the NaN token (Python's and JavaScript's JSON writers emit it)
            r = client.post(args.url + ROUTE, content=json.dumps(body), headers={"Content-Type": "application/json"})
            results["cases"][name] = summary(r)
            print(name, json.dumps(results["cases"][name])[:300])
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
