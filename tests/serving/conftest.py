from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from stellar.registry import ModelRegistry, ModelVersion
from tests.conftest import DATA
from tests.pipelines.conftest import MILES_PAIRED
from tests.serving.helpers import register_untrained, train_registered

SDSS17 = DATA / "sed" / "sdss17"


@pytest.fixture(scope="module")
def batch_log(tmp_path_factory) -> Path:
    """Where a module's :func:`~tests.serving.helpers.recording_server` writes its batch sizes."""
    return tmp_path_factory.mktemp("batches") / "sizes.txt"


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


@pytest.fixture(scope="session")
def miles_registry(tmp_path_factory) -> Path:
    """The registry of ``fusion``: experiment=miles_fusion (spectrum + BSC5 UBV + Hipparcos parallax) on the
    43-star MILES subset (trained once per session: the multi-modal tests and the Arrow tests share it)."""
    return train_registered(
        tmp_path_factory.mktemp("mm_miles"), "experiment=miles_fusion", *MILES_PAIRED, "debug=limit"
    )


@pytest.fixture(scope="module")
def sed_version(tmp_path_factory) -> ModelVersion:
    """An SDSS17 SED XGBoost model (experiment sdss17_sed, 15 rounds) with a temperature calibrator."""
    root = train_registered(
        tmp_path_factory.mktemp("sed_run"),
        "experiment=sdss17_sed",
        f"datamodule.data_dir={SDSS17}",
        "model.n_jobs=1",
        "model.num_boost_round=15",
    )
    return ModelRegistry(root).get("sed_xgboost")


@pytest.fixture(scope="module")
def sdss_rows() -> pd.DataFrame:
    """The 600 SDSS17 rows of tests/data, with the ids the dataset store gives them."""
    with gzip.open(SDSS17 / "sdss17_photometry.csv.gz", "rt") as f:
        df = pd.read_csv(f)
    df.insert(0, "object_id", [f"sdss17-{i:06d}" for i in range(len(df))])
    return df
