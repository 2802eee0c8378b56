"""Regression interval coverage on the test part before and after each interval calibrator, for trained runs.

Usage (from the repository root)::

    python experiments/calibration/intervals.py outputs/intervals/sim_sed_s17 outputs/intervals/sim_sed_s18 ...

For each run folder (a ``train.py`` run): rebuild its datamodule (same split, from its ``config.yaml``) and its
best model, predict its validation and test parts once, then fit every interval calibrator of
``conf/interval_calibrator`` (``none``, ``variance``, ``conformal``) on the validation part exactly as ``train.py``
does (:func:`stellar.pipelines.common.fit_interval_calibrator`) and report the fraction of test truths inside the
68.27% (``mean ± k σ``) and 95% intervals, per target; then the mean ± std over the runs. Nothing is tuned on test.
Writes ``<out>/interval_coverage.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from stellar.evaluation.calibration import (
    REPORT_LEVELS,
    BaseIntervalCalibrator,
    ConformalIntervals,
    NoIntervalCalibration,
    VarianceScaler,
)
from stellar.evaluation.metrics import regression_report
from stellar.pipelines.common import checkpoint_hparams, fit_interval_calibrator, load_weights, predict, truths_of
from stellar.pipelines.evaluate import best_checkpoint

CALIBRATORS: dict[str, type[BaseIntervalCalibrator]] = {
    "none": NoIntervalCalibration,
    "variance": VarianceScaler,
    "conformal": ConformalIntervals,
}


def run_coverage(run_dir: Path) -> dict[str, Any]:
    """``{target: {calibrator: {coverage_68, coverage_95, factor_68, factor_95}}}`` of one run's test part."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert isinstance(cfg, DictConfig)
    split = instantiate(cfg.split) if cfg.get("split") else None
    dm = instantiate(cfg.datamodule, split=split)
    dm.setup("fit")
    ckpt = best_checkpoint(run_dir)
    hp = checkpoint_hparams(ckpt)
    model = instantiate(cfg.model, class_names=list(hp.get("class_names", [])), target_stats=hp.get("target_stats"))
    load_weights(model, ckpt)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    val, test = predict(trainer, model, dm, "val"), predict(trainer, model, dm, "test")
    out: dict[str, Any] = {}
    for name, cls in CALIBRATORS.items():
        cal = fit_interval_calibrator(cls(), val, dm, model)
        for t, truth in truths_of(test, dm, list(model.targets)).items():
            assert cal is not None
            k68, k95 = (cal.factor(t, level) for level in REPORT_LEVELS)
            in_log10 = t in getattr(model, "log_targets", ())  # as the calibrator and the server take it
            rep = regression_report(test[f"{t}_mean"], test[f"{t}_logvar"], truth, (k68, k95), log_target=in_log10)
            out.setdefault(t, {})[name] = {
                "n_test": rep["n"],
                "n_val": int(np.isfinite(truths_of(val, dm, [t])[t]).sum()),
                "coverage_68": rep["coverage_68_after"],
                "coverage_95": rep["coverage_95_after"],
                "factor_68": k68,
                "factor_95": k95,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="train.py run folders")
    parser.add_argument("--out", type=Path, default=Path("outputs/intervals"), help="where the JSON goes")
    args = parser.parse_args()
    per_run = {str(r): run_coverage(r) for r in args.runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "interval_coverage.json").write_text(json.dumps(per_run, indent=2))
    targets = sorted({t for r in per_run.values() for t in r})
    print("| target | calibrator | 68% coverage (per run) | 68% mean ± std | 95% coverage (per run) | 95% mean ± std |")
    print("|---|---|---|---|---|---|")
    for t in targets:
        for name in CALIBRATORS:
            cells = []
            for key in ("coverage_68", "coverage_95"):
                vals = np.array([r[t][name][key] for r in per_run.values() if t in r])
                cells += [" / ".join(f"{v:.3f}" for v in vals), f"{vals.mean():.3f} ± {vals.std(ddof=1):.3f}"]
            print(f"| {t} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
