"""``stellar.load(...).predict``: what astronomers hold in, an astropy Table out, and the very numbers of the
``/predict/*`` endpoint (its LitAPI as plain methods) and of catalogue scoring for the same objects."""

from __future__ import annotations

import json
import subprocess
import sys

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from astropy.time import Time

import stellar
from stellar.errors import StellarError, StellarValueError
from stellar.registry import ModelRegistry, ModelVersion
from stellar.serving import scoring
from stellar.serving.api import SEDAPI, LightCurveAPI, SpectralAPI
from stellar.serving.predictor import Predictor
from stellar.serving.schemas import LightCurveRequest, SEDRequest, SpectralRequest
from tests.conftest import DATA
from tests.serving.helpers import register_untrained
from tests.serving.test_intervals_api import CONFORMAL

KEPLER = DATA / "lightcurves" / "kplr011442793-2010009091648_llc.fits"


@pytest.fixture(scope="module")
def miles() -> tuple[np.ndarray, np.ndarray]:
    """Six MILES spectra (air wavelengths, Å) of tests/data."""
    d = np.load(DATA / "miles_subset" / "miles_spectra.npz")
    return d["wave_air_angstrom"], d["flux"][:6]


@pytest.fixture(scope="module")
def spectral(spectral_version) -> Predictor:
    return stellar.load(
        f"{spectral_version.name}@{spectral_version.version}", registry=str(spectral_version.registry.root)
    )


@pytest.fixture(scope="module")
def lc_version(tmp_path_factory) -> ModelVersion:
    return register_untrained(tmp_path_factory.mktemp("lc_reg"), "lightcurve_transformer", "lightcurve")


@pytest.fixture(scope="module")
def kepler():
    lk = pytest.importorskip("lightkurve")
    return lk.read(KEPLER)


def _api(cls, version: ModelVersion):
    api = cls(version.name, version.version, str(version.registry.root))
    api.setup("cpu")
    return api


def _endpoint(api, request_cls, body: dict) -> dict:
    """The endpoint's JSON answer to ``body``, through its LitAPI methods."""
    return api.encode_response(api.predict(api.decode_request(request_cls.model_validate(body))))


def _scored(version: ModelVersion, frame: pd.DataFrame, tmp_path) -> pd.DataFrame:
    frame.to_parquet(tmp_path / "in.parquet")
    kw = {"model": version.name, "registry_root": str(version.registry.root), "progress": False}
    out = scoring.score(tmp_path / "in.parquet", tmp_path / "out.parquet", **kw).frame
    assert out is not None and (out["error"] == "").all()
    return out.sort_values("object_id", key=lambda s: s.str.len() * 100 + s.map(lambda v: int(v[1:])))


def test_spectra_three_doors_give_the_same_numbers(spectral, spectral_version, miles, tmp_path):
    wave, flux = miles
    table = spectral.predict(flux, wavelength=wave)
    answer = _endpoint(
        _api(SpectralAPI, spectral_version), SpectralRequest, {"spectra": flux.tolist(), "wavelengths": wave.tolist()}
    )
    frame = pd.DataFrame({"object_id": [f"s{i}" for i in range(len(flux))], "flux": list(flux)})
    frame["wavelength"] = [wave] * len(flux)
    scored = _scored(spectral_version, frame, tmp_path)
    classes, targets = spectral.api.class_names, spectral.api.targets
    ours = np.column_stack([table[f"p_{c}"] for c in classes] + [table[f"{t}_mean"] for t in targets])
    endpoint = np.array(
        [
            [p["probabilities"][c] for c in classes] + [p["targets"][t]["mean"] for t in targets]
            for p in answer["predictions"]
        ]
    )
    batch = scored[[f"p_{c}" for c in classes] + [f"{t}_mean" for t in targets]].to_numpy(float)
    np.testing.assert_array_equal(ours, endpoint)
    np.testing.assert_array_equal(ours, batch)
    assert list(table["predicted_class"]) == [p["predicted_class"] for p in answer["predictions"]]
    assert np.allclose(ours[:, : len(classes)].sum(axis=1), 1.0)
    assert table.meta == {**table.meta, "model": spectral_version.name, "version": spectral_version.version}
    assert table["teff_mean"].unit == u.K and table["logg_std"].unit == u.dex
    assert "no redshift" in table["warnings"][0]


def test_light_curves_three_doors_give_the_same_numbers(lc_version, kepler, tmp_path):
    table = stellar.load(lc_version.name, registry=str(lc_version.registry.root)).predict(kepler)
    good = np.asarray(kepler["quality"]) == 0
    t = kepler.time.mjd[good]
    flux, err = kepler.flux.value[good].astype(float), kepler.flux_err.value[good].astype(float)
    body = {"lightcurves": [flux.tolist()], "times": t.tolist(), "errors": [err.tolist()], "unit": "flux"}
    answer = _endpoint(_api(LightCurveAPI, lc_version), LightCurveRequest, body)
    frame = pd.DataFrame({"object_id": "k0", "time": t, "flux": flux, "flux_err": err})
    scored = _scored(lc_version, frame, tmp_path)
    classes = table.colnames[1:-2]
    ours = np.array([table[c][0] for c in classes])
    endpoint = np.array([answer["predictions"][0]["probabilities"][c[2:]] for c in classes])
    np.testing.assert_array_equal(ours, endpoint)
    np.testing.assert_array_equal(ours, scored[classes].to_numpy(float)[0])
    assert f"{int((~good).sum())} of {len(good)} points dropped" in table["warnings"][0]


def test_calibrated_intervals_are_the_endpoints_with_their_units(spectral_version, miles, tmp_path):
    """A version with conformal intervals: each target's ``_lo95``/``_hi95`` and calibrated ``_std`` are the
    endpoint's ``interval_95`` and ``std``."""
    files = {rel: spectral_version.read_bytes(rel) for rel in spectral_version.files if rel != "MODEL_CARD.md"}
    extra = {"interval_calibrator.json": json.dumps(CONFORMAL).encode()}
    v = ModelRegistry(tmp_path).register(spectral_version.name, {**files, **extra}, spectral_version.manifest)
    wave, flux = miles
    table = stellar.load(v.name, registry=str(tmp_path)).predict(flux, wavelength=wave)
    answer = _endpoint(_api(SpectralAPI, v), SpectralRequest, {"spectra": flux.tolist(), "wavelengths": wave.tolist()})
    for t in ("teff", "logg"):
        lo, hi = np.array([p["targets"][t]["interval_95"] for p in answer["predictions"]]).T
        np.testing.assert_array_equal(table[f"{t}_lo95"], lo)
        np.testing.assert_array_equal(table[f"{t}_hi95"], hi)
        np.testing.assert_array_equal(table[f"{t}_std"], [p["targets"][t]["std"] for p in answer["predictions"]])
        assert (table[f"{t}_lo95"] < table[f"{t}_mean"]).all() and (table[f"{t}_mean"] < table[f"{t}_hi95"]).all()
    assert table["logg_lo95"].unit == u.dex and table.meta["intervals_calibrated"]


def test_spectra_as_quantities_and_tables_equal_plain_arrays(spectral, miles):
    wave, flux = miles
    plain = spectral.predict(flux, wavelength=wave, redshift=0.001, medium="air")
    flam = flux * u.erg / u.s / u.cm**2 / u.AA
    nm = spectral.predict(flam, wavelength=(wave * u.AA).to(u.nm), redshift=0.001, medium="air")
    # f_nu = f_lambda λ²/c: converted back to f_lambda at each wavelength, the same spectrum
    fnu = flam.to(u.Jy, equivalencies=u.spectral_density(wave * u.AA))
    jansky = spectral.predict(fnu, wavelength=wave * u.AA, redshift=0.001, medium="air")
    table = Table({"flux": flux, "wavelength": np.tile(wave, (len(flux), 1)) * u.AA, "redshift": np.full(6, 0.001)})
    from_table = spectral.predict(table, medium="air")
    for other in (nm, jansky, from_table):
        np.testing.assert_allclose(other["teff_mean"], plain["teff_mean"], rtol=1e-5)
        np.testing.assert_allclose(other["p_B"], plain["p_B"], rtol=1e-5, atol=1e-7)
    assert "converted from Jy" in jansky["warnings"][0]
    one = spectral.predict(flux[2], wavelength=wave, redshift=0.001, medium="air")
    assert len(one) == 1 and one["teff_mean"][0] == pytest.approx(plain["teff_mean"][2], rel=1e-5)


def test_light_curves_as_lightkurve_objects_equal_plain_arrays(lc_version, kepler):
    lk = pytest.importorskip("lightkurve")
    predictor = stellar.load(f"{lc_version.name}@latest", registry=str(lc_version.registry.root))
    good = np.asarray(kepler["quality"]) == 0
    flux = kepler.flux[good]
    plain = predictor.predict(flux.value, time=kepler.time.mjd[good], flux_err=kepler.flux_err.value[good], unit="flux")
    as_time = predictor.predict(
        flux, time=Time(kepler.time.mjd[good], format="mjd"), flux_err=kepler.flux_err.value[good]
    )
    half = len(kepler) // 2
    pair = predictor.predict(lk.LightCurveCollection([kepler, kepler[half:]]))
    alone = predictor.predict(kepler[half:])
    cols = [c for c in plain.colnames if c.startswith("p_")]
    for a, b in ((as_time, plain), (pair[:1], plain), (pair[1:], alone)):
        # equal to float32 precision: a light curve batched beside a longer one is padded, and the padded matmuls
        # may round the last bit differently (seen once in CI: 7e-9 on a probability of 0.098)
        np.testing.assert_allclose(np.array([a[c][0] for c in cols]), np.array([b[c][0] for c in cols]), rtol=1e-6)
    assert len(pair) == 2
    mags = -2.5 * np.log10(flux.value)  # negative: read as flux they would have no valid point
    as_mag = predictor.predict(mags * u.mag, time=kepler.time.mjd[good])
    bare = predictor.predict(mags, time=kepler.time.mjd[good], unit="mag")
    np.testing.assert_array_equal(np.array([as_mag[c][0] for c in cols]), np.array([bare[c][0] for c in cols]))


def test_photometry_tables_frames_and_arrays_agree(sed_version, sdss_rows):
    predictor = stellar.load(sed_version.name, registry=str(sed_version.registry.root))
    rows = sdss_rows.iloc[:20]
    frame = predictor.predict(rows)
    with_units = Table.from_pandas(rows[list("ugriz")], units=dict.fromkeys("ugriz", u.mag))
    table = predictor.predict(with_units)
    bands = [f"sdss_{b}" for b in "ugriz"]
    arrays = predictor.predict(rows[list("ugriz")].to_numpy() * u.mag, bands=bands)
    answer = _endpoint(
        _api(SEDAPI, sed_version),
        SEDRequest,
        {"magnitudes": rows[list("ugriz")].to_numpy().tolist(), "bands": bands},
    )
    endpoint = [p["probabilities"]["STAR"] for p in answer["predictions"]]
    for t in (frame, table, arrays):
        np.testing.assert_array_equal(np.asarray(t["p_STAR"]), endpoint)
    assert "ood_score" in frame.colnames and frame.meta["calibrated"]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"data": np.ones((2, 3, 4))}, "data must be one row or a 2-D array"),
        ({"data": np.ones((2, 50)) * u.m, "wavelength": np.linspace(4000, 6000, 50)}, "data has unit m"),
        ({"data": np.ones((2, 50)), "wavelength": np.linspace(4000, 6000, 50) * u.kg}, "wavelength has unit kg"),
        ({"data": np.ones((2, 50)) * u.Jy}, "give wavelength too"),
        ({"data": np.vstack([np.ones(50), np.full(50, np.nan)])}, "data[1]: Value error, spectra[0] has 0 finite"),
        ({"data": np.ones((3, 50)), "wavelength": np.ones((2, 50))}, "wavelength has 2 rows for 3 objects"),
        ({"data": np.ones((2, 50)), "colour": "red"}, "unexpected keyword argument 'colour'"),
        ({"data": -np.ones((2, 50))}, "no valid sample after preprocessing"),
        ({"data": np.ones((2, 50)) * u.Jy, "flux_err": np.ones((2, 50))}, "flux_err must carry a unit"),
        ({"data": np.ones((3, 50)), "redshift": [0.1, 0.2]}, "redshift needs one value, or one per object (3)"),
        ({"data": "no/such/spectrum.fits"}, "data='no/such/spectrum.fits' is neither a file nor a folder"),
        ({"data": 1 + 2j}, "data must be numbers"),
    ],
)
def test_bad_spectra_raise_a_stellar_error_naming_the_argument(spectral, kwargs, named):
    with pytest.raises(StellarValueError) as err:
        spectral.predict(kwargs.pop("data"), **kwargs)
    assert named in str(err.value)


def test_bad_photometry_and_light_curves_name_the_argument(sed_version, lc_version):
    sed = stellar.load(sed_version.name, registry=str(sed_version.registry.root))
    with pytest.raises(StellarValueError, match="bands must name the 5 magnitude columns"):
        sed.predict(np.ones((2, 5)) * 15, bands=list("ugr"))
    with pytest.raises(StellarValueError, match=r"errors must have the shape of data \(2, 5\)"):
        sed.predict(np.ones((2, 5)) * 15, bands=sed.api.bands, errors=np.ones((2, 4)))
    with pytest.raises(StellarValueError, match="parallax has unit kg"):
        sed.predict(np.ones((1, 5)) * 15, bands=sed.api.bands, parallax=[1] * u.kg)
    lc = stellar.load(lc_version.name, registry=str(lc_version.registry.root))
    with pytest.raises(StellarValueError, match="time has unit m"):
        lc.predict(np.ones(20), time=np.arange(20) * u.m)


def test_a_folder_of_sdss_and_miles_fits_equals_the_spectra_read_by_astropy(spectral, tmp_path):
    """Survey files through the ingest readers: the numbers of the same spectra read independently (astropy: SDSS's
    coadd table, MILES's linear WCS in air), ids and files first; a light curve in the folder is left out."""
    from astropy.io import fits

    sdss = DATA / "raw" / "sdss" / "spec-4455-55539-0692.fits"
    miles = DATA / "miles_fits" / "MILES_res2.50_star_m0124V.fits"
    for f in (sdss, miles, KEPLER):
        (tmp_path / f.name).symlink_to(f)
    (tmp_path / "notes.txt").write_text("not a survey file")
    got = spectral.predict(tmp_path)
    assert list(got["object_id"]) == ["miles-MILES_res2.50_star_m0124V", "sdss-4455-55539-0692"]
    assert list(got["source"]) == [miles.name, sdss.name] and got.colnames[:2] == ["object_id", "source"]
    coadd = Table.read(sdss, hdu=1)
    flux = np.where(coadd["ivar"] > 0, coadd["flux"], np.nan) * 1e-17 * u.erg / u.s / u.cm**2 / u.AA
    with fits.open(miles) as h:
        head, mflux = h[0].header, np.asarray(h[0].data, np.float64).ravel()
    mwave = head["CRVAL1"] + head["CDELT1"] * (np.arange(len(mflux)) + 1 - head["CRPIX1"])
    want = [
        spectral.predict(mflux, wavelength=mwave * u.AA, medium="air"),
        spectral.predict(flux, wavelength=10 ** np.asarray(coadd["loglam"], np.float64) * u.AA),
    ]
    for k, w in enumerate(want):
        for c in ("teff_mean", "logg_mean", "p_G", "valid_fraction"):
            assert got[c][k] == pytest.approx(w[c][0], rel=1e-5, abs=1e-4), c  # a forward pass of 2 rows vs 1
    assert "pixels with ivar 0 masked" in got["warnings"][1] or (coadd["ivar"] > 0).all()
    one = spectral.predict(str(miles))  # one file
    assert one["teff_mean"][0] == pytest.approx(got["teff_mean"][0], rel=1e-5)


def test_a_kepler_fits_equals_its_lightkurve_light_curve(lc_version, kepler, tmp_path):
    predictor = stellar.load(f"{lc_version.name}@latest", registry=str(lc_version.registry.root))
    got = predictor.predict(KEPLER.parent)  # the folder: the Kepler FITS, the README and CSV light curves
    assert list(got["object_id"]) == ["kic-11442793"] and got["source"][0] == KEPLER.name
    want = predictor.predict(kepler)
    cols = [c for c in want.colnames if c.startswith("p_")]
    np.testing.assert_allclose([got[c][0] for c in cols], [want[c][0] for c in cols], rtol=1e-5)
    assert "points dropped (quality flag" in got["warnings"][0]


def test_survey_files_refused_with_the_reason(spectral, sed_version, tmp_path):
    (tmp_path / "notes.txt").write_text("not a survey file")
    with pytest.raises(StellarValueError, match=r"no spectra record in its 1 file\(s\); left out: notes.txt"):
        spectral.predict(tmp_path)
    with pytest.raises(StellarValueError, match=r"no spectra record .* kic-11442793 .*lightcurve"):
        spectral.predict(KEPLER)
    (tmp_path / "cut.fits").write_bytes(b"SIMPLE  =                    T")  # a FITS start, then nothing
    with pytest.raises(StellarValueError, match=r"cut.fits could not be read: .*no readable HDU"):
        spectral.predict(tmp_path)
    (tmp_path / "cut.fits").unlink()
    with pytest.raises(StellarValueError, match=r"takes no other argument; got \['medium'\]"):
        spectral.predict(tmp_path, medium="air")
    sed = stellar.load(sed_version.name, registry=str(sed_version.registry.root))
    with pytest.raises(StellarValueError, match="reads no survey files; pass arrays, a Table or a DataFrame"):
        sed.predict(tmp_path)


def test_load_reads_aliases_and_the_registry_of_the_environment(spectral_version, monkeypatch):
    root = str(spectral_version.registry.root)
    ModelRegistry(root).set_alias(spectral_version.name, "production", spectral_version.version)
    monkeypatch.setenv("STELLAR_REGISTRY", root)
    p = stellar.load(f"{spectral_version.name}@production")
    assert (p.name, p.version) == (spectral_version.name, spectral_version.version)
    with pytest.raises(StellarError, match="nope"):
        stellar.load("nope", registry=root)


def test_import_stellar_stays_light():
    code = "import sys, stellar; print(sorted({'torch', 'litserve', 'astropy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
