from __future__ import annotations

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
