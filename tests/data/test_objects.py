"""The object table: built from MILES, grown by the BSC5 and Hipparcos cross-matches, stored and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stellar.data.catalogs import read_bsc5, read_hipparcos, read_miles_params
from stellar.data.crossmatch import Catalog, IdMatch, PositionMatch
from stellar.data.objects import OBJECT_COLUMNS, ObjectTable
from stellar.data.store import DatasetStore
from stellar.errors import StellarDataError, StellarValueError

DATA = Path(__file__).resolve().parent / "crossmatch"


@pytest.fixture(scope="module")
def objects() -> ObjectTable:
    miles = Catalog(read_miles_params(DATA / "miles_params.csv"), name="miles", ra=None, dec=None, id="hd")
    bsc5 = Catalog(read_bsc5(DATA / "bsc5_rows.dat"), name="bsc5", pmra="pmra", pmdec="pmdec", id="hd")
    hip = Catalog(
        read_hipparcos(DATA / "hip2_rows.dat"), name="hip", epoch=1991.25, pmra="pmra", pmdec="pmdec", id="hip"
    )
    obj = ObjectTable.from_catalog(miles, survey="miles", key="name", ids={"miles": "miles_id", "hd": "hd"})
    obj = obj.add_match(IdMatch()(miles, bsc5), bsc5, survey="bsc5", ids={"hr": "hr"})
    return obj.add_match(
        PositionMatch(radius_arcsec=5.0)(obj.catalog(), hip), hip, survey="hipparcos", ids={"hip": "hip"}
    )


def test_object_table_links_miles_bsc5_and_hipparcos(objects: ObjectTable) -> None:
    t = objects.table.set_index("object_id")
    assert objects.identifiers == ["miles", "hd", "hr", "hip"]
    assert t.loc["miles:HD044691A", ["id_miles", "id_hd", "id_hr", "id_hip"]].tolist() == [
        "22",
        "44691",
        "2291",
        "30651",
    ]
    # in BSC5 but 15″ from Hipparcos at J2000: keeps the BSC5 position, no HIP id
    assert t.loc["miles:HD201091", ["survey", "id_hr", "id_hip"]].tolist() == ["bsc5", "8085", ""]
    assert t.loc["miles:HD201091", "ra"] == pytest.approx(316.7275)
    # no HD number, or an HD star not in BSC5: no position
    assert t.loc["miles:BD+002058A", "survey"] == "" and np.isnan(t.loc["miles:BD+002058A", "epoch"])
    assert t.loc["miles:HD003567", ["id_hd", "id_hr"]].tolist() == ["3567", ""]
    assert (t["survey"] == "hipparcos").sum() == 4 and (t["epoch"].dropna() == 2000.0).all()
    # the position is Hipparcos's, moved to J2000
    assert t.loc["miles:HD063352", "sep_hipparcos_arcsec"] == pytest.approx(4.42, abs=0.01)
    assert [s["step"] for s in objects.provenance] == ["from_catalog", "add_match", "add_match"]
    assert objects.provenance[2]["radius_arcsec"] == 5.0 and objects.provenance[2]["counts"]["matched"] == 4


def test_object_table_round_trips_through_the_store(objects: ObjectTable, tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "store")
    objects.to_store(store, "miles_objects")
    back = ObjectTable.from_store(store, "miles_objects")
    pd.testing.assert_frame_equal(back.table, objects.table, check_dtype=False)
    assert back.provenance[2]["counts"] == objects.provenance[2]["counts"]
    ds = store.open("miles_objects")
    assert ds.attrs["modality"] == "objects" and ds.fields == []
    with pytest.raises(StellarDataError, match="immutable"):
        objects.to_store(store, "miles_objects")


def test_object_table_refuses_bad_tables(objects: ObjectTable, tmp_path: Path) -> None:
    with pytest.raises(StellarValueError, match="epoch"):
        ObjectTable(objects.table.drop(columns="epoch"))
    dup = pd.concat([objects.table.iloc[:2], objects.table.iloc[:1]])
    with pytest.raises(StellarDataError, match="unique"):
        ObjectTable(dup)
    mixed = objects.table.assign(epoch=np.where(objects.table["epoch"].notna(), 2000.0, np.nan))
    mixed.loc[mixed.index[mixed["epoch"].notna()][0], "epoch"] = 1991.25
    with pytest.raises(StellarValueError, match="several epochs"):
        ObjectTable(mixed).catalog()
    other = Catalog(pd.DataFrame({"ra": [1.0], "dec": [2.0]}), name="one")
    with pytest.raises(StellarValueError, match="left rows"):
        objects.add_match(PositionMatch()(other, other), other, survey="x", ids={})
    store = DatasetStore(tmp_path / "s")
    store.write_table("not_objects", pd.DataFrame({"a": [1]}), kind="crossmatch")
    with pytest.raises(StellarDataError, match="not an object table"):
        ObjectTable.from_store(store, "not_objects")
    assert set(OBJECT_COLUMNS) <= set(objects.table.columns)
