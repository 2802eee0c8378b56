"""One-dimensional WCS FITS spectra (stellar libraries, IRAF): real MILES files against the library's own arrays,
the WCS arithmetic done by hand, log-linear files written here, the failure modes, and ``python -m stellar.ingest``."""

from __future__ import annotations

import io
import logging
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from hydra import compose, initialize_config_dir

from stellar.data.ingest.formats import parse_file
from stellar.data.ingest.records import store_records
from stellar.data.ingest.wcs1d import wavelength
from stellar.data.preprocess.spectra import SpectrumPreprocessing, air_to_vacuum
from stellar.data.store import DatasetStore
from stellar.errors import StellarConfigError, StellarDataError
from stellar.pipelines.ingest import run
from stellar.store import main as store_main

REPO = Path(__file__).resolve().parents[2]
MILES_FITS = REPO / "tests" / "data" / "miles_fits"
SHARED = REPO.parent / "shared" / "data"
FILES = {
    "124": "MILES_res2.50_star_m0124V.fits",
    "401": "MILES_res2.50_star_m0401V.fits",
    "523": "MILES_res2.50_star_m0523V.fits",
}
K0IV = MILES_FITS / FILES["124"]


def _by_hand(header: fits.Header) -> np.ndarray:
    """CRVAL1 + (pixel + 1 − CRPIX1) × CDELT1, pixels counted from 0 (Å, as written)."""
    p = np.arange(header["NAXIS1"], dtype=np.float64)
    return header["CRVAL1"] + (p + 1.0 - header["CRPIX1"]) * header["CDELT1"]


def _real(path: Path = K0IV) -> tuple[np.ndarray, np.ndarray]:
    """Air wavelength (Å) and flux of a real MILES file."""
    with fits.open(path) as h:
        return _by_hand(h[0].header), np.asarray(h[0].data, dtype=np.float64)


def _write(path: Path, data: np.ndarray, cards: dict[str, Any]) -> Path:
    hdu = fits.PrimaryHDU(data)
    for k, v in cards.items():
        hdu.header[k] = v
    hdu.writeto(path)
    return path


LINEAR = {"CRVAL1": 3540.5, "CDELT1": 0.9, "CRPIX1": 1}


@pytest.mark.parametrize("name", sorted(FILES.values()))
def test_wcs_arithmetic_on_the_copies(name: str) -> None:
    path = MILES_FITS / name
    header = fits.getheader(path)
    expected = _by_hand(header)
    assert (expected[0], round(expected[-1], 6)) == (3540.5, 7409.6)  # MANIFEST: 3540.5–7409.6 Å in air
    wave, dispersion = wavelength(header, header["NAXIS1"])
    np.testing.assert_allclose(wave, expected, rtol=0, atol=1e-9)
    assert dispersion == "linear"
    (rec,) = parse_file(path)
    assert (rec.survey, rec.modality, rec.object_id) == ("miles", "spectra", f"miles-{name.removesuffix('.fits')}")
    assert (rec.meta["medium"], rec.meta["medium_from"]) == ("air", "config")  # MILES headers do not say
    np.testing.assert_allclose(rec.arrays["loglam"], np.log10(air_to_vacuum(expected)), rtol=1e-15)
    shift = 10.0 ** rec.arrays["loglam"] - expected  # (n_air − 1) λ: about 1.0 Å at 3540 Å, 2.0 Å at 7410 Å
    assert shift.min() > 1.0 and shift.max() < 2.05 and np.all(np.diff(shift) > 0)
    np.testing.assert_array_equal(rec.arrays["flux"], fits.getdata(path).astype(np.float32))


@pytest.mark.skipif(not (SHARED / "miles").is_dir(), reason="../shared/data/miles is not here")
@pytest.mark.parametrize("miles_id", sorted(FILES))
def test_the_shared_files_match_the_library_arrays(miles_id: str) -> None:
    with np.load(SHARED / "miles" / "miles_spectra.npz") as z:
        row = [str(i).strip() for i in z["miles_id"]].index(miles_id)
        wave_air, flux = z["wave_air_angstrom"], z["flux"][row]
    path = SHARED / "miles_fits" / FILES[miles_id]
    header = fits.getheader(path)
    np.testing.assert_array_equal(wavelength(header, header["NAXIS1"])[0], wave_air)
    (rec,) = parse_file(path)
    np.testing.assert_allclose(rec.arrays["loglam"], np.log10(air_to_vacuum(wave_air)), rtol=1e-15)
    np.testing.assert_array_equal(rec.arrays["flux"], flux)


def _log_grid(variant: str) -> tuple[dict[str, Any], np.ndarray, str, str]:
    """Header cards, the grid they describe in Å (computed here, not by the reader), the medium, the dispersion."""
    p = np.arange(3000, dtype=np.float64)
    if variant == "iraf-dcflag":  # IRAF: CRVAL1, CDELT1 in log10 λ
        cards = {"CTYPE1": "LINEAR", "DC-FLAG": 1, "CRVAL1": np.log10(3600.0), "CDELT1": 1e-4, "CRPIX1": 1}
        cards["AIRORVAC"] = "air"
        return cards, 10.0 ** (cards["CRVAL1"] + p * 1e-4), "air", "log10"
    dln = 1e-4 * np.log(10.0)
    if variant == "awav-log":  # FITS -LOG: λ = CRVAL1 exp(w / CRVAL1), w = (p + 1 − CRPIX1) CDELT1
        cards = {"CTYPE1": "AWAV-LOG", "CUNIT1": "Angstrom", "CRVAL1": 3600.0, "CDELT1": 3600.0 * dln, "CRPIX1": 1}
        return cards, 3600.0 * np.exp(p * dln), "air", "ln"
    cards = {"CTYPE1": "WAVE-LOG", "CUNIT1": "nm", "CRVAL1": 400.0, "CDELT1": 400.0 * dln, "CRPIX1": 11}
    return cards, 4000.0 * np.exp((p + 1.0 - 11.0) * dln), "vacuum", "ln"


@pytest.mark.parametrize("variant", ["iraf-dcflag", "awav-log", "wave-log-nm"])
def test_log_linear_round_trip(variant: str, tmp_path: Path) -> None:
    cards, grid, med, dispersion = _log_grid(variant)
    wave, flux = _real()
    resampled = np.interp(grid, wave, flux).astype(np.float32)  # the K0IV star on a log grid
    (rec,) = parse_file(_write(tmp_path / "log.fits", resampled, cards))
    vac = air_to_vacuum(grid) if med == "air" else grid
    np.testing.assert_allclose(rec.arrays["loglam"], np.log10(vac), rtol=1e-12)
    np.testing.assert_array_equal(rec.arrays["flux"], resampled)
    assert (rec.meta["medium"], rec.meta["dispersion"], rec.survey) == (med, dispersion, "wcs1d")
    assert np.diff(rec.arrays["loglam"]) == pytest.approx(1e-4, rel=1e-3)  # still log-linear after air → vacuum


@pytest.mark.parametrize(
    ("cards", "default", "expected"),
    [
        ({}, "air", ("air", "config")),
        ({}, "vacuum", ("vacuum", "config")),
        ({"AIRORVAC": "vac"}, "air", ("vacuum", "AIRORVAC")),
        ({"AIRORVAC": "AIR", "CTYPE1": "WAVE"}, "vacuum", ("air", "AIRORVAC")),  # the explicit keyword wins
        ({"VACUUM": True}, "air", ("vacuum", "VACUUM")),
        ({"VACUUM": False}, "vacuum", ("air", "VACUUM")),
        ({"CTYPE1": "WAVE"}, "air", ("vacuum", "CTYPE1")),
        ({"CTYPE1": "AWAV"}, "vacuum", ("air", "CTYPE1")),
    ],
)
def test_medium_from_the_header_else_the_config(
    cards: dict[str, Any], default: str, expected: tuple[str, str], tmp_path: Path
) -> None:
    wave, flux = _real()
    (rec,) = parse_file(_write(tmp_path / "s.fits", flux, {**LINEAR, **cards}), wcs1d_medium=default)
    assert (rec.meta["medium"], rec.meta["medium_from"]) == expected
    vac = air_to_vacuum(wave) if expected[0] == "air" else wave
    np.testing.assert_allclose(rec.arrays["loglam"], np.log10(vac), rtol=1e-15)


def test_units_step_and_reference_pixel_variants(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wave, flux = _real()
    cards = {"CRVAL1": 354.05, "CD1_1": 0.09, "CUNIT1": "nm", "CTYPE1": "LINEAR"}  # no CRPIX1: the FITS default 0
    with caplog.at_level(logging.INFO, logger="stellar.data.ingest.wcs1d"):
        (rec,) = parse_file(_write(tmp_path / "cd.fits", flux, cards))
    assert "no CRPIX1" in caplog.text
    np.testing.assert_allclose(10.0 ** rec.arrays["loglam"], air_to_vacuum(wave + 0.9), rtol=1e-13)
    iraf = {**LINEAR, "CTYPE1": "LINEAR", "WAT1_001": "wtype=linear label=Wavelength units=angstroms"}
    (rec,) = parse_file(_write(tmp_path / "wat.fits", flux, iraf))
    np.testing.assert_allclose(10.0 ** rec.arrays["loglam"], air_to_vacuum(wave), rtol=1e-13)


def test_nan_flux_is_counted_and_masked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, flux = _real()
    flux[[0, 10, 11, 2000, 4299]] = np.nan
    with caplog.at_level(logging.INFO, logger="stellar.data.ingest.wcs1d"):
        (rec,) = parse_file(_write(tmp_path / "nan.fits", flux, LINEAR))
    assert "5 of 4300 flux pixels are not finite" in caplog.text
    store = DatasetStore(tmp_path / "store")
    (name,) = store_records(store, [rec], {})
    mask = store.open(name).load("mask")[0]
    assert np.flatnonzero(mask).tolist() == [0, 10, 11, 2000, 4299]


@pytest.mark.parametrize(
    ("data", "cards", "match"),
    [
        (np.ones((3, 100)), LINEAR, r"one-dimensional primary image of >= 2 pixels; it is \(3, 100\)"),
        (np.ones(100), {"CDELT1": 0.9, "CRPIX1": 1}, "without CRVAL1"),
        (np.ones(100), {"CRVAL1": 3540.5, "CRPIX1": 1}, "neither CDELT1 nor CD1_1"),
        (np.ones(100), {**LINEAR, "CDELT1": 0.0}, r"CDELT1 = 0.0; the wavelength step must be > 0"),
        (np.ones(100), {**LINEAR, "CDELT1": -0.9}, r"CDELT1 = -0.9; the wavelength step must be > 0"),
        (np.ones(100), {**LINEAR, "CD1_1": -0.9}, r"CD1_1 = -0.9"),
        (np.ones(100), {**LINEAR, "PC1_1": -1.0}, "do not increase along the pixels"),
        (np.ones(1), LINEAR, r"of >= 2 pixels; it is \(1,\)"),
        (np.ones(100), {"CRVAL1": 3.549, "CDELT1": 1e-4, "CRPIX1": 1}, "needs DC-FLAG = 1"),  # log10 λ, no flag
        (np.ones(100), {**LINEAR, "CUNIT1": "Hz"}, "CUNIT1 'Hz' is not a length unit"),
        (np.ones(100), {**LINEAR, "CTYPE1": "WAVE-LOG", "DC-FLAG": 1}, "both say log"),
        (np.ones(100), {**LINEAR, "DC-FLAG": 2}, "DC-FLAG = 2"),
        (np.ones(100), {**LINEAR, "AIRORVAC": "water"}, "AIRORVAC = 'water'"),
    ],
)
def test_bad_wcs_spectra_are_named(data: np.ndarray, cards: dict[str, Any], match: str, tmp_path: Path) -> None:
    with pytest.raises(StellarDataError, match=match):
        parse_file(_write(tmp_path / "bad.fits", data, cards))


def test_truncated_file_and_bad_config(tmp_path: Path) -> None:
    cut = tmp_path / "cut.fits"
    cut.write_bytes(K0IV.read_bytes()[: 2880 * 3])
    with (
        pytest.warns(AstropyUserWarning, match="truncated"),
        pytest.raises(StellarDataError, match="NAXIS1 = 4300 pixels but the file holds fewer"),
    ):
        parse_file(cut)
    with pytest.raises(StellarConfigError, match="wcs1d_medium must be one of"):
        parse_file(K0IV, wcs1d_medium="vac")


@pytest.mark.parametrize(
    ("data", "cards"),
    [
        (np.ones(100), {}),  # no WCS at all
        (np.ones((20, 20)), {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CDELT1": -1e-4}),
        (np.ones(100), {**LINEAR, "CTYPE1": "FREQ"}),  # a spectral axis, not a wavelength one
    ],
)
def test_other_fits_stay_unsupported(data: np.ndarray, cards: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(StellarDataError, match="unsupported: FITS"):
        parse_file(_write(tmp_path / "other.fits", data, cards))


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="ingest", overrides=list(overrides))


@pytest.mark.parametrize("medium", ["air", "vacuum"])
def test_cli_ingests_the_folder_into_the_store(medium: str, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    cfg = _cfg(
        f"input_dir={MILES_FITS}",
        f"store={store_dir}",
        f"cache_dir={tmp_path / 'cache'}",
        "progress=false",
        f"wcs1d_medium={medium}",
    )
    with redirect_stdout(io.StringIO()):
        metrics, objects = run(cfg)
    assert (metrics["n_done"], metrics["n_failed"]) == (3, 0)
    (name,) = metrics["datasets"]
    assert name.startswith("miles_spectra-")
    out = io.StringIO()
    with redirect_stdout(out):
        store_main([str(store_dir)])
    assert "modality=spectra  rows=3  surveys={'miles': 3}" in out.getvalue()
    assert "field loglam" in out.getvalue() and "[dex(Angstrom)]" in out.getvalue()
    ds = objects["store"].open(name)
    assert ds.meta["medium"].tolist() == [medium] * 3 and not ds.load("mask").any()
    loglam, flux = ds.load("loglam"), ds.load("flux")
    for i, path in enumerate(sorted(MILES_FITS.iterdir())):
        wave, raw = _real(path)
        vac = air_to_vacuum(wave) if medium == "air" else wave
        np.testing.assert_allclose(loglam[i], np.log10(vac), rtol=1e-15)
        np.testing.assert_array_equal(flux[i], raw.astype(np.float32))
    if medium == "air":  # what the store holds preprocesses like the MILES arrays with air=True
        ours = SpectrumPreprocessing()(10.0**loglam, flux)
        wave, _ = _real()
        theirs = SpectrumPreprocessing(air=True)(wave, flux)
        np.testing.assert_allclose(ours["flux"], theirs["flux"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ours["mask"], theirs["mask"])
