"""The dataset store: zarr groups of arrays + a metadata table + provenance, written once and read many times.

Layout of one dataset ``<root>/<name>``::

    <name>/                      zarr group; attrs: modality, units, grid info, provenance, content_hash, …
        arrays/<field>           one array per modality field, rows = objects (e.g. flux, ivar, mask)
        grid/<axis>              shared axes (e.g. log_wave for spectra), optional
        meta/<column>            one 1-D array per metadata column (strings as variable-length UTF-8)

Simulators and connectors write this format; datamodules read only it. The root is a local path or an fsspec
URL (``memory://…``, ``s3://…``). A dataset is complete only when its ``complete`` attribute is set, which is
written last; on a local disk the whole group is first written beside its final place and then renamed, so a
crash never leaves a half-written dataset under its name.

Only one writer at a time writes a name, anywhere: it first claims the name by creating
``<root>/.claim-<name>/<k>.json`` exclusively (a conditional PUT on S3, a hard link locally; see
:class:`stellar.utils.claims.Lease`) and removes its claims when done. Another writer of the same name (a second
sweep job, another DDP rank) waits for the holder's dataset and returns it when its ``content_hash`` equals its own,
so it never deletes or interleaves with the holder's half-written data. A claim older than :data:`CLAIM_STALE_S`
is presumed left by a crashed writer (a live one renews its claim every quarter of that while it writes): the next
writer takes it over and replaces the incomplete leftover; the writer taken over, should it only have been frozen,
checks its claim before it publishes and then removes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from stellar._version import __version__
from stellar.errors import StellarDataError, StellarValueError
from stellar.utils import urls
from stellar.utils.claims import Lease
from stellar.utils.names import validate_name

log = logging.getLogger(__name__)

REQUIRED_META = ("object_id", "survey", "ra", "dec")
#: seconds after which a writer's claim on a dataset name is presumed abandoned (a live writer renews it every quarter
#: of this, so only a crashed or frozen writer loses it)
CLAIM_STALE_S = 3600.0


def content_hash(
    arrays: Mapping[str, Any], meta: pd.DataFrame, grid: Mapping[str, np.ndarray], step: int = 4096
) -> str:
    """SHA-256 over every array's bytes, shape and dtype and over the metadata table, in a fixed (sorted) order.

    Arrays (numpy or zarr) are read ``step`` rows at a time, so a stored array larger than memory hashes to what the
    same rows in memory give.
    """
    h = hashlib.sha256()
    for kind, mapping in (("arrays", arrays), ("grid", grid)):
        for key in sorted(mapping):
            a = mapping[key]
            shape = tuple(np.shape(a))
            h.update(f"{kind}/{key}:{np.dtype(a.dtype).str}:{shape}".encode())
            for s in range(0, shape[0] if shape else 1, max(1, int(step))):
                h.update(np.ascontiguousarray(a[s : s + step] if shape else a).tobytes())
    h.update(meta.to_csv(index=False).encode())
    return h.hexdigest()


def _child(group: zarr.Group, name: str, kind: type) -> Any:
    """A child of ``group`` that must be a zarr group or array; a store that disagrees is corrupt."""
    node = group[name]
    if not isinstance(node, kind):
        raise StellarDataError(f"{group.path}/{name} should be a zarr {kind.__name__}; the store is corrupt")
    return node


def _meta_column(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy()
    # strings (and mixed objects) become variable-length UTF-8; missing becomes the empty string
    return np.asarray(values.fillna("").astype(str).to_numpy(), dtype=np.dtypes.StringDType())


def _require(meta: pd.DataFrame, required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in meta.columns]
    if missing:
        raise StellarValueError(f"meta lacks required column(s) {missing}; it has {list(meta.columns)}")


def _attributes(
    attrs: Mapping[str, Any] | None,
    modality: str,
    units: Mapping[str, str] | None,
    provenance: Mapping[str, Any] | None,
    digest: str,
    meta: pd.DataFrame,
) -> dict[str, Any]:
    """The attributes of a dataset (``complete`` apart); raises if one is not JSON-serialisable."""
    out = {
        **dict(attrs or {}),
        "modality": modality,
        "units": dict(units or {}),
        "provenance": dict(provenance or {}),
        "content_hash": digest,
        "code_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(),
        "n_rows": len(meta),
        "meta_columns": [str(c) for c in meta.columns],
    }
    try:
        json.dumps(out)
    except TypeError as err:
        raise StellarValueError(f"dataset attributes must be JSON-serialisable: {err}") from err
    return out


def _write_grid_and_meta(g: zarr.Group, grid: Mapping[str, np.ndarray], meta: pd.DataFrame) -> None:
    gg = g.create_group("grid")
    for key, a in grid.items():
        gg.create_array(key, data=np.asarray(a))
    gm = g.create_group("meta")
    for col in meta.columns:
        gm.create_array(str(col), data=_meta_column(meta[col]))


@dataclass
class Dataset:
    """A read view of one stored dataset. Arrays stay lazy (zarr) until :meth:`load` is called."""

    name: str
    group: zarr.Group
    meta: pd.DataFrame
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def fields(self) -> list[str]:
        return sorted(_child(self.group, "arrays", zarr.Group).array_keys())

    @property
    def n_rows(self) -> int:
        return len(self.meta)

    @property
    def chunk_rows(self) -> int:
        """Rows per stored chunk along the first axis (the largest over the fields, so that a range of this many
        rows reads whole chunks of each when they agree, as :meth:`DatasetStore.write` makes them)."""
        arrays = _child(self.group, "arrays", zarr.Group)
        return max((int(arrays[f].chunks[0]) for f in self.fields), default=max(1, self.n_rows))

    def array(self, name: str) -> zarr.Array:
        """The lazy zarr array of one field."""
        if name not in self.fields:
            raise StellarDataError(f"dataset {self.name!r} has no field {name!r}; it has {self.fields}")
        return _child(_child(self.group, "arrays", zarr.Group), name, zarr.Array)

    def load(self, name: str, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Read one field (all rows, a slice or sorted integer rows) into memory."""
        arr = self.array(name)
        if rows is None:
            return np.asarray(arr[...])
        if isinstance(rows, slice):
            return np.asarray(arr[rows])
        return np.asarray(arr.get_orthogonal_selection((np.asarray(rows),)))

    def grid(self, name: str) -> np.ndarray:
        """A shared axis stored with the dataset (e.g. ``log_wave``)."""
        grid = _child(self.group, "grid", zarr.Group) if "grid" in self.group else None
        if grid is None or name not in grid:
            raise StellarDataError(f"dataset {self.name!r} has no grid axis {name!r}")
        return np.asarray(_child(grid, name, zarr.Array)[...])


class DatasetStore:
    """A folder (local path or fsspec URL) of datasets, each written once.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> store = DatasetStore("memory://doctest-store")
    >>> meta = pd.DataFrame({"object_id": ["a", "b"], "survey": "sim", "ra": [0.0, 1.0], "dec": [0.0, 1.0]})
    >>> ds = store.write("demo", {"flux": np.ones((2, 3), "f4")}, meta, modality="spectra")
    >>> store.open("demo").load("flux").shape
    (2, 3)
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = str(root).rstrip("/")
        self.fs, self._path = urls.url_to_fs(self.root)
        self.is_local = urls.is_local(self.fs)

    def _url(self, name: str) -> str:
        return f"{self.root}/{name}"

    def list(self) -> list[str]:
        """Names of the complete datasets in the store."""
        # zarr writes through its own file system instance, other processes through theirs: list afresh
        self.fs.invalidate_cache(self._path)
        if not self.fs.exists(self._path):
            return []
        names = []
        for p in self.fs.ls(self._path, detail=False):
            name = str(p).rstrip("/").rsplit("/", 1)[-1]
            if not name.startswith(".") and self.exists(name):
                names.append(name)
        return sorted(names)

    def exists(self, name: str) -> bool:
        """True when a complete dataset of this name is stored."""
        validate_name(name, "dataset name")
        try:
            g = zarr.open_group(self._url(name), mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
            return False
        return bool(g.attrs.get("complete", False))

    def open(self, name: str) -> Dataset:
        """Open a complete dataset for reading."""
        if not self.exists(name):
            raise StellarDataError(f"no complete dataset {name!r} in store {self.root!r}; it has {self.list()}")
        g = zarr.open_group(self._url(name), mode="r")
        mg = _child(g, "meta", zarr.Group)
        columns = g.attrs.get("meta_columns")
        order = [str(c) for c in columns] if isinstance(columns, list) else sorted(mg.array_keys())
        meta = pd.DataFrame({c: np.asarray(_child(mg, c, zarr.Array)[...]) for c in order})
        for c in order:
            if meta[c].dtype.kind == "T":
                meta[c] = meta[c].astype(object)
        return Dataset(name=name, group=g, meta=meta, attrs=dict(g.attrs))

    def write(
        self,
        name: str,
        arrays: Mapping[str, np.ndarray],
        meta: pd.DataFrame,
        *,
        modality: str,
        grid: Mapping[str, np.ndarray] | None = None,
        units: Mapping[str, str] | None = None,
        provenance: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
        chunk_rows: int = 512,
        same_content_ok: bool = False,
    ) -> Dataset:
        """Write a new dataset. Refuses to overwrite a complete one (datasets are immutable).

        Parameters
        ----------
        name : str
            Dataset name (letters, digits, ``_-.``).
        arrays : mapping of str to ndarray
            Row-aligned fields; the first axis of each must equal ``len(meta)``.
        meta : pandas.DataFrame
            One row per object; must hold ``object_id``, ``survey``, ``ra`` (deg) and ``dec`` (deg).
        modality : str
            ``spectra``, ``lightcurve``, ``sed``…
        grid : mapping of str to ndarray, optional
            Shared axes, e.g. ``{"log_wave": log10(λ/Å)}``.
        units : mapping of str to str, optional
            Unit of each field and grid axis, as astropy unit strings.
        provenance : mapping, optional
            Where the data came from (source, query, files and their hashes, parameters).
        attrs : mapping, optional
            Further JSON-serialisable attributes (e.g. preprocessing parameters).
        chunk_rows : int
            Rows per chunk along the first axis.
        same_content_ok : bool
            Open a complete dataset already stored under ``name`` when its content hash is this one's (a concurrent
            writer built the same data first) instead of refusing it; a different content is refused all the same.
        """
        if not arrays:
            raise StellarValueError("arrays is empty: a dataset needs at least one field")
        return self._write(
            name,
            arrays,
            meta,
            modality=modality,
            grid=grid,
            units=units,
            provenance=provenance,
            attrs=attrs,
            chunk_rows=chunk_rows,
            required=REQUIRED_META,
            same_content_ok=same_content_ok,
        )

    def write_table(
        self,
        name: str,
        table: pd.DataFrame,
        *,
        kind: str,
        required: tuple[str, ...] = (),
        units: Mapping[str, str] | None = None,
        provenance: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> Dataset:
        """Write a table with no array fields (an object table, a cross-match), immutable like a dataset.

        It is read back with :meth:`open` (``Dataset.meta`` is the table, ``Dataset.fields`` is empty) and its
        ``modality`` attribute is ``kind``.

        Parameters
        ----------
        name : str
            Table name (letters, digits, ``_-.``).
        table : pandas.DataFrame
            The rows; string columns are stored as UTF-8 (missing → ``""``), numbers and booleans as they are.
        kind : str
            What the table is, e.g. ``objects`` or ``crossmatch``.
        required : tuple of str
            Columns the table must hold.
        units, provenance, attrs : mapping, optional
            As in :meth:`write`.
        """
        return self._write(
            name, {}, table, modality=kind, units=units, provenance=provenance, attrs=attrs, required=required
        )

    def write_blocks(
        self,
        name: str,
        blocks: Iterable[tuple[Mapping[str, np.ndarray], pd.DataFrame]],
        *,
        n_rows: int,
        modality: str,
        grid: Mapping[str, np.ndarray] | None = None,
        units: Mapping[str, str] | None = None,
        provenance: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
        chunk_rows: int = 512,
    ) -> Dataset:
        """Write a new dataset from consecutive row blocks, holding one block of the arrays at a time.

        The same dataset (groups, attributes, ``content_hash``) as :meth:`write` of the concatenated rows, for
        datasets larger than memory: the arrays are created at ``n_rows`` and filled block by block, the hash is
        read back ``chunk_rows`` at a time, and only the metadata table is gathered in memory.

        Parameters
        ----------
        name : str
            Dataset name (letters, digits, ``_-.``).
        blocks : iterable of (mapping of str to ndarray, DataFrame)
            The same fields, dtypes and trailing shapes in every block, with the block's metadata rows.
        n_rows : int
            Rows of all blocks together.
        modality, grid, units, provenance, attrs, chunk_rows
            As in :meth:`write`.
        """
        validate_name(name, "dataset name")
        if int(n_rows) < 1 or int(chunk_rows) < 1:
            raise StellarValueError(f"n_rows and chunk_rows must be >= 1; got {n_rows}, {chunk_rows}")
        if self.exists(name):
            raise StellarDataError(f"dataset {name!r} already exists in {self.root!r}; stored datasets are immutable")
        grid = dict(grid or {})
        _attributes(attrs, modality, units, provenance, "", pd.DataFrame())  # JSON-serialisable, before writing

        def fill(g: zarr.Group) -> dict[str, Any]:
            ga, created, metas, done = g.create_group("arrays"), {}, [], 0
            for arrays, meta in blocks:
                m = len(meta)
                if not arrays or any(np.shape(a)[0] != m for a in arrays.values()) or done + m > n_rows:
                    raise StellarValueError(f"block at row {done}: every field needs {m} rows (its metadata rows), "
                                            f"and the blocks at most n_rows={n_rows} in all")  # fmt: skip
                for key, a in arrays.items():
                    if key not in created:
                        chunks = (int(chunk_rows), *np.shape(a)[1:])
                        created[key] = ga.create_array(key, shape=(n_rows, *chunks[1:]), dtype=a.dtype, chunks=chunks)
                    created[key][done : done + m] = a
                metas.append(meta)
                done += m
            if done != n_rows:
                raise StellarValueError(f"the blocks hold {done} rows but n_rows is {n_rows}")
            meta = pd.concat(metas, ignore_index=True)
            _require(meta, REQUIRED_META)
            _write_grid_and_meta(g, grid, meta)
            digest = content_hash(created, meta, grid, step=int(chunk_rows))
            return _attributes(attrs, modality, units, provenance, digest, meta)

        ds = self._store(name, fill, None)
        log.info("stored dataset %r (%d rows in blocks, fields %s) in %s", name, n_rows, ds.fields, self.root)
        return ds

    def _write(
        self,
        name: str,
        arrays: Mapping[str, np.ndarray],
        meta: pd.DataFrame,
        *,
        modality: str,
        required: tuple[str, ...],
        grid: Mapping[str, np.ndarray] | None = None,
        units: Mapping[str, str] | None = None,
        provenance: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
        chunk_rows: int = 512,
        same_content_ok: bool = False,
    ) -> Dataset:
        validate_name(name, "dataset name")
        grid = dict(grid or {})
        _require(meta, required)
        for key, a in arrays.items():
            if np.shape(a)[0] != len(meta):
                raise StellarValueError(f"array {key!r} has {np.shape(a)[0]} rows but meta has {len(meta)}")
        digest = content_hash(arrays, meta, grid)
        if self.exists(name):
            if same_content_ok:
                return self._stored_by_another(name, digest)
            raise StellarDataError(f"dataset {name!r} already exists in {self.root!r}; stored datasets are immutable")
        all_attrs = _attributes(attrs, modality, units, provenance, digest, meta)

        def fill(g: zarr.Group) -> dict[str, Any]:
            ga = g.create_group("arrays")
            for key, a in arrays.items():
                a = np.asarray(a)
                chunks = (min(chunk_rows, max(1, a.shape[0])), *a.shape[1:])
                ga.create_array(key, data=a, chunks=chunks)
            _write_grid_and_meta(g, grid, meta)
            return all_attrs

        ds = self._store(name, fill, digest)
        log.info("stored dataset %r (%d rows, fields %s) in %s", name, len(meta), sorted(arrays), self.root)
        return ds

    def _store(self, name: str, fill: Callable[[zarr.Group], dict[str, Any]], digest: str | None) -> Dataset:
        """Claim ``name``, build its group with ``fill`` (→ its attributes) and publish it, ``complete`` last.

        A concurrent writer holding the claim is waited for; its dataset is returned when it has our ``digest``
        (``None``: not known before writing, so any dataset stored meanwhile is refused as immutable).
        """
        lease = Lease(self.fs, f"{self._path}/.claim-{name}", stale_after=CLAIM_STALE_S)
        delay, waited = 0.05, False
        while not lease.acquire():  # another writer is storing this name: wait for its dataset
            if self.exists(name):
                return self._stored_by_another(name, digest)
            if not waited:  # a claim left by a killed writer blocks for CLAIM_STALE_S: say so, not a silent hang
                holder, waited = lease.holder(), True
                log.warning(
                    "dataset %r in %s is being written by another writer (host %s, pid %s, claimed %.0f s ago); "
                    "waiting for it. A claim older than %g s is presumed left by a crashed writer and taken over",
                    name, self.root, holder.get("host"), holder.get("pid"),
                    time.time() - float(holder.get("created", time.time())), CLAIM_STALE_S,
                )  # fmt: skip
            time.sleep(delay)
            delay = min(2 * delay, 2.0)
        try:
            if self.exists(name):  # completed between our first look and our claim
                return self._stored_by_another(name, digest)
            with lease.kept():  # renewed while writing: a long write is not presumed crashed
                self._write_claimed(name, fill, lease)
        finally:
            lease.release()
        return self.open(name)

    def _write_claimed(self, name: str, fill: Callable[[zarr.Group], dict[str, Any]], lease: Lease) -> None:
        """Write the group of ``name``, whose claim the caller holds, ``complete`` last.

        A writer frozen for :data:`CLAIM_STALE_S` may have been taken over meanwhile (presumed crashed): it then
        publishes nothing and removes nothing under ``name``, which is its successor's now, and raises.
        """
        final_url = self._url(name)
        self.fs.invalidate_cache(self._path)
        if self.is_local:
            target = self._url(f".tmp-{name}-{uuid.uuid4().hex[:8]}")
        else:
            target = final_url
            if self.fs.exists(f"{self._path}/{name}"):
                # an incomplete leftover of a crashed writer (we hold the claim, so no one is writing it)
                log.warning("removing incomplete dataset %r left by an interrupted write", name)
                self.fs.rm(f"{self._path}/{name}", recursive=True)
        try:
            g = zarr.open_group(target, mode="w")
            g.attrs.update(fill(g))
            self._check_held(name, lease)
            g.attrs["complete"] = True  # written last: readers ignore a dataset without it
            if self.is_local:
                final = Path(self._path) / name
                if final.exists():  # an incomplete leftover (complete ones were refused above)
                    log.warning("removing incomplete dataset %r left by an interrupted write", name)
                    shutil.rmtree(final)
                os.replace(Path(self._path) / Path(target).name, final)
        except BaseException as err:
            held = lease.held()
            if self.is_local:
                shutil.rmtree(Path(self._path) / Path(target).name, ignore_errors=True)
            elif held and self.fs.exists(f"{self._path}/{name}"):  # our own half-written group
                self.fs.rm(f"{self._path}/{name}", recursive=True)
            if not held and isinstance(err, Exception) and not isinstance(err, StellarDataError):
                # e.g. zarr refusing to create an array the successor wrote first: say why
                raise StellarDataError(self._lost_claim(name)) from err
            raise

    def _check_held(self, name: str, lease: Lease) -> None:
        if not lease.held():
            raise StellarDataError(self._lost_claim(name))

    def _lost_claim(self, name: str) -> str:
        return (
            f"dataset {name!r} in {self.root!r}: this writer's claim went unrenewed for {CLAIM_STALE_S:g} s (was the "
            "process paused?) and another writer took it over, presuming it crashed; this write is abandoned, and "
            "what the other writer stores under the name is kept"
        )

    def _stored_by_another(self, name: str, digest: str | None) -> Dataset:
        """The dataset a concurrent writer stored under ``name``, if it holds what we were writing."""
        if digest is None:
            raise StellarDataError(
                f"dataset {name!r} was stored in {self.root!r} meanwhile by another writer; stored datasets are "
                "immutable"
            )
        ds = self.open(name)
        if ds.attrs.get("content_hash") != digest:
            raise StellarDataError(
                f"dataset {name!r} in {self.root!r} was stored meanwhile by another writer with different content "
                f"(content_hash {str(ds.attrs.get('content_hash'))[:12]}… ≠ {digest[:12]}…): two builds disagree "
                "on what this name holds; give one of them another name"
            )
        log.info("dataset %r was stored by a concurrent writer with the same content; using it", name)
        return ds

    def get_or_create(self, name: str, build: Any) -> Dataset:
        """Open ``name``, or call ``build()`` → kwargs of :meth:`write` and store it first.

        Safe to call from several processes at once (sweep jobs, DDP ranks, on object storage too): one of them
        stores the dataset and the others open it, or raise :class:`~stellar.errors.StellarDataError` if what they
        built has another content hash.
        """
        if self.exists(name):
            return self.open(name)
        # another process may finish storing it while we build ours (jobs of a sweep started together)
        return self.write(name, **build(), same_content_ok=True)


def summarize(store: DatasetStore) -> list[dict[str, Any]]:
    """One dict per complete dataset: name, modality, rows, fields (shape, dtype), grid axes, units, provenance,
    meta columns, per-survey row counts and creation time; what ``python -m stellar.store <root>`` prints."""
    out = []
    for name in store.list():
        ds = store.open(name)
        arrays = _child(ds.group, "arrays", zarr.Group)
        grid = _child(ds.group, "grid", zarr.Group) if "grid" in ds.group else None
        out.append(
            {
                "name": name,
                "modality": ds.attrs.get("modality"),
                "rows": ds.n_rows,
                "surveys": {str(k): int(v) for k, v in ds.meta["survey"].value_counts().items()},
                "fields": {f: {"shape": list(arrays[f].shape), "dtype": str(arrays[f].dtype)} for f in ds.fields},
                "grid": {g: list(grid[g].shape) for g in sorted(grid.array_keys())} if grid is not None else {},
                "meta_columns": list(ds.meta.columns),
                "units": ds.attrs.get("units", {}),
                "provenance": ds.attrs.get("provenance", {}),
                "created": ds.attrs.get("created"),
                "content_hash": ds.attrs.get("content_hash"),
            }
        )
    return out
