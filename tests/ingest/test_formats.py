"""Parsers on real files: what lands in the store equals what astropy reads from the file directly."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table

from stellar.data.ingest.formats import parse_file
from stellar.data.ingest.manifest import Manifest
from stellar.data.ingest.runner import ingest_files
from stellar.data.store import DatasetStore
from stellar.errors import StellarDataError
from tests.ingest.conftest import RAW, SHARED_RAW


def _eq(a: Any, b: Any) -> None:
    np.testing.assert_array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))


def test_sdss_spec_file_matches_astropy() -> None:
    path = RAW / "sdss" / "spec-4455-55539-0692.fits"
    (rec,) = parse_file(path)
    with fits.open(path) as h:
        d, s = h[1].data, h[2].data
        for f in ("loglam", "flux", "ivar", "and_mask"):
            _eq(rec.arrays[f], d[f])
        assert (rec.meta["class"], rec.meta["subclass"]) == (s["CLASS"][0].strip(), s["SUBCLASS"][0].strip())
        assert rec.meta["z"] == pytest.approx(float(s["Z"][0]))
        assert rec.meta["ra"] == pytest.approx(float(s["PLUG_RA"][0]))
    assert rec.object_id == "sdss-4455-55539-0692"
    assert (rec.meta["class"], rec.meta["subclass"]) == ("STAR", "WDhotter")


def test_sdss_image_layout_matches_astropy() -> None:
    path = RAW / "sdss" / "SDSSJ220248.31+123656.3.fits"
    (rec,) = parse_file(path)
    with fits.open(path) as h:
        _eq(rec.arrays["flux"], h[0].data)
        _eq(rec.arrays["ivar"], h[1].data)
        np.testing.assert_allclose(rec.arrays["loglam"], h[2].data, rtol=1e-7)  # float64 on disk, float32 here
        _eq(rec.arrays["and_mask"], h[3].data)
    # the header RA/DEC are the plate centre; the position comes from the J-name
    assert rec.meta["ra"] == pytest.approx(330.70129, abs=1e-4)
    assert rec.meta["dec"] == pytest.approx(12.61564, abs=1e-4)


@pytest.mark.parametrize("name", sorted(p.name for p in (RAW / "lamost").iterdir()))
def test_lamost_matches_astropy(name: str) -> None:
    path = RAW / "lamost" / name
    (rec,) = parse_file(path)
    with fits.open(path) as h:
        img, head = h[0].data, h[0].header
        _eq(rec.arrays["flux"], img[0])
        _eq(rec.arrays["ivar"], img[1])
        np.testing.assert_allclose(10.0 ** rec.arrays["loglam"].astype(float), img[2], rtol=1e-6)
        assert (rec.meta["class"], rec.meta["subclass"]) == (head["CLASS"].strip(), head["SUBCLASS"].strip())


def test_kepler_light_curve_matches_astropy() -> None:
    path = RAW / "kepler" / "kplr011442793-2010009091648_llc.fits"
    (rec,) = parse_file(path)
    with fits.open(path) as h:
        lc = h["LIGHTCURVE"].data
        _eq(rec.arrays["time"], lc["TIME"])
        _eq(rec.arrays["flux"], lc["PDCSAP_FLUX"])
        _eq(rec.arrays["quality"], lc["SAP_QUALITY"])
        assert rec.meta["segments"] == str(h[0].header["QUARTER"])
    assert rec.object_id == "kic-11442793"


def test_gaia_answers_match_astropy() -> None:
    for name in ("1712337806100O-result.ecsv", "1714556098855O-result.vot"):
        recs = parse_file(RAW / "gaia" / name)
        t = Table.read(RAW / "gaia" / name)
        t.rename_columns(t.colnames, [c.lower() for c in t.colnames])
        assert [r.meta["source_id"] for r in recs] == [str(s) for s in t["source_id"]]
        _eq(np.stack([r.arrays["mag"] for r in recs])[:, 0], np.asarray(t["phot_g_mean_mag"], np.float32))
        _eq([r.meta["parallax"] for r in recs], t["parallax"])
        foe = np.asarray(t["phot_g_mean_flux_over_error"], float)
        np.testing.assert_allclose([r.arrays["mag_err"][0] for r in recs], 2.5 / np.log(10) / foe, rtol=1e-6)
    recs = parse_file(RAW / "gaia" / "cone_search.json")
    doc = json.loads((RAW / "gaia" / "cone_search.json").read_text())
    col = [m["name"] for m in doc["metadata"]].index("ruwe")
    expected = [np.nan if row[col] is None else row[col] for row in doc["data"]]  # 2-parameter solutions: no ruwe
    np.testing.assert_allclose([r.meta["ruwe"] for r in recs], expected, equal_nan=True)


def test_gaia_xp_zip() -> None:
    path = next((RAW / "gaia").glob("*.zip"))
    (rec,) = parse_file(path)
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.startswith("XP_SAMPLED"))
        with fits.open(io.BytesIO(z.read(name))) as h:
            _eq(rec.arrays["flux"], h[1].data["flux"])
            _eq(rec.arrays["wavelength"], h[1].data["wavelength"])
    assert rec.object_id == "gaia-dr3-5937083312263887616"


def test_simbad_answers() -> None:
    (m1,) = parse_file(RAW / "simbad" / "simbad_M1.vot")
    assert m1.meta["main_id"] == "M 1" and m1.meta["matched_id"] == "M 1"
    (m1_script,) = parse_file(RAW / "simbad" / "m1.data")  # sexagesimal RA/DEC converted to degrees
    assert m1_script.meta["main_id"] == "M 1"
    assert m1_script.meta["ra"] == pytest.approx(m1.meta["ra"], abs=0.01)  # SIMBAD 2014 vs 2024 position
    sample = parse_file(RAW / "simbad" / "query_sample.data")
    assert "SNR G315.0-02.3" in [r.meta["main_id"] for r in sample]
    assert len(parse_file(RAW / "simbad" / "query_coo.data")) > 10


def test_tables_and_text_light_curves() -> None:
    sp = parse_file(RAW / "sdss_skyserver" / "xid_sp.txt")
    assert sp[0].meta["plate"] == 751 and sp[0].object_id == "sdss-obj-1237652943176138868"
    xm = parse_file(RAW / "xmatch_2mass" / "query_res.csv")
    df = pd.read_csv(RAW / "xmatch_2mass" / "query_res.csv")
    _eq([r.arrays["mag"][0] for r in xm], df["Jmag"].astype(np.float32))
    tic = parse_file(RAW / "mast" / "tic.json")
    assert len(tic) == 7 and tic[0].object_id.startswith("tic-")
    (eros,) = parse_file(RAW / "eros" / "lm0010n22323.time")
    raw = np.loadtxt(RAW / "eros" / "lm0010n22323.time", comments="#")
    r_mag = eros.arrays["mag"][eros.arrays["band"] == 0]
    assert np.isnan(r_mag).sum() == int(np.isclose(raw[:, 1], 99.999).sum())
    _eq(r_mag[np.isfinite(r_mag)], raw[~np.isclose(raw[:, 1], 99.999), 1].astype(np.float32))
    path = RAW / "macho" / "lc_2.4907.2086.tar.bz2"
    (macho,) = parse_file(path)
    with tarfile.open(path) as tar:
        n = 0
        for member in tar.getmembers():
            fh = tar.extractfile(member)
            assert fh is not None
            n += len(np.loadtxt(io.StringIO(fh.read().decode()), comments="#", ndmin=2))
    assert macho.meta["bands"] == "R,B" and len(macho.arrays["mag"]) == n


def test_unsupported_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("just text")
    with pytest.raises(StellarDataError, match="unsupported"):
        parse_file(bad)


def _check_store_against_files(store: DatasetStore, names: list[str]) -> int:
    """Spot-check every spectrum and light-curve row in the store against astropy; returns rows checked."""
    checked = 0
    for name in names:
        ds = store.open(name)
        if ds.attrs["modality"] not in ("spectra", "lightcurve"):
            continue
        for i, row in ds.meta.iterrows():
            n = int(row["n_samples"])
            flux = ds.load("flux", np.asarray([i]))[0]
            assert ds.load("mask", np.asarray([i]))[0][n:].all()  # padding is masked
            for source in str(row["source"]).split(";"):
                with fits.open(source) as h:
                    if ds.attrs["modality"] == "spectra" and "COADD" in h:
                        _eq(flux[:n], h[1].data["flux"])
                    elif ds.attrs["modality"] == "spectra" and row["survey"] == "lamost":
                        _eq(flux[:n], h[0].data[0])
                    elif ds.attrs["modality"] == "spectra":
                        _eq(flux[:n], h[0].data)
                    else:  # stitched: this segment's PDCSAP flux over its median
                        seg = ds.load("segment", np.asarray([i]))[0][:n]
                        lc = h["LIGHTCURVE"].data
                        q = h[0].header.get("QUARTER", h[0].header.get("CAMPAIGN", h[0].header.get("SECTOR")))
                        expected = lc["PDCSAP_FLUX"] / np.nanmedian(lc["PDCSAP_FLUX"])
                        np.testing.assert_allclose(flux[:n][seg == q], expected, rtol=1e-6)
            checked += 1
    return checked


def test_every_test_file_ingests_into_the_store(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "store")
    report = ingest_files(RAW, store=store, manifest=Manifest(tmp_path / "m.jsonl"), progress=False)
    files = [p for p in RAW.rglob("*") if p.is_file() and p.name != "README.md"]
    assert report.n_failed == 1 and "README.md" in report.failed  # the README itself is not survey data
    assert "unsupported" in report.failed["README.md"]
    assert report.n_done == len(files)
    assert _check_store_against_files(store, report.datasets) == 5  # 2 SDSS, 2 LAMOST spectra, 1 Kepler
    sdss = store.open(next(n for n in report.datasets if n.startswith("sdss_spectra")))
    assert {"class", "subclass", "z"} <= set(sdss.meta.columns)


def test_provenance_hashes_every_file_of_a_folder_reached_through_a_symlink(tmp_path: Path) -> None:
    """CI reaches ../shared through a symlink: the hashes were keyed by the resolved path and the records' sources
    by the path as given, so each dataset's file_sha256 came out empty."""
    (tmp_path / "raw").symlink_to(RAW / "kepler", target_is_directory=True)
    store = DatasetStore(tmp_path / "store")
    report = ingest_files(tmp_path / ".." / tmp_path.name / "raw", store=store, manifest=Manifest(tmp_path / "m.jsonl"),
                          progress=False)  # fmt: skip
    (name,) = report.datasets
    prov = store.open(name).attrs["provenance"]
    (kepler,) = RAW.joinpath("kepler").glob("*.fits")
    assert prov["file_sha256"] == {str(kepler.resolve()): hashlib.sha256(kepler.read_bytes()).hexdigest()}
    assert prov["input_dir"] == str((RAW / "kepler").resolve())


@pytest.mark.skipif(not SHARED_RAW.is_dir(), reason="../shared/data/raw is not here")
def test_every_shared_raw_file(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "store")
    report = ingest_files(SHARED_RAW, store=store, manifest=Manifest(tmp_path / "m.jsonl"), progress=False)
    assert report.failed == {}
    # Kepler Q2 + Q5 of KIC 10002792 stitched into one row; K2 and TESS one each
    assert _check_store_against_files(store, report.datasets) == 2 + 2 + 2 + 1 + 1  # SDSS, LAMOST, Kepler, K2, TESS
    kepler = store.open(next(n for n in report.datasets if n.startswith("kepler_")))
    assert sorted(kepler.meta["segments"]) == ["2,5", "4"]
    assert len(kepler.attrs["provenance"]["file_sha256"]) == 3  # each source file and its SHA-256
    gaia = store.open(next(n for n in report.datasets if n.startswith("gaia_sed")))
    mag = dict(zip(gaia.meta["object_id"], gaia.load("mag")[:, 0], strict=True))
    for name in ("1712337806100O-result.ecsv", "1710099405832VAL-result.vot", "1714556098855O-result.vot"):
        t = Table.read(SHARED_RAW / "gaia" / name)
        t.rename_columns(t.colnames, [c.lower() for c in t.colnames])
        for sid, g in zip(t["source_id"], t["phot_g_mean_mag"], strict=True):
            assert mag[f"gaia-dr3-{sid}"] == np.float32(g)
