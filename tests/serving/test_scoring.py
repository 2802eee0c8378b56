"""Catalogue scoring: table formats, per-object errors, resuming after an interruption."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stellar import score as score_cli
from stellar.errors import StellarValueError
from stellar.serving import scoring


@pytest.fixture
def table(tmp_path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n, m = 7, 40
    flux = 1 + 0.05 * rng.normal(size=(n, m))
    flux[3] = np.nan  # an object with no data: its row gets an error, the others are scored
    df = pd.DataFrame({"object_id": [f"star{i}" for i in range(n)]})
    df["flux"] = list(flux)
    df["redshift"] = 0.0
    return df


def test_parquet_csv_and_fits_tables(table, tmp_path, spectral_version, registry_root):
    kw = {"model": spectral_version.name, "registry_root": str(registry_root), "partition_rows": 3, "progress": False}
    table.to_parquet(tmp_path / "in.parquet")
    a = scoring.score(tmp_path / "in.parquet", tmp_path / "out.parquet", **kw).frame
    assert list(a["object_id"]) == list(table["object_id"])
    assert (a["error"] != "").tolist() == [i == 3 for i in range(7)] and "finite" in a["error"][3]
    ok = a[a["error"] == ""]
    probs = ok[[f"p_{c}" for c in spectral_version.class_names]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5) and ok["teff_std"].gt(0).all()
    assert pd.read_parquet(tmp_path / "out.parquet").equals(a)
    assert not (tmp_path / "out.parquet.parts").exists()

    wide = pd.DataFrame(np.stack(table["flux"]), columns=[f"flux_{j}" for j in range(40)])
    wide.insert(0, "object_id", table["object_id"])
    wide.to_csv(tmp_path / "in.csv", index=False)
    b = scoring.score(tmp_path / "in.csv", tmp_path / "out.csv", **{**kw, "partition_rows": 100}).frame
    assert np.allclose(b["p_G"].fillna(-1), a["p_G"].fillna(-1), atol=1e-6)

    from astropy.table import Table

    ids = table["object_id"].to_numpy().astype(str)
    Table({"object_id": ids, "flux": np.stack(table["flux"])}).write(tmp_path / "in.fits")
    c = scoring.score(tmp_path / "in.fits", tmp_path / "out_fits.csv", **kw).frame
    assert np.allclose(c["p_G"].fillna(-1), a["p_G"].fillna(-1), atol=1e-6)


def test_resumes_without_redoing_finished_chunks(table, tmp_path, spectral_version, registry_root, monkeypatch):
    kw = {"model": spectral_version.name, "registry_root": str(registry_root), "partition_rows": 2, "progress": False}
    table.to_parquet(tmp_path / "in.parquet")
    calls: list[int] = []
    real = scoring._score_requests

    def flaky(predictor, items):
        calls.append(len(items))
        if len(calls) == 3:
            raise KeyboardInterrupt  # interrupted during the third chunk
        return real(predictor, items)

    monkeypatch.setattr(scoring, "_score_requests", flaky)
    with pytest.raises(KeyboardInterrupt):
        scoring.score(tmp_path / "in.parquet", tmp_path / "out.parquet", **kw)
    parts = sorted(p.name for p in (tmp_path / "out.parquet.parts").glob("part-*"))
    assert parts == ["part-000000.parquet", "part-000001.parquet"]
    calls.clear()
    monkeypatch.setattr(scoring, "_score_requests", lambda p, items: calls.append(len(items)) or real(p, items))
    resumed = scoring.score(tmp_path / "in.parquet", tmp_path / "out.parquet", **kw).frame
    assert calls == [2, 1]  # only chunks 2 and 3 were computed again
    monkeypatch.undo()
    fresh = scoring.score(tmp_path / "in.parquet", tmp_path / "fresh.parquet", **kw).frame
    pd.testing.assert_frame_equal(resumed, fresh)


def test_bad_arguments_name_the_problem(tmp_path, spectral_version, registry_root):
    kw = {"model": spectral_version.name, "registry_root": str(registry_root), "progress": False}
    with pytest.raises(StellarValueError, match="does not exist"):
        scoring.score(tmp_path / "nope.csv", tmp_path / "o.csv", **kw)
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(StellarValueError, match="must end in"):
        scoring.score(tmp_path / "t.txt", tmp_path / "o.json", **kw)
    assert (
        score_cli.main(
            [
                "--model",
                "nope",
                "--input",
                str(tmp_path / "t.txt"),
                "--output",
                "o.csv",
                f"registry.root={registry_root}",
                f"hydra.run.dir={tmp_path / 'run'}",
            ]
        )
        == 2
    )


@pytest.mark.parametrize("streaming", [False, True], ids=["in_memory", "streaming"])
def test_dataset_folder_through_the_models_datamodule(tmp_path, miles_dir, streaming):
    from tests.serving.helpers import register_untrained

    # a model trained with datamodule.streaming=true reads the folder through a streamed test part
    flag = f"datamodule.streaming={str(streaming).lower()}"
    v = register_untrained(tmp_path / "reg", "spectral_cnn", "miles", f"datamodule.data_dir={miles_dir}", flag)
    out = scoring.score(
        miles_dir,
        tmp_path / "miles.csv",
        model=v.name,
        registry_root=str(tmp_path / "reg"),
        partition_rows=50,
        progress=False,
        store_root=str(tmp_path / "store"),
    ).frame
    assert len(out) > 0 and out["object_id"].is_unique and (out["error"] == "").all()
    probs = out[[f"p_{c}" for c in v.class_names]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_a_changed_file_of_a_dataset_folder_is_not_resumed(tmp_path, miles_dir):
    """The job identity of a dataset folder covers its files, not the folder entry (whose size and mtime stay the same
    when a file in it is rewritten): a rerun over a changed folder is refused, never mixed with the old scores."""
    import os
    import shutil

    from tests.serving.helpers import register_untrained

    src = tmp_path / "miles"
    shutil.copytree(miles_dir, src)
    v = register_untrained(tmp_path / "reg", "spectral_cnn", "miles", f"datamodule.data_dir={src}")
    kw = {"model": v.name, "registry_root": str(tmp_path / "reg"), "partition_rows": 50, "progress": False,
          "store_root": str(tmp_path / "store")}  # fmt: skip
    assert scoring.score(src, tmp_path / "out", **kw).computed
    params = src / "miles_params.csv"
    params.write_bytes(params.read_bytes())  # rewritten in place (new content, as far as its mtime says)
    os.utime(params, ns=(params.stat().st_atime_ns, params.stat().st_mtime_ns + 10**9))
    with pytest.raises(StellarValueError, match="another job"):
        scoring.score(src, tmp_path / "out", **kw)
