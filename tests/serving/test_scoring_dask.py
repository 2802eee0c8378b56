"""Catalogue scoring of partitioned Parquet: on Dask as in-process, resuming by partition, metadata, S3, the
Hydra entry point with today's flags, SED rows, and clear errors for bad input."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from stellar import score as score_cli
from stellar.errors import StellarConfigError, StellarDataError, StellarError, StellarValueError
from stellar.registry import ModelRegistry
from stellar.serving import catalogue, scoring
from stellar.serving.executors import DaskCluster, Synchronous
from tests.conftest import DATA, REPO

SDSS17 = DATA / "sed" / "sdss17"


def _compose(*overrides: str, name: str = "score") -> object:
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose(name, overrides=list(overrides))


def _hats(df: pd.DataFrame, root: Path) -> Path:
    """``df`` as a HATS-like folder: three pixels, one of them in two row groups."""
    cuts = [0, 250, 450, len(df)]
    for k, (a, b) in enumerate(itertools.pairwise(cuts)):
        path = root / f"Norder=1/Dir=0/Npix={k}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(df.iloc[a:b], preserve_index=False), path, row_group_size=120)
    return root


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """One in-process Dask cluster (1 worker, 2 threads) for the module: an existing cluster, cluster.address=."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("object_id", kind="stable").reset_index(drop=True)


def _folder(out: Path) -> pd.DataFrame:
    """Every output partition under ``out`` (read one by one: pandas would add the Norder/Dir/Npix of the
    folder names as columns)."""
    return pd.concat([pd.read_parquet(p) for p in sorted(out.rglob("*.parquet"))], ignore_index=True)


def test_score_config_composes_with_each_cluster(tmp_path):
    cfg = _compose("model_ref=sed_xgboost@production", "input=a.parquet", f"output={tmp_path}/o")
    assert cfg.partition_rows == 100000 and cfg.id_column == "object_id"
    dask = instantiate(cfg.cluster)
    assert isinstance(dask, DaskCluster) and (dask.n_workers, dask.threads_per_worker, dask.processes) == (2, 1, True)
    assert instantiate(_compose("cluster=none", "model_ref=m", "input=i", "output=o").cluster).__class__ is Synchronous
    remote = instantiate(_compose("cluster.address=tcp://10.0.0.1:8786", "model_ref=m", "input=i", "output=o").cluster)
    assert remote.address == "tcp://10.0.0.1:8786"


def test_old_flags_become_overrides():
    argv = ["--model", "sed_xgboost", "--ref=production", "--input", "c.parquet", "--output", "s.csv"]
    argv += ["--id-column", "objid", "--chunk-size", "500", "--root", "/r", "cluster=none"]
    assert score_cli.flag_overrides(argv) == [
        "model_ref=sed_xgboost@production",
        "input=c.parquet",
        "output=s.csv",
        "id_column=objid",
        "partition_rows=500",
        "registry.root=/r",
        "cluster=none",
    ]
    assert score_cli.flag_overrides(["model=spectral_cnn@3", "input=x"]) == ["model_ref=spectral_cnn@3", "input=x"]
    with pytest.raises(StellarValueError, match="--ref needs --model"):
        score_cli.flag_overrides(["--ref", "3"])
    with pytest.raises(StellarValueError, match="--input needs a value"):
        score_cli.flag_overrides(["--input"])


def test_dask_equals_in_process_loads_the_model_once_and_records_it(
    sed_version, sdss_rows, tmp_path, dask_address, monkeypatch
):
    src = _hats(sdss_rows, tmp_path / "hats")
    kw = {"model": sed_version.name, "registry_root": str(sed_version.registry.root), "progress": False}
    sync = scoring.score(src, tmp_path / "sync", partition_rows=100, **kw)
    assert (sync.partitions, len(sync.computed), sync.n_computed) == (7, 7, 600)  # 250 → 3, 200 → 2, 150 → 2
    loads: list[int] = []
    real = scoring._predictor_for
    monkeypatch.setattr(scoring, "_predictor_for", lambda v: loads.append(v.version) or real(v))
    scoring._cached_predictor.cache_clear()
    dask = scoring.score(src, tmp_path / "dask", partition_rows=100, executor=DaskCluster(address=dask_address), **kw)
    assert loads == [sed_version.version]  # one worker (two threads), seven partitions: loaded once
    assert sorted(dask.computed) == sorted(sync.computed)
    assert sorted(p.name for p in (tmp_path / "dask" / "Norder=1/Dir=0/Npix=0").iterdir()) == [
        "part-000000.parquet",
        "part-000001.parquet",
        "part-000002.parquet",
    ]
    a, b = _sorted(_folder(tmp_path / "sync")), _sorted(_folder(tmp_path / "dask"))
    pd.testing.assert_frame_equal(a, b)  # exact
    assert list(a["object_id"]) == sorted(sdss_rows["object_id"]) and (a["error"] == "").all()
    probs = a[["p_STAR", "p_GALAXY", "p_QSO"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-6)
    truth = sdss_rows.set_index("object_id").loc[a["object_id"], "class"].to_numpy()
    assert (a["predicted_class"].to_numpy() == truth).mean() > 0.7  # trained on (part of) these rows
    meta = catalogue.partition_metadata(str(tmp_path / "dask" / "Norder=1/Dir=0/Npix=0/part-000002.parquet"))
    assert meta["model"] == "sed_xgboost" and meta["version"] == sed_version.version
    assert meta["calibrator"] == "TemperatureScaler"
    assert meta["input"]["source"].endswith("Norder=1/Dir=0/Npix=0.parquet")
    assert (meta["input"]["start"], meta["input"]["stop"]) == (200, 250)


def test_sed_rows_score_as_the_models_own_datamodule_reads_them(sed_version, sdss_rows, tmp_path):
    """The table's u…z columns as SED requests give the predictions of the dataset path (the training datamodule
    through the store, which keeps magnitudes as float32) on the same objects."""
    kw = {"model": sed_version.name, "registry_root": str(sed_version.registry.root), "progress": False}
    as_stored = sdss_rows.astype({b: np.float32 for b in "ugriz"})
    as_stored.to_parquet(tmp_path / "rows.parquet")
    rows = scoring.score(tmp_path / "rows.parquet", tmp_path / "rows_out.parquet", partition_rows=256, **kw).frame
    folder = scoring.score(SDSS17, tmp_path / "dm.parquet", store_root=str(tmp_path / "store"), **kw).frame
    assert rows is not None and folder is not None and len(rows) == len(folder) == 600
    a, b = _sorted(rows), _sorted(folder)
    assert list(a["object_id"]) == list(b["object_id"])
    cols = ["p_STAR", "p_GALAXY", "p_QSO", "ood_score"]
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), rtol=1e-6, atol=1e-7)


def test_resume_computes_only_unfinished_partitions_and_refuses_another_job(
    sed_version, sdss_rows, tmp_path, monkeypatch
):
    kw = {"model": sed_version.name, "registry_root": str(sed_version.registry.root), "progress": False}
    src = _hats(sdss_rows, tmp_path / "hats")
    real = scoring.score_partition
    seen: list[str] = []

    def interrupted(part, job, out_dir):
        if len(seen) == 3:
            raise KeyboardInterrupt  # killed while scoring the fourth partition
        seen.append(part.key)
        return real(part, job, out_dir)

    monkeypatch.setattr(scoring, "score_partition", interrupted)
    with pytest.raises(KeyboardInterrupt):
        scoring.score(src, tmp_path / "out", partition_rows=100, **kw)
    assert len(catalogue.finished(str(tmp_path / "out"))) == 3
    monkeypatch.setattr(scoring, "score_partition", real)
    resumed = scoring.score(src, tmp_path / "out", partition_rows=100, **kw)
    assert len(resumed.computed) == 4 and set(resumed.computed).isdisjoint(seen)
    assert resumed.n_computed == 600 - 250  # the first pixel's three partitions were done
    again = scoring.score(src, tmp_path / "out", partition_rows=100, **kw)
    assert again.computed == [] and again.objects_per_second == 0.0
    fresh = scoring.score(src, tmp_path / "fresh", partition_rows=100, **kw)
    pd.testing.assert_frame_equal(_sorted(_folder(tmp_path / "out")), _sorted(_folder(tmp_path / "fresh")))

    before = sorted(p.read_bytes() for p in (tmp_path / "out").rglob("*.parquet"))
    with pytest.raises(StellarValueError, match="another job"):
        scoring.score(src, tmp_path / "out", partition_rows=50, **kw)  # other partitions
    pq.write_table(
        pa.Table.from_pandas(sdss_rows.iloc[:10], preserve_index=False), src / "Norder=1/Dir=0/Npix=2.parquet"
    )
    with pytest.raises(StellarValueError, match="another job"):
        scoring.score(src, tmp_path / "out", partition_rows=100, **kw)  # a changed input
    assert sorted(p.read_bytes() for p in (tmp_path / "out").rglob("*.parquet")) == before  # nothing lost
    assert fresh.partitions == 7


def test_a_failed_start_does_not_lock_its_output(sed_version, sdss_rows, tmp_path):
    """A run that wrote no partition (here: a missing id column) leaves a job file that the fixed input replaces."""
    kw = {"model": sed_version.name, "registry_root": str(sed_version.registry.root), "progress": False}
    sdss_rows.drop(columns=["object_id"]).to_parquet(tmp_path / "rows.parquet")
    with pytest.raises(StellarDataError, match="id_column='object_id' is not a column"):
        scoring.score(tmp_path / "rows.parquet", tmp_path / "out", **kw)
    assert (tmp_path / "out" / "_job.json").is_file() and not catalogue.finished(str(tmp_path / "out"))
    sdss_rows.to_parquet(tmp_path / "rows.parquet")
    assert scoring.score(tmp_path / "rows.parquet", tmp_path / "out", **kw).n_computed == 600


def test_s3_input_and_output(sed_version, sdss_rows, tmp_path, s3_bucket, dask_address):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    for path in _hats(sdss_rows, tmp_path / "hats").rglob("*.parquet"):
        fs.put_file(str(path), f"{s3_bucket}/cat/{path.relative_to(tmp_path / 'hats')}")
    kw = {"model": sed_version.name, "registry_root": str(sed_version.registry.root), "progress": False}
    out = f"{s3_bucket}/scores"
    remote = scoring.score(
        f"{s3_bucket}/cat", out, partition_rows=100, executor=DaskCluster(address=dask_address), **kw
    )
    assert remote.partitions == 7 and len(remote.computed) == 7
    assert scoring.score(f"{s3_bucket}/cat", out, partition_rows=100, **kw).computed == []  # resumed: all done
    local = scoring.score(tmp_path / "hats", tmp_path / "local", partition_rows=100, **kw)
    assert local.partitions == 7
    got = pd.concat([pd.read_parquet(f"s3://{p}") for p in fs.find(out) if p.endswith(".parquet")])
    pd.testing.assert_frame_equal(_sorted(got), _sorted(_folder(tmp_path / "local")))
    fs.put(str(sed_version.registry.root), f"{s3_bucket}/registry", recursive=True)
    on_s3 = {**kw, "registry_root": f"{s3_bucket}/registry"}  # catalogue, scores and registry all on S3
    joined = scoring.score(f"{s3_bucket}/cat", f"{s3_bucket}/one.csv", partition_rows=1000, **on_s3)
    assert joined.frame is not None and len(pd.read_csv(f"{s3_bucket}/one.csv")) == 600
    assert not fs.exists(f"{s3_bucket}/one.csv.parts")
    pd.testing.assert_frame_equal(_sorted(joined.frame), _sorted(got).reset_index(drop=True), check_dtype=False)


def test_entry_point_with_todays_flags(sed_version, sdss_rows, tmp_path):
    sdss_rows.rename(columns={"object_id": "objid"}).to_csv(tmp_path / "rows.csv", index=False)
    argv = ["--model", sed_version.name, "--ref", "latest", "--input", str(tmp_path / "rows.csv")]
    argv += ["--output", str(tmp_path / "s.csv"), "--id-column", "objid", "--chunk-size", "200"]
    argv += ["--root", str(sed_version.registry.root), "cluster=none", "progress=false"]
    assert score_cli.main([*argv, f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    out = pd.read_csv(tmp_path / "s.csv")
    assert list(out["objid"]) == list(sdss_rows["object_id"]) and (out["error"].isna() | (out["error"] == "")).all()


def test_bad_input_gives_clear_errors(sed_version, sdss_rows, tmp_path, capsys):
    kw = {"model": sed_version.name, "registry_root": str(sed_version.registry.root), "progress": False}
    sdss_rows.drop(columns=["u", "g", "r", "i", "z"]).to_parquet(tmp_path / "nobands.parquet")
    with pytest.raises(StellarDataError, match=r"no magnitude column of the model's bands \['sdss_u'"):
        scoring.score(tmp_path / "nobands.parquet", tmp_path / "o1", **kw)
    with pytest.raises(StellarDataError, match="id_column='objid' is not a column"):
        sdss_rows.to_parquet(tmp_path / "rows.parquet")
        scoring.score(tmp_path / "rows.parquet", tmp_path / "o2", id_column="objid", **kw)
    (tmp_path / "empty").mkdir()
    sdss_rows.iloc[:0].to_parquet(tmp_path / "empty" / "p.parquet")
    with pytest.raises(StellarDataError, match="holds no objects"):
        scoring.score(tmp_path / "empty", tmp_path / "o3", **kw)
    with pytest.raises(StellarError, match="nope"):
        scoring.score(tmp_path / "rows.parquet", tmp_path / "o4", **{**kw, "model": "nope"})
    with pytest.raises(StellarValueError, match="partition_rows must be >= 1"):
        scoring.score(tmp_path / "rows.parquet", tmp_path / "o5", partition_rows=0, **kw)
    with pytest.raises(StellarValueError, match="or be a folder"):
        scoring.score(tmp_path / "rows.parquet", tmp_path / "o6.json", **kw)
    version = ModelRegistry(sed_version.registry.root).get(sed_version.name)
    version.manifest["modality"] = "radio"
    with pytest.raises(StellarConfigError, match="scorable"):
        scoring.modality_of(version)
    argv = ["model=nope", f"input={tmp_path / 'rows.parquet'}", f"output={tmp_path / 'o7'}", "cluster=none"]
    assert score_cli.main([*argv, f"registry.root={sed_version.registry.root}", f"hydra.run.dir={tmp_path}"]) == 2
    assert "nope" in capsys.readouterr().err


# a process worker's start-up (~8 s); the Dask executor's equality with in-process runs by default above
@pytest.mark.slow
def test_run_on_a_local_cluster_of_one_process_worker(sed_version, sdss_rows, tmp_path):
    """The default executor (conf/cluster/local.yaml) with one worker process, through ``run(cfg)``."""
    from stellar.pipelines.score import run

    src = _hats(sdss_rows, tmp_path / "hats")
    args = [f"input={src}", f"registry.root={sed_version.registry.root}", "partition_rows=200", "progress=false"]
    cfg = _compose(f"model_ref={sed_version.name}@{sed_version.version}", f"output={tmp_path / 'out'}", *args)
    metrics, objects = run(OmegaConf.merge(cfg, {"cluster": {"n_workers": 1}}))
    assert metrics["n_objects"] == 600 and metrics["partitions"] == metrics["computed"] == 4  # 250 → 2, 200, 150
    assert metrics["n_errors"] is None and objects["result"].objects_per_second > 0
    sync = scoring.score(
        src,
        tmp_path / "sync",
        sed_version.name,
        registry_root=str(sed_version.registry.root),
        partition_rows=200,
        progress=False,
    )
    pd.testing.assert_frame_equal(_sorted(_folder(tmp_path / "out")), _sorted(_folder(tmp_path / "sync")))
    assert sync.partitions == 4


def test_a_partition_write_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    """The local output partition is written to a temporary file that is renamed into place; a failed rename (a full
    disk, a killed process between the two) leaves neither the partition (which would count as finished) nor a
    ``.tmp`` file."""
    import os

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="No space"):
        catalogue.write_partition(pd.DataFrame({"x": [1.0]}), str(tmp_path / "out" / "part-000000.parquet"), {})
    assert list((tmp_path / "out").iterdir()) == [] and catalogue.finished(str(tmp_path / "out")) == set()


def test_resume_refuses_a_different_model_with_the_same_name_and_version(sed_version, sdss_rows, tmp_path):
    """Another registry holding another ``sed_xgboost:v1`` (other weights) must not resume this model's output: the
    job identity is the version's files (their SHA-256), not its tag."""
    import shutil

    src = tmp_path / "rows.parquet"
    sdss_rows.iloc[:200].to_parquet(src)
    kw = {"model": sed_version.name, "partition_rows": 100, "progress": False}
    scoring.score(src, tmp_path / "out", registry_root=str(sed_version.registry.root), **kw)
    other = tmp_path / "other-registry"
    shutil.copytree(sed_version.registry.root, other)
    primary = sed_version.manifest["artifact"]["primary"]
    vdir = other / sed_version.name / "versions" / f"v{sed_version.version}"
    (vdir / primary).write_bytes((vdir / primary).read_bytes() + b" ")  # another model, registered as v1 there
    manifest = (vdir / "manifest.json").read_text()
    (vdir / "manifest.json").write_text(manifest.replace(sed_version.manifest["files"][primary], "0" * 64))
    with pytest.raises(StellarValueError, match="another job"):
        scoring.score(src, tmp_path / "out", registry_root=str(other), **kw)
    moved = tmp_path / "moved-registry"  # the same model in a registry moved elsewhere resumes
    shutil.copytree(sed_version.registry.root, moved)
    assert scoring.score(src, tmp_path / "out", registry_root=str(moved), **kw).computed == []


def test_a_writer_killed_before_its_rename_leaves_the_output_folder_readable(tmp_path, monkeypatch):
    """A process killed between writing a partition's temporary file and renaming it (nothing removes the file then)
    leaves it hidden: the folder read as a Parquet dataset holds the finished partitions only, not the orphan too."""
    import os

    out = tmp_path / "out"
    catalogue.write_partition(pd.DataFrame({"x": [1.0]}), str(out / "part-000000.parquet"), {})

    def killed(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    monkeypatch.setattr(os, "unlink", lambda path: None)  # a killed process cleans nothing up
    with pytest.raises(KeyboardInterrupt):
        catalogue.write_partition(pd.DataFrame({"x": [2.0]}), str(out / "part-000001.parquet"), {})
    monkeypatch.undo()
    assert len(list(out.iterdir())) == 2  # the orphan is there
    assert catalogue.finished(str(out)) == {"part-000000"}
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.DataFrame({"x": [1.0]}))


@pytest.mark.parametrize("where", ["in_process", "dask"])
def test_a_partition_that_fails_names_itself(where, sed_version, sdss_rows, tmp_path, request):
    """A corrupt row group (the footer intact, so planning succeeds) fails its partition with an error that names the
    file and the objects, in this process and from a Dask worker, and the partitions written before it stay."""
    kw = {"model": sed_version.name, "registry_root": str(sed_version.registry.root), "progress": False}
    src = tmp_path / "rows.parquet"
    sdss_rows.to_parquet(src, row_group_size=300)
    data = bytearray(src.read_bytes())
    start = pq.ParquetFile(src).metadata.row_group(1).column(1).data_page_offset
    data[start + 20 : start + 400] = b"\xff" * 380  # the second row group's pages, after the first's
    src.write_bytes(bytes(data))
    executor = DaskCluster(address=request.getfixturevalue("dask_address")) if where == "dask" else Synchronous()
    with pytest.raises(StellarDataError, match=r"partition part-000001 \(objects 300:600 of .*rows\.parquet\)"):
        scoring.score(src, tmp_path / "out", partition_rows=300, executor=executor, **kw)
    done = catalogue.finished(str(tmp_path / "out"))  # on Dask the first may still be running when the run stops
    assert done == {"part-000000"} if where == "in_process" else done <= {"part-000000"}
