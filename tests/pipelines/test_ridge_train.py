"""model=spectral_ridge through train.py on real MILES spectra (each representation), and evaluate.py reloading it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stellar.pipelines import evaluate, train
from tests.pipelines.conftest import MILES

TARGETS = ["teff", "logg", "feh"]


@pytest.mark.parametrize("representation", ["flux_over_median", "normalised", "normalised_channel"])
def test_train_py_fits_scores_and_evaluate_reloads_the_ridge_on_miles(make_cfg, tmp_path, representation):
    cfg = make_cfg(
        "experiment=miles_spectra", "model=spectral_ridge", f"model/representation={representation}", MILES, tiny=False
    )
    metrics, objs = train.run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert (run_dir / "checkpoints" / "estimator.json").is_file() and (run_dir / "checkpoints" / "ridge.npz").is_file()
    assert (run_dir / "interval_calibrator.json").is_file() and (run_dir / "calibrator.json").is_file()
    summary = metrics["test_summary"]
    assert set(summary["regression"]) == set(TARGETS) and summary["classification"]["n"] > 0
    assert objs["model"].inputs == {"flux_over_median": ["flux", "continuum", "mask"], "normalised": ["flux"],
                                    "normalised_channel": ["flux", "continuum"]}[representation]  # fmt: skip
    # ~30 training stars spanning O to M: a linear model still gets Teff to within ~20% (the label scatter is ~35%)
    assert summary["regression"]["teff"]["median_ae"] < 2000
    assert np.isfinite(metrics["val/logg_rmse_learned"])
    report, _ = evaluate.run(
        make_cfg(f"run_dir={run_dir}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False)
    )
    assert report["regression"]["logg"]["mae"] == pytest.approx(summary["regression"]["logg"]["mae"])
    assert report["classification"]["accuracy"] == pytest.approx(summary["classification"]["accuracy"])


def test_train_py_fits_the_kernel_ridge_with_per_star_sigma_and_evaluate_reloads_it(make_cfg, tmp_path):
    """``experiment=miles_spectra model=spectral_kernel_ridge`` on real MILES spectra: every star its own σ, and
    evaluate.py gives the same scores from the saved run."""
    overrides = ["experiment=miles_spectra", "model=spectral_kernel_ridge", MILES, "logger=none", "model.mk_cs=[0.01]"]
    cfg = make_cfg(*overrides, tiny=False)
    metrics, objs = train.run(cfg)
    model = objs["model"]
    assert model.per_star_sigma and set(model.gamma) == set(TARGETS)
    out = model.predict_outputs(objs["datamodule"].arrays("test"))
    for t in TARGETS:  # σ differs from star to star (learned space: the delta method's Teff factor taken out)
        sd = np.exp(0.5 * out[f"{t}_logvar"]) / (out[f"{t}_mean"] if t in model.log_targets else 1.0)
        assert np.ptp(np.log(sd)) > 1e-3
    run_dir = Path(cfg.paths.output_dir)
    report, _ = evaluate.run(
        make_cfg(f"run_dir={run_dir}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False)
    )
    summary = metrics["test_summary"]["regression"]
    for t in TARGETS:
        assert report["regression"][t]["mae"] == pytest.approx(summary[t]["mae"])
        assert report["regression"][t]["coverage_68_after"] == pytest.approx(summary[t]["coverage_68_after"])
