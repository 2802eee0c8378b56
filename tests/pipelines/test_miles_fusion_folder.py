"""``evaluate.py run_dir=<a miles_fusion run> datamodule.data_dir=<another MILES-format folder> split=none`` scores a
folder holding only spectra and a parameter table: BSC5 and Hipparcos are found by the stars' names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stellar.pipelines import evaluate, train
from tests.data.test_miles_any_folder import NAMES, copy_miles_rows
from tests.pipelines.conftest import MILES


@pytest.mark.slow
def test_a_miles_fusion_run_scores_a_bare_miles_folder(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("experiment=miles_fusion", MILES, "debug=limit", "logger=none", tiny=False)
    assert cfg.datamodule.source.bsc5 is None and cfg.datamodule.source.hipparcos is None
    train.run(cfg)
    bare = copy_miles_rows(NAMES, tmp_path / "bare")
    report, objs = evaluate.run(
        make_cfg(
            f"run_dir={cfg.paths.output_dir}", f"paths.output_dir={tmp_path / 'eval'}",
            f"datamodule.data_dir={bare}", "split=none", name="evaluate", tiny=False,
        )
    )  # fmt: skip
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
