"""Build a stored dataset piece by piece, for datasets larger than memory.

:meth:`DatasetStore.write <stellar.data.store.DatasetStore.write>` takes whole arrays. :func:`write_in_chunks`
writes the same format (the same groups, attributes and ``content_hash``) from an iterable of row blocks, holding
one block at a time: the arrays are created at their final size and filled block by block, the hash is computed by
reading them back chunk by chunk, and ``complete`` is written last (on a local disk the group is built beside its
final place and renamed, as :meth:`DatasetStore.write` does). Only the metadata table is gathered in memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from stellar import __version__
from stellar.data.store import REQUIRED_META, Dataset, DatasetStore, _child, _meta_column
from stellar.errors import StellarDataError, StellarValueError
from stellar.utils.names import validate_name

log = logging.getLogger(__name__)

Block = tuple[Mapping[str, np.ndarray], pd.DataFrame]


def _streamed_hash(arrays: zarr.Group, grid: Mapping[str, np.ndarray], meta: pd.DataFrame, step: int) -> str:
    """:func:`stellar.data.store.content_hash` of the stored arrays, read ``step`` rows at a time."""
    h = hashlib.sha256()
    for key in sorted(arrays.array_keys()):
        a = _child(arrays, key, zarr.Array)
        h.update(f"arrays/{key}:{np.dtype(a.dtype).str}:{tuple(a.shape)}".encode())
        for s in range(0, a.shape[0], step):
            h.update(np.ascontiguousarray(a[s : s + step]).tobytes())
    for key in sorted(grid):
        g = np.ascontiguousarray(grid[key])
        h.update(f"grid/{key}:{g.dtype.str}:{g.shape}".encode())
        h.update(g.tobytes())
    h.update(meta.to_csv(index=False).encode())
    return h.hexdigest()


def write_in_chunks(
    store: DatasetStore,
    name: str,
    blocks: Iterable[Block],
    *,
    n_rows: int,
    modality: str,
    grid: Mapping[str, np.ndarray] | None = None,
    units: Mapping[str, str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    chunk_rows: int = 512,
) -> Dataset:
    """Write a new dataset from ``blocks`` of rows, never holding more than one block of the arrays.

    Parameters
    ----------
    store : DatasetStore
        Where to write (a local path or an fsspec URL).
    name : str
        Dataset name (letters, digits, ``_-.``); refused if a complete dataset has it (datasets are immutable).
    blocks : iterable of (mapping of str to ndarray, DataFrame)
        Consecutive row blocks: the same fields, dtypes and trailing shapes in every block, and the block's metadata
        rows (with ``object_id``, ``survey``, ``ra`` (deg), ``dec`` (deg)).
    n_rows : int
        Total rows of all blocks (the arrays are created at this size).
    modality, grid, units, provenance, attrs, chunk_rows
        As in :meth:`DatasetStore.write`.

    Returns
    -------
    Dataset
        The stored dataset, opened for reading; its ``content_hash`` equals what :meth:`DatasetStore.write` gives
        for the same rows.
    """
    validate_name(name, "dataset name")
    if int(n_rows) < 1 or int(chunk_rows) < 1:
        raise StellarValueError(f"n_rows and chunk_rows must be >= 1; got {n_rows}, {chunk_rows}")
    if store.exists(name):
        raise StellarDataError(f"dataset {name!r} already exists in {store.root!r}; stored datasets are immutable")
    grid = dict(grid or {})
    target = store._url(f".tmp-{name}-{uuid.uuid4().hex[:8]}" if store.is_local else name)
    try:
        g = zarr.open_group(target, mode="w")
        ga = g.create_group("arrays")
        metas, done, created = [], 0, {}
        for arrays, meta in blocks:
            m = len(meta)
            if not arrays or any(np.shape(a)[0] != m for a in arrays.values()) or done + m > n_rows:
                raise StellarValueError(f"block at row {done}: every field needs {m} rows (its metadata rows), and "
                                        f"the blocks at most n_rows={n_rows} in all")  # fmt: skip
            for key, a in arrays.items():
                if key not in created:
                    shape = (n_rows, *a.shape[1:])
                    created[key] = ga.create_array(key, shape=shape, dtype=a.dtype, chunks=(chunk_rows, *a.shape[1:]))
                created[key][done : done + m] = a
            metas.append(meta)
            done += m
        if done != n_rows:
            raise StellarValueError(f"the blocks hold {done} rows but n_rows is {n_rows}")
        meta = pd.concat(metas, ignore_index=True)
        missing = [c for c in REQUIRED_META if c not in meta.columns]
        if missing:
            raise StellarValueError(f"meta lacks required column(s) {missing}; it has {list(meta.columns)}")
        gg = g.create_group("grid")
        for key, a in grid.items():
            gg.create_array(key, data=np.asarray(a))
        gm = g.create_group("meta")
        for col in meta.columns:
            gm.create_array(str(col), data=_meta_column(meta[col]))
        g.attrs.update({**dict(attrs or {}), "modality": modality, "units": dict(units or {}),
                        "provenance": dict(provenance or {}),
                        "content_hash": _streamed_hash(ga, grid, meta, chunk_rows), "code_version": __version__,
                        "created": datetime.now(timezone.utc).isoformat(), "n_rows": n_rows,
                        "meta_columns": [str(c) for c in meta.columns]})  # fmt: skip
        g.attrs["complete"] = True  # written last: readers ignore a dataset without it
        if store.is_local:
            final = Path(store._path) / name
            if final.exists():  # an incomplete leftover of an interrupted write (complete ones were refused above)
                shutil.rmtree(final)
            os.replace(Path(store._path) / Path(target).name, final)
    except BaseException:
        if store.is_local:
            shutil.rmtree(Path(store._path) / Path(target).name, ignore_errors=True)
        raise
    log.info("stored dataset %r (%d rows in blocks, fields %s) in %s", name, n_rows, sorted(created), store.root)
    return store.open(name)
