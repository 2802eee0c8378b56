"""The LitAPIs as plain methods: decode → predict → encode, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from stellar.serving.api import Failure, Job, SpectralAPI
from stellar.serving.schemas import PredictionResponse, SpectralRequest


@pytest.fixture(scope="module")
def api(spectral_version, registry_root) -> SpectralAPI:
    a = SpectralAPI(spectral_version.name, registry_root=str(registry_root), api_path="/predict/spectral")
    a.setup("cpu")
    return a


def _answer(api: SpectralAPI, body: dict) -> dict:
    out = api.encode_response(api.predict(api.decode_request(SpectralRequest.model_validate(body))))
    assert isinstance(out, dict), getattr(out, "body", out)
    return PredictionResponse.model_validate(out).model_dump()


def test_prediction_is_well_formed(api, spectral_version):
    r = _answer(api, {"spectra": [[0.1, 0.2, 0.3, 0.4, 0.5]], "model": spectral_version.name})
    assert r["model"] == spectral_version.name and r["version"] == spectral_version.version
    assert r["modality"] == "spectral" and r["calibrated"] is True
    (p,) = r["predictions"]
    assert list(p["probabilities"]) == spectral_version.class_names  # from the artifact, never hard-coded
    assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert p["predicted_class"] == max(p["probabilities"], key=p["probabilities"].get)
    assert set(p["targets"]) == {"teff", "logg", "feh"}
    assert all(t["std"] > 0 and np.isfinite(t["mean"]) for t in p["targets"].values())
    assert any("no wavelengths" in a and "evenly in log wavelength" in a for a in r["assumed"])


def test_flux_on_the_model_grid_is_used_as_is(api):
    grid = np.asarray(api.prep.grid)
    flux = (1 + 0.1 * np.sin(grid * 50)).tolist()
    implicit = _answer(api, {"spectra": [flux]})
    explicit = _answer(api, {"spectra": [flux], "wavelengths": (10**grid).tolist()})
    assert implicit["predictions"][0]["valid_fraction"] == 1.0
    assert implicit["predictions"] == explicit["predictions"]
    assert not any("no wavelengths" in a for a in explicit["assumed"])


def test_a_batch_answers_like_single_requests(api):
    rng = np.random.default_rng(1)
    bodies = [{"spectra": (1 + 0.05 * rng.normal(size=(n, 40))).tolist()} for n in (1, 3, 2)]
    jobs = [api.decode_request(SpectralRequest.model_validate(b)) for b in bodies]
    bad = api.decode_request(SpectralRequest.model_validate({"spectra": [[1, 2]], "model": "other"}))
    batched = api.predict([jobs[0], bad, jobs[1], jobs[2]])
    assert isinstance(batched[1], Failure) and batched[1].status == 404 and "unknown model 'other'" in batched[1].detail
    for job, out in zip(jobs, [batched[0], *batched[2:]], strict=True):
        single = api.predict(job)
        a, b = single[1], out[1]
        assert len(a) == len(b) == len(job.rows)
        for pa, pb in zip(a, b, strict=True):
            assert pa["probabilities"] == pytest.approx(pb["probabilities"], rel=1e-4, abs=1e-6)
            assert pa["targets"]["teff"]["mean"] == pytest.approx(pb["targets"]["teff"]["mean"], rel=1e-4)


def test_errors_and_redshift_and_air(api):
    grid = np.asarray(api.prep.grid)[::10]
    wave = (10**grid).tolist()
    flux = np.ones((2, len(wave))).tolist()
    errors = np.full((2, len(wave)), 0.1).tolist()
    r = _answer(api, {"spectra": flux, "wavelengths": wave, "errors": errors, "redshift": [0.0, 0.01]})
    assert len(r["predictions"]) == 2 and not any("redshift" in a for a in r["assumed"])
    assert len(_answer(api, {"spectra": flux, "wavelengths": wave, "medium": "air"})["predictions"]) == 2


def test_wavelengths_off_the_grid_are_a_422(api):
    job = api.decode_request(SpectralRequest.model_validate({"spectra": [[1, 2, 3]], "wavelengths": [10, 20, 30]}))
    assert isinstance(job, Failure) and job.status == 422 and "do not overlap the model grid" in job.detail
    resp = api.encode_response(api.predict(job))
    assert resp.status_code == 422 and b"do not overlap" in resp.body


def test_unregistered_model_is_a_404_not_a_crash(registry_root):
    a = SpectralAPI("not_trained_yet", registry_root=str(registry_root), api_path="/predict/spectral")
    a.setup("cpu")
    job = a.decode_request(SpectralRequest.model_validate({"spectra": [[1, 2, 3]]}))
    assert isinstance(job, Failure) and job.status == 404 and "not_trained_yet" in job.detail
    assert not isinstance(job, Job)


def test_non_finite_model_output_is_a_422_for_that_request_only(api, monkeypatch):
    real = api._outputs

    def overflowing(arrays):
        out = real(arrays)
        out["logits"][1] = np.nan  # as extreme inputs (1e150 mag) overflow a network
        return out

    monkeypatch.setattr(api, "_outputs", overflowing)
    jobs = [api.decode_request(SpectralRequest.model_validate({"spectra": [[1, 2, 3]]})) for _ in range(2)]
    first, second = api.predict(jobs)
    assert isinstance(second, Failure) and second.status == 422 and "not finite" in second.detail
    assert not isinstance(first, Failure) and sum(first[1][0]["probabilities"].values()) == pytest.approx(1, abs=1e-5)
