"""Catalogue partitions for scoring: what an input holds (files, row ranges), reading one, writing its scores.

An input is a table file (``.parquet``, ``.csv``, ``.fits``), a folder of Parquet files (any depth, e.g. a HATS
catalogue's ``Norder=*/Dir=*/Npix=*.parquet``) or a dataset folder read by the model's datamodule; each as a path
or an fsspec URL (``s3://…``; credentials from the filesystem's usual environment). Every file is cut into
:class:`Partition` s of at most ``partition_rows`` objects; each partition is scored on its own and written to one
output Parquet file, atomically (local: a temporary file renamed; object stores: one PUT), so a finished partition
is complete and a rerun skips it.

HATS catalogues are read as plain Parquet partitions, not through LSDB: LSDB 0.11 would move pandas to 3.x, which
the rest of stellar has not been run on. CSV and FITS tables are read whole for each of their partitions: use Parquet
for large catalogues.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stellar.errors import StellarDataError, StellarValueError
from stellar.utils import urls
from stellar.utils.claims import publish_local

#: Parquet key-value metadata key of an output partition (JSON: model, version, calibrator, input partition)
METADATA_KEY = b"stellar.scoring"
#: the job identity in an output folder: a rerun with another model or input is refused
JOB_FILE = "_job.json"
TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".fits", ".fit", ".fts")


@dataclasses.dataclass(frozen=True)
class Partition:
    """Objects ``start:stop`` of one input file (or of a dataset folder), scored into ``<output>/<key>.parquet``.

    Objects are rows, or for long-format light-curve tables the ids in order of first appearance.
    """

    key: str
    source: str
    start: int
    stop: int
    per_row: bool = True
    dataset: bool = False

    def identity(self) -> dict[str, Any]:
        """What the output partition's metadata records of its input."""
        return {"source": self.source, "start": self.start, "stop": self.stop}


def is_table(url: str) -> bool:
    """Whether ``url`` names a table file (by its suffix)."""
    return os.path.splitext(str(url))[1].lower() in TABLE_SUFFIXES


def read_table(url: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV, Parquet or FITS table (path or fsspec URL) as a DataFrame (FITS vector columns: arrays per cell)."""
    fs, path = urls.url_to_fs(str(url))
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in TABLE_SUFFIXES:
        raise StellarValueError(f"input={str(url)!r}: tables must be .csv, .parquet or .fits")
    with fs.open(path, "rb") as f:
        if suffix == ".csv":
            return pd.read_csv(f)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(f)
        from astropy.table import Table

        t = Table.read(io.BytesIO(f.read()), format="fits")
    return pd.DataFrame({c: list(np.asarray(t[c])) if t[c].ndim > 1 else np.asarray(t[c]) for c in t.colnames})


def input_files(url: str) -> tuple[list[str], str]:
    """The table files of ``url`` (itself, or the Parquet files under a folder, sorted) and the folder they are
    named relative to; ``([], url)`` for a folder without Parquet files (a dataset folder)."""
    fs, path = urls.url_to_fs(url)
    fs.invalidate_cache(path)
    if not fs.exists(path):
        raise StellarValueError(f"input={url!r} does not exist")
    if not fs.isdir(path):
        return [urls.spelled(fs, path)], ""
    found = sorted(p for p in fs.find(path) if p.lower().endswith((".parquet", ".pq")))
    return [urls.spelled(fs, p) for p in found], urls.spelled(fs, path.rstrip("/"))


def n_objects(url: str, per_row: bool, id_column: str) -> int:
    """Objects in a table file: rows (from the Parquet footer when it is one), or distinct ids."""
    if per_row and url.lower().endswith((".parquet", ".pq")):
        fs, path = urls.url_to_fs(url)
        with fs.open(path, "rb") as f:
            return int(pq.ParquetFile(f).metadata.num_rows)
    df = read_table(url)
    return len(df) if per_row else int(require_column(df, id_column, url).astype(str).nunique())


def partitions(
    files: list[str], base: str, counts: list[int], partition_rows: int, per_row: bool = True, dataset: bool = False
) -> list[Partition]:
    """Each file cut into partitions of at most ``partition_rows`` objects (``counts``: objects per file).

    The output key of a file's ``k``-th partition is ``<its path relative to base, without suffix>/part-<k>``
    (HATS: ``Norder=1/Dir=0/Npix=33/part-000000``), or ``part-<k>`` for a single input.
    """
    parts = []
    for url, n in zip(files, counts, strict=True):
        stem = os.path.splitext(url[len(base) :].lstrip("/"))[0] if base else ""
        for k, s in enumerate(range(0, n, partition_rows)):
            name = f"{stem}/part-{k:06d}" if stem else f"part-{k:06d}"
            parts.append(Partition(name, url, s, min(s + partition_rows, n), per_row, dataset))
    return parts


def read_partition(part: Partition, id_column: str) -> pd.DataFrame:
    """The rows of ``part``'s objects (only the Parquet row groups that hold them, for per-row tables)."""
    if part.per_row and part.source.lower().endswith((".parquet", ".pq")):
        fs, path = urls.url_to_fs(part.source)
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            sizes = np.asarray([pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)], dtype=np.int64)
            starts = np.cumsum(sizes) - sizes
            groups = np.flatnonzero((starts + sizes > part.start) & (starts < part.stop)).tolist()
            first = int(starts[groups[0]]) if groups else 0
            table = pf.read_row_groups(groups) if groups else pf.schema_arrow.empty_table()
        return table.slice(part.start - first, part.stop - part.start).to_pandas()
    df = read_table(part.source)
    if part.per_row:
        return df.iloc[part.start : part.stop].reset_index(drop=True)
    ids = require_column(df, id_column, part.source).astype(str)
    mine = set(list(dict.fromkeys(ids))[part.start : part.stop])
    return df[ids.isin(mine)].reset_index(drop=True)


def require_column(df: pd.DataFrame, name: str, where: str) -> pd.Series:
    """Column ``name`` (the id column) of ``df``, read from ``where``; a clear error when it lacks it."""
    if name not in df.columns:
        raise StellarDataError(f"id_column={name!r} is not a column of {where}: {list(df.columns)}")
    return df[name]


# ---- output ---------------------------------------------------------------------------------------------------


def output_path(out_dir: str, part: Partition) -> str:
    """The output partition of ``part`` under ``out_dir`` (a path or URL)."""
    return f"{str(out_dir).rstrip('/')}/{part.key}.parquet"


def write_partition(frame: pd.DataFrame, url: str, metadata: dict[str, Any]) -> None:
    """Write ``frame`` to ``url`` with ``metadata`` (JSON) in the Parquet key-value metadata, atomically."""
    write_bytes(url, parquet_bytes(frame, metadata))


def parquet_bytes(frame: pd.DataFrame, metadata: dict[str, Any] | None = None) -> bytes:
    """``frame`` as a Parquet file, with ``metadata`` (JSON) under :data:`METADATA_KEY`."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata)})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return bytes(buf.getvalue().to_pybytes())


def write_bytes(url: str, data: bytes) -> None:
    """``data`` to ``url`` all at once: a temporary file renamed into place on a local disk, a single PUT on object
    stores (a reader never sees part of it)."""
    fs, path = urls.url_to_fs(url)
    fs.makedirs(os.path.dirname(path), exist_ok=True)
    if urls.is_local(fs):
        # flushed to disk before the rename (a renamed file that a power cut leaves empty would count as finished),
        # and the temporary file removed if anything fails
        publish_local(path, data, os.replace)
    else:
        fs.pipe_file(path, data)


def partition_metadata(url: str) -> dict[str, Any]:
    """The scoring metadata of an output partition (model, version, calibrator, input partition)."""
    fs, path = urls.url_to_fs(url)
    with fs.open(path, "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    return dict(json.loads(meta[METADATA_KEY])) if METADATA_KEY in meta else {}


def finished(out_dir: str) -> set[str]:
    """Output partitions already written under ``out_dir`` (paths relative to it, without ``.parquet``)."""
    fs, path = urls.url_to_fs(out_dir)
    fs.invalidate_cache(path)
    if not fs.isdir(path):
        return set()
    root = path.rstrip("/") + "/"
    return {p[len(root) : -len(".parquet")] for p in fs.find(path) if p.endswith(".parquet")}


def input_identity(files: list[str], base: str) -> dict[str, Any]:
    """The input's identity for the job file: its location and a digest of every file's size and version key
    (mtime-based locally, the ETag on S3), so that a changed input is never mixed with old scores."""
    h = hashlib.sha256()
    for url in files:
        fs, path = urls.url_to_fs(url)
        h.update(f"{url}\0{fs.size(path)}\0{fs.ukey(path)}\n".encode())
    return {"input": base or (files[0] if files else ""), "files": len(files), "digest": h.hexdigest()[:16]}


def claim_job(out_dir: str, key: dict[str, Any], replace: bool = False) -> None:
    """Write the job identity to ``<out_dir>/_job.json``, or check the one there: a different job is refused, or
    replaced when ``replace`` (the output holds no partition of it yet)."""
    fs, path = urls.url_to_fs(out_dir)
    job = f"{path.rstrip('/')}/{JOB_FILE}"
    fs.invalidate_cache(path)
    if fs.exists(job) and not replace:
        theirs = json.loads(fs.cat_file(job))
        if theirs != key:
            raise StellarValueError(
                f"output={out_dir!r} holds partitions of another job ({theirs}); this one is {key}: remove it to "
                "start over, or choose another output"
            )
        return
    fs.makedirs(path, exist_ok=True)
    fs.pipe_file(job, json.dumps(key).encode())


def join(out_dir: str, parts: list[Partition]) -> pd.DataFrame:
    """The output partitions of ``parts``, in input order, as one frame."""
    frames = [pd.read_parquet(output_path(out_dir, p)) for p in parts]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def remove(out_dir: str) -> None:
    """Remove the output folder (after its partitions were joined into one file)."""
    fs, path = urls.url_to_fs(out_dir)
    fs.rm(path, recursive=True)
