"""The light-curve and SED APIs as plain methods (the spectral one: test_api.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from stellar.serving.api import SEDAPI, Failure, LightCurveAPI
from stellar.serving.schemas import LightCurveRequest, PredictionResponse, SEDRequest
from tests.conftest import REPO
from tests.serving.helpers import register_untrained


def _answer(api, request) -> dict:
    out = api.encode_response(api.predict(api.decode_request(request)))
    assert isinstance(out, dict), getattr(out, "body", out)
    return PredictionResponse.model_validate(out).model_dump()


def test_lightcurve_api(tmp_path):
    v = register_untrained(tmp_path, "lightcurve_transformer", "lightcurve")
    api = LightCurveAPI(v.name, registry_root=str(tmp_path), api_path="/predict/lightcurve")
    api.setup("cpu")
    r = _answer(api, LightCurveRequest(lightcurves=[[1, 1.01, 0.99, 1.02, 0.98, 1.0]], model=v.name))
    (p,) = r["predictions"]
    assert list(p["probabilities"]) == v.class_names and p["predicted_class"] in v.class_names
    assert any("1 day apart" in a for a in r["assumed"]) and any("band 'g'" in a for a in r["assumed"])
    full = LightCurveRequest(
        lightcurves=[[15.0, 15.2, 15.1, 14.9], [15.0, 15.3, 15.1]],
        times=[[0, 0.3, 0.9, 1.5], [0, 1, 2]],
        bands=[["g", "r", "g", "r"], ["r", "r", "r"]],
        errors=[[0.02] * 4, [0.03] * 3],
        unit="mag",
    )
    r = _answer(api, full)
    assert len(r["predictions"]) == 2 and r["assumed"] == []
    flux = _answer(api, LightCurveRequest(lightcurves=[[1, 1.1, 0.9, 1.0]], unit="flux"))
    assert len(flux["predictions"]) == 1
    bad = api.decode_request(LightCurveRequest(lightcurves=[[1, 2, 3]], bands="z"))
    assert isinstance(bad, Failure) and bad.status == 422 and "unknown band(s) ['z']" in bad.detail


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sed_xgboost", "sed_ensemble"])
def test_sed_api_on_a_trained_estimator(tmp_path, model):
    from stellar.pipelines.train import run
    from tests.pipelines.conftest import MODEL_OVERRIDES

    overrides = [
        f"paths.output_dir={tmp_path / 'run'}",
        f"paths.store_dir={tmp_path / 'store'}",
        f"paths.log_dir={tmp_path}",
        f"model={model}",
        *MODEL_OVERRIDES[model],
        "datamodule.source.n=300",
        "register=true",
        f"registry.root={tmp_path / 'registry'}",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        run(compose("train", overrides=overrides))
    api = SEDAPI(model, registry_root=str(tmp_path / "registry"), api_path="/predict/sed")
    api.setup("cpu")
    assert api.load_error is None
    from stellar.registry import ModelRegistry

    manifest = ModelRegistry(tmp_path / "registry").get(model).manifest  # the run stored its SEDPreprocessing
    assert manifest["preprocessing"]["_target_"] == "stellar.data.preprocess.sed_inputs.SEDPreprocessing"
    assert manifest["preprocessing"]["bands"] == api.bands and manifest["feature_names"] == api.feature_names
    n = len(api.bands)
    r = _answer(api, SEDRequest(magnitudes=[[15.0 + 0.1 * i for i in range(n)]], parallax=[2.0]))
    assert (
        r["modality"] == "sed"
        and r["calibrated"]
        and abs(sum(r["predictions"][0]["probabilities"].values()) - 1) < 1e-5
    )
    r = _answer(api, SEDRequest(magnitudes=[[15.0, 14.0]], bands=api.bands[:2]))
    assert any("not sent" in a for a in r["assumed"])
    bad = api.decode_request(SEDRequest(magnitudes=[[15.0]], bands=["johnson_x"]))
    assert isinstance(bad, Failure) and "unknown band(s) ['johnson_x']" in bad.detail


def _sed_api_with(prep) -> SEDAPI:
    """An SED endpoint holding ``prep`` as ``setup`` leaves it (no model: only decode and preprocess are used)."""
    api = SEDAPI("sed_test", api_path="/predict/sed")
    api.prep, api.bands, api.feature_names = prep, list(prep.bands), prep.feature_names()
    return api


def test_sed_api_and_datamodule_give_the_same_features_for_the_same_rows(tmp_path):
    from stellar.data.datamodules.sed import SEDDataModule
    from stellar.data.sources.sed import SimulatedSEDSource

    dm = SEDDataModule(
        SimulatedSEDSource(n=40, seed=3), str(tmp_path), use_errors=True, abs_mag_band="gaia_g",
        extra_features=["parallax", "parallax_err"],
    )  # fmt: skip
    dm.prepare_data()
    ds = dm.store.open(dm.dataset_name)
    expected = dm.load_arrays(ds, ds.meta.copy())
    api = _sed_api_with(dm.preprocessing)
    keep = np.isfinite(ds.load("mag")).any(axis=1)  # a request row needs one magnitude
    assert 20 < keep.sum() < len(keep)
    mag, err, meta = ds.load("mag")[keep], ds.load("mag_err")[keep], ds.meta[keep]
    request = SEDRequest(  # columns in another order than the model's: put back by name
        magnitudes=mag[:, ::-1].astype(float).tolist(),
        errors=err[:, ::-1].astype(float).tolist(),
        bands=api.bands[::-1],
        ebv=meta["ebv"].tolist(),
        parallax=meta["parallax"].tolist(),
        parallax_err=meta["parallax_err"].tolist(),
    )
    job = api.to_job(request)
    assert job.assumed == []
    got = api.preprocess(job.rows)
    for key in ("mag", "mag_err", "features"):
        np.testing.assert_array_equal(got[key], expected[key][keep])
    # without ebv nothing is dereddened, and parallax-based features that are not sent are missing
    bare = api.preprocess(api.to_job(SEDRequest(magnitudes=mag[:2].astype(float).tolist())).rows)
    names = api.feature_names
    assert np.isnan(bare["features"][:, [names.index(c) for c in ("absmag_gaia_g", "parallax", "parallax_err")]]).all()
    np.testing.assert_array_equal(bare["mag"], mag[:2])


def test_sed_api_rebuilds_the_preprocessing_of_a_version_registered_without_one():
    from omegaconf import OmegaConf

    from stellar.data.preprocess.sed_inputs import SEDPreprocessing
    from stellar.errors import StellarValueError

    bands = ["sdss_g", "sdss_r", "sdss_i"]
    prep = SEDPreprocessing(bands=bands, all_colours=True, abs_mag_band="sdss_r", extra_features=["parallax"])
    cfg = OmegaConf.create({"datamodule": {"all_colours": True, "abs_mag_band": "sdss_r", "bands": None,
                                           "extra_features": ["parallax"], "batch_size": 8}})  # fmt: skip
    old = SimpleNamespace(
        tag="sed:v1",
        preprocessing=lambda: None,
        training_config=lambda: cfg,
        manifest={"bands": bands, "feature_names": prep.feature_names()},
    )
    api = SEDAPI("sed")
    assert api.load_preprocessing(old) == prep
    old.manifest["feature_names"] = ["mag_sdss_g"]
    with pytest.raises(StellarValueError, match="differ from the fitted"):
        api.load_preprocessing(old)
