"""``python serve.py`` as a process: binds 127.0.0.1, answers the documented request, stops with its process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d.name))
    return out


def stop_group(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM to the whole process group, SIGKILL to what is left after ``timeout``."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group_members(pgid):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=timeout)


@pytest.mark.slow
def test_serve_py_process(spectral_version, registry_root, tmp_path):
    port = free_port()
    env = {**os.environ, "STELLAR_API_KEY": "k3y"}
    cmd = [
        sys.executable,
        "serve.py",
        f"port={port}",
        f"registry.root={registry_root}",
        f"endpoints.spectral.model={spectral_version.name}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.5)
        body = {"spectra": [[0.1, 0.2, 0.3, 0.4, 0.5]], "model": spectral_version.name}
        assert httpx.post(f"{url}/predict/spectral", json=body, timeout=30).status_code == 401
        r = httpx.post(f"{url}/predict/spectral", json=body, headers={"X-API-Key": "k3y"}, timeout=30)
        assert r.status_code == 200 and r.json()["predictions"][0]["predicted_class"]
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
    finally:
        stop_group(proc)
        log.close()
    assert group_members(proc.pid) == []
