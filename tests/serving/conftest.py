from __future__ import annotations

from pathlib import Path

import pytest

from stellar.registry import ModelVersion
from tests.serving.helpers import register_untrained


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="session")
def spectral_version(registry_root) -> ModelVersion:
    """An untrained ``spectral_multitask`` (MK letter + Teff/logg/[Fe/H]) with a temperature calibrator."""
    import json

    from stellar.evaluation.calibration import TemperatureScaler
    from stellar.registry import ModelRegistry

    v = register_untrained(registry_root, "spectral_multitask")
    import numpy as np

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 7)) * 3
    scaler = TemperatureScaler().fit(logits, np.argmax(logits + rng.normal(size=(64, 7)) * 2, axis=1))
    cal = json.dumps(scaler.to_dict()).encode()
    files = {rel: v.read_bytes(rel) for rel in v.files if rel != "MODEL_CARD.md"}
    return ModelRegistry(registry_root).register(v.name, {**files, "calibrator.json": cal}, v.manifest)
