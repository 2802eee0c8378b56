"""Shared fixtures: paths to the small real files in tests/data and a composed-config helper."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = TESTS / "data"


@pytest.fixture(scope="session")
def miles_dir() -> Path:
    return DATA / "miles_subset"
