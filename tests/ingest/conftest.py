"""Fixtures of the ingest tests: the real raw files and a replay route over them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from stellar.data.ingest.cache import RawCache
from stellar.data.ingest.manifest import Manifest
from stellar.data.ingest.policy import Fetcher, FetchPolicy

RAW = Path(__file__).resolve().parents[1] / "data" / "raw"
SHARED_RAW = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "raw"

SPEC_BIG = (RAW / "sdss" / "spec-4455-55539-0692.fits").read_bytes()
SPEC_SMALL = (RAW / "sdss" / "SDSSJ220248.31+123656.3.fits").read_bytes()
_FIBER = re.compile(r"spec-\d{4}-\d{5}-(\d{4})\.fits$")


def sdss_route(path: str, params: dict[str, str]) -> tuple[bytes, str] | None:
    """The SAS as far as the tests need it: every 25th fiber gets the BOSS spec file (1.5 MB, slow to parse),
    the others the small image-layout one (both real)."""
    m = _FIBER.search(path)
    if m is None:
        return None
    return (SPEC_BIG if int(m.group(1)) % 25 == 0 else SPEC_SMALL), "application/fits"


@pytest.fixture
def fast_policy() -> FetchPolicy:
    """Short timeouts and backoffs so a faulty run finishes in seconds."""
    return FetchPolicy(timeout_s=1.0, retries=3, backoff_base_s=0.01, backoff_max_s=0.05, concurrency=8, seed=0)


@pytest.fixture
def make_fetcher(tmp_path: Path) -> Callable[[FetchPolicy], Fetcher]:
    def make(policy: FetchPolicy) -> Fetcher:
        return Fetcher(RawCache(tmp_path / "cache"), policy)

    return make


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    return Manifest(tmp_path / "manifest.jsonl")
