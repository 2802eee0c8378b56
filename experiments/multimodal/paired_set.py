"""MILES × BSC5 (by HD) × Hipparcos (by position, proper motions propagated J1991.25 → J2000): the real paired set.

Builds the object table with the library's own cross-match and prints/writes the counts, the separation
distribution, the counts at other radii and without propagation (so the radius choice is visible), and a
photometric check of the positional matches (Hipparcos Hp − BSC5 V). Spectral types are not read as inputs
anywhere here; they stay labels.

    PYTHONPATH=. python experiments/multimodal/paired_set.py --miles ../shared/data/miles/miles_params.csv \
        --bsc5 ../shared/data/bsc5/bsc5.dat --out experiments/multimodal/results/paired_set.json [--store DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from stellar.data.catalogs import read_bsc5, read_hipparcos, read_miles_params
from stellar.data.crossmatch import Catalog, IdMatch, PositionMatch, software_versions
from stellar.data.objects import ObjectTable
from stellar.data.store import DatasetStore

RADII_ARCSEC = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0)


def _stats(x: np.ndarray) -> dict[str, float]:
    x = x[np.isfinite(x)]
    return {"median": float(np.median(x)), "p95": float(np.percentile(x, 95)), "max": float(x.max()), "n": len(x)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--miles", required=True)
    p.add_argument("--bsc5", required=True)
    p.add_argument("--radius", type=float, default=5.0, help="match radius to Hipparcos (arcsec)")
    p.add_argument("--out", required=True)
    p.add_argument("--store", default=None, help="also store the object table here as miles_objects")
    args = p.parse_args()

    params = read_miles_params(args.miles)
    miles = Catalog(params, name="miles", ra=None, dec=None, id="hd", source=args.miles)
    bsc5 = Catalog(read_bsc5(args.bsc5), name="bsc5", pmra="pmra", pmdec="pmdec", id="hd", source=args.bsc5)
    hip_table = read_hipparcos()
    hip = Catalog(hip_table, name="hipparcos", epoch=1991.25, pmra="pmra", pmdec="pmdec", parallax="parallax", id="hip")

    objects = ObjectTable.from_catalog(miles, survey="miles", key="name", ids={"miles": "miles_id", "hd": "hd"})
    by_hd = IdMatch()(miles, bsc5)
    objects = objects.add_match(by_hd, bsc5, survey="bsc5", ids={"hr": "hr"})
    left = objects.catalog()
    by_pos = PositionMatch(radius_arcsec=args.radius, epoch=2000.0)(left, hip)
    objects = objects.add_match(by_pos, hip, survey="hipparcos", ids={"hip": "hip"})

    t = objects.table
    hd_star = params["hd"].notna().to_numpy()
    cluster = params["cluster"].to_numpy(bool)
    plain = hd_star & ~cluster  # the "HD stars": names like HD003567, not the cluster-tagged "HD 020902 Cl"
    in_bsc5 = (t["id_hr"] != "").to_numpy()
    in_hip = (t["id_hip"] != "").to_numpy()
    sep = t["sep_hipparcos_arcsec"].to_numpy()

    # photometric check of the positional pairs: Hp − V is a small colour term (≈ 0–0.3 mag) for a true pair
    vmag = bsc5.table.set_index(bsc5.table["hr"].astype(str))["vmag"]
    hp = hip_table.set_index(hip_table["hip"].astype(str))["hpmag"]
    dm = hp.reindex(t.loc[in_hip, "id_hip"]).to_numpy() - vmag.reindex(t.loc[in_hip, "id_hr"]).to_numpy()

    sensitivity: list[dict[str, Any]] = []
    for radius in RADII_ARCSEC:
        for propagation in ("rigorous", "linear"):
            r = PositionMatch(radius_arcsec=radius, epoch=2000.0, propagation=propagation)(left, hip)
            m = r.table["matched"].to_numpy()
            sensitivity.append(
                {
                    "radius_arcsec": radius,
                    "propagation": propagation,
                    "matched_plain_hd": int((m & plain).sum()),
                    "matched_all": int(m.sum()),
                    "ambiguous": int(r.table["ambiguous"].sum()),
                    "separation_arcsec": r.provenance["separation_arcsec"],
                }
            )
        still = Catalog(hip_table, name="hipparcos_at_1991.25", epoch=1991.25)  # no proper motion: not moved
        r = PositionMatch(radius_arcsec=radius, epoch=2000.0)(left, still)
        m = r.table["matched"].to_numpy()
        sensitivity.append(
            {
                "radius_arcsec": radius,
                "propagation": "none",
                "matched_plain_hd": int((m & plain).sum()),
                "matched_all": int(m.sum()),
                "ambiguous": int(r.table["ambiguous"].sum()),
                "separation_arcsec": r.provenance["separation_arcsec"],
            }
        )

    nearest = by_pos.table["nearest_arcsec"].to_numpy()
    lost = [
        {"name": str(params["name"][i]), "hr": str(t["id_hr"][i]), "nearest_hip_arcsec": float(nearest[i])}
        for i in np.flatnonzero(in_bsc5 & ~in_hip)
    ]
    dup_ids = params.loc[params["miles_id"].duplicated(keep=False), ["name", "miles_id"]].to_dict("records")
    results = {
        "question": "How many MILES stars have BSC5 photometry (by HD) and Hipparcos astrometry (by position)?",
        "radius_arcsec": args.radius,
        "epoch": 2000.0,
        "propagation": "rigorous (astropy apply_space_motion) of Hipparcos J1991.25 to J2000",
        "counts": {
            "miles_rows": len(params),
            "hd_names_plain": int(plain.sum()),
            "hd_names_cluster_tagged": int((hd_star & cluster).sum()),
            "plain_hd_in_bsc5": int((plain & in_bsc5).sum()),
            "cluster_hd_in_bsc5": int((hd_star & cluster & in_bsc5).sum()),
            "plain_hd_in_bsc5_and_hipparcos": int((plain & in_hip).sum()),
            "all_in_bsc5_and_hipparcos": int(in_hip.sum()),
            "ambiguous_hipparcos": int(by_pos.table["ambiguous"].sum()),
            "ambiguous_bsc5": int(by_hd.table["ambiguous"].sum()),
            "component_names_in_bsc5": int(((params["component"] != "").to_numpy() & in_bsc5).sum()),
        },
        "separation_arcsec": _stats(sep),
        "separation_arcsec_plain_hd": _stats(sep[plain]),
        "hp_minus_v_mag": {**_stats(dm), "min": float(np.nanmin(dm)), "abs_over_0.5": int((np.abs(dm) > 0.5).sum())},
        "in_bsc5_not_in_hipparcos": lost,
        "miles_duplicate_ids": dup_ids,
        "sensitivity": sensitivity,
        "software": software_versions(),
    }
    if args.store:
        objects.to_store(DatasetStore(args.store), "miles_objects")
        results["stored"] = f"{args.store}::miles_objects"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps({k: results[k] for k in ("counts", "separation_arcsec", "hp_minus_v_mag")}, indent=1))


if __name__ == "__main__":
    main()
