"""The whole chain on the local S3 API: data_dir, dataset store and registry on S3 → train → register → evaluate the
registered version → serve it → score the S3 catalogue into S3 partitions → monitor the server's request log read
from S3. Only the Hydra run folders and temporary files are local."""

from __future__ import annotations

import io

import fsspec
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from stellar.data.sources import der_snr_noise
from stellar.data.store import DatasetStore
from stellar.pipelines import evaluate, monitor, score, train
from stellar.registry import ModelRegistry
from stellar.serving.api import SpectralAPI
from stellar.serving.request_log import RequestLogConfig
from stellar.serving.schemas import SpectralRequest
from tests.conftest import DATA, REPO


def _cfg(name: str, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose(name, overrides=list(overrides))


def _miles_star(data: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Air wavelengths (Å) and flux of the star ``name`` of a MILES folder, read back from S3."""
    fs = fsspec.filesystem("s3")
    params = pd.read_csv(io.BytesIO(fs.cat_file(f"{data[5:]}/miles_params.csv")), dtype={"miles_id": str})
    miles_id = params.loc[params["name"].str.strip() == name, "miles_id"].str.strip().item()
    with np.load(io.BytesIO(fs.cat_file(f"{data[5:]}/miles_spectra.npz"))) as z:
        row = np.flatnonzero(np.char.strip(z["miles_id"].astype(str)) == miles_id).item()
        return z["wave_air_angstrom"], z["flux"][row].astype(float)


def test_train_register_evaluate_serve_score_and_monitor_on_s3(s3_bucket, tmp_path):
    data, store, registry = f"{s3_bucket}/data/miles", f"{s3_bucket}/store", f"{s3_bucket}/registry"
    fsspec.filesystem("s3").put(str(DATA / "miles_subset"), data[5:], recursive=True)
    local = [f"paths.log_dir={tmp_path}", f"paths.data_dir={tmp_path / 'unused'}", f"paths.store_dir={store}"]

    cfg = _cfg(
        "train",
        *local,
        f"paths.output_dir={tmp_path / 'run'}",
        "datamodule=miles",
        f"datamodule.data_dir={data}",
        "trainer.max_epochs=1",
        "logger=none",
        "register=true",
        f"registry.root={registry}",
        "registry.aliases=[staging]",
    )
    metrics, objects = train.run(cfg)
    dm = objects["datamodule"]
    assert metrics["registered"] == "spectral_cnn:v1"
    stored = DatasetStore(store)
    assert stored.list() == [dm.dataset_name]  # built from S3 into the S3 store
    assert stored.open(dm.dataset_name).attrs["provenance"]["data_dir"] == data
    version = ModelRegistry(registry).get("spectral_cnn", "staging")
    assert version.url.startswith(f"{registry}/spectral_cnn/versions/v1") and "reference.npz" in version.files

    # evaluate the registered version, read from S3, on the same test part
    report, _ = evaluate.run(
        _cfg(
            "evaluate",
            *local,
            f"paths.output_dir={tmp_path / 'eval'}",
            "model_ref=spectral_cnn@staging",
            f"registry.root={registry}",
        )
    )
    summary = metrics["test_summary"]["classification"]
    assert report["meta"]["source"] == "spectral_cnn:v1" and report["meta"]["n_scored"] == summary["n"]
    assert report["classification"]["accuracy"] == pytest.approx(summary["accuracy"])
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv")

    # serve the version from the S3 registry (the LitAPI as plain methods), keeping a request log
    api = SpectralAPI("spectral_cnn", ref="staging", registry_root=registry, api_path="/predict/spectral")
    api.enable_monitoring(None, RequestLogConfig(str(tmp_path / "requests"), flush_rows=1))
    api.setup("cpu")
    assert api.load_error is None and api.version_number == 1
    star = predictions.iloc[0]
    wave, flux = _miles_star(data, str(star["object_id"]))
    errors = np.full_like(flux, der_snr_noise(flux[None])[0])  # MILES has no errors: the source's DER_SNR σ
    request = {"spectra": [flux.tolist()], "wavelengths": wave.tolist(), "medium": "air", "errors": [errors.tolist()]}
    answer = api.encode_response(api.predict(api.decode_request(SpectralRequest.model_validate(request))))
    (pred,) = answer["predictions"]
    assert answer["model"] == "spectral_cnn" and answer["version"] == 1
    served = np.array([pred["probabilities"][c] for c in version.class_names])
    np.testing.assert_allclose(served, star[[f"p_{c}" for c in version.class_names]].to_numpy(float), atol=1e-3)
    api.request_log.close()

    # score every star of the S3 folder with the registered version into S3 partitions (in this process: the Dask
    # executors are tested in tests/serving/test_scoring_dask.py); the test stars get evaluate's probabilities
    scores = f"{s3_bucket}/scores"
    done, _ = score.run(
        _cfg(
            "score",
            *local,
            f"paths.output_dir={tmp_path / 'score'}",
            "cluster=none",
            "model_ref=spectral_cnn@staging",
            f"registry.root={registry}",
            f"input={data}",
            f"output={scores}",
            f"store_root={store}",
        )
    )
    assert done["n_objects"] == len(dm.meta) and done["computed"] == done["partitions"] >= 1
    scored = pd.concat(
        [
            pd.read_parquet(io.BytesIO(fsspec.filesystem("s3").cat_file(f)))
            for f in fsspec.filesystem("s3").glob(f"{scores[5:]}/**/*.parquet")
        ]
    ).set_index("object_id")
    assert sorted(scored.index) == sorted(dm.meta["object_id"].astype(str))
    p_cols = [f"p_{c}" for c in version.class_names]
    np.testing.assert_allclose(
        scored.loc[predictions["object_id"].astype(str), p_cols].to_numpy(float),
        predictions[p_cols].to_numpy(float),
        atol=1e-4,
    )

    # the monitor reads the request log and the reference from S3
    requests = f"{s3_bucket}/requests"
    fsspec.filesystem("s3").put(str(tmp_path / "requests"), requests[5:], recursive=True)
    mon, objs = monitor.run(
        _cfg(
            "monitor",
            *local,
            f"paths.output_dir={tmp_path / 'monitor'}",
            "model_ref=spectral_cnn@staging",
            f"registry.root={registry}",
            f"requests={requests}",
        )
    )
    assert mon["meta"]["batch"] == f"request log {requests}" and len(objs["requests"]) == 1
    assert objs["requests"]["version"].tolist() == [1]
    # and a batch: every star of the S3 folder (split=none), from the dataset already in the S3 store
    mon, objs = monitor.run(
        _cfg(
            "monitor",
            *local,
            f"paths.output_dir={tmp_path / 'monitor_batch'}",
            "model_ref=spectral_cnn@staging",
            f"registry.root={registry}",
            f"datamodule.data_dir={data}",
            "split=none",
        )
    )
    assert mon["meta"]["dataset"] == dm.dataset_name and stored.list() == [dm.dataset_name]
    assert sorted(objs["objects"]["object_id"]) == sorted(dm.meta["object_id"])
    assert not (tmp_path / "unused").exists()  # nothing went to the local data folder


def test_an_s3_run_dir_is_refused_naming_what_to_give_instead(tmp_path):
    from stellar.errors import StellarConfigError

    def cfg(*overrides: str):
        return _cfg("evaluate", f"paths.output_dir={tmp_path}", f"paths.log_dir={tmp_path}", *overrides)

    with pytest.raises(StellarConfigError, match=r"run_dir='s3://b/run': a train run folder is local.*model=<name>"):
        evaluate.run(cfg("run_dir=s3://b/run"))
    requests = _cfg("monitor", f"paths.output_dir={tmp_path}", "run_dir=s3://b/run", f"requests={tmp_path}")
    with pytest.raises(StellarConfigError, match="a train run folder is local"):  # the monitor's reference too
        monitor.run(requests)
    with pytest.raises(StellarConfigError, match="give exactly one of run_dir=<train run> or model=<name>"):
        evaluate.run(cfg())
    with pytest.raises(StellarConfigError, match="give exactly one of"):
        evaluate.run(cfg(f"run_dir={tmp_path}", "model_ref=spectral_cnn"))
