"""Training with ``datamodule.streaming=true`` through the composed configs: Lightning models train, calibrate, keep
a monitor reference and score the test part on streamed parts; estimators, which fit in memory, refuse it."""

from __future__ import annotations

import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from stellar.data.datamodules.streaming import StreamingPart
from stellar.errors import StellarConfigError
from stellar.pipelines.train import run
from tests.pipelines.conftest import MODEL_OVERRIDES


@pytest.mark.parametrize("overrides", [[], MODEL_OVERRIDES["sed_mlp"] + ["model=sed_mlp"]], ids=["spectra", "sed"])
def test_fast_dev_run_on_streamed_parts(make_cfg, overrides):
    metrics, objs = run(make_cfg(*overrides, "datamodule.streaming=true", "debug=fdr"))
    dm = objs["datamodule"]
    assert all(isinstance(dm.part(p), StreamingPart) for p in ("train", "val", "test"))
    assert objs["calibrator"] is not None and "reference" in metrics  # fitted on the materialised val part
    summary = metrics["test_summary"]
    assert summary and all(v == v for k, v in metrics.items() if k.startswith("train/") and isinstance(v, float))


def test_an_estimator_refuses_streaming(make_cfg):
    cfg = make_cfg("model=sed_xgboost", *MODEL_OVERRIDES["sed_xgboost"], "datamodule.streaming=true")
    with pytest.raises(StellarConfigError, match="streaming=false"):
        run(cfg)


def test_multimodal_refuses_streaming(make_cfg):
    cfg = make_cfg("datamodule=multimodal", "+datamodule.streaming=true")
    with pytest.raises(InstantiationException, match="streaming=true is not supported by MultiModalDataModule") as err:
        instantiate(cfg.datamodule)
    assert isinstance(err.value.__cause__, StellarConfigError)
