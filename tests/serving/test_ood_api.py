"""Per-object out-of-distribution scores in the server's answers and in catalogue scoring, from a real Hipparcos
model's training reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from stellar.serving.api import SEDAPI
from stellar.serving.schemas import PredictionResponse, SEDRequest
from stellar.serving.scoring import score
from tests.conftest import DATA, REPO
from tests.serving.helpers import train_registered

HIPPARCOS = DATA / "sed" / "hipparcos"


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    return train_registered(
        tmp_path_factory.mktemp("ood"), "experiment=hipparcos_sed", f"datamodule.data_dir={HIPPARCOS}", "model.n_jobs=1"
    )


def _answer(api: SEDAPI, request: SEDRequest) -> dict:
    out = api.encode_response(api.predict(api.decode_request(request)))
    assert isinstance(out, dict), getattr(out, "body", out)
    return PredictionResponse.model_validate(out).model_dump()


def test_answers_carry_an_ood_score_that_flags_stars_unlike_the_training_set(registry):
    api = SEDAPI("sed_xgboost", registry_root=str(registry), api_path="/predict/sed")
    api.setup("cpu")
    stars = pd.read_csv(HIPPARCOS / "hipparcos_giant_dwarf.csv").iloc[:100]
    v, bv = stars["Vmag"].to_numpy(), stars["B-V"].to_numpy()
    request = SEDRequest(
        magnitudes=np.stack([v + bv, v], axis=1).tolist(),
        bands=["johnson_b", "johnson_v"],
        parallax=stars["Plx"].tolist(),
        parallax_err=stars["e_Plx"].tolist(),
    )
    preds = _answer(api, request)["predictions"]
    flags = np.array([p["ood"] for p in preds])
    assert all(p["ood_score"] is not None and p["ood_score"] >= 0 for p in preds)
    assert flags.mean() < 0.1  # the catalogue's own stars: about 1% expected
    far = _answer(api, SEDRequest(magnitudes=[[24.0, 16.0]], bands=["johnson_b", "johnson_v"], parallax=[0.01]))
    assert far["predictions"][0]["ood"] is True and far["predictions"][0]["ood_score"] > 1


def test_catalogue_scoring_writes_the_ood_columns(registry, tmp_path):
    table = score(
        HIPPARCOS,
        tmp_path / "scores.csv",
        "sed_xgboost",
        registry_root=str(registry),
        progress=False,
        store_root=str(tmp_path / "store"),
    ).frame
    assert {"ood_score", "ood"} <= set(table.columns)
    assert len(table) == 400 and table["ood"].mean() < 0.1


def _star_request(stars: pd.DataFrame, v_shift: float = 0.0) -> SEDRequest:
    v, bv = stars["Vmag"].to_numpy() + v_shift, stars["B-V"].to_numpy()
    return SEDRequest(
        magnitudes=np.stack([v + bv, v], axis=1).tolist(),
        bands=["johnson_b", "johnson_v"],
        parallax=stars["Plx"].tolist(),
        parallax_err=stars["e_Plx"].tolist(),
    )


def _monitor_log(registry: Path, log: Path, out: Path) -> tuple[dict, dict]:
    """``python -m stellar.monitor model=sed_xgboost requests=<log>``."""
    from stellar.pipelines import monitor

    overrides = ["model_ref=sed_xgboost", f"registry.root={registry}", f"requests={log}", f"paths.output_dir={out}"]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return monitor.run(compose("monitor", overrides=overrides))


@pytest.mark.parametrize(("v_shift", "alert"), [(0.0, False), (2.0, True)])
def test_monitor_reads_the_request_log_as_a_batch(registry, tmp_path, v_shift, alert):
    from stellar.serving.request_log import RequestLogConfig

    api = SEDAPI("sed_xgboost", registry_root=str(registry), api_path="/predict/sed")
    api.enable_monitoring(None, RequestLogConfig(str(tmp_path / "log"), flush_rows=50))
    api.setup("cpu")
    stars = pd.read_csv(HIPPARCOS / "hipparcos_giant_dwarf.csv")
    for start in range(0, 400, 40):  # 10 requests of 40 stars
        _answer(api, _star_request(stars.iloc[start : start + 40], v_shift))
    assert api.request_log is not None
    api.request_log.close()
    report, objs = _monitor_log(registry, tmp_path / "log", tmp_path / "mon")
    assert len(objs["requests"]) == 400 and report["n_objects"] == 400
    assert report["alert"] is alert, report["alerts"]
    names = {c["name"] for c in report["data_drift"]["checks"]}
    assert {"mag_johnson_v", "parallax"} <= names
    assert {c["name"] for c in report["prediction_drift"]["checks"]} == {"predicted_class", "confidence"}
    assert "ood_fraction" in names and report["ood"]["flagged"] >= 0
    if alert:
        assert "mag_johnson_v" in report["alerts"]


def test_monitor_reads_only_the_given_models_rows_of_a_shared_log(registry, tmp_path):
    # a server logs every endpoint under one request_log.dir: another model's rows (other summaries, other
    # classes), or an older version's, are no sample of this model's inputs
    from stellar.serving.request_log import RequestLog, RequestLogConfig

    api = SEDAPI("sed_xgboost", registry_root=str(registry), api_path="/predict/sed")
    api.enable_monitoring(None, RequestLogConfig(str(tmp_path / "log"), flush_rows=50))
    api.setup("cpu")
    stars = pd.read_csv(HIPPARCOS / "hipparcos_giant_dwarf.csv")
    for start in range(0, 200, 40):
        _answer(api, _star_request(stars.iloc[start : start + 40]))
    assert api.request_log is not None
    api.request_log.close()
    cfg = RequestLogConfig(str(tmp_path / "log"), flush_rows=100)
    spectra = pd.DataFrame({"snr_median": np.full(100, 30.0), "valid_fraction": np.ones(100)})
    for endpoint, meta in (("/predict/spectral", {"model": "spectral_cnn", "version": 1}), ("/predict/sed", None)):
        other = RequestLog(cfg, endpoint)
        meta = meta or {"model": "sed_xgboost", "version": 99}  # a version that is not the one asked for
        other.append(meta, ["r"] * 100, list(range(100)), {"predicted_class": ["x"] * 100}, spectra, {})
        other.flush()
    report, objs = _monitor_log(registry, tmp_path / "log", tmp_path / "mon")
    assert report["n_objects"] == 200 and len(objs["requests"]) == 200
    assert set(objs["requests"]["model"]) == {"sed_xgboost"} and set(objs["requests"]["version"]) == {1}
