"""model=spectral_cannon through train.py on real MILES spectra, and evaluate.py reloading the saved Cannon."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stellar.pipelines import evaluate, train
from tests.pipelines.conftest import MILES

TARGETS = ["teff", "logg", "feh"]


def test_train_py_fits_scores_and_evaluate_reloads_the_cannon_on_miles(make_cfg, tmp_path):
    cfg = make_cfg("experiment=miles_spectra", "model=spectral_cannon", MILES, "model.cv_folds=2", tiny=False)
    metrics, _ = train.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert (run_dir / "checkpoints" / "estimator.json").is_file() and (run_dir / "checkpoints" / "cannon.npz").is_file()
    summary = metrics["test_summary"]
    assert set(summary["regression"]) == set(TARGETS) and summary["classification"]["n"] > 0
    assert np.isfinite(metrics["train/chi2_per_pixel"])
    # the quadratic model on 30 training stars still gets Teff to within ~15% (the label scatter is ~35%)
    assert summary["regression"]["teff"]["median_ae"] < 1500
    report, _ = evaluate.run(
        make_cfg(f"run_dir={run_dir}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False)
    )
    assert report["regression"]["logg"]["mae"] == pytest.approx(summary["regression"]["logg"]["mae"])
