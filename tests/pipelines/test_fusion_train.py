"""model=fusion through train.py and evaluate.py: a short run on the paired simulation is calibrated, scored per
modality subset, registered, and reloads (from the run folder and from the registry) with identical predictions."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest

from stellar.evaluation.calibration import ONE_SIGMA, SubsetIntervalCalibrator, VarianceScaler
from stellar.pipelines import evaluate, train
from stellar.pipelines.common import build_interval_calibrator, predict, subset_outputs, truths_of
from stellar.registry import ModelRegistry
from tests.pipelines.conftest import FAST_MULTIMODAL

SUBSETS = {
    "spectrum",
    "sed",
    "lightcurve",
    "spectrum+sed",
    "spectrum+lightcurve",
    "sed+lightcurve",
    "spectrum+sed+lightcurve",
}


def test_fusion_run_scores_every_subset_registers_and_reloads_identically(make_cfg, tmp_path):
    cfg = make_cfg(
        "model=fusion", *FAST_MULTIMODAL, "debug=limit", "logger=none",
        "register=true", f"registry.root={tmp_path / 'registry'}", "interval_calibrator.min_subset_rows=2",
    )  # fmt: skip
    metrics, objs = train.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    summary = metrics["test_summary"]
    assert set(summary["subsets"]) == SUBSETS
    dm = objs["datamodule"]
    test = dm.arrays("test")
    have = {m: test["present"][m] for m in dm.modalities}
    # each subset is scored on the test objects that have all of it
    assert summary["subsets"]["spectrum"]["n"] == int(have["spectrum"].sum())
    assert summary["subsets"]["spectrum+sed+lightcurve"]["n"] == int(np.all(list(have.values()), axis=0).sum())
    assert (run_dir / "calibrator.json").is_file() and (run_dir / "interval_calibrator.json").is_file()

    # intervals per modality subset: one calibrator per subset, and each subset's row scored with its own factors
    cal = objs["interval_calibrator"]
    assert isinstance(cal, SubsetIntervalCalibrator) and set(cal.subsets_) == SUBSETS
    assert json.loads((run_dir / "interval_calibrator.json").read_text())["type"] == "by_subset"
    sed = dict(subset_outputs(objs["trainer"], objs["model"], dm, "test"))["sed"]
    truth = truths_of(sed, dm, ["logg"])["logg"]
    lo, hi = cal.interval(sed, "logg", ONE_SIGMA, ["sed"] * len(truth))
    ok = np.isfinite(truth)
    expected = np.mean((truth[ok] >= lo[ok]) & (truth[ok] <= hi[ok]))
    assert summary["subsets"]["sed"]["logg_coverage_68"] == pytest.approx(expected)
    assert isinstance(build_interval_calibrator({**cfg.interval_calibrator, "by_subset": False}, dm), type(cal.pooled))
    assert isinstance(build_interval_calibrator({"_target_": f"{VarianceScaler.__module__}.VarianceScaler"}, dm),
                      SubsetIntervalCalibrator)  # fmt: skip

    # the registry stores the version and rebuilds the model: the same predictions on the test part
    version = ModelRegistry(tmp_path / "registry").get("fusion")
    assert version.manifest["modality"] == "multimodal" and version.manifest["inputs"] == [
        "present", "spectrum", "sed", "lightcurve"
    ]  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    before = predict(trainer, objs["model"], dm, "test")
    after = predict(trainer, version.load_model(), dm, "test")
    assert set(before) == set(after)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])

    # evaluate.py rebuilds the run from its folder and reports the same per-subset table
    report, _ = evaluate.run(
        make_cfg(f"run_dir={run_dir}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False)
    )
    assert set(report["subsets"]) == SUBSETS
    for name, row in summary["subsets"].items():
        for key, value in row.items():
            assert report["subsets"][name][key] == pytest.approx(value, rel=1e-5, abs=1e-9), (name, key)
    assert "Per modality subset" in (tmp_path / "eval" / "report.html").read_text()
    on_disk = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert on_disk["subsets"]["sed"]["n"] == summary["subsets"]["sed"]["n"]
