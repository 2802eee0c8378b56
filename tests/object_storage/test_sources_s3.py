"""Sources, the dataset store and ingestion read (and write) on the local S3 API exactly as on a local folder."""

from __future__ import annotations

import fsspec
import numpy as np
import pandas as pd
import pytest

from stellar.data.catalogs import read_table
from stellar.data.ingest.manifest import Manifest
from stellar.data.ingest.runner import ingest_files
from stellar.data.preprocess.spectra import SpectrumPreprocessing
from stellar.data.sources import HipparcosSource, MilesSource, SDSS17Source
from stellar.data.sources.lightcurve import ErosSource, SesarRRLyraeSource
from stellar.data.sources.paired import MilesPairedSource
from stellar.data.store import DatasetStore
from stellar.errors import StellarDataError
from tests.conftest import DATA


def upload(local: object, url: str) -> str:
    """Copy a local folder to ``url`` (what ``aws s3 cp --recursive`` does) and return ``url``."""
    fsspec.filesystem("s3").put(str(local), url[5:], recursive=True)
    return url


@pytest.mark.parametrize(
    ("source", "folder"),
    [
        (MilesSource, DATA / "miles_subset"),
        (SDSS17Source, DATA / "sed" / "sdss17"),
        (HipparcosSource, DATA / "sed" / "hipparcos"),
        (ErosSource, DATA / "lightcurves" / "eros_subset"),
        (SesarRRLyraeSource, DATA / "lightcurves" / "sesar_subset"),
    ],
)
def test_a_source_names_its_s3_folder_as_the_local_one(s3_bucket, source, folder):
    # the dataset name hashes every input file's bytes: equal names mean every file was found and read whole
    url = upload(folder, f"{s3_bucket}/data/{folder.name}")
    assert source(url).dataset_name({}) == source(str(folder)).dataset_name({})


def test_miles_from_s3_builds_the_local_dataset_and_records_the_url(s3_bucket):
    url = upload(DATA / "miles_subset", f"{s3_bucket}/miles")
    prep = SpectrumPreprocessing()
    remote, local = MilesSource(url).build(prep), MilesSource(str(DATA / "miles_subset")).build(prep)
    for key in ("flux", "ivar", "mask"):
        np.testing.assert_array_equal(remote["arrays"][key], local["arrays"][key])
    pd.testing.assert_frame_equal(remote["meta"], local["meta"])
    assert remote["provenance"]["data_dir"] == url  # the URL, never a cached copy's path
    assert local["provenance"]["data_dir"] == str((DATA / "miles_subset").resolve())


def test_sdss17_reads_a_gzipped_table_from_s3(s3_bucket):
    url = upload(DATA / "sed" / "sdss17", f"{s3_bucket}/sdss17")
    remote, local = SDSS17Source(url).read(), SDSS17Source(str(DATA / "sed" / "sdss17")).read()
    assert len(remote) > 0
    pd.testing.assert_frame_equal(remote, local)


def test_the_paired_source_reads_its_folder_and_catalogues_from_s3(s3_bucket):
    data = upload(DATA / "miles_subset", f"{s3_bucket}/miles")
    cats = upload(DATA / "paired", f"{s3_bucket}/paired")
    remote = MilesPairedSource(
        data, bsc5=f"{cats}/bsc5_miles_subset.dat", hipparcos=f"{cats}/hip2_miles_subset.dat"
    ).objects()
    local = MilesPairedSource(
        str(DATA / "miles_subset"),
        bsc5=str(DATA / "paired" / "bsc5_miles_subset.dat"),
        hipparcos=str(DATA / "paired" / "hip2_miles_subset.dat"),
    ).objects()
    assert remote.table["has_sed"].sum() > 0  # the cross-match found BSC5 stars
    pd.testing.assert_frame_equal(remote.table, local.table)


def test_a_fits_catalogue_on_s3_is_read_like_the_local_file(s3_bucket, tmp_path):
    from astropy.table import Table

    path = tmp_path / "cat.fits"
    Table({"name": ["a", "b"], "ra": [1.5, 2.5], "dec": [-3.0, 4.0]}).write(path)
    fsspec.filesystem("s3").put(str(path), f"{s3_bucket[5:]}/cat.fits")
    pd.testing.assert_frame_equal(read_table(f"{s3_bucket}/cat.fits"), read_table(path))
    assert list(read_table(f"{s3_bucket}/cat.fits")["name"]) == ["a", "b"]  # FITS bytes decoded as for a path
    with pytest.raises(StellarDataError, match="no such file"):
        read_table(f"{s3_bucket}/missing.fits")


def test_a_missing_file_on_s3_names_the_folder(s3_bucket):
    fsspec.filesystem("s3").pipe_file(f"{s3_bucket[5:]}/half/miles_params.csv", b"name,miles_id\n")
    with pytest.raises(StellarDataError, match=r"data_dir: MILES folder 's3://.*/half' lacks miles_spectra.npz"):
        MilesSource(f"{s3_bucket}/half").dataset_name({})
    with pytest.raises(StellarDataError, match="is not a folder"):
        ErosSource(f"{s3_bucket}/nothing-here").dataset_name({})


def test_the_dataset_store_on_s3_lists_opens_reads_and_refuses_overwrites(s3_bucket):
    store = DatasetStore(f"{s3_bucket}/store")
    assert store.list() == [] and not store.exists("demo")
    meta = pd.DataFrame({"object_id": ["a", "b", "c"], "survey": "sim", "ra": [0.0, 1.0, 2.0], "dec": 0.0})
    flux = np.arange(12, dtype="f4").reshape(3, 4)
    store.write("demo", {"flux": flux}, meta, modality="spectra", grid={"log_wave": np.linspace(3.6, 3.9, 4)})
    other = DatasetStore(f"{s3_bucket}/store")  # another process's view of the same root
    assert other.list() == ["demo"] and other.exists("demo")
    ds = other.open("demo")
    np.testing.assert_array_equal(ds.load("flux", np.array([0, 2])), flux[[0, 2]])
    assert list(ds.meta["object_id"]) == ["a", "b", "c"] and ds.grid("log_wave").shape == (4,)
    with pytest.raises(StellarDataError, match="already exists"):
        other.write("demo", {"flux": flux * 0}, meta, modality="spectra")
    np.testing.assert_array_equal(store.open("demo").load("flux"), flux)  # nothing stored was touched


def test_ingest_reads_an_s3_folder_into_an_s3_store(s3_bucket, tmp_path):
    folder = upload(DATA / "raw" / "lamost", f"{s3_bucket}/raw/lamost")
    store = DatasetStore(f"{s3_bucket}/store")
    report = ingest_files(folder, store=store, manifest=Manifest(tmp_path / "m.jsonl"), progress=False)
    local_store = DatasetStore(tmp_path / "store")
    local = ingest_files(DATA / "raw" / "lamost", store=local_store, manifest=Manifest(tmp_path / "l.jsonl"))
    assert report.n_failed == 0 and report.n_done == local.n_done > 0
    (name,), (local_name,) = report.datasets, local.datasets  # the LAMOST spectra, one dataset
    ds, ref = store.open(name), local_store.open(local_name)
    assert ds.fields == ref.fields and ds.n_rows == ref.n_rows == local.n_done
    for field in ds.fields:
        np.testing.assert_array_equal(ds.load(field), ref.load(field))
    # each record names the file it came from: the URL on S3 (hence another dataset name), the path locally
    assert all(s.startswith(f"{folder}/") for s in ds.meta["source"])
    pd.testing.assert_frame_equal(ds.meta.drop(columns="source"), ref.meta.drop(columns="source"))
    assert ds.attrs["provenance"]["input_dir"] == folder
    assert sorted(ds.attrs["provenance"]["file_sha256"].values()) == sorted(
        ref.attrs["provenance"]["file_sha256"].values()
    )


def test_ingest_refuses_a_raw_cache_on_object_storage(tmp_path):
    from hydra import compose, initialize_config_dir

    from stellar.errors import StellarConfigError
    from stellar.pipelines.ingest import run
    from tests.conftest import REPO

    overrides = [f"input_dir={DATA / 'raw' / 'lamost'}", f"store={tmp_path / 'store'}", "cache_dir=s3://b/cache"]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("ingest", overrides=overrides)
    with pytest.raises(StellarConfigError, match=r"cache_dir='s3://b/cache': the raw cache and its manifests"):
        run(cfg)
    assert not (tmp_path / "store").exists()  # refused before anything was written
