"""The server's monitoring: ``GET /metrics`` (Prometheus text, counted across processes) and the request log."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from omegaconf import DictConfig
from prometheus_client.parser import text_string_to_metric_families

from stellar.errors import StellarConfigError, StellarDataError
from stellar.serving.request_log import RequestLog, RequestLogConfig, endpoint_slug, read_request_log
from stellar.serving.server import build_server
from tests.conftest import REPO
from tests.serving.helpers import in_process_server, serve_cfg

SPECTRAL = "/predict/spectral"


def _cfg(registry_root: Any, model: str, *overrides: str) -> DictConfig:
    """The spectral endpoint alone (the others left out)."""
    others = ["endpoints.lightcurve=null", "endpoints.sed=null", "endpoints.multimodal=null"]
    return serve_cfg(registry_root, model, *others, *overrides)


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) → value of a Prometheus text exposition (parsed by prometheus_client's own parser)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when there are none)."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


def _spectra(n: int, seed: int) -> list[list[float]]:
    return (1 + 0.05 * np.random.default_rng(seed).normal(size=(n, 64))).tolist()


@pytest.fixture(scope="module")
def served(spectral_version, registry_root, tmp_path_factory) -> Any:
    """An in-process server with metrics and a request log that flushes every 5 rows (the load below: 9 rows)."""
    log_dir = tmp_path_factory.mktemp("requests")
    cfg = _cfg(
        registry_root,
        spectral_version.name,
        f"request_log.dir={log_dir}",
        "request_log.flush_rows=5",
        "request_log.max_rows=1000",
        "max_body_mb=1",
        "max_batch_size=4",
        "batch_timeout=0.05",
    )
    with in_process_server(cfg) as c:
        # the load: 4 requests with 1, 2, 3 and 3 objects; one 422 (off the grid), one 404, one 413, one unknown route
        answers = [c.post(SPECTRAL, json={"spectra": _spectra(n, seed)}) for seed, n in enumerate([1, 2, 3, 3])]
        bad = c.post(SPECTRAL, json={"spectra": [[1.0, 2.0, 3.0]], "wavelengths": [10.0, 20.0, 30.0]})
        unknown = c.post(SPECTRAL, json={"spectra": _spectra(1, 9), "model": "nope"})
        too_large = c.post(SPECTRAL, content=b'{"spectra": [[' + b"1.0, " * 300_000 + b"1.0]]}")
        other = c.get("/no/such/route")
        statuses = [a.status_code for a in answers] + [bad.status_code, unknown.status_code, too_large.status_code]
        assert statuses == [200] * 4 + [422, 404, 413] and other.status_code == 404, statuses
        classes = [p["predicted_class"] for a in answers for p in a.json()["predictions"]]
        yield c, log_dir, answers, classes
    # the worker has stopped here: whatever the buffer held is on disk


def test_metrics_text_counts_requests_errors_and_classes(served, spectral_version):
    client, _, _, classes = served
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    s = _samples(r.text)
    model = spectral_version.name
    ok = {"endpoint": SPECTRAL, "model": model}
    assert _value(s, "stellar_requests_total", **ok, status="200") == 4
    assert _value(s, "stellar_requests_total", **ok, status="422") == 1
    assert _value(s, "stellar_requests_total", **ok, status="404") == 1
    assert _value(s, "stellar_requests_total", **ok, status="413") == 1  # answered by the body-limit middleware
    assert _value(s, "stellar_requests_total", endpoint="other", status="404") == 1  # no label per random path
    assert _value(s, "stellar_request_errors_total", **ok, kind="4xx") == 3
    assert _value(s, "stellar_request_errors_total", **ok, kind="5xx") == 0
    # /health answered 503 while the worker loaded the model: counted under its own route
    health = _value(s, "stellar_requests_total", endpoint="/health")
    assert health >= 1 and _value(s, "stellar_requests_total", endpoint="/health", status="200") >= 1
    # the latency histogram: one observation per request, cumulative buckets up to +Inf = count
    assert _value(s, "stellar_request_duration_seconds_count", **ok) == 7
    assert _value(s, "stellar_request_duration_seconds_bucket", **ok, le="+Inf") == 7
    assert _value(s, "stellar_request_duration_seconds_bucket", **ok, le="0.001") <= 7
    # worker-side counts (another process): 9 objects, each predicted class counted; untouched classes show 0
    worker = {"endpoint": SPECTRAL, "model": model, "version": str(spectral_version.version)}
    assert _value(s, "stellar_objects_predicted_total", **worker) == 9
    for c in spectral_version.class_names:
        assert _value(s, "stellar_predicted_class_total", **worker, **{"class": c}) == classes.count(c)
    assert any(n == "stellar_predicted_class_total" for n, _ in s) and sum(
        v for (n, _), v in s.items() if n == "stellar_predicted_class_total"
    ) == len(classes)
    assert _value(s, "stellar_request_log_errors_total", **worker) == 0


def test_metrics_is_not_behind_the_api_key(spectral_version, registry_root, monkeypatch):
    monkeypatch.setenv("STELLAR_API_KEY", "k3y")
    server = build_server(_cfg(registry_root, spectral_version.name))
    routes = {getattr(r, "path", None) for r in server.app.routes}
    assert "/metrics" in routes
    client = TestClient(server.app)  # no worker: /metrics reads the (empty) metric files of this server
    assert client.get("/metrics").status_code == 200
    assert client.post(SPECTRAL, json={"spectra": [[1.0, 2.0]]}).status_code == 401


def test_metrics_false_serves_no_metrics(spectral_version, registry_root):
    server = build_server(_cfg(registry_root, spectral_version.name, "metrics=false"))
    assert "/metrics" not in {getattr(r, "path", None) for r in server.app.routes}


def test_request_log_has_exactly_the_predicted_rows(served, spectral_version):
    _, log_dir, answers, _ = served
    deadline = time.monotonic() + 20
    while True:  # 9 rows with flush_rows=5: one file of >= 5 rows now, the rest at shutdown or after flush_seconds
        try:
            t = read_request_log(log_dir)
            break
        except StellarDataError:
            assert time.monotonic() < deadline, "no request log file was written"
            time.sleep(0.2)
    assert len(t) >= 5 and set(t["endpoint"]) == {SPECTRAL}
    assert set(t["model"]) == {spectral_version.name} and set(t["version"]) == {spectral_version.version}
    # every logged row is one object of a 200 answer, with its answer's numbers
    answered = {
        (tuple(a.json()["predictions"][k]["probabilities"].values()), k)
        for a in answers
        for k in range(len(a.json()["predictions"]))
    }
    classes = spectral_version.class_names
    for _, row in t.iterrows():
        probs = tuple(float(row[f"p_{c}"]) for c in classes)
        assert any(np.allclose(probs, p, atol=1e-6) and row["row"] == k for p, k in answered)
        assert row["predicted_class"] == classes[int(np.argmax(probs))]
    for target in ("teff", "logg", "feh"):
        assert {f"{target}_mean", f"{target}_std"} <= set(t.columns)
    assert "valid_fraction" in t and (t["valid_fraction"] > 0).all()
    # the input summaries of the spectra, in_ prefixed; no payload
    assert {"in_snr_median", "in_valid_fraction", "in_wave_blue", "in_wave_red", "in_flux_mad"} <= set(t.columns), list(
        t.columns
    )
    assert not any(c.startswith("payload_") for c in t.columns)
    # a request's rows share its id and are numbered 0..n-1
    for _, g in t.groupby("request_id"):
        assert sorted(g["row"]) == list(range(len(g)))
    assert str(t["timestamp"].dt.tz) == "UTC"


# its own server start (~7 s)
@pytest.mark.slow
def test_request_log_after_shutdown_holds_all_rows(spectral_version, registry_root, tmp_path):
    """N requests, then the worker stops: exactly the predicted objects are in the log (flushed at shutdown)."""
    cfg = _cfg(registry_root, spectral_version.name, f"request_log.dir={tmp_path}", "request_log.flush_rows=1000")
    sizes = [1, 3, 2, 1, 4]
    with in_process_server(cfg) as c:
        for seed, n in enumerate(sizes):
            assert c.post(SPECTRAL, json={"spectra": _spectra(n, seed)}).status_code == 200
        assert c.post(SPECTRAL, json={"spectra": [[0.0, 0.0, 0.0]]}).status_code == 422  # not logged
    t = read_request_log(tmp_path, endpoint=SPECTRAL)
    assert len(t) == sum(sizes) and t["request_id"].nunique() == len(sizes)
    assert sorted(t.groupby("request_id").size()) == sorted(sizes)


# ---- the RequestLog itself (no server) ---------------------------------------------------------------------------
def _append(rl: RequestLog, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    preds = {"predicted_class": ["G"] * n, "p_G": rng.uniform(size=n).tolist(), "valid_fraction": [1.0] * n}
    summaries = pd.DataFrame({"snr_median": rng.uniform(5, 50, size=n)})
    arrays = {"flux": rng.normal(size=(n, 2, 3)), "mask": np.zeros((n, 2, 3), bool)}
    rl.append({"model": "m", "version": 1}, [f"r{seed}"] * n, list(range(n)), preds, summaries, arrays)


def test_request_log_rolls_over_deleting_the_oldest_files(tmp_path):
    rl = RequestLog(RequestLogConfig(str(tmp_path), max_rows=10, flush_rows=4), "/predict/spectral")
    for seed in range(6):  # 6 files of 4 rows: 24 rows written, at most 10 kept (the newest 2 files + ...)
        _append(rl, 4, seed)
    files = sorted((tmp_path / "predict_spectral").glob("requests-*.parquet"))
    t = read_request_log(tmp_path)
    assert len(t) <= 10 and len(files) == 2  # 3 files would be 12 rows > 10
    assert sorted(set(t["request_id"])) == ["r4", "r5"]  # the oldest went first
    assert list(t["in_snr_median"].notna()) == [True] * len(t)
    assert not any(c.startswith("payload_") for c in t.columns)
    assert not list((tmp_path / "predict_spectral").glob(".*"))  # no temporary file left


def test_request_log_payloads_only_when_asked(tmp_path):
    rl = RequestLog(RequestLogConfig(str(tmp_path), flush_rows=3, payloads=True), "/predict/sed")
    _append(rl, 3, seed=1)
    t = read_request_log(tmp_path, endpoint="/predict/sed")
    rng = np.random.default_rng(1)
    rng.uniform(size=3), rng.uniform(5, 50, size=3)  # the draws _append made before the payload
    expected = rng.normal(size=(3, 2, 3))
    shaped = zip(t["payload_flux"], t["payload_flux_shape"], strict=True)
    got = np.stack([np.asarray(v).reshape(list(s)) for v, s in shaped])
    np.testing.assert_array_equal(got, expected)


def test_request_log_write_error_is_counted_not_raised(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    errors: list[int] = []
    rl = RequestLog(RequestLogConfig(str(blocker), flush_rows=2), "/predict/spectral", lambda: errors.append(1))
    _append(rl, 2)  # the folder cannot be made: logged and counted, no exception
    assert errors == [1]


def test_request_log_write_error_does_not_fail_the_request(spectral_version, registry_root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = _cfg(registry_root, spectral_version.name, f"request_log.dir={blocker}", "request_log.flush_rows=1")
    with in_process_server(cfg) as c:
        assert c.post(SPECTRAL, json={"spectra": _spectra(2, 0)}).status_code == 200
        deadline = time.monotonic() + 20
        while True:  # the log's thread writes (and fails) after the answer
            s = _samples(c.get("/metrics").text)
            if _value(s, "stellar_request_log_errors_total", endpoint=SPECTRAL) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert _value(s, "stellar_request_log_errors_total", endpoint=SPECTRAL) == 1
    assert _value(s, "stellar_objects_predicted_total", endpoint=SPECTRAL) == 2


def test_request_log_time_based_flush(tmp_path):
    rl = RequestLog(RequestLogConfig(str(tmp_path), flush_rows=100, flush_seconds=0.2), "/predict/x").start()
    _append(rl, 2)
    deadline = time.monotonic() + 10
    while not list((tmp_path / "predict_x").glob("requests-*.parquet")):
        assert time.monotonic() < deadline, "the buffered rows were not written after flush_seconds"
        time.sleep(0.05)
    rl.close()
    assert len(read_request_log(tmp_path)) == 2


def test_read_request_log_names_an_empty_folder(tmp_path):
    with pytest.raises(StellarDataError, match="no request log files"):
        read_request_log(tmp_path)
    with pytest.raises(StellarDataError, match="endpoint '/predict/sed'"):
        read_request_log(tmp_path, endpoint="/predict/sed")


@pytest.mark.parametrize(
    ("node", "match"),
    [
        ({"dir": "x", "flush_rows": 10, "max_rows": 5}, "flush_rows <= max_rows"),
        ({"dir": "x", "flush_rows": 0}, "flush_rows"),
        ({"dir": "x", "flush_seconds": 0}, "flush_seconds"),
        ({"dir": "s3://bucket/requests"}, r"request_log.dir='s3://bucket/requests': .* local folder"),
    ],
)
def test_request_log_config_is_checked(node, match):
    with pytest.raises(StellarConfigError, match=match):
        RequestLogConfig.from_cfg(node)


def test_request_log_off_by_default():
    assert RequestLogConfig.from_cfg({"dir": None, "max_rows": 5}) is None
    assert endpoint_slug("/predict/spectral") == "predict_spectral"
    assert Path(REPO / "conf" / "serve.yaml").read_text().count("request_log:") == 1


def test_request_log_a_batch_that_cannot_be_made_is_lost_alone(tmp_path):
    errors: list[int] = []
    rl = RequestLog(RequestLogConfig(str(tmp_path), flush_rows=100), "/predict/spectral", lambda: errors.append(1))
    _append(rl, 2, seed=0)

    def broken() -> pd.DataFrame:
        raise ValueError("cannot summarise")

    rl.append({"model": "m", "version": 1}, ["bad"] * 3, [0, 1, 2], {"valid_fraction": [1.0] * 3}, broken, {})
    _append(rl, 4, seed=2)
    rl.flush()
    t = read_request_log(tmp_path)
    assert errors == [1] and len(t) == 6 and sorted(set(t["request_id"])) == ["r0", "r2"]


def test_read_request_log_skips_a_file_the_server_rolled_away_meanwhile(tmp_path, monkeypatch):
    # a live server deletes its oldest files (max_rows) at any time: one gone between listing and reading is no error
    rl = RequestLog(RequestLogConfig(str(tmp_path), flush_rows=2), "/predict/spectral")
    for seed in range(3):
        _append(rl, 2, seed)
    oldest = sorted((tmp_path / "predict_spectral").glob("requests-*.parquet"))[0]
    real = pd.read_parquet

    def racing(path: Any, *args: Any, **kwargs: Any) -> pd.DataFrame:
        if Path(path) == oldest:
            oldest.unlink()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", racing)
    t = read_request_log(tmp_path)
    assert sorted(set(t["request_id"])) == ["r1", "r2"]
