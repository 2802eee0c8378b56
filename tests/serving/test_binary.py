"""The Arrow request/response format (stellar.serving.binary): as plain functions, and through the in-process server
(the same objects give the same answers in JSON and in Arrow; every bad body is a 4xx with a JSON error)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from stellar.serving.binary import ARROW_STREAM, BodyError, decode_arrow, encode_arrow, response_table
from stellar.serving.schemas import LightCurveRequest, SpectralRequest
from tests.serving.helpers import recording_server, serve_cfg

SPECTRAL = "/predict/spectral"
ARROW = {"Content-Type": ARROW_STREAM}
JSON = {"Content-Type": "application/json"}


def _stream(columns: dict[str, Any], **options: Any) -> bytes:
    table = pa.table(columns).replace_schema_metadata({k: json.dumps(v) for k, v in options.items()} or None)
    return encode_arrow(table)


def _flux(n: int = 3, m: int = 40, seed: int = 0) -> np.ndarray:
    return (1 + 0.1 * np.random.default_rng(seed).random((n, m))).astype(np.float32)


def _spectra(flux: np.ndarray) -> pa.Array:
    return pa.array(list(flux), pa.list_(pa.float32()))


def test_decode_arrow_gives_the_json_request_object():
    flux = _flux()
    body = _stream({"spectra": _spectra(flux), "redshift": pa.array([0.0, 0.1, 0.2])}, medium="air")
    req = decode_arrow(body, SpectralRequest)
    assert req == SpectralRequest(spectra=flux.astype(np.float64).tolist(), redshift=[0.0, 0.1, 0.2], medium="air")


def test_decode_arrow_ragged_light_curves_with_options():
    rows = [[15.0, 15.1, 14.9], [15.2, 15.3, 15.1, 15.0]]
    body = _stream({"lightcurves": pa.array(rows, pa.list_(pa.float32()))}, bands="kepler", unit="mag")
    req = decode_arrow(body, LightCurveRequest)
    assert [r.tolist() for r in req.lightcurves] == [np.float32(r).astype(float).tolist() for r in rows]
    assert (req.bands, req.unit) == ("kepler", "mag")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (_stream({"spectra": _spectra(_flux())})[:-30], 400, "Arrow IPC stream"),  # truncated
        (b"not arrow at all", 400, "Arrow IPC stream"),
        (_stream({"spectra": pa.array([["1", "2", "3"]])}), 422, "float"),  # strings for flux
        (_stream({"spectra": pa.array([1.0, 2.0, 3.0])}), 422, "list"),  # one value per object, not a row
        (_stream({"spectra": pa.array([[np.nan, np.nan, np.nan]])}), 422, "finite"),
        (_stream({"spectra": _spectra(_flux()), "errors": pa.array([[0.1]] * 3)}), 422, "errors[0]"),
        (_stream({"spectra": _spectra(_flux())}, spectra=[[1, 2]]), 422, "both as columns and as schema metadata"),
        (
            encode_arrow(pa.Table.from_arrays([_spectra(_flux())] * 2, names=["spectra", "spectra"])),
            422,
            "more than once",
        ),
        (
            encode_arrow(pa.table({"spectra": _spectra(_flux())}).replace_schema_metadata({b"medium": b"\xff"})),
            422,
            "UTF-8",
        ),
        (_stream({"spectra": pa.array([], pa.list_(pa.float32()))}), 422, "spectra has 0 rows"),
        (
            encode_arrow(pa.table({"spectra": _spectra(_flux())}).replace_schema_metadata({"redshift": "[" * 5000})),
            422,
            "redshift",
        ),
    ],
    ids=[
        "truncated",
        "not_arrow",
        "strings",
        "flat",
        "nan_only",
        "errors_shape",
        "clash",
        "repeated",
        "not_utf8",
        "no_rows",
        "deep_option",
    ],
)
def test_decode_arrow_refuses_bad_bodies(body, status, says):
    with pytest.raises(BodyError) as err:
        decode_arrow(body, SpectralRequest)
    assert err.value.status == status and says in json.dumps(err.value.detail)


def test_compressed_arrow_bodies_are_refused_before_they_expand():
    # 15 kB of zstd holds 160 MB of float64 (1,000 rows): a body far under max_body_mb that expands far past it
    flux = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(100 * 20_000)), 20_000)
    for codec in ("zstd", "lz4"):
        sink = pa.BufferOutputStream()
        options = pa.ipc.IpcWriteOptions(compression=codec)
        with pa.ipc.new_stream(sink, pa.schema([("spectra", flux.type)]), options=options) as writer:
            writer.write_batch(pa.record_batch([flux], names=["spectra"]))
        assert sink.getvalue().size < 16_000_000 / 100  # under 1% of the 16 MB it holds
        with pytest.raises(BodyError) as err:
            decode_arrow(sink.getvalue().to_pybytes(), SpectralRequest)
        assert err.value.status == 400 and "compressed" in err.value.detail
    # uncompressed streams, dictionary-encoded columns included, are read as before
    body = _stream({"spectra": _spectra(_flux()), "medium": pa.array(["air"] * 3).dictionary_encode()})
    with pytest.raises(BodyError) as err:  # read; then refused by the schema (medium is one option, not a column)
        decode_arrow(body, SpectralRequest)
    assert err.value.status == 422 and err.value.detail[0]["loc"] == ["body", "medium"]
    assert len(decode_arrow(_stream({"spectra": _spectra(_flux())}), SpectralRequest).spectra) == 3


def test_arrow_values_that_take_no_bytes_are_refused_before_they_expand():
    # a few hundred bytes that would be 10⁹ Python values: nulls or run-end encoded values inside a list
    ree = pa.RunEndEncodedArray.from_arrays(pa.array([10**9], pa.int32()), pa.array([1.0]))
    for column in (
        pa.ListArray.from_arrays(pa.array([0, 10**9], pa.int32()), pa.nulls(10**9)),
        pa.ListArray.from_arrays(pa.array([0, 10**9], pa.int32()), ree),
    ):
        body = encode_arrow(pa.table({"spectra": column}))
        assert len(body) < 1000
        with pytest.raises(BodyError) as err:
            decode_arrow(body, SpectralRequest)
        assert err.value.status == 422 and "plain values" in err.value.detail
    with pytest.raises(BodyError) as err:  # a column of 10⁹ nulls: more rows than a request may have
        decode_arrow(encode_arrow(pa.table({"redshift": pa.nulls(10**9)})), SpectralRequest)
    assert err.value.status == 422 and "at most 10000" in err.value.detail
    # at the top, nulls and dictionaries are bounded by the rows: read, then judged by the schema as before
    with pytest.raises(BodyError) as err:
        decode_arrow(_stream({"spectra": _spectra(_flux()), "redshift": pa.nulls(3)}), SpectralRequest)
    assert err.value.status == 422 and err.value.detail[0]["loc"][:2] == ["body", "redshift"]


def test_response_table_round_trip():
    response = {
        "model": "m",
        "version": 3,
        "modality": "spectral",
        "calibrated": True,
        "intervals_calibrated": False,
        "assumed": ["x"],
        "predictions": [
            {
                "predicted_class": "G",
                "probabilities": {"G": 0.75, "K": 0.25},
                "targets": {"teff": {"mean": 5700.0, "std": 80.0, "interval_95": (5550.0, 5850.0)}},
                "valid_fraction": 1.0,
                "ood_score": 0.5,
                "ood": False,
            },
            {"probabilities": {}, "targets": {"teff": {"mean": 4000.0, "std": None}}, "valid_fraction": 0.5},
        ],
    }
    table = pa.ipc.open_stream(encode_arrow(response_table(response))).read_all()
    assert table.column("p_G").to_pylist() == [0.75, None] and table.column("predicted_class")[1].as_py() is None
    assert table.column("teff_mean").to_pylist() == [5700.0, 4000.0]
    assert table.column("teff_lo95").to_pylist() == [5550.0, None] and table.column("teff_std")[1].as_py() is None
    meta = {k.decode(): json.loads(v) for k, v in table.schema.metadata.items()}
    assert meta == {k: v for k, v in response.items() if k != "predictions"}


@pytest.fixture(scope="module")
def client(spectral_version, registry_root, batch_log) -> Any:
    overrides = (
        "endpoints.lightcurve=null",
        "endpoints.sed=null",
        "max_body_mb=0.05",
        "+endpoints.spectral.stream_rows=4",
    )
    with recording_server(registry_root, spectral_version.name, batch_log, *overrides) as c:
        yield c


def test_arrow_requests_are_batched(client, batch_log):
    batch_log.write_text("")
    bodies = [_stream({"spectra": _spectra(_flux(2, 64, seed=s))}) for s in range(12)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda b: client.post(SPECTRAL, content=b, headers=ARROW), bodies))
    assert [a.status_code for a in answers] == [200] * 12 and all(len(a.json()["predictions"]) == 2 for a in answers)
    sizes = [int(s) for s in batch_log.read_text().split()]
    assert sum(sizes) == 12 and max(sizes) > 1, sizes  # fewer predict calls than requests: they were batched


def test_same_answers_in_json_and_arrow(client, spectral_version):
    flux = _flux(4, 300, seed=1)
    wave = np.geomspace(4000, 7000, 300)
    as_json = client.post(SPECTRAL, json={"spectra": flux.astype(np.float64).tolist(), "wavelengths": wave.tolist()})
    assert as_json.status_code == 200, as_json.text
    body = _stream({"spectra": _spectra(flux), "wavelengths": pa.array([wave] * 4, pa.list_(pa.float64()))})
    as_arrow = client.post(SPECTRAL, content=body, headers={**ARROW, "Accept": ARROW_STREAM})
    assert as_arrow.status_code == 200 and as_arrow.headers["content-type"] == ARROW_STREAM
    got = pa.ipc.open_stream(as_arrow.content).read_all()
    want = response_table(as_json.json())
    assert got.equals(want, check_metadata=True)
    assert json.loads(got.schema.metadata[b"version"]) == spectral_version.version
    # Arrow in, JSON out (the default answer) and JSON in, Arrow out
    assert client.post(SPECTRAL, content=body, headers=ARROW).json() == as_json.json()
    arrow_out = client.post(SPECTRAL, content=as_json.request.content, headers={**JSON, "Accept": ARROW_STREAM})
    assert pa.ipc.open_stream(arrow_out.content).read_all().equals(want)


def test_large_answers_are_streamed_and_read_back_as_small_ones(client):
    """More than ``stream_rows`` (4 here) objects: written in chunks, the same numbers as requests of 4 or fewer."""
    flux = _flux(10, 60, seed=3)
    small = [client.post(SPECTRAL, json={"spectra": flux[s : s + 4].astype(np.float64).tolist()}) for s in (0, 4, 8)]
    want = {**small[0].json(), "predictions": [p for r in small for p in r.json()["predictions"]]}
    as_json = client.post(SPECTRAL, json={"spectra": flux.astype(np.float64).tolist()})
    assert as_json.status_code == 200 and "content-length" not in as_json.headers  # chunked transfer
    got = as_json.json()
    assert {k: v for k, v in got.items() if k != "predictions"} == {k: v for k, v in want.items() if k != "predictions"}
    pd.testing.assert_frame_equal(  # one forward pass of 10 rows against three: equal to float32 rounding
        response_table(got).to_pandas(), response_table(want).to_pandas(), check_exact=False, rtol=1e-6
    )
    body = _stream({"spectra": _spectra(flux)})
    as_arrow = client.post(SPECTRAL, content=body, headers={**ARROW, "Accept": ARROW_STREAM})
    reader = pa.ipc.open_stream(as_arrow.content)
    batches = list(reader)
    assert [b.num_rows for b in batches] == [4, 4, 2]
    assert pa.Table.from_batches(batches, reader.schema).equals(response_table(got), check_metadata=True)
    assert client.post(SPECTRAL, content=body, headers=ARROW).json() == got  # Arrow in, streamed JSON out
    broken = _stream({"spectra": _spectra(np.vstack([flux, np.zeros((1, 60), np.float32)]))})  # no valid sample
    r = client.post(SPECTRAL, content=broken, headers={**ARROW, "Accept": ARROW_STREAM})
    assert r.status_code == 422 and "object(s) [10]" in r.json()["detail"]  # one JSON 4xx, nothing streamed


@pytest.mark.parametrize(
    ("accept", "status", "answer_type"),
    [
        (f"application/json;q=0.5, {ARROW_STREAM}", 200, ARROW_STREAM),
        (f"{ARROW_STREAM};q=0.5, application/json", 200, "application/json"),
        ("*/*", 200, "application/json"),
        ("text/csv", 406, "application/json"),
        (f"{ARROW_STREAM};q=0, text/html", 406, "application/json"),
    ],
)
def test_accept_is_negotiated_with_weights(client, accept, status, answer_type):
    for body, headers in ((_stream({"spectra": _spectra(_flux(2, 50))}), ARROW), (b'{"spectra": [[1, 2, 3]]}', JSON)):
        r = client.post(SPECTRAL, content=body, headers={**headers, "Accept": accept})
        assert (r.status_code, r.headers["content-type"]) == (status, answer_type), r.text
        if status == 406:
            assert ARROW_STREAM in r.json()["detail"] and "application/json" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (_stream({"spectra": _spectra(_flux())})[:-30], ARROW, 400),
        (_stream({"spectra": pa.array([["1", "2", "3"]])}), ARROW, 422),
        (_stream({"spectra": pa.array([1.0, 2.0, 3.0])}), ARROW, 422),
        (_stream({"spectra": pa.array([[np.nan, np.nan, np.nan]])}), ARROW, 422),
        (_stream({"spectra": pa.array([[0.0, 0.0, 0.0]])}), ARROW, 422),  # the endpoint's own 422 (no valid sample)
        (_stream({"spectra": _spectra(_flux(2, 20))}, model="nope"), ARROW, 404),
        (_stream({"spectra": _spectra(_flux(4, 4000))}), ARROW, 413),  # 64 kB of float32 > 0.05 MB
        (b"1,2,3", {"Content-Type": "text/csv"}, 415),
        (b'{"spectra": [[NaN, NaN, NaN]]}', JSON, 422),  # JSON in, Arrow asked for: the same 422, in JSON
    ],
    ids=["truncated", "strings", "flat", "nan_only", "zero_flux", "unknown_model", "oversized", "csv", "json_nan"],
)
def test_bad_binary_bodies_are_json_4xx(client, body, headers, status):
    r = client.post(SPECTRAL, content=body, headers={**headers, "Accept": ARROW_STREAM})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and r.json()["detail"]


def test_arrow_is_answered_inside_the_limit_key_and_metrics(spectral_version, registry_root, monkeypatch):
    """The Arrow middleware is the innermost: the payload limit, the API key and the metrics see its requests."""
    from stellar.serving.binary import BinaryFormatMiddleware
    from stellar.serving.server import APIKeyMiddleware, BodyLimitMiddleware, MetricsMiddleware, build_server

    monkeypatch.setenv("STELLAR_API_KEY", "k3y")
    server = build_server(serve_cfg(registry_root, spectral_version.name, "endpoints.lightcurve=null"))
    outermost_first = [m.cls for m in server.app.user_middleware]
    wrappers = [MetricsMiddleware, APIKeyMiddleware, BodyLimitMiddleware]
    assert all(outermost_first.index(w) < outermost_first.index(BinaryFormatMiddleware) for w in wrappers)
