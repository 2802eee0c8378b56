"""The endpoints through an in-process LitServe server: the documented request, a bad-input corpus, batching."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import litserve as ls
import numpy as np
import pytest

from stellar.pipelines.serve import run
from stellar.serving.schemas import MAX_ROWS
from tests.serving.helpers import recording_server, serve_cfg, strict_json

SPECTRAL = "/predict/spectral"
LIGHTCURVE = "/predict/lightcurve"
SED = "/predict/sed"


def _raw(body: bytes) -> dict[str, Any]:
    """Request kwargs of a JSON body written by hand (NaN/Infinity literals, as Python's and JavaScript's JSON
    writers emit them); without the content type the server would not parse it as JSON at all."""
    return {"content": body, "headers": {"Content-Type": "application/json"}}


@pytest.fixture(scope="module")
def client(spectral_version, registry_root, batch_log) -> Any:
    overrides = ("endpoints.lightcurve.model=not_registered", "max_body_mb=1")
    with recording_server(registry_root, spectral_version.name, batch_log, *overrides) as c:
        yield c


def test_documented_request_and_openapi(client, spectral_version):
    body = {"spectra": [[0.1, 0.2, 0.3, 0.4, 0.5]], "model": spectral_version.name}
    r = client.post(SPECTRAL, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == spectral_version.name and out["version"] == spectral_version.version
    (p,) = out["predictions"]
    assert set(p["probabilities"]) == set(spectral_version.class_names) and p["predicted_class"] in p["probabilities"]
    assert set(p["targets"]) == {"teff", "logg", "feh"} and out["assumed"]
    schema = client.get("/openapi.json").json()
    assert {SPECTRAL, LIGHTCURVE} <= set(schema["paths"])
    assert "SpectralRequest" in json.dumps(schema) and "PredictionResponse" in json.dumps(schema)


def _ok_spectrum(n: int = 5) -> list[list[float]]:
    return [list(np.linspace(0.1, 0.5, n))]


# (id, endpoint, request kwargs, expected status or None for "some 4xx")
CORPUS: list[tuple[str, str, dict[str, Any], int | None]] = [
    ("malformed_json", SPECTRAL, _raw(b'{"spectra": [[1, 2, 3]'), 422),
    ("empty_body", SPECTRAL, {"content": b""}, 422),
    ("json_array", SPECTRAL, {"json": [1, 2, 3]}, 422),
    ("json_string", SPECTRAL, {"json": "hello"}, 422),
    ("json_null", SPECTRAL, {"content": b"null"}, 422),
    ("missing_spectra", SPECTRAL, {"json": {}}, 422),
    ("spectra_string", SPECTRAL, {"json": {"spectra": "abc"}}, 422),
    ("spectra_flat", SPECTRAL, {"json": {"spectra": [1, 2, 3]}}, 422),
    ("spectra_empty", SPECTRAL, {"json": {"spectra": []}}, 422),
    ("row_empty", SPECTRAL, {"json": {"spectra": [[]]}}, 422),
    ("row_one_value", SPECTRAL, {"json": {"spectra": [[1.0]]}}, 422),
    ("strings_in_row", SPECTRAL, {"json": {"spectra": [["1", "2", "3"]]}}, 422),
    ("booleans_in_row", SPECTRAL, {"json": {"spectra": [[True, False, True]]}}, 422),
    ("nulls_in_row", SPECTRAL, {"json": {"spectra": [[None, 1, 2]]}}, 422),
    ("objects_in_row", SPECTRAL, {"json": {"spectra": [[{"a": 1}, 2]]}}, 422),
    ("too_deep", SPECTRAL, {"json": {"spectra": [[[1, 2]]]}}, 422),
    ("ragged", SPECTRAL, {"json": {"spectra": [[1, 2, 3], [1, 2]]}}, 422),
    ("nan_only", SPECTRAL, _raw(b'{"spectra": [[NaN, NaN, NaN]]}'), 422),
    ("inf_only", SPECTRAL, _raw(b'{"spectra": [[Infinity, -Infinity, Infinity]]}'), 422),
    ("overflow_only", SPECTRAL, _raw(b'{"spectra": [[1e999, 1e999]]}'), 422),
    ("huge_integer", SPECTRAL, _raw(b'{"spectra": [[1' + b"0" * 400 + b", 2]]}"), 422),
    ("one_finite", SPECTRAL, _raw(b'{"spectra": [[1.0, NaN, NaN]]}'), 422),
    ("unknown_model", SPECTRAL, {"json": {"spectra": _ok_spectrum(), "model": "nope"}}, 404),
    ("model_path_traversal", SPECTRAL, {"json": {"spectra": _ok_spectrum(), "model": "../../etc/passwd"}}, 422),
    ("model_not_string", SPECTRAL, {"json": {"spectra": _ok_spectrum(), "model": 3}}, 422),
    ("unknown_field", SPECTRAL, {"json": {"spectra": _ok_spectrum(), "foo": 1}}, 422),
    ("wave_length_mismatch", SPECTRAL, {"json": {"spectra": _ok_spectrum(), "wavelengths": [4000, 5000]}}, 422),
    ("wave_decreasing", SPECTRAL, {"json": {"spectra": [[1, 2, 3]], "wavelengths": [5000, 4000, 3000]}}, 422),
    ("wave_negative", SPECTRAL, {"json": {"spectra": [[1, 2, 3]], "wavelengths": [-1, 4000, 5000]}}, 422),
    ("wave_nan", SPECTRAL, _raw(b'{"spectra": [[1, 2, 3]], "wavelengths": [4000, NaN, 5000]}'), 422),
    ("wave_off_grid", SPECTRAL, {"json": {"spectra": [[1, 2, 3]], "wavelengths": [10, 20, 30]}}, 422),
    ("wave_rows_mismatch", SPECTRAL, {"json": {"spectra": [[1, 2, 3]], "wavelengths": [[4000, 4500, 5000]] * 2}}, 422),
    ("errors_shape", SPECTRAL, {"json": {"spectra": [[1, 2, 3]], "errors": [[0.1, 0.1]]}}, 422),
    ("redshift_length", SPECTRAL, {"json": {"spectra": [[1, 2, 3]], "redshift": [0.1, 0.2]}}, 422),
    ("redshift_below_minus_one", SPECTRAL, {"json": {"spectra": [[1, 2, 3]], "redshift": [-1.5]}}, 422),
    ("wave_empty", SPECTRAL, {"json": {"spectra": [[1, 2, 3]], "wavelengths": [], "errors": [], "redshift": []}}, 422),
    ("zero_flux", SPECTRAL, {"json": {"spectra": [[0, 0, 0, 0]]}}, 422),
    ("negative_flux", SPECTRAL, {"json": {"spectra": [[-1, -2, -3]]}}, 422),
    ("medium_unknown", SPECTRAL, {"json": {"spectra": [[1, 2, 3]], "medium": "water"}}, 422),
    ("too_many_rows", SPECTRAL, {"json": {"spectra": [[1.0, 2.0]] * (MAX_ROWS + 1)}}, 422),
    ("too_many_points", SPECTRAL, {"json": {"spectra": [[1.0] * 20_001]}}, 422),
    ("oversized_payload", SPECTRAL, {"content": b'{"spectra": [[' + b"1.0, " * 400_000 + b"1.0]]}"}, 413),
    ("text_plain", SPECTRAL, {"content": b"spectra=1,2,3", "headers": {"Content-Type": "text/plain"}}, 415),
    ("form_encoded", SPECTRAL, {"data": {"spectra": "1"}}, 415),
    ("lc_too_few_points", LIGHTCURVE, {"json": {"lightcurves": [[1, 2]]}}, 422),
    ("lc_times_mismatch", LIGHTCURVE, {"json": {"lightcurves": [[1, 2, 3, 4]], "times": [0, 1, 2]}}, 422),
    ("lc_times_unsorted", LIGHTCURVE, {"json": {"lightcurves": [[1, 2, 3]], "times": [0, 2, 1]}}, 422),
    ("lc_bands_shape", LIGHTCURVE, {"json": {"lightcurves": [[1, 2, 3]], "bands": [["g", "r"]]}}, 422),
    ("lc_unit_unknown", LIGHTCURVE, {"json": {"lightcurves": [[1, 2, 3]], "unit": "jansky"}}, 422),
    ("lc_nan_only", LIGHTCURVE, _raw(b'{"lightcurves": [[NaN, NaN, NaN, NaN]]}'), 422),
    ("lc_model_not_registered", LIGHTCURVE, {"json": {"lightcurves": [[1, 1.01, 0.99, 1.02]]}}, 404),
    ("get_not_post", SPECTRAL, {"method": "GET"}, 405),
    ("unknown_route", "/predict/gamma_rays", {"json": {"spectra": [[1, 2]]}}, 404),
]


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 30 and len({c[0] for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize(("path", "kwargs", "status"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_input_gets_a_4xx_that_names_the_problem(client, path, kwargs, status):
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "POST")
    r = client.request(method, path, **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    detail = strict_json(r.text)["detail"]
    assert detail  # FastAPI's 422 lists each error with its location; ours is a sentence
    if r.status_code == 422 and isinstance(detail, list):
        assert all("loc" in d and "msg" in d for d in detail)


# (id, endpoint, JSON body with NaN/Infinity literals, what the 422 must name)
NON_FINITE: list[tuple[str, str, bytes, str]] = [
    ("spectral_nan", SPECTRAL, b'{"spectra": [[NaN, NaN, NaN, NaN, NaN]]}', "spectra[0] has 0 finite values"),
    ("spectral_inf", SPECTRAL, b'{"spectra": [[Infinity, Infinity, Infinity]]}', "spectra[0] has 0 finite values"),
    ("spectral_neg_inf", SPECTRAL, b'{"spectra": [[-Infinity, -Infinity]]}', "spectra[0] has 0 finite values"),
    ("spectral_mixed", SPECTRAL, b'{"spectra": [[1.0, 2.0], [NaN, -Infinity]]}', "spectra[1] has 0 finite values"),
    ("spectral_wave_inf", SPECTRAL, b'{"spectra": [[1, 2, 3]], "wavelengths": [4000, Infinity, 5000]}', "finite"),
    ("spectral_redshift_nan", SPECTRAL, b'{"spectra": [[1, 2, 3]], "redshift": [NaN]}', "redshift must be finite"),
    ("spectral_extra_nan", SPECTRAL, b'{"spectra": [[1, 2, 3]], "foo": NaN}', "Extra inputs are not permitted"),
    ("lightcurve_nan", LIGHTCURVE, b'{"lightcurves": [[NaN, NaN, NaN, NaN, NaN]]}', "lightcurves[0] has 0 finite"),
    ("lightcurve_inf", LIGHTCURVE, b'{"lightcurves": [[Infinity, Infinity, Infinity]]}', "lightcurves[0] has 0"),
    ("lightcurve_neg_inf", LIGHTCURVE, b'{"lightcurves": [[-Infinity, 1.0, -Infinity]]}', "lightcurves[0] has 1"),
    ("lightcurve_times_nan", LIGHTCURVE, b'{"lightcurves": [[1, 2, 3]], "times": [0, NaN, 2]}', "finite"),
    ("sed_nan", SED, b'{"magnitudes": [[NaN, NaN, NaN, NaN, NaN]]}', "magnitudes[0] has 0 finite values"),
    ("sed_inf", SED, b'{"magnitudes": [[Infinity, Infinity]]}', "magnitudes[0] has 0 finite values"),
    ("sed_neg_inf", SED, b'{"magnitudes": [[-Infinity]], "parallax": [NaN, 1]}', "magnitudes[0] has 0 finite"),
    ("sed_errors_inf", SED, b'{"magnitudes": [[15, 14]], "errors": [[Infinity]]}', "errors[0] has 1 values"),
]


@pytest.mark.parametrize(("path", "body", "names"), [c[1:] for c in NON_FINITE], ids=[c[0] for c in NON_FINITE])
def test_nan_and_infinity_literals_get_a_422_in_strict_json(client, path, body, names):
    r = client.post(path, **_raw(body))
    assert r.status_code == 422, (r.status_code, r.text)
    detail = strict_json(r.text)["detail"]  # raises on a NaN/Infinity token: the body is strict JSON
    assert any(names in d["msg"] for d in detail), detail
    assert "NaN" in r.text or "Infinity" in r.text  # the echoed input spells them as strings


MULTIMODAL = "/predict/multimodal"
_PHOT = '"magnitudes": [4.27, 4.16, 3.61], "bands": ["johnson_u", "johnson_b", "johnson_v"]'
# (id, JSON body of /predict/multimodal, where FastAPI's 422 points, what its message must say): refused in the HTTP
# process before any model is involved (no fused model is registered here)
MULTIMODAL_BAD: list[tuple[str, bytes, list[Any], str]] = [
    ("no_objects", b"{}", ["body", "objects"], "Field required"),
    ("empty_objects", b'{"objects": []}', ["body", "objects"], "at least 1 item"),
    ("object_without_parts", b'{"objects": [{}]}', ["body", "objects", 0], "at least one of spectrum, photometry"),
    ("unknown_modality", b'{"objects": [{"radio": {"flux": [1, 2]}}]}', ["body", "objects", 0, "radio"], "Extra"),
    ("missing_flux", b'{"objects": [{"spectrum": {"wavelengths": [4000, 5000]}}]}',
     ["body", "objects", 0, "spectrum", "flux"], "Field required"),
    ("missing_magnitudes", b'{"objects": [{"photometry": {"parallax": 9.1}}]}',
     ["body", "objects", 0, "photometry", "magnitudes"], "Field required"),
    ("misspelt_parallax", b'{"objects": [{"photometry": {' + _PHOT.encode() + b', "parralax": 9.1}}]}',
     ["body", "objects", 0, "photometry", "parralax"], "Extra"),
    ("wavelengths_length", b'{"objects": [{"spectrum": {"flux": [1, 2, 3], "wavelengths": [4000, 5000]}}]}',
     ["body", "objects", 0, "spectrum"], "wavelengths[0] has 2 values but flux[0] has 3"),
    ("flux_errors_length", b'{"objects": [{"spectrum": {"flux": [1, 2, 3], "errors": [0.1]}}]}',
     ["body", "objects", 0, "spectrum"], "errors[0] has 1 values but flux[0] has 3"),
    ("bands_length", b'{"objects": [{"photometry": {"magnitudes": [4.2, 4.1], "bands": ["johnson_v"]}}]}',
     ["body", "objects", 0, "photometry"], "bands names 1 columns but magnitudes has 2"),
    ("lightcurve_times_length", b'{"objects": [{"lightcurve": {"values": [1, 2, 3], "times": [0, 1]}}]}',
     ["body", "objects", 0, "lightcurve"], "times[0] has 2 values but values[0] has 3"),
    ("flux_nan", b'{"objects": [{"spectrum": {"flux": [NaN, NaN, NaN]}}]}',
     ["body", "objects", 0, "spectrum"], "flux[0] has 0 finite values"),
    ("magnitudes_inf", b'{"objects": [{"photometry": {"magnitudes": [Infinity, NaN, -Infinity]}}]}',
     ["body", "objects", 0, "photometry"], "magnitudes[0] has 0 finite values"),
    ("redshift_nan", b'{"objects": [{"spectrum": {"flux": [1, 2, 3], "redshift": NaN}}]}',
     ["body", "objects", 0, "spectrum"], "redshift must be finite"),
    ("negative_parallax_err", b'{"objects": [{"photometry": {' + _PHOT.encode() + b', "parallax": 9.1, '
     b'"parallax_err": -0.2}}]}', ["body", "objects", 0, "photometry"], "parallax_err is -0.2; a 1"),
    ("negative_ebv", b'{"objects": [{"photometry": {' + _PHOT.encode() + b', "ebv": -0.05}}]}',
     ["body", "objects", 0, "photometry"], "ebv must be finite and >= 0 mag"),
    ("nan_ebv", b'{"objects": [{"photometry": {' + _PHOT.encode() + b', "ebv": NaN}}]}',
     ["body", "objects", 0, "photometry"], "objects [0] have nan"),
    ("negative_flux_error", b'{"objects": [{"spectrum": {"flux": [1, 2, 3], "errors": [0.1, -0.1, 0.1]}}]}',
     ["body", "objects", 0, "spectrum"], "errors[0] has 1 negative value(s)"),
    ("string_magnitude", b'{"objects": [{"photometry": {"magnitudes": ["4.2"]}}]}',
     ["body", "objects", 0, "photometry", "magnitudes", 0], "valid number"),
    ("second_object_bad", b'{"objects": [{"photometry": {"magnitudes": [4.2]}}, {"spectrum": {"flux": [1]}}]}',
     ["body", "objects", 1, "spectrum", "flux"], "at least 2 items"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "loc", "msg"), [c[1:] for c in MULTIMODAL_BAD], ids=[c[0] for c in MULTIMODAL_BAD])
def test_multimodal_bad_input_gets_a_422_json_naming_the_field(client, body, loc, msg):
    r = client.post(MULTIMODAL, **_raw(body))
    assert r.status_code == 422, (r.status_code, r.text)
    (err,) = strict_json(r.text)["detail"]
    assert err["loc"] == loc and msg in err["msg"], err


def test_sed_negative_errors_and_bad_ebv_get_a_422_naming_the_field(client):
    r = client.post(SED, json={"magnitudes": [[15.0, 14.0], [15.1, 14.2]], "parallax_err": [0.1, -0.3]})
    assert r.status_code == 422 and "parallax_err is negative for objects [1]" in r.text, r.text
    r = client.post(SED, json={"magnitudes": [[15.0, 14.0], [15.1, 14.2]], "ebv": [0.02, -0.01]})
    assert r.status_code == 422 and "ebv must be finite and >= 0 mag" in r.text and "objects [1]" in r.text, r.text
    r = client.post(SED, json={"magnitudes": [[15.0, 14.0]], "errors": [[0.01, -0.02]]})
    assert r.status_code == 422 and "errors[0] has 1 negative value(s)" in r.text, r.text
    # a valid multi-modal body reaches the worker, which names the model it lacks (404 JSON)
    r = client.post(MULTIMODAL, json={"objects": [{"photometry": {"magnitudes": [4.2, 4.1, 3.6]}}]})
    assert r.status_code == 404 and "'fusion'" in strict_json(r.text)["detail"], r.text


def test_strict_json_spells_non_finite_numbers_as_strings():
    from stellar.serving.validation import strict_json as sanitise

    out = sanitise({"a": [float("nan"), (float("inf"), -float("inf"))], "b": 1.5, "c": "NaN", "d": None})
    assert out == {"a": ["NaN", ["Infinity", "-Infinity"]], "b": 1.5, "c": "NaN", "d": None}
    assert strict_json(json.dumps(out)) == out


def test_server_still_answers_after_the_corpus(client):
    r = client.post(SPECTRAL, json={"spectra": _ok_spectrum(7)})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def test_requests_are_batched(client, batch_log):
    batch_log.write_text("")
    rng = np.random.default_rng(0)
    bodies = [{"spectra": (1 + 0.05 * rng.normal(size=(1, 64))).tolist()} for _ in range(16)]
    bad = {"spectra": [[1.0, 2.0, 3.0]], "wavelengths": [10.0, 20.0, 30.0]}  # a worker-side 422 inside a batch
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda b: client.post(SPECTRAL, json=b), [*bodies, bad]))
    assert [a.status_code for a in answers] == [200] * 16 + [422]
    sizes = [int(s) for s in batch_log.read_text().split()]
    assert sum(sizes) == 17 and max(sizes) > 1, sizes  # fewer predict calls than requests: they were batched


def test_run_starts_the_configured_server(spectral_version, registry_root, monkeypatch):
    """``python serve.py``'s ``run(cfg)``: the configured endpoints, started at the configured address."""
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(ls.LitServer, "run", lambda self, **kw: started.append(kw))  # blocks for real
    cfg = serve_cfg(
        registry_root,
        spectral_version.name,
        "endpoints.lightcurve=null",
        "endpoints.sed=null",
        "endpoints.multimodal=null",
        "port=8123",
        "api_servers=2",
    )
    metrics, objects = run(cfg)
    assert metrics == {"routes": [SPECTRAL]}
    assert isinstance(objects["server"], ls.LitServer)
    assert started == [
        {"host": "127.0.0.1", "port": 8123, "num_api_servers": 2, "generate_client_file": False, "log_level": "info"}
    ]


def _spectral_only(registry_root: Any, model: str, queue: str) -> Any:
    only = ("endpoints.lightcurve=null", "endpoints.sed=null", "endpoints.multimodal=null", f"request_queue={queue}")
    return serve_cfg(registry_root, model, *only)


@pytest.mark.parametrize("queue", ["pipe", "manager"])
def test_request_and_answer_queues_are_pipes_or_litserves_manager_queues(spectral_version, registry_root, queue):
    """``request_queue=pipe`` (the default, which every other server test runs on) swaps LitServe's manager queues
    for ``multiprocessing`` pipe queues, both ways; ``manager`` keeps LitServe's."""
    from multiprocessing.queues import Queue as PipeQueue

    from stellar.serving.server import build_server

    server = build_server(_spectral_only(registry_root, spectral_version.name, queue))
    manager = server._init_manager(1)
    try:
        queues = [*server.litapi_request_queues.values(), *server._transport._queues]
        assert len(queues) == 2 and all(isinstance(q, PipeQueue) == (queue == "pipe") for q in queues)
    finally:
        manager.shutdown()


@pytest.mark.slow  # its own server start (~6 s); the default queues are served by every other server test
def test_litserves_manager_queues_still_serve(spectral_version, registry_root):
    from tests.serving.helpers import in_process_server

    body = {"spectra": (1 + 0.01 * np.arange(64)[None, :]).tolist()}
    with in_process_server(_spectral_only(registry_root, spectral_version.name, "manager")) as client:
        r = client.post(SPECTRAL, json=body)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def test_an_unknown_request_queue_is_refused_by_name(spectral_version, registry_root):
    from stellar.errors import StellarConfigError
    from stellar.serving.server import build_server

    with pytest.raises(StellarConfigError, match="request_queue must be 'pipe' or 'manager', found 'zmq'"):
        build_server(serve_cfg(registry_root, spectral_version.name, "request_queue=zmq"))
