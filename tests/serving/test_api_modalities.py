"""The light-curve and SED APIs as plain methods (the spectral one: test_api.py)."""

from __future__ import annotations

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
