"""Catalogue readers and the cross-match, on real rows of BSC5, Hipparcos (I/311) and MILES (tests/data/crossmatch)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from stellar.data.catalogs import (
    hd_identifiers,
    hipparcos_path,
    read_bsc5,
    read_hipparcos,
    read_miles_params,
    read_table,
)
from stellar.data.crossmatch import Catalog, IdMatch, PositionMatch, propagate
from stellar.errors import StellarDataError, StellarValueError

DATA = Path(__file__).resolve().parent / "crossmatch"


@pytest.fixture(scope="module")
def bsc5() -> Catalog:
    return Catalog(read_bsc5(DATA / "bsc5_rows.dat"), name="bsc5", pmra="pmra", pmdec="pmdec", id="hd")


@pytest.fixture(scope="module")
def hip() -> Catalog:
    table = read_hipparcos(DATA / "hip2_rows.dat")
    return Catalog(table, name="hip", epoch=1991.25, pmra="pmra", pmdec="pmdec", parallax="parallax", id="hip")


@pytest.fixture(scope="module")
def miles() -> Catalog:
    return Catalog(read_miles_params(DATA / "miles_params.csv"), name="miles", ra=None, dec=None, id="hd")


def test_read_bsc5_fixed_width_columns() -> None:
    t = read_bsc5(DATA / "bsc5_rows.dat").set_index("hr")
    a = t.loc[8085]  # 61 Cyg A: 21h06m54.6s +38°44'45" (J2000), +4.136 +3.203 arcsec/yr, K5V
    assert a["hd"] == 201091
    assert a["ra"] == pytest.approx(15 * (21 + 6 / 60 + 54.6 / 3600))
    assert a["dec"] == pytest.approx(38 + 44 / 60 + 45 / 3600)
    assert (a["pmra"], a["pmdec"], a["vmag"], a["sptype"]) == (4136.0, 3203.0, 5.21, "K5V")
    assert t.loc[1982, "dec"] == pytest.approx(-(22 + 25 / 60 + 18 / 3600))  # the sign byte of γ Lep B


def test_read_hipparcos_rows_in_degrees() -> None:
    t = read_hipparcos(DATA / "hip2_rows.dat").set_index("hip")
    a = t.loc[104214]
    assert a["ra"] == pytest.approx(math.degrees(5.5276638884))
    assert a["dec"] == pytest.approx(math.degrees(0.6761666472))
    assert (a["parallax"], a["pmra"], a["pmdec"], a["hpmag"]) == (286.82, 4168.31, 3269.20, 5.3685)


def test_hipparcos_catalogue_ships_in_the_package() -> None:
    path = hipparcos_path()
    assert path.is_file()
    with path.open() as f:
        first = f.readline()
        n = 1 + sum(1 for _ in f)
    assert n == 117_955 and first.startswith("     1   5 0 1")


def test_hd_identifiers_of_miles_names() -> None:
    ids = hd_identifiers(pd.Series(["HD003567", "HD044691A", "HD 020902         Cl", "BD+002058A"]))
    assert ids["hd"].tolist() == [3567, 44691, 20902, pd.NA]
    assert ids["component"].tolist() == ["", "A", "", ""]
    assert ids["cluster"].tolist() == [False, False, True, False]


def test_linear_propagation_matches_the_hand_computed_61_cyg_a() -> None:
    # HIP 104214 (61 Cyg A) from J1991.25 to J2000: Δδ = 3269.20 mas/yr × 8.75 yr = 28.6055″,
    # Δα = 4168.31 × 8.75 mas / cos δ
    ra0, dec0 = math.degrees(5.5276638884), math.degrees(0.6761666472)
    ra, dec = propagate([ra0], [dec0], [4168.31], [3269.20], 1991.25, 2000.0, method="linear")
    assert dec[0] == pytest.approx(dec0 + 28.6055 / 3600, abs=1e-10)
    assert ra[0] == pytest.approx(ra0 + 36.4727125 / 3600 / math.cos(0.6761666472), abs=1e-10)
    # the rigorous space motion (with parallax 286.82 mas, RV −64 km/s) differs from it by about 0.01″ here
    rr, rd = propagate([ra0], [dec0], [4168.31], [3269.20], 1991.25, 2000.0, parallax=[286.82], radial_velocity=[-64])
    offset = math.hypot((rr[0] - ra[0]) * math.cos(math.radians(dec0)), rd[0] - dec[0]) * 3600
    assert 0.001 < offset < 0.05


def test_propagation_wraps_ra_and_keeps_rows_without_motion() -> None:
    ra, dec = propagate([359.9999, 10.0], [0.0, 5.0], [3600.0, np.nan], [0.0, np.nan], 2000.0, 2001.0)
    assert ra[0] == pytest.approx(0.0009, abs=1e-6)
    assert (ra[1], dec[1]) == (10.0, 5.0)


def test_identifier_match_miles_to_bsc5(miles: Catalog, bsc5: Catalog) -> None:
    r = IdMatch()(miles, bsc5)
    got = {
        miles.table["name"][i]: int(bsc5.table["hr"][j])
        for i, j in zip(*r.pairs(), strict=True)  # MILES name → HR
    }
    assert got == {
        "HD044691A": 2291,
        "HD089822B": 4072,
        "HD 020902         Cl": 1017,
        "HD038392": 1982,
        "HD063352": 3030,
        "HD201091": 8085,
    }
    assert r.counts["matched"] == 6 and r.counts["ambiguous"] == 0


def test_position_match_finds_hipparcos_after_propagation(bsc5: Catalog, hip: Catalog) -> None:
    r = PositionMatch(radius_arcsec=5.0, epoch=2000.0)(bsc5, hip)
    t = r.table.assign(hr=bsc5.table["hr"], hip=lambda d: d["right_id"])
    got = dict(zip(t.loc[t["matched"], "hr"], t.loc[t["matched"], "hip"].astype(int), strict=True))
    assert got == {1017: 15863, 2291: 30651, 3030: 38147, 4072: 50933, 8086: 104217}
    sep = dict(zip(t["hr"], t["separation_arcsec"], strict=True))
    assert sep[3030] == pytest.approx(4.42, abs=0.01) and sep[8086] == pytest.approx(4.62, abs=0.01)
    # γ Lep B and 61 Cyg A (whose BSC5 position is 15″ off its Hipparcos one) find nothing within 5″
    near = dict(zip(t["hr"], t["nearest_arcsec"], strict=True))
    assert near[1982] == pytest.approx(97.8, abs=0.1) and near[8085] == pytest.approx(15.03, abs=0.01)
    assert r.provenance["radius_arcsec"] == 5.0 and r.provenance["counts"]["matched"] == 5


def test_without_propagation_61_cyg_b_is_lost(bsc5: Catalog, hip: Catalog) -> None:
    still = Catalog(hip.table, name="hip", epoch=1991.25)  # no proper motions: positions stay at J1991.25
    r = PositionMatch(radius_arcsec=5.0, epoch=2000.0)(bsc5, still)
    row = int(np.flatnonzero(bsc5.table["hr"] == 8086)[0])
    assert not r.table["matched"][row] and r.table["nearest_arcsec"][row] > 30


def test_ambiguity_flags_on_61_cyg(bsc5: Catalog, hip: Catalog) -> None:
    # at 20″ 61 Cyg A (HR 8085) has both components as candidates; B (HR 8086) takes HIP 104217 first (4.6″),
    # so A gets HIP 104214 (15.0″): both flagged, A for two candidates, B for a rival
    r = PositionMatch(radius_arcsec=20.0, epoch=2000.0)(bsc5, hip)
    t = r.table.assign(hr=bsc5.table["hr"]).set_index("hr")
    assert t.loc[8085, "right_id"] == "104214" and t.loc[8086, "right_id"] == "104217"
    assert (t.loc[8085, "n_candidates"], t.loc[8085, "n_rivals"]) == (2, 0)
    assert (t.loc[8086, "n_candidates"], t.loc[8086, "n_rivals"]) == (1, 1)
    assert t["ambiguous"].to_dict() == {h: h in (8085, 8086) for h in t.index}


def test_one_to_one_leaves_the_farther_rival_unmatched() -> None:
    left = Catalog(pd.DataFrame({"ra": [10.0, 10.0 + 2 / 3600], "dec": [0.0, 0.0]}), name="l")
    right = Catalog(pd.DataFrame({"ra": [10.0 + 0.5 / 3600], "dec": [0.0]}), name="r")
    t = PositionMatch(radius_arcsec=3.0)(left, right).table
    assert t["right_row"].tolist() == [0, -1]
    assert t["ambiguous"].tolist() == [True, True]  # the winner had a rival; the loser lost its only candidate
    assert t["separation_arcsec"][0] == pytest.approx(0.5, abs=1e-6)


def test_repeated_identifier_goes_to_the_nearest_and_is_flagged() -> None:
    left = Catalog(pd.DataFrame({"id": ["7", "8"], "ra": [1.0, 2.0], "dec": [0.0, 0.0]}), name="l", id="id")
    right = Catalog(pd.DataFrame({"id": [7.0, 7.0], "ra": [1.1, 1.0001], "dec": [0.0, 0.0]}), name="r", id="id")
    t = IdMatch()(left, right).table
    assert t["right_row"].tolist() == [1, -1] and t["ambiguous"].tolist() == [True, False]
    assert t["separation_arcsec"][0] == pytest.approx(0.36, abs=1e-6)


def test_bad_input_names_the_argument(bsc5: Catalog) -> None:
    with pytest.raises(StellarValueError, match="`ra`"):
        Catalog(pd.DataFrame({"RA": [1.0], "dec": [0.0]}), name="x")
    with pytest.raises(StellarValueError, match="pmra"):
        Catalog(pd.DataFrame({"ra": [1.0], "dec": [0.0], "pm": [1.0]}), name="x", pmra="pm")
    for bad in (0.0, -1.0, float("nan"), [1.0, 2.0]):
        with pytest.raises(StellarValueError, match="radius_arcsec"):
            PositionMatch(radius_arcsec=bad)  # type: ignore[arg-type]
    with pytest.raises(StellarValueError, match="radius_arcsec must be numeric"):
        PositionMatch(radius_arcsec="wide")  # type: ignore[arg-type]
    with pytest.raises(StellarValueError, match="propagation"):
        PositionMatch(propagation="quadratic")  # type: ignore[arg-type]
    with pytest.raises(StellarValueError, match="`id`"):
        IdMatch()(Catalog(pd.DataFrame({"ra": [1.0], "dec": [0.0]}), name="x"), bsc5)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".fits", ".vot"])
def test_read_table_formats(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame({"name": ["a", "b"], "ra": [1.5, 2.5], "dec": [-3.0, 4.0]})
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".parquet":
        df.to_parquet(path)
    else:
        Table.from_pandas(df).write(path, format="fits" if suffix == ".fits" else "votable")
    back = read_table(path)
    assert back["ra"].tolist() == [1.5, 2.5] and back["dec"].tolist() == [-3.0, 4.0]
    assert [str(v) for v in back["name"]] == ["a", "b"]


def test_read_table_errors(tmp_path: Path) -> None:
    with pytest.raises(StellarValueError, match="unknown table format"):
        read_table(tmp_path / "t.xlsx")
    with pytest.raises(StellarDataError, match="no such file"):
        read_table(tmp_path / "absent.csv")
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"not a FITS file at all")
    with pytest.raises(StellarDataError, match="cannot read it as fits"):
        read_table(bad)
