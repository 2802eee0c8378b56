"""``python -m stellar.crossmatch`` through :func:`stellar.pipelines.crossmatch.run` on tiny real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from astropy.table import Table
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from stellar.data.catalogs import read_bsc5, read_hipparcos
from stellar.data.crossmatch import propagate
from stellar.data.store import DatasetStore
from stellar.errors import StellarConfigError, StellarDataError, StellarValueError
from stellar.pipelines.crossmatch import run

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "crossmatch"


def _cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(
            config_name="crossmatch",
            overrides=[f"output_dir={tmp_path / 'out'}", f"store={tmp_path / 'store'}", *overrides],
        )


@pytest.fixture()
def bright_fits(tmp_path: Path) -> Path:
    """The BSC5 test rows as a FITS table with other column names, as a user's catalogue would have them."""
    b = read_bsc5(DATA / "bsc5_rows.dat")
    t = pd.DataFrame({"HR": b["hr"], "RAJ2000": b["ra"], "DEJ2000": b["dec"], "pmRA": b["pmra"], "pmDE": b["pmdec"]})
    path = tmp_path / "bright.fits"
    Table.from_pandas(t).write(path)
    return path


def test_identifier_match_of_miles_against_bsc5(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        "catalog@left=miles",
        f"left.path={DATA / 'miles_params.csv'}",
        "catalog@right=bsc5",
        f"right.path={DATA / 'bsc5_rows.dat'}",
        "match=id",
    )
    metrics, objects = run(cfg)
    assert (metrics["matched"], metrics["unmatched"], metrics["ambiguous"]) == (6, 3, 0)
    matches = pd.read_csv(objects["files"]["matches"], dtype={"left_id": str, "right_id": str})
    assert sorted(matches.loc[matches["matched"], "right_id"]) == sorted(
        ["44691", "89822", "20902", "38392", "63352", "201091"]
    )
    prov = json.loads(objects["files"]["provenance"].read_text())
    assert prov["method"] == "id" and prov["left"]["source"].endswith("miles_params.csv")
    assert {"stellar", "astropy", "numpy"} <= set(prov["software"]) and prov["date"]


def test_position_match_of_a_fits_file_against_hipparcos_stored(tmp_path: Path, bright_fits: Path) -> None:
    cfg = _cfg(
        tmp_path,
        f"left.path={bright_fits}",
        "left.ra=RAJ2000",
        "left.dec=DEJ2000",
        "left.pmra=pmRA",
        "left.pmdec=pmDE",
        "left.id=HR",
        "catalog@right=hipparcos",
        f"right.path={DATA / 'hip2_rows.dat'}",
        "match.radius_arcsec=5",
        "store_name=bright_x_hip",
    )
    metrics, _ = run(cfg)
    assert metrics["matched"] == 5 and metrics["separation_max_arcsec"] == pytest.approx(4.62, abs=0.01)
    stored = DatasetStore(tmp_path / "store").open("bright_x_hip")
    assert stored.attrs["modality"] == "crossmatch"
    prov = stored.attrs["provenance"]
    assert (prov["radius_arcsec"], prov["epoch"], prov["right"]["epoch"]) == (5.0, 2000.0, 1991.25)
    pairs = stored.meta[stored.meta["matched"]]
    assert dict(zip(pairs["left_id"], pairs["right_id"], strict=True))["8086"] == "104217"


def test_match_against_a_table_in_the_store(tmp_path: Path) -> None:
    b = read_bsc5(DATA / "bsc5_rows.dat")
    DatasetStore(tmp_path / "store").write_table("bright", b[["hr", "ra", "dec"]], kind="catalog")
    left = tmp_path / "mine.csv"
    pd.DataFrame({"ra": [b["ra"][0] + 0.4 / 3600, 200.0], "dec": [b["dec"][0], 0.0]}).to_csv(left, index=False)
    cfg = _cfg(tmp_path, f"left.path={left}", "catalog@right=store", "right.dataset=bright", "right.id=hr")
    metrics, objects = run(cfg)
    assert metrics["matched"] == 1
    assert objects["result"].table["right_id"].tolist() == [str(b["hr"][0]), ""]


def test_clear_errors(tmp_path: Path, bright_fits: Path) -> None:
    with pytest.raises(StellarValueError, match="column 'ra' given as `ra`"):
        run(_cfg(tmp_path, f"left.path={bright_fits}", f"right.path={bright_fits}"))
    csv = tmp_path / "a.csv"
    pd.DataFrame({"ra": [1.0], "dec": [2.0]}).to_csv(csv, index=False)
    with pytest.raises(StellarValueError, match="radius_arcsec"):
        run(_cfg(tmp_path, f"left.path={csv}", f"right.path={csv}", "match.radius_arcsec=-2"))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(StellarDataError, match="cannot read it as parquet"):
        run(_cfg(tmp_path, f"left.path={broken}", f"right.path={csv}"))
    with pytest.raises(StellarConfigError, match="left"):
        run(_cfg(tmp_path, f"right.path={csv}"))  # left.path is required (???)
    with pytest.raises(StellarDataError, match="not in store"):
        run(_cfg(tmp_path, f"left.path={csv}", "catalog@right=store", "right.dataset=absent"))


def test_entry_point_runs(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    pd.DataFrame({"ra": [1.0, 5.0], "dec": [2.0, 0.0]}).to_csv(csv, index=False)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "stellar.crossmatch", f"left.path={csv}", f"right.path={csv}", f"hydra.run.dir={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert json.loads(printed[-1])["matched"] == 2
    assert (out / "matches.csv").is_file() and (out / "provenance.json").is_file()


def test_hipparcos_preset_reads_the_packaged_catalogue(tmp_path: Path) -> None:
    h = read_hipparcos(DATA / "hip2_rows.dat")
    ra, dec = propagate(h["ra"], h["dec"], h["pmra"], h["pmdec"], 1991.25, 2000.0, parallax=h["parallax"])
    left = tmp_path / "j2000.csv"
    pd.DataFrame({"hip": h["hip"], "ra": ra, "dec": dec}).to_csv(left, index=False)
    metrics, objects = run(_cfg(tmp_path, f"left.path={left}", "left.id=hip", "catalog@right=hipparcos"))
    assert metrics["right_rows"] == 117_955 and metrics["matched"] == 7
    t = objects["result"].table
    assert (t["left_id"] == t["right_id"]).all() and t["separation_arcsec"].max() < 1e-3
