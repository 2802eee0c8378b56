"""The estimator path of train.py and evaluate.py with SED models, and the XGBoost-vs-MLP sweep through train.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stellar.pipelines import evaluate, train
from tests.pipelines.conftest import DATA_DIRS, FAST_ENSEMBLE, FAST_XGB, train_py_multirun

SED = ["datamodule=sed", "datamodule.source.n=300", *FAST_XGB]


def test_xgboost_run_leaves_booster_metrics_events_and_is_rebuilt_by_evaluate(make_cfg, tmp_path):
    cfg = make_cfg(*SED, "model=sed_xgboost", "calibrator=temperature")
    metrics, objs = train.run(cfg)
    out = Path(cfg.paths.output_dir)
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"estimator.json", "class.ubj"}
    assert metrics["best_checkpoint"].endswith("estimator.json") and metrics["fit_seconds"] > 0
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert json.loads((out / "calibrator.json").read_text())["type"] == "temperature"
    summary = json.loads((out / "metrics.json").read_text())["test_summary"]["classification"]
    assert 0.0 <= summary["ece_after"] <= 1.0 and summary["n"] > 0
    assert objs["trainer"] is None

    report, _ = evaluate.run(
        make_cfg(f"run_dir={out}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False)
    )
    assert report["classification"]["accuracy"] == pytest.approx(summary["accuracy"])
    assert report["meta"]["checkpoint"].endswith("estimator.json")
    assert (tmp_path / "eval" / "report.html").is_file()


def test_regressor_run_reports_teff_and_logg_with_intervals(make_cfg, tmp_path):
    cfg = make_cfg(*SED, "model=sed_xgboost_regressor")
    metrics, _ = train.run(cfg)
    reg = metrics["test_summary"]["regression"]
    assert set(reg) == {"teff", "logg"} and "classification" not in metrics["test_summary"]
    assert 0.0 <= reg["teff"]["coverage_68"] <= 1.0 and reg["logg"]["mae"] > 0
    report, _ = evaluate.run(
        make_cfg(
            f"run_dir={cfg.paths.output_dir}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False
        )
    )
    assert report["regression"]["teff"]["mae"] == pytest.approx(reg["teff"]["mae"], rel=1e-5)


def test_mlp_reads_the_same_features_and_evaluate_reloads_it(make_cfg, tmp_path):
    cfg = make_cfg(*SED[:2], "model=sed_mlp", "debug=limit", "model.targets=[teff,logg]")
    metrics, objs = train.run(cfg)
    assert objs["model"].inputs == ("features",)
    assert set(metrics["test_summary"]["regression"]) == {"teff", "logg"}
    report, _ = evaluate.run(
        make_cfg(
            f"run_dir={cfg.paths.output_dir}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False
        )
    )
    assert report["classification"]["accuracy"] == pytest.approx(metrics["test_summary"]["classification"]["accuracy"])


def test_ensemble_run_is_calibrated_rebuilt_by_evaluate_and_registered_whole(make_cfg, tmp_path):
    from stellar.registry import ModelRegistry

    reg_root = tmp_path / "registry"
    cfg = make_cfg(
        *SED[:2], "model=sed_ensemble", *FAST_ENSEMBLE, "model.copies.mlp=2", "calibrator=temperature",
        "register=true", f"registry.root={reg_root}",
    )  # fmt: skip
    metrics, objs = train.run(cfg)
    out = Path(cfg.paths.output_dir)
    names = {p.name for p in (out / "checkpoints").iterdir()}
    assert {"estimator.json", "xgb_0.class.ubj", "mlp_1.mlp.pt"} <= names and metrics["best_checkpoint"].endswith(
        "checkpoints/estimator.json"
    )
    assert {"val/acc", "val/mlp_0.class_loss", "val/xgb_0.class_mlogloss"} <= set(metrics)
    summary = metrics["test_summary"]["classification"]
    report, _ = evaluate.run(
        make_cfg(f"run_dir={out}", f"paths.output_dir={tmp_path / 'eval'}", name="evaluate", tiny=False)
    )
    assert report["classification"]["accuracy"] == pytest.approx(summary["accuracy"])
    assert report["classification"]["ece_after"] == pytest.approx(summary["ece_after"])
    model = ModelRegistry(reg_root).get("sed_ensemble").load_model()
    test = objs["datamodule"].arrays("test")
    assert list(model.models) == ["xgb_0", "mlp_0", "mlp_1"]
    assert (model.predict_outputs(test)["logits"] == objs["model"].predict_outputs(test)["logits"]).all()


@pytest.mark.parametrize(
    "overrides",
    [
        ["datamodule=sdss17", DATA_DIRS["SDSS17Source"], "datamodule.extra_features=[redshift]", "split=sky"],
        ["datamodule=sdss17", DATA_DIRS["SDSS17Source"], "datamodule.all_colours=false", "datamodule.use_errors=true"],
        ["datamodule=hipparcos", DATA_DIRS["HipparcosSource"], "split=random"],
        ["datamodule=sed", "datamodule.source.n=200", "datamodule.bands=[gaia_bp,gaia_g,gaia_rp]",
         "datamodule.deredden=false", "datamodule.abs_mag_band=null", "datamodule.extra_features=[]"],
    ],
    ids=["sdss17-redshift-sky", "sdss17-adjacent-errors", "hipparcos-random", "sed-gaia-only"],
)  # fmt: skip
def test_sed_datamodule_options_train_an_xgboost_model(make_cfg, overrides):
    metrics, objs = train.run(make_cfg("model=sed_xgboost", *FAST_XGB, *overrides, tiny=False))
    assert metrics["test_summary"]["classification"]["n"] > 0
    assert objs["datamodule"].n_features == objs["datamodule"].arrays("test")["features"].shape[1]


def test_estimators_refuse_pretraining_and_resuming(make_cfg):
    from stellar.errors import StellarConfigError

    with pytest.raises(StellarConfigError, match="resume"):
        train.run(make_cfg(*SED, "model=sed_xgboost", "resume=x.ckpt"))


@pytest.mark.slow  # two train.py processes: ~40 s on a loaded 2-core machine
def test_xgboost_and_mlp_sweep_through_train_py(tmp_path, store_dir):
    code, stderr, jobs = train_py_multirun(
        tmp_path, store_dir, "datamodule=sed", "model=sed_xgboost,sed_mlp", OMP_WAIT_POLICY="PASSIVE"
    )
    assert code == 0, stderr
    assert {p.name for p in jobs} == {"0_sed_xgboost", "1_sed_mlp"}


def test_an_sdss17_run_scores_every_row_of_another_folder(make_cfg, tmp_path):
    cfg = make_cfg("experiment=sdss17_sed", DATA_DIRS["SDSS17Source"], *FAST_XGB, tiny=False)
    train.run(cfg)
    report, _ = evaluate.run(
        make_cfg(
            f"run_dir={cfg.paths.output_dir}",
            f"paths.output_dir={tmp_path / 'eval'}",
            DATA_DIRS["SDSS17Source"],
            "split=none",
            name="evaluate",
            tiny=False,
        )
    )
    assert report["meta"]["n_scored"] == 600 and report["meta"]["split"] == "none"
