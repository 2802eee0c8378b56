"""Regression interval calibration through the pipelines: train.py fits and writes it on the validation part,
evaluate.py applies it, a registered version carries it, and runs without one still evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stellar.evaluation.calibration import BaseIntervalCalibrator
from stellar.pipelines import evaluate, train
from stellar.pipelines.common import INTERVAL_CALIBRATOR_FILE
from tests.pipelines.conftest import FAST_XGB

SPECTRAL = ["model=spectral_multitask", "debug=limit", "datamodule.source.n=160"]
TYPES = {"none": "NoIntervalCalibration", "variance": "VarianceScaler", "conformal": "ConformalIntervals"}


def _evaluate(make_cfg, tmp_path: Path, run_dir: Path) -> dict:
    cfg = make_cfg(f"run_dir={run_dir}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False)
    report, _ = evaluate.run(cfg)
    return report


@pytest.mark.parametrize("option", sorted(TYPES))
def test_train_writes_the_interval_calibrator_and_evaluate_applies_it(make_cfg, tmp_path, option):
    cfg = make_cfg(*SPECTRAL, f"interval_calibrator={option}")
    metrics, objs = train.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    payload = json.loads((run_dir / INTERVAL_CALIBRATOR_FILE).read_text())
    cal = BaseIntervalCalibrator.from_dict(payload)
    assert type(cal).__name__ == TYPES[option] == type(objs["interval_calibrator"]).__name__
    assert payload["log_targets"] == ["teff"]  # fitted where the model learns Teff: log10
    summary = metrics["test_summary"]["regression"]
    assert set(summary) == {"teff", "logg", "feh"}
    if option != "none":
        assert set(cal.targets) == {"teff", "logg", "feh"}
        assert all(payload["targets"][t]["n"] > 0 for t in cal.targets)
    for rep in summary.values():
        for key in ("coverage_68_after", "coverage_95_after"):
            assert 0.0 <= rep[key] <= 1.0
            if option == "none":  # the identity: after is before
                assert rep[key] == rep[key.replace("_after", "")]
    report = _evaluate(make_cfg, tmp_path, run_dir)
    assert report["meta"]["interval_calibrator"] == TYPES[option]
    for t, rep in summary.items():
        for key in ("coverage_68", "coverage_95", "coverage_68_after", "coverage_95_after"):
            assert report["regression"][t][key] == pytest.approx(rep[key])


def test_evaluate_applies_the_stored_factors_and_a_run_without_the_file_still_evaluates(make_cfg, tmp_path):
    cfg = make_cfg(*SPECTRAL, "interval_calibrator=variance")
    train.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    path = run_dir / INTERVAL_CALIBRATOR_FILE
    # a huge scale on logg: every test truth falls inside its intervals after calibration
    payload = json.loads(path.read_text())
    payload["targets"]["logg"]["scale"] = 1e6
    path.write_text(json.dumps(payload))
    report = _evaluate(make_cfg, tmp_path, run_dir)
    assert report["regression"]["logg"]["coverage_68_after"] == 1.0
    assert report["regression"]["logg"]["coverage_68"] < 1.0
    # backward compatibility: runs from before interval calibration have no file and are scored as they were
    path.unlink()
    old = _evaluate(make_cfg, tmp_path, run_dir)
    assert old["meta"]["interval_calibrator"] is None
    for rep in old["regression"].values():
        assert rep["coverage_68_after"] == rep["coverage_68"] and rep["coverage_95_after"] == rep["coverage_95"]


def test_estimator_run_fits_intervals_in_its_learned_space(make_cfg):
    cfg = make_cfg("datamodule=sed", "datamodule.source.n=300", *FAST_XGB, "model=sed_xgboost_regressor")
    metrics, objs = train.run(cfg)
    cal = objs["interval_calibrator"]
    assert type(cal).__name__ == "ConformalIntervals"  # the default of conf/train.yaml
    assert cal.log_targets == ["teff"] and set(cal.targets) == {"teff", "logg"}
    assert metrics["interval_calibrator"].endswith(INTERVAL_CALIBRATOR_FILE)


def test_no_interval_calibrator_for_a_classifier_or_when_switched_off(make_cfg, tmp_path):
    cfg = make_cfg("model=spectral_cnn", "debug=limit")  # classification only: nothing to calibrate
    _, objs = train.run(cfg)
    assert objs["interval_calibrator"] is None and not (Path(cfg.paths.output_dir) / INTERVAL_CALIBRATOR_FILE).exists()
    cfg = make_cfg(*SPECTRAL, "~interval_calibrator", f"paths.output_dir={tmp_path / 'off'}")
    metrics, objs = train.run(cfg)
    assert objs["interval_calibrator"] is None and not (tmp_path / "off" / INTERVAL_CALIBRATOR_FILE).exists()
    assert "interval_calibrator" not in metrics


def test_registered_version_stores_and_loads_the_interval_calibrator(make_cfg, tmp_path):
    from stellar.registry import ModelRegistry

    root = tmp_path / "registry"
    cfg = make_cfg(*SPECTRAL, "interval_calibrator=variance", "register=true", f"registry.root={root}")
    _, objs = train.run(cfg)
    version = ModelRegistry(root).get("spectral_multitask", "latest")
    assert INTERVAL_CALIBRATOR_FILE in version.files
    assert version.manifest["interval_calibrator"] == "VarianceScaler"
    loaded = version.interval_calibrator()
    assert loaded is not None and loaded.to_dict() == objs["interval_calibrator"].to_dict()
