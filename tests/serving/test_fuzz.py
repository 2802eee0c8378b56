"""schemathesis against the OpenAPI schema of a running ``serve.py``: no generated request may get a 5xx."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.serving.helpers import register_untrained
from tests.serving.test_serve_process import free_port, group_members, stop_group


@pytest.mark.slow
def test_fuzz_finds_no_server_error(spectral_version, registry_root, tmp_path):
    lc = register_untrained(registry_root, "lightcurve_transformer", "lightcurve")
    port = free_port()
    cmd = [
        sys.executable,
        "serve.py",
        f"port={port}",
        f"registry.root={registry_root}",
        f"endpoints.spectral.model={spectral_version.name}",
        f"endpoints.lightcurve.model={lc.name}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
        fuzz = fuzz_command(url, int(os.environ.get("STELLAR_FUZZ_EXAMPLES", "60")))
        res = subprocess.run(fuzz, capture_output=True, text=True, timeout=900)
        Path(tmp_path / "fuzz.log").write_text(res.stdout + res.stderr)
        assert res.returncode == 0, res.stdout[-4000:]
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200  # still up
    finally:
        stop_group(proc)
        log.close()
    assert group_members(proc.pid) == []


def fuzz_command(url: str, examples: int) -> list[str]:
    """positive and negative examples of every operation; the only check: no 5xx."""
    exe = Path(sys.executable).with_name("schemathesis")
    return [
        str(exe),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--mode",
        "all",
        "--max-examples",
        str(examples),
        "--seed",
        "1",
        "--request-timeout",
        "60",
        "--workers",
        "1",
        "--generation-deterministic",
    ]
