from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from tests.conftest import DATA, REPO

# small, fast settings every pipeline test starts from
TINY = ["datamodule.source.n=96", "datamodule.batch_size=32"]


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory) -> Path:
    """One store for the session: each simulated dataset is built once."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def make_cfg(tmp_path, store_dir) -> Callable[..., DictConfig]:
    def _make(*overrides: str, name: str = "train", tiny: bool = True) -> DictConfig:
        base = [f"paths.output_dir={tmp_path / 'run'}", f"paths.store_dir={store_dir}", f"paths.log_dir={tmp_path}"]
        small = [o for o in TINY if not any(x.split("=")[0] == o.split("=")[0] for x in overrides)] if tiny else []
        ovs = base + small + list(overrides)
        with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
            return compose(name, overrides=ovs)

    return _make


MILES = f"datamodule.data_dir={DATA / 'miles_subset'}"

SED = DATA / "sed"
#: the real paired set on the MILES subset: BSC5 and Hipparcos lines of its stars
MILES_PAIRED = [
    MILES,
    f"datamodule.source.bsc5={DATA / 'paired' / 'bsc5_miles_subset.dat'}",
    f"datamodule.source.hipparcos={DATA / 'paired' / 'hip2_miles_subset.dat'}",
]
#: a small, fast paired simulation: short light curves keep the periodograms cheap
FAST_MULTIMODAL = [
    "datamodule=multimodal",
    "datamodule.source.progress=false",
    "datamodule.source.simulator.lightcurve.n_points=40",
    "datamodule.modalities.lightcurve.preprocessing.n_points=32",
    "datamodule.modalities.lightcurve.preprocessing.min_period=1.0",
]
#: real-data folders (override, or overrides) of the datamodules whose data_dir is required, by source class
DATA_DIRS = {
    "MilesSource": MILES,
    "MilesSimObsSource": MILES,
    "SDSS17Source": f"datamodule.data_dir={SED / 'sdss17'}",
    "HipparcosSource": f"datamodule.data_dir={SED / 'hipparcos'}",
    "ErosSource": f"datamodule.data_dir={DATA / 'lightcurves' / 'eros_subset'}",
    "SesarRRLyraeSource": f"datamodule.data_dir={DATA / 'lightcurves' / 'sesar_subset'}",
    "MilesPairedSource": MILES_PAIRED,
}
#: XGBoost models: one thread (an oversubscribed OpenMP pool is slow) and a few rounds
FAST_XGB = ["model.n_jobs=1", "model.num_boost_round=15"]
#: the ensemble with one small copy of each member kind
FAST_ENSEMBLE = [
    "model.copies.xgb=1",
    "model.copies.mlp=1",
    "model.members.xgb.n_jobs=1",
    "model.members.xgb.num_boost_round=15",
    "model.members.mlp.epochs=2",
]
#: what each model needs besides the default spectra: SED models read an SED datamodule's `features`
MODEL_OVERRIDES = {
    "sed_xgboost": ["datamodule=sed", *FAST_XGB],
    "sed_ensemble": ["datamodule=sed", *FAST_ENSEMBLE],
    "sed_xgboost_regressor": ["datamodule=sed", *FAST_XGB],
    "sed_mlp": ["datamodule=sed"],
    "lightcurve_transformer": ["datamodule=lightcurve"],
    "fusion": FAST_MULTIMODAL,
    "fusion_spectrum_sed": ["datamodule=miles_paired", *MILES_PAIRED],
    "late_fusion": [
        "datamodule=miles_paired",
        *MILES_PAIRED,
        "model.members.sed.n_jobs=1",
        "model.members.sed.num_boost_round=15",
    ],
    "late_fusion_joint": [
        "datamodule=miles_paired",
        *MILES_PAIRED,
        "model.members.sed.n_jobs=1",
        "model.members.sed.num_boost_round=15",
    ],
    "late_fusion_sed_kernel_ridge": ["datamodule=miles_paired", *MILES_PAIRED],
    "late_fusion_cascade": [
        "datamodule=miles_paired",
        *MILES_PAIRED,
        "model.members.sed.n_jobs=1",
        "model.members.sed.num_boost_round=15",
        "model.members.cascade.n_jobs=1",
        "model.members.cascade.num_boost_round=15",
    ],
    "late_fusion_cascade_kr": [
        "datamodule=miles_paired",
        *MILES_PAIRED,
        "model.members.sed.n_jobs=1",
        "model.members.sed.num_boost_round=15",
    ],
    "contrastive": FAST_MULTIMODAL,
    "lightcurve_multitask": ["datamodule=lightcurve"],
    "lightcurve_xgboost": ["datamodule=lightcurve", *FAST_XGB],
    "lightcurve_combined": [
        "datamodule=lightcurve",
        "model.members.xgb.n_jobs=1",
        "model.members.xgb.num_boost_round=15",
    ],
}


def train_py_multirun(
    tmp_path: Path,
    store_dir: Path,
    *overrides: str,
    artifact: str = "metrics.json",
    debug: str = "fdr",
    **env: str,
) -> tuple[int, str, list[Path]]:
    """``python train.py -m <overrides> debug=<debug>`` as a subprocess in ``tmp_path`` (small simulated sets, this
    session's store); returns its exit code, the tail of its stderr and the job folders holding ``artifact``,
    sorted. ``debug``: ``fdr`` (one batch each, no checkpoint) or ``limit`` (a few batches, checkpoints)."""
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        *overrides,
        f"debug={debug}",
        "datamodule.source.n=64",
        f"paths.store_dir={store_dir}",
        f"paths.log_dir={tmp_path}",
    ]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    proc = subprocess.run(cmd, cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=300)
    jobs = sorted(p.parent for p in (tmp_path / "debug" / "multiruns").rglob(artifact))
    return proc.returncode, proc.stderr[-3000:], jobs
