"""schemathesis against the OpenAPI schema of a running ``serve.py``: no generated request may get a 5xx."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serving.helpers import group_members, register_untrained, serve_py


@pytest.mark.slow
def test_fuzz_finds_no_server_error(spectral_version, registry_root, tmp_path):
    lc = register_untrained(registry_root, "lightcurve_transformer", "lightcurve")
    overrides = [
        f"registry.root={registry_root}",
        f"endpoints.spectral.model={spectral_version.name}",
        f"endpoints.lightcurve.model={lc.name}",
    ]
    with serve_py(tmp_path, *overrides) as (url, proc):
        fuzz = fuzz_command(url, int(os.environ.get("STELLAR_FUZZ_EXAMPLES", "60")))
        res = subprocess.run(fuzz, capture_output=True, text=True, timeout=900)
        Path(tmp_path / "fuzz.log").write_text(res.stdout + res.stderr)
        assert res.returncode == 0, res.stdout[-4000:]
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200  # still up
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
