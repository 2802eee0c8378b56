"""``python serve.py`` as a process: binds 127.0.0.1, answers the documented request, stops with its process group."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from tests.serving.helpers import group_members, serve_py, strict_json


@pytest.mark.slow
def test_serve_py_process(spectral_version, registry_root, tmp_path):
    env = {**os.environ, "STELLAR_API_KEY": "k3y"}
    overrides = [f"registry.root={registry_root}", f"endpoints.spectral.model={spectral_version.name}"]
    with serve_py(tmp_path, *overrides, env=env) as (url, proc):
        port = url.rsplit(":", 1)[1]
        body = {"spectra": [[0.1, 0.2, 0.3, 0.4, 0.5]], "model": spectral_version.name}
        assert httpx.post(f"{url}/predict/spectral", json=body, timeout=30).status_code == 401
        r = httpx.post(f"{url}/predict/spectral", json=body, headers={"X-API-Key": "k3y"}, timeout=30)
        assert r.status_code == 200 and r.json()["predictions"][0]["predicted_class"]
        nan = b'{"spectra": [[NaN, NaN, NaN, NaN, NaN]]}'  # as json.dumps writes float("nan")
        headers = {"X-API-Key": "k3y", "Content-Type": "application/json"}
        r = httpx.post(f"{url}/predict/spectral", content=nan, headers=headers, timeout=30)
        assert r.status_code == 422 and "finite" in strict_json(r.text)["detail"][0]["msg"]
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
    assert group_members(proc.pid) == []


@pytest.mark.slow
def test_metrics_and_request_log_across_processes(spectral_version, registry_root, tmp_path):
    """Two HTTP processes and a worker: /metrics sums every process's counts, and the worker's request log is
    flushed when the server is stopped (SIGTERM), holding exactly the objects predicted."""
    from prometheus_client.parser import text_string_to_metric_families

    from stellar.serving.request_log import read_request_log

    log_dir = tmp_path / "requests"
    overrides = [
        f"registry.root={registry_root}",
        f"endpoints.spectral.model={spectral_version.name}",
        "api_servers=2",
        f"request_log.dir={log_dir}",
    ]
    n = 12
    with serve_py(tmp_path, *overrides) as (url, _):
        for k in range(n):
            body = {"spectra": [[0.1, 0.2, 0.3, 0.4, 0.5 + 0.01 * k]] * (1 + k % 3)}
            assert httpx.post(f"{url}/predict/spectral", json=body, timeout=30).status_code == 200
        scrapes = [httpx.get(f"{url}/metrics", timeout=10).text for _ in range(4)]  # either HTTP process answers
    for text in scrapes:
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        ok = [s for s in samples if s.name == "stellar_requests_total" and s.labels["endpoint"] == "/predict/spectral"]
        assert sum(s.value for s in ok) == n
        objects = sum(s.value for s in samples if s.name == "stellar_objects_predicted_total")
        assert objects == sum(1 + k % 3 for k in range(n))
    t = read_request_log(log_dir)
    assert len(t) == sum(1 + k % 3 for k in range(n)) and t["request_id"].nunique() == n
