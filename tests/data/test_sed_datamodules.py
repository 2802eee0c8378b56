"""SED sources and the SED datamodule on real rows (SDSS17, Hipparcos) and on the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from stellar.data.datamodules.sed import SEDDataModule
from stellar.data.sources.sed import HipparcosSource, SDSS17Source, SimulatedSEDSource
from stellar.errors import StellarConfigError, StellarDataError
from stellar.evaluation.splits import RandomSplit, SkySplit
from tests.conftest import DATA

SED = DATA / "sed"


def _dm(source, tmp_path, **kwargs) -> SEDDataModule:
    dm = SEDDataModule(source, str(tmp_path / "store"), **kwargs)
    dm.setup("fit")
    return dm


def test_sdss17_rows_give_ugriz_colours_and_a_sky_split(tmp_path):
    split = SkySplit(fractions=(0.6, 0.2, 0.2), seed=0, nside=4, label_col="class_name")
    dm = _dm(
        SDSS17Source(str(SED / "sdss17")),
        tmp_path,
        split=split,
        class_names=["STAR", "GALAXY", "QSO"],
        class_key="class",
        targets=[],
        all_colours=True,
        deredden=False,
    )
    assert dm.stored_bands == [f"sdss_{b}" for b in "ugriz"]
    assert len(dm.feature_names) == 5 + 10 and "sdss_u-sdss_g" in dm.feature_names
    assert "redshift" not in dm.feature_names  # off by default: it nearly gives the class away
    assert dm.split_result is not None and dm.split_result.audit["overlap"]["sky_block"]["train&test"] == 0
    arrays = dm.arrays("train")
    assert arrays["features"].dtype == np.float32 and arrays["features"].shape[1] == 15
    assert set(arrays) >= {"mag", "mag_err", "features", "label", "index"}
    assert np.isnan(arrays["mag_err"]).all() and np.isfinite(arrays["mag"]).all()  # SDSS17 carries no errors
    assert (dm.meta["label"] >= 0).all() and len(dm.meta) == 600
    u_g = arrays["features"][:, dm.feature_names.index("sdss_u-sdss_g")]
    assert np.allclose(u_g, arrays["mag"][:, 0] - arrays["mag"][:, 1], atol=1e-5)


def test_redshift_is_an_optional_extra_feature(tmp_path):
    dm = _dm(SDSS17Source(str(SED / "sdss17")), tmp_path, class_names=["STAR"], class_key="class", targets=[],
             extra_features=["redshift"], deredden=False)  # fmt: skip
    assert dm.feature_names[-1] == "redshift" and len(dm.feature_names) == 5 + 4 + 1
    with pytest.raises(StellarConfigError, match="extra_features"):
        _dm(SDSS17Source(str(SED / "sdss17")), tmp_path, targets=[], extra_features=["SpType"])


def test_hipparcos_rows_give_dwarfs_and_giants_with_absolute_magnitudes(tmp_path):
    dm = _dm(
        HipparcosSource(str(SED / "hipparcos")),
        tmp_path,
        split=RandomSplit(fractions=(0.7, 0.15, 0.15), seed=0, row_key="obs_id"),
        class_names=["dwarf", "giant"],
        class_key="lum_class",
        targets=[],
        abs_mag_band="johnson_v",
        extra_features=["parallax", "parallax_err"],
    )
    assert dm.feature_names == [
        "mag_johnson_b", "mag_johnson_v", "johnson_b-johnson_v", "absmag_johnson_v", "parallax", "parallax_err"
    ]  # fmt: skip
    assert set(dm.meta["class_name"]) == {"dwarf", "giant"}
    feats = np.concatenate([dm.arrays(p)["features"] for p in ("train", "val", "test")])
    idx = np.concatenate([dm.arrays(p)["index"] for p in ("train", "val", "test")])
    plx = dm.meta["parallax"].to_numpy()[idx]
    assert np.isnan(feats[plx <= 0, 3]).all() and np.isfinite(feats[plx > 0, 3]).all()
    bv = dm.meta.iloc[idx]  # B-V survives the B = V + (B-V) round trip
    assert np.isfinite(feats[:, 2]).all() and len(bv) == 400


def test_simulated_seds_are_dereddened_with_the_stored_ebv(tmp_path):
    src = SimulatedSEDSource(n=60, seed=2)
    raw = _dm(src, tmp_path, deredden=False, targets=["teff", "logg"], abs_mag_band="gaia_g")
    der = _dm(src, tmp_path / "b", deredden=True, targets=["teff", "logg"], abs_mag_band="gaia_g")
    assert raw.feature_names == der.feature_names and "absmag_gaia_g" in der.feature_names
    a, b = raw.arrays("test")["mag"], der.arrays("test")["mag"]
    ok = np.isfinite(a) & np.isfinite(b)
    assert (a[ok] >= b[ok] - 1e-5).all() and (a[ok] - b[ok]).max() > 0.01
    assert raw.target_stats == {} or set(raw.target_stats) <= {"teff", "logg"}


def test_missing_files_and_bands_are_reported(tmp_path):
    with pytest.raises(StellarDataError, match="data_dir"):
        SDSS17Source(str(tmp_path)).dataset_name()
    with pytest.raises(StellarDataError, match="data_dir"):
        HipparcosSource(str(tmp_path)).build()
    with pytest.raises(StellarConfigError, match="bands"):
        _dm(SDSS17Source(str(SED / "sdss17")), tmp_path, targets=[], bands=["gaia_g"])


# sha256[:16] of the float32 ``features`` that SEDDataModule.load_arrays computed itself, before SEDPreprocessing
# took the computation over (commit d387506): the features must stay bit-identical
FEATURES_BEFORE = {
    "sdss17": "170e64cf57eec575",
    "hipparcos": "1cdec041fefae05c",
    "simulated": "40682711b2c273c1",
}
FEATURE_CASES = {
    "sdss17": (
        lambda: SDSS17Source(str(SED / "sdss17")),
        {"class_names": ["STAR", "GALAXY", "QSO"], "class_key": "class", "targets": [], "all_colours": True,
         "use_errors": True, "deredden": False, "extra_features": ["redshift"]},
    ),
    "hipparcos": (
        lambda: HipparcosSource(str(SED / "hipparcos")),
        {"class_names": ["dwarf", "giant"], "class_key": "lum_class", "targets": [], "abs_mag_band": "johnson_v",
         "extra_features": ["parallax", "parallax_err"]},
    ),
    "simulated": (  # dereddened with the stored E(B-V)
        lambda: SimulatedSEDSource(n=60, seed=2),
        {"targets": ["teff", "logg"], "use_errors": True, "abs_mag_band": "gaia_g",
         "extra_features": ["parallax", "parallax_err"]},
    ),
}  # fmt: skip


def _all_rows(source, tmp_path, **kwargs) -> tuple[SEDDataModule, dict[str, np.ndarray]]:
    dm = SEDDataModule(source, str(tmp_path / "store"), **kwargs)
    dm.prepare_data()
    ds = dm.store.open(dm.dataset_name)
    return dm, dm.load_arrays(ds, ds.meta.copy())


@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
def test_features_are_bit_identical_to_those_before_sed_preprocessing(tmp_path, case):
    import hashlib

    make_source, kwargs = FEATURE_CASES[case]
    dm, arrays = _all_rows(make_source(), tmp_path, **kwargs)
    feats = arrays["features"]
    assert feats.dtype == np.float32 and feats.shape[1] == len(dm.feature_names)
    assert hashlib.sha256(np.ascontiguousarray(feats).tobytes()).hexdigest()[:16] == FEATURES_BEFORE[case]


def test_the_datamodule_keeps_one_sed_preprocessing_with_the_datasets_bands(tmp_path):
    from stellar.data.preprocess.sed_inputs import SEDPreprocessing

    dm, arrays = _all_rows(SimulatedSEDSource(n=20, seed=1), tmp_path, abs_mag_band="gaia_g", extra_features=["ebv"])
    prep = dm.preprocessing
    assert isinstance(prep, SEDPreprocessing) and prep.bands == tuple(dm.stored_bands) and len(prep.bands) == 13
    assert prep.feature_names() == dm.feature_names and dm.feature_names[-2:] == ["absmag_gaia_g", "ebv"]
    assert SEDPreprocessing(**prep.to_dict()) == prep  # what the registry stores and the server rebuilds
    ds = dm.store.open(dm.dataset_name)
    again = prep(ds.load("mag"), ds.load("mag_err"), {c: ds.meta[c].to_numpy() for c in ("ebv", "parallax")})
    np.testing.assert_array_equal(again["features"], arrays["features"])
    as_object = SEDDataModule(SimulatedSEDSource(n=20, seed=1), str(tmp_path / "store"), preprocessing=prep)
    assert as_object.preprocessing == prep and as_object.feature_names == dm.feature_names
    with pytest.raises(StellarConfigError, match="not both"):
        SEDDataModule(SimulatedSEDSource(n=20, seed=1), str(tmp_path / "store"), preprocessing=prep, use_errors=True)


def test_sed_preprocessing_refuses_what_it_cannot_compute():
    from stellar.data.preprocess.sed_inputs import SEDPreprocessing
    from stellar.errors import StellarValueError

    with pytest.raises(StellarConfigError, match="no bands yet"):
        SEDPreprocessing().feature_names()
    prep = SEDPreprocessing(bands=["sdss_g", "sdss_r"], abs_mag_band="sdss_r", deredden=False)
    with pytest.raises(StellarConfigError, match="parallax"):
        prep([[15.0, 14.0]], None, {})
    with pytest.raises(StellarValueError, match=r"\(N, 2\)"):
        prep([[15.0, 14.0, 13.0]], None, {"parallax": [1.0]})
    with pytest.raises(StellarConfigError, match="are not in dataset 'x'"):
        SEDPreprocessing(bands=["gaia_g"]).for_bands(["sdss_g"], where="dataset 'x'")
    out = prep([[15.0, 14.0]], None, {"parallax": [10.0]})  # 10 mas: 100 pc, M = m - 5
    assert out["features"].tolist() == [[15.0, 14.0, 1.0, 9.0]]
