"""``evaluate.py run_dir=<a miles_fusion run> datamodule.data_dir=<another MILES-format folder> split=none`` scores a
folder holding only spectra and a parameter table: BSC5 and Hipparcos are found by the stars' names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stellar.models.late_fusion import LateFusion
from stellar.pipelines import evaluate, train
from tests.data.test_miles_any_folder import NAMES, copy_miles_rows
from tests.pipelines.conftest import MILES, MILES_PAIRED


def _evaluate_bare(make_cfg, run_dir: str, tmp_path: Path) -> tuple[dict, dict]:
    """``evaluate.py run_dir=… datamodule.data_dir=<bare folder of NAMES> split=none``."""
    bare = copy_miles_rows(NAMES, tmp_path / "bare")
    assert sorted(p.name for p in bare.iterdir()) == ["miles_params.csv", "miles_spectra.npz"]
    return evaluate.run(
        make_cfg(
            f"run_dir={run_dir}", f"paths.output_dir={tmp_path / 'eval'}",
            f"datamodule.data_dir={bare}", "split=none", name="evaluate", tiny=False,
        )
    )  # fmt: skip


def test_a_short_miles_fusion_run_scores_a_bare_miles_folder(make_cfg, tmp_path: Path) -> None:
    # fast: the default model (late fusion: kernel ridge + XGBoost, seconds on the 43-star subset), and the run
    # names the catalogue lines of tests/data/paired (reading the shipped Hipparcos costs ~2 s per run;
    # tests/data/test_miles_any_folder.py and the slow test below read the shipped copies); the evaluation inherits
    # them and finds the bare folder's stars in them by name
    cfg = make_cfg("experiment=miles_fusion", *MILES_PAIRED, "debug=limit", "logger=none", tiny=False)
    metrics, trained = train.run(cfg)
    assert isinstance(trained["model"], LateFusion)
    assert set(metrics["test_summary"]["subsets"]) <= {"spectrum", "sed", "spectrum+sed"}  # scored per subset
    report, objs = _evaluate_bare(make_cfg, cfg.paths.output_dir, tmp_path)
    assert isinstance(objs["model"], LateFusion)
    assert report["meta"]["n_scored"] == len(NAMES) and report["meta"]["split"] == "none"
    assert report["subsets"]["spectrum+sed"]["n"] == 3 and report["subsets"]["spectrum"]["n"] == 5
    assert set(report["subsets"]) == {"spectrum", "sed", "spectrum+sed"}
    dm = objs["datamodule"]
    sed = dm.datasets["sed"].meta.set_index("object_id")
    assert sorted(sed.index) == ["miles:HD017378", "miles:HD102870", "miles:HD224930"]
    assert sed.loc["miles:HD102870", "parallax"] == pytest.approx(91.50)  # β Vir, Hipparcos (van Leeuwen 2007)


def test_the_neural_fusion_stays_selectable_in_miles_fusion(make_cfg, tmp_path: Path) -> None:
    # model=fusion_spectrum_sed: the attention fusion of sections 3-7 (one training batch), scored on the bare folder
    cfg = make_cfg(
        "experiment=miles_fusion", "model=fusion_spectrum_sed", *MILES_PAIRED, "debug=limit", "trainer.max_epochs=1",
        "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "logger=none", tiny=False,
    )  # fmt: skip
    assert cfg.registry.name == "fusion" and cfg.model.encoder.encoders.lightcurve is None
    train.run(cfg)
    report, objs = _evaluate_bare(make_cfg, cfg.paths.output_dir, tmp_path)
    assert not isinstance(objs["model"], LateFusion)
    assert report["subsets"]["spectrum+sed"]["n"] == 3 and report["subsets"]["spectrum"]["n"] == 5


@pytest.mark.slow
def test_a_miles_fusion_run_scores_a_bare_miles_folder(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("experiment=miles_fusion", MILES, "debug=limit", "logger=none", tiny=False)
    assert cfg.datamodule.source.bsc5 is None and cfg.datamodule.source.hipparcos is None
    train.run(cfg)
    report, objs = _evaluate_bare(make_cfg, cfg.paths.output_dir, tmp_path)
    assert report["meta"]["n_scored"] == len(NAMES) and report["meta"]["split"] == "none"
    # the three BSC5 stars are scored with their photometry and parallax, the other two on the spectrum alone
    assert report["subsets"]["spectrum+sed"]["n"] == 3 and report["subsets"]["spectrum"]["n"] == 5
    dm = objs["datamodule"]
    test = dm.arrays("test")
    ids = dm.meta["object_id"].to_numpy()[test["index"]]
    has_sed = dict(zip(ids, test["present"]["sed"], strict=True))
    assert {k for k, v in has_sed.items() if v} == {"miles:HD017378", "miles:HD102870", "miles:HD224930"}
    plx = dm.datasets["sed"].meta.set_index("object_id")["parallax"]
    assert plx["miles:HD102870"] == pytest.approx(91.50) and np.isfinite(plx.to_numpy(float)).all()
