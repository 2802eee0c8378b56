"""Batches drawn from one model run (``batch_inputs`` + ``batch_rows``): what the monitoring experiments check many
batches with, and what ``python -m stellar.monitor`` checks a whole test part with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stellar.monitoring import TrainingReference, check_batch, summarize
from stellar.pipelines import monitor, train
from stellar.pipelines.monitor import batch_inputs, batch_rows
from tests.pipelines.conftest import FAST_XGB

SED = ["datamodule=sed", "datamodule.source.n=300", *FAST_XGB, "model=sed_xgboost"]


def test_rows_of_a_batch_are_the_rows_of_every_input_and_monitor_run_checks_the_whole_part(make_cfg, tmp_path):
    cfg = make_cfg(*SED)
    _, objs = train.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    reference = TrainingReference.load(run_dir)
    dm = objs["datamodule"]
    inputs = batch_inputs(None, objs["model"], dm, "test", reference, objs["calibrator"], objs["interval_calibrator"])
    n = len(dm.part("test"))
    assert len(inputs["summaries"]) == len(inputs["probs"]) == len(inputs["labels"]) == n
    assert inputs["embeddings"] is None  # an estimator has no encoder

    rows = np.array([5, 0, 3])
    batch = batch_rows(inputs, rows)
    test = dm.arrays("test")
    np.testing.assert_array_equal(batch["arrays"]["index"], test["index"][rows])
    np.testing.assert_array_equal(batch["probs"], inputs["probs"][rows])
    np.testing.assert_array_equal(batch["outputs"]["logits"], inputs["outputs"]["logits"][rows])
    sub = {k: v[rows] for k, v in test.items()}
    pd.testing.assert_frame_equal(batch["summaries"], summarize(sub, dm.preprocessing))

    # the command checks exactly what batch_inputs gives for its test part
    report, _ = monitor.run(
        make_cfg(f"run_dir={run_dir}", f"paths.output_dir={tmp_path / 'mon'}", name="monitor", tiny=False)
    )
    direct = check_batch(reference, **inputs)
    assert report["alerts"] == direct["alerts"] and report["n_objects"] == n
    assert report["performance_estimate"]["accuracy"] == pytest.approx(direct["performance_estimate"]["accuracy"])
