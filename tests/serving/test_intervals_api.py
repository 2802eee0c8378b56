"""The server applies a version's interval calibrator to each target's std (plain methods and an in-process
server), and versions registered without one answer as before."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hydra import compose, initialize_config_dir
from litserve.utils import wrap_litserve_start

from stellar.registry import ModelRegistry, ModelVersion
from stellar.serving.api import SpectralAPI
from stellar.serving.schemas import PredictionResponse, SpectralRequest
from stellar.serving.server import build_server
from tests.conftest import REPO
from tests.serving.helpers import wait_ready

Z95 = 1.959963984540054
VARIANCE = {"type": "variance", "log_targets": ["teff"], "targets": {"teff": {"n": 50, "scale": 2.0}}}
CONFORMAL = {
    "type": "conformal",
    "log_targets": ["teff"],
    "levels": [0.6826894921370859, 0.95],
    "targets": {"logg": {"n": 50, "quantiles": [[0.6826894921370859, 1.5], [0.95, 5.0]]}},
}
BODY = {"spectra": [[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]]}


@pytest.fixture(scope="module")
def interval_root(spectral_version: ModelVersion, tmp_path_factory) -> str:
    """A registry of its own (the shared one's ``latest`` stays as other tests expect): v1 the spectral version
    as registered before interval calibration, v2 with a variance scaler, v3 with conformal intervals."""
    root = tmp_path_factory.mktemp("interval_registry")
    registry = ModelRegistry(root)
    files = {rel: spectral_version.read_bytes(rel) for rel in spectral_version.files if rel != "MODEL_CARD.md"}
    for payload in (None, VARIANCE, CONFORMAL):
        extra = {} if payload is None else {"interval_calibrator.json": json.dumps(payload).encode()}
        registry.register(spectral_version.name, {**files, **extra}, spectral_version.manifest)
    return str(root)


def _answer(name: str, root: str, ref: int) -> dict:
    api = SpectralAPI(name, ref=ref, registry_root=root, api_path="/predict/spectral")
    api.setup("cpu")
    out = api.encode_response(api.predict(api.decode_request(SpectralRequest.model_validate(BODY))))
    assert isinstance(out, dict), getattr(out, "body", out)
    return PredictionResponse.model_validate(out).model_dump()


def test_each_targets_std_is_rescaled_and_a_version_without_the_file_answers_as_before(spectral_version, interval_root):
    name = spectral_version.name
    plain, variance, conformal = (_answer(name, interval_root, v) for v in (1, 2, 3))
    assert plain["intervals_calibrated"] is False
    assert variance["intervals_calibrated"] is True and conformal["intervals_calibrated"] is True
    for p0, pv, pc in zip(plain["predictions"], variance["predictions"], conformal["predictions"], strict=True):
        assert all(t["interval_95"] is None for t in p0["targets"].values())
        for t in ("teff", "logg", "feh"):
            assert pv["targets"][t]["mean"] == p0["targets"][t]["mean"] == pc["targets"][t]["mean"]
        sd = {t: p0["targets"][t]["std"] for t in p0["targets"]}
        # variance scaling on teff only: std x2; Teff is learned as log10, so the 95% interval is
        # 10 ** (log10 mean +- 1.96 x the new std in dex), std_dex = std / (mean ln 10)
        assert pv["targets"]["teff"]["std"] == pytest.approx(2.0 * sd["teff"], rel=1e-5)
        assert pv["targets"]["logg"]["std"] == pytest.approx(sd["logg"], rel=1e-6)
        lo, hi = pv["targets"]["teff"]["interval_95"]
        mean = pv["targets"]["teff"]["mean"]
        ratio = math.exp(Z95 * 2.0 * sd["teff"] / mean)
        assert (lo, hi) == pytest.approx((mean / ratio, mean * ratio), rel=1e-5)
        # targets the calibrator was not fitted on keep Gaussian intervals
        lo, hi = pv["targets"]["feh"]["interval_95"]
        assert hi - lo == pytest.approx(2 * Z95 * sd["feh"], rel=1e-5)
        # conformal on logg: std x q68 = 1.5, the 95% interval +- q95 = 5 x the model's std (not 1.96 x the new)
        assert pc["targets"]["logg"]["std"] == pytest.approx(1.5 * sd["logg"], rel=1e-5)
        lo, hi = pc["targets"]["logg"]["interval_95"]
        assert hi - lo == pytest.approx(2 * 5.0 * sd["logg"], rel=1e-5)
        assert math.isclose(pc["targets"]["teff"]["std"], sd["teff"], rel_tol=1e-6)


# its own server start (~11 s); the endpoint's intervals as plain methods (here and in test_predictor) run by default
@pytest.mark.slow
def test_the_in_process_server_answers_calibrated_intervals(spectral_version, interval_root):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(
            "serve",
            overrides=[
                f"registry.root={interval_root}",
                f"endpoints.spectral.model={spectral_version.name}",
                "endpoints.spectral.ref=2",
                "endpoints.lightcurve.model=not_registered",
            ],
        )
    server = build_server(cfg)
    with wrap_litserve_start(server) as srv, TestClient(srv.app) as client:
        wait_ready(client)
        r = client.post("/predict/spectral", json=BODY)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["version"] == 2 and out["intervals_calibrated"] is True
    direct = _answer(spectral_version.name, interval_root, 2)
    for p_http, p_direct in zip(out["predictions"], direct["predictions"], strict=True):
        for t in ("teff", "logg", "feh"):
            np.testing.assert_allclose(p_http["targets"][t]["std"], p_direct["targets"][t]["std"], rtol=1e-6)
            np.testing.assert_allclose(
                p_http["targets"][t]["interval_95"], p_direct["targets"][t]["interval_95"], rtol=1e-6
            )
