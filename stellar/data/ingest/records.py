"""Parsed objects (:class:`Record`) and how a list of them becomes datasets in the store.

A record is one object's arrays (1-D, any length) and metadata from one source file or answer. Records of one
``(survey, modality)`` become one dataset: 1-D arrays are padded to the longest row (floats with NaN, integers
with 0), ``n_samples`` gives each row's true length, and ``mask`` is ``True`` on padded or non-finite samples
of the first float field, as everywhere else in the store.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.store import DatasetStore
from stellar.errors import StellarDataError

log = logging.getLogger(__name__)


@dataclass
class Record:
    """One object from one source. ``arrays`` are 1-D; ``meta`` scalars (``ra``/``dec`` in deg)."""

    survey: str
    modality: str
    object_id: str
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    source: str
    units: dict[str, str] = field(default_factory=dict)
    #: name of the float field whose non-finite samples go into ``mask`` (the first array by default)
    mask_of: str | None = None


def _pad(rows: list[np.ndarray], length: int) -> np.ndarray:
    dtype = np.result_type(*[r.dtype for r in rows])
    fill: Any = np.nan if np.issubdtype(dtype, np.floating) else 0
    out = np.full((len(rows), length), fill, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def to_write_kwargs(records: list[Record], provenance: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :meth:`DatasetStore.write` for records of one survey and modality."""
    if not records:
        raise StellarDataError("no records to store")
    keys = {(r.survey, r.modality) for r in records}
    if len(keys) > 1:
        raise StellarDataError(f"records of one dataset must share survey and modality; got {sorted(keys)}")
    fields = list(records[0].arrays)
    for r in records:
        if list(r.arrays) != fields:
            raise StellarDataError(f"{r.source}: fields {list(r.arrays)} differ from {fields}")
    lengths = np.asarray([len(next(iter(r.arrays.values()))) for r in records])
    length = int(lengths.max())
    arrays = {f: _pad([np.asarray(r.arrays[f]) for r in records], length) for f in fields}
    mask_field = records[0].mask_of or next(
        (f for f in fields if np.issubdtype(arrays[f].dtype, np.floating)), fields[0]
    )
    padded = np.arange(length)[None, :] >= lengths[:, None]
    bad = padded.copy()
    if np.issubdtype(arrays[mask_field].dtype, np.floating):
        bad |= ~np.isfinite(arrays[mask_field])
    arrays["mask"] = bad
    n_bad = int(bad.sum() - padded.sum())
    if n_bad:
        log.info("masked %d non-finite %r samples of %d in %s", n_bad, mask_field, int(lengths.sum()), keys)
    rows = [
        {"object_id": r.object_id, "survey": r.survey, **r.meta, "n_samples": int(n), "source": r.source}
        for r, n in zip(records, lengths, strict=True)
    ]
    meta = pd.DataFrame(rows)
    for c in ("ra", "dec"):
        meta[c] = pd.to_numeric(meta.get(c, np.nan), errors="coerce").astype(float)
    units = {**records[0].units, "mask": "", "n_samples": ""}
    return {
        "arrays": arrays,
        "meta": meta,
        "modality": records[0].modality,
        "units": units,
        "provenance": dict(provenance),
        "attrs": {"mask_of": mask_field},
    }


def dataset_name(prefix: str, records: Iterable[Record]) -> str:
    """``<prefix>-<8 hex>``, the hash over the sorted (object_id, source) pairs: same inputs, same name."""
    h = hashlib.sha256("\n".join(sorted(f"{r.object_id}\t{r.source}" for r in records)).encode()).hexdigest()
    return f"{prefix}-{h[:8]}"


def store_records(
    store: DatasetStore, records: list[Record], provenance: Mapping[str, Any], prefix: str | None = None
) -> list[str]:
    """Write one dataset per (survey, modality) unless an identical one is stored; return their names."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    seen: set[tuple[str, str, str]] = set()
    n_dup = 0
    for r in records:
        key = (r.survey, r.modality, r.object_id)
        if key in seen:  # the same object from two answers (overlapping cones, a repeated file): keep the first
            n_dup += 1
            continue
        seen.add(key)
        groups[(r.survey, r.modality)].append(r)
    if n_dup:
        log.info("dropped %d duplicate record(s) of objects already in the batch", n_dup)
    names = []
    for (survey, modality), recs in sorted(groups.items()):
        name = dataset_name(f"{prefix or survey}_{modality}", recs)
        if store.exists(name):
            log.info("dataset %r already stored with the same objects; not written again", name)
        else:
            sources = sorted({r.source for r in recs})
            prov = dict(provenance)
            if isinstance(prov.get("file_sha256"), dict):  # only the files of this dataset
                files = {s.split("!")[0] for r in recs for s in r.source.split(";")}
                prov["file_sha256"] = {f: h for f, h in prov["file_sha256"].items() if f in files}
            store.write(name, **to_write_kwargs(recs, {**prov, "sources": sources}))
        names.append(name)
    return names
