"""The Arrow format on ``/predict/lightcurve``, ``/predict/sed`` and ``/predict/multimodal`` through one in-process
server behind an API key: a good request answers the numbers of its JSON twin, and every bad body (truncated, wrong
dtype, wrong shape, NaN-only, oversized, an unknown media type) is a 4xx with a JSON body naming the problem."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from stellar.serving.binary import ARROW_STREAM, encode_arrow, response_table
from tests.serving.helpers import in_process_server, register_untrained, serve_cfg
from tests.serving.test_multimodal_api import _readme_body

KEY = {"X-API-Key": "s3cret"}
ARROW = {**KEY, "Content-Type": ARROW_STREAM, "Accept": ARROW_STREAM}
UBV = ["johnson_u", "johnson_b", "johnson_v"]


def _stream(columns: dict[str, Any], **options: Any) -> bytes:
    table = pa.table(columns).replace_schema_metadata({k: json.dumps(v) for k, v in options.items()} or None)
    return encode_arrow(table)


def _floats(rows: list[list[float]]) -> pa.Array:
    return pa.array(rows, pa.list_(pa.float32()))


@pytest.fixture(scope="module")
def client(miles_registry, sed_version, tmp_path_factory) -> Any:
    """The three endpoints behind an API key: the MILES fused model, an untrained light-curve transformer and the
    SDSS17 SED model, each from its own registry."""
    lc = register_untrained(tmp_path_factory.mktemp("binary_lc"), "lightcurve_transformer", "lightcurve")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STELLAR_API_KEY", KEY["X-API-Key"])  # read when the server is built
        cfg = serve_cfg(
            miles_registry,
            "unused",
            "endpoints.spectral=null",
            f"endpoints.lightcurve.registry_root={lc.registry.root}",
            f"endpoints.sed.registry_root={sed_version.registry.root}",
            "max_body_mb=0.05",
        )
        with in_process_server(cfg) as c:
            yield c


def _lc_rows(n: int = 3, m: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 30, (n, m)), axis=1)
    return t, 1 + 0.1 * np.sin(2 * np.pi * t / rng.uniform(0.5, 3, (n, 1))) + rng.normal(0, 0.01, (n, m))


def _good() -> dict[str, tuple[dict[str, Any], bytes]]:
    """Route → (JSON body, the same request as an Arrow stream)."""
    t, v = _lc_rows()
    mags = [[4.27, 4.16, 3.61], [6.1, 5.9, 5.5]]
    readme = _readme_body()
    objects = readme["objects"]
    return {
        "/predict/lightcurve": (
            {"lightcurves": v.tolist(), "times": t.tolist(), "unit": "flux"},
            _stream({"lightcurves": pa.array(v.tolist()), "times": pa.array(t.tolist())}, unit="flux"),
        ),
        "/predict/sed": (
            {"magnitudes": mags, "bands": ["sdss_g", "sdss_r", "sdss_i"], "parallax": [2.0, 0.5]},
            _stream(
                {"magnitudes": pa.array(mags), "parallax": pa.array([2.0, 0.5])}, bands=["sdss_g", "sdss_r", "sdss_i"]
            ),
        ),
        "/predict/multimodal": (readme, _stream({"objects": pa.array(objects)}, model=readme["model"])),
    }


@pytest.mark.parametrize("route", ["/predict/lightcurve", "/predict/sed", "/predict/multimodal"])
def test_arrow_answers_the_numbers_of_json(client, route):
    as_json, as_arrow = _good()[route]
    want = client.post(route, json=as_json, headers=KEY)
    assert want.status_code == 200, want.text
    got = client.post(route, content=as_arrow, headers=ARROW)
    assert got.status_code == 200 and got.headers["content-type"] == ARROW_STREAM, got.text
    table = pa.ipc.open_stream(got.content).read_all()
    assert table.num_rows == len(want.json()["predictions"]) > 1
    assert table.equals(response_table(want.json()), check_metadata=True)
    arrow_in_json_out = client.post(route, content=as_arrow, headers={**ARROW, "Accept": "application/json"})
    assert arrow_in_json_out.json() == want.json()


LC = "/predict/lightcurve"
SED = "/predict/sed"
MM = "/predict/multimodal"
_T, _V = _lc_rows(1, 12)
_BIG = _lc_rows(4, 2000)[1].tolist()  # 4 x 2,000 doubles: 64 kB > max_body_mb=0.05
BAD = [
    (LC, _stream({"lightcurves": pa.array(_V.tolist())})[:-40], 400, "Arrow IPC stream"),
    (LC, _stream({"lightcurves": pa.array([["a", "b", "c"]])}), 422, "float"),
    (LC, _stream({"lightcurves": pa.array([1.0, 2.0, 3.0])}), 422, "list"),
    (LC, _stream({"lightcurves": pa.array(_V.tolist()), "times": pa.array([[0.0, 1.0]])}), 422, "times"),
    (LC, _stream({"lightcurves": _floats([[np.nan] * 12])}), 422, "finite"),
    (LC, _stream({"lightcurves": pa.array(_BIG)}), 413, "max_body_mb"),
    (SED, _stream({"magnitudes": pa.array([[4.2, 4.1, 3.6]])})[:-40], 400, "Arrow IPC stream"),
    (SED, _stream({"magnitudes": pa.array([["4.2", "4.1", "3.6"]])}), 422, "float"),
    (SED, _stream({"magnitudes": pa.array([4.2, 4.1, 3.6])}), 422, "list"),
    (SED, _stream({"magnitudes": pa.array([[4.2, 4.1, 3.6]])}, bands=["sdss_g", "sdss_r"]), 422, "bands names 2"),
    (SED, _stream({"magnitudes": _floats([[np.nan, np.nan, np.nan]])}), 422, "finite"),
    (SED, _stream({"magnitudes": pa.array(_BIG)}), 413, "max_body_mb"),
    (MM, _stream({"objects": pa.array([{"spectrum": {"flux": [1.0, 1.1, 1.2]}}])})[:-40], 400, "Arrow IPC stream"),
    (MM, _stream({"objects": pa.array([{"spectrum": {"flux": ["1", "2", "3"]}}])}), 422, "float"),
    (MM, _stream({"objects": pa.array([1.0, 2.0])}), 422, "objects"),
    (MM, _stream({"objects": pa.array([{"photometry": {"magnitudes": [4.2, 4.1], "bands": UBV}}])}), 422, "bands"),
    (MM, _stream({"objects": pa.array([{"spectrum": {"flux": [np.nan, np.nan, np.nan]}}])}), 422, "finite"),
    (MM, _stream({"objects": pa.array([{"spectrum": {"flux": r}} for r in _BIG])}), 413, "max_body_mb"),
]


@pytest.mark.parametrize(
    ("route", "body", "status", "says"),
    BAD,
    ids=[f"{r.rsplit('/', 1)[1]}-{k}" for k, (r, *_) in enumerate(BAD)],
)
def test_bad_arrow_bodies_are_json_4xx_naming_the_problem(client, route, body, status, says):
    r = client.post(route, content=body, headers=ARROW)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and says in json.dumps(r.json()["detail"]), r.text


@pytest.mark.parametrize("route", [LC, SED, MM])
def test_unknown_media_types_and_the_api_key(client, route):
    body = _good()[route][1]
    r = client.post(route, content=b"1,2,3", headers={**KEY, "Content-Type": "text/csv"})
    assert r.status_code == 415 and "text/csv" in r.json()["detail"]
    r = client.post(route, content=body, headers={**ARROW, "Accept": "text/csv"})
    assert r.status_code == 406 and ARROW_STREAM in r.json()["detail"]
    for headers in ({"Content-Type": ARROW_STREAM}, {**ARROW, "X-API-Key": "wrong"}):
        r = client.post(route, content=body, headers=headers)
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
