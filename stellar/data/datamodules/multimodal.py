"""Objects with any subset of modalities: per-object dicts with presence masks, split by object.

The datamodule reads a paired source (:mod:`stellar.data.sources.paired`): an object table plus one dataset per
modality. Each modality is built and preprocessed by its own datamodule (``SpectraDataModule``,
``SEDDataModule``, ``LightCurveDataModule``: their ``prepare_data`` and ``load_arrays``), so its inputs are
exactly those of the single-modality jobs and of the server. Rows of the split table are *objects* (the object
table), so every split strategy keeps all of a star's modalities in one part.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from stellar.data.datamodules.base import StellarDataModule, _batched
from stellar.data.objects import ObjectTable
from stellar.data.preprocess.multimodal import MultiModalPreprocessing
from stellar.data.sources.base import Source
from stellar.data.store import Dataset as StoredDataset
from stellar.errors import StellarConfigError, StellarDataError

log = logging.getLogger(__name__)

Batch = dict[str, Any]


def _pad_value(dtype: torch.dtype) -> bool | float:
    """What an absent modality holds: ``True`` in boolean masks (every sample is masked), else 0."""
    return True if dtype == torch.bool else 0


class MultiModalDataset(Dataset):
    """Objects of one part; each modality's rows are gathered by index and absent ones padded.

    Parameters
    ----------
    modal : dict of str to dict of str to Tensor
        Per modality, its batch fields over *its own* rows (only the objects that have it).
    rows : dict of str to Tensor
        Per modality, the row of each object of this part in ``modal[modality]`` (-1: absent), (N,).
    common : dict of str to Tensor
        Per-object fields: ``label``, the targets and ``index`` (N,).
    """

    def __init__(
        self, modal: dict[str, dict[str, torch.Tensor]], rows: dict[str, torch.Tensor], common: dict[str, torch.Tensor]
    ):
        lengths = {len(v) for v in (*rows.values(), *common.values())}
        if len(lengths) != 1:
            raise StellarDataError(f"per-object fields have different lengths {sorted(lengths)}")
        self.modal, self.rows, self.common = modal, rows, common
        self.length = lengths.pop()

    def __len__(self) -> int:
        return self.length

    def _fill(self, modality: str, name: str, present: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """A (B, …) field of ``modality`` with ``values`` in the present rows and the pad value elsewhere."""
        a = self.modal[modality][name]
        out = torch.full((len(present), *a.shape[1:]), _pad_value(a.dtype), dtype=a.dtype)
        out[present] = values
        return out

    def __getitem__(self, i: int) -> Batch:
        """One object: ``{modality: {field: tensor} or None, present: {modality: bool}, label, targets…, index}``."""
        item: Batch = {k: v[i] for k, v in self.common.items()}
        item["present"] = {m: bool(r[i] >= 0) for m, r in self.rows.items()}
        for m, r in self.rows.items():
            item[m] = {k: a[int(r[i])] for k, a in self.modal[m].items()} if r[i] >= 0 else None
        return item

    def __getitems__(self, idx: Sequence[int]) -> Batch:
        """A whole batch at once (what the DataLoader calls): the same as :meth:`collate` of the items."""
        ix = torch.as_tensor(idx, dtype=torch.long)
        batch: Batch = {k: v[ix] for k, v in self.common.items()}
        batch["present"] = {}
        for m, r in self.rows.items():
            row = r[ix]
            present = row >= 0
            batch["present"][m] = present
            batch[m] = {k: self._fill(m, k, present, a[row[present]]) for k, a in self.modal[m].items()}
        return batch

    def restricted(self, modalities: Sequence[str]) -> MultiModalDataset:
        """The objects that have every one of ``modalities``, with all other modalities masked (as if absent).

        Used to score a model on one subset of modalities over the same objects (e.g. the spectrum alone of the
        stars that also have an SED).
        """
        unknown = [m for m in modalities if m not in self.rows]
        if unknown or not modalities:
            raise StellarConfigError(
                f"modalities must be a non-empty subset of {list(self.rows)}; got {list(modalities)}"
            )
        have = torch.stack([self.rows[m] >= 0 for m in modalities]).all(dim=0)
        rows = {m: r[have] if m in modalities else torch.full_like(r[have], -1) for m, r in self.rows.items()}
        return MultiModalDataset(self.modal, rows, {k: v[have] for k, v in self.common.items()})

    def collate(self, items: Sequence[Batch]) -> Batch:
        """Stack per-object dicts (from :meth:`__getitem__`) into a batch, padding absent modalities."""
        batch: Batch = {k: torch.stack([it[k] for it in items]) for k in self.common}
        batch["present"] = {}
        for m in self.rows:
            present = torch.tensor([bool(it["present"][m]) for it in items], dtype=torch.bool)
            batch["present"][m] = present
            have = [it[m] for it in items if it["present"][m]]
            batch[m] = {
                k: self._fill(m, k, present, torch.stack([h[k] for h in have]) if have else a[:0])
                for k, a in self.modal[m].items()
            }
        return batch


class MultiModalDataModule(StellarDataModule):
    """Per-object batches ``{spectrum: {...}, sed: {...}, lightcurve: {...}, present: {...}, label, <targets>,
    index}`` over the objects of a paired source.

    Each modality's fields are those of its own datamodule (spectra ``flux``, ``ivar``, ``mask``, ``continuum``;
    SED ``mag``, ``mag_err``, ``features``; light curves ``time``, ``flux``, ``flux_err``, ``band``, ``mask``,
    ``period``, ``features``), with a leading batch axis for every object; ``present[modality]`` (B,) says which
    objects have it. Absent modalities are padded with zeros, and with ``True`` in boolean masks. Labels and
    targets come from the object table. Splits see one row per object (``obs_id`` is the object id), so no star's
    modalities straddle parts; objects with fewer than ``min_modalities`` modalities are left out and counted.

    Parameters
    ----------
    source : PairedSource
        :class:`~stellar.data.sources.paired.PairedSimulatedSource` or
        :class:`~stellar.data.sources.paired.MilesPairedSource`.
    store_root : str
        Dataset store root (path or fsspec URL).
    modalities : mapping of str to callable
        Per modality, a factory of its datamodule (a ``_partial_`` config of ``SpectraDataModule``…, with its
        preprocessing) called with ``source=`` the source's view of that modality and ``store_root=``.
    min_modalities : int
        Objects with fewer modalities present are not served.
    train_only : sequence of str
        Modalities that only training objects may have (``spectrum_sim``, made from the labels by
        :class:`~stellar.data.sources.simobs.MilesSimObsSource`): after the split, a validation or test object with
        one of them is a label leak and raises :class:`~stellar.errors.StellarDataError`.
    **kwargs
        See :class:`StellarDataModule` (``split``, ``batch_size``, ``class_names``, ``class_key``, ``targets``…).
    """

    def __init__(
        self,
        source: Any,
        store_root: str,
        modalities: Mapping[str, Callable[..., StellarDataModule]],
        min_modalities: int = 1,
        train_only: Sequence[str] = (),
        **kwargs: Any,
    ):
        super().__init__(cast(Source, source), store_root, **kwargs)
        if self.streaming:
            # an object's modalities live in separate datasets whose chunks are not aligned by object, so one
            # chunk of objects would read scattered chunks of every modality: not a bounded, chunk-wise read
            raise StellarConfigError(
                "streaming=true is not supported by MultiModalDataModule (its modalities are separate datasets whose "
                "chunks are not aligned by object); set datamodule.streaming=false"
            )
        modalities = {m: f for m, f in dict(modalities or {}).items() if f is not None}  # null drops a modality
        if not modalities:
            raise StellarConfigError("modalities must name at least one modality")
        unknown = [m for m in modalities if m not in source.modalities]
        if unknown:
            raise StellarConfigError(f"modalities {unknown} are not in the source's {list(source.modalities)}")
        if int(min_modalities) != min_modalities or not 1 <= min_modalities <= len(modalities):
            raise StellarConfigError(
                f"min_modalities must be an integer in [1, {len(modalities)}]; got {min_modalities}"
            )
        self.min_modalities = int(min_modalities)
        self.train_only = [str(m) for m in train_only or ()]
        stray = [m for m in self.train_only if m not in modalities]
        if stray:
            raise StellarConfigError(f"train_only modalities {stray} are not among the modalities {list(modalities)}")
        self.modules: dict[str, StellarDataModule] = {
            m: factory(source=source.view(m), store_root=store_root) for m, factory in modalities.items()
        }
        self.objects: pd.DataFrame | None = None
        #: the stored dataset of each modality (after :meth:`setup`)
        self.datasets: dict[str, StoredDataset] = {}

    @property
    def dataset_name(self) -> str:
        """The object table's name in the store."""
        return str(self.source.objects_name())  # type: ignore[attr-defined]

    @property
    def modalities(self) -> list[str]:
        return list(self.modules)

    def prepare_data(self) -> None:
        self.source.write_objects(self.store)  # type: ignore[attr-defined]
        for module in self.modules.values():
            module.prepare_data()

    def _modality_rows(
        self, objects: pd.DataFrame
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
        """Per modality: the row of each object (-1 absent), the batch fields and the object id of every row."""
        position = pd.Series(np.arange(len(objects)), index=objects["object_id"].to_numpy())
        rows, arrays, ids = {}, {}, {}
        for m, module in self.modules.items():
            # opened before load_arrays: a datamodule may complete its preprocessing from the dataset (the SED
            # bands), which changes the name it would give
            ds = self.datasets[m] = self.store.open(module.dataset_name)
            oid = ds.meta["object_id"].astype(str)
            dup = oid[oid.duplicated()]
            if len(dup):
                raise StellarDataError(
                    f"{m} dataset {ds.name!r} has several rows for object(s) {sorted(set(dup))[:10]}"
                )
            known = oid.isin(position.index).to_numpy()
            if not known.all():
                log.warning("%s: %d row(s) of objects not in the object table are left out: %s", m, (~known).sum(),
                            oid[~known].tolist()[:10])  # fmt: skip
            arrays[m] = module.load_arrays(ds, ds.meta)
            ids[m] = oid.to_numpy()
            r = np.full(len(objects), -1, dtype=np.int64)
            r[position[oid[known]].to_numpy()] = np.flatnonzero(known)
            rows[m] = r
        return rows, arrays, ids

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        self.prepare_data()
        table = ObjectTable.from_store(self.store, self.dataset_name).table
        rows, arrays, ids = self._modality_rows(table)
        # each modality's preprocessing as its datamodule completed it: what the registry stores for the server
        self.preprocessing = MultiModalPreprocessing({m: module.preprocessing for m, module in self.modules.items()})
        n_present = np.sum([r >= 0 for r in rows.values()], axis=0)
        keep = n_present >= self.min_modalities
        if not keep.all():
            log.info(
                "left out %d of %d objects with fewer than %d modalities", (~keep).sum(), len(keep), self.min_modalities
            )
        meta = table[keep].reset_index(drop=True).assign(obs_id=lambda t: t["object_id"])
        rows = {m: r[keep] for m, r in rows.items()}
        meta["label"] = self.encode_labels(meta)
        names = np.asarray([*self.class_names, "unlabelled"], dtype=object)
        meta["class_name"] = names[meta["label"].to_numpy()]
        missing = [t for t in self.targets if t not in meta.columns]
        if missing:
            raise StellarConfigError(f"targets {missing} are not columns of the object table: {list(meta.columns)}")
        result = self.keep_labelled(self.split(meta) if self.split is not None else self._score_all(meta))
        self._check_train_only(meta, rows, result.parts())
        self.meta, self.split_result, self.objects = meta, result, meta
        self.dataset = self.store.open(self.dataset_name)
        self.target_stats = self._target_stats(meta.iloc[result.train]) if len(result.train) else {}
        modal = {m: {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in arr.items()} for m, arr in arrays.items()}
        self.row_ids = ids
        for part, idx in result.parts().items():
            common = {"label": torch.from_numpy(meta["label"].to_numpy()[idx])}
            for t in self.targets:
                common[t] = torch.from_numpy(meta[t].to_numpy(dtype=np.float32)[idx])
            common["index"] = torch.from_numpy(idx.astype(np.int64))
            part_rows = {m: torch.from_numpy(r[idx]) for m, r in rows.items()}
            self._parts[part] = MultiModalDataset(modal, part_rows, common)  # type: ignore[assignment]
        result.audit["modalities"] = self.modality_audit()
        parts = {p: cast(MultiModalDataset, d) for p, d in self._parts.items()}
        counts = {p: {m: int((r >= 0).sum()) for m, r in d.rows.items()} for p, d in parts.items()}
        log.info("objects %s: present per part and modality %s", self.dataset_name, counts)

    def _check_train_only(self, meta: pd.DataFrame, rows: dict[str, np.ndarray], parts: dict[str, np.ndarray]) -> None:
        """Raise when an object outside the training part has a ``train_only`` modality (a label leak)."""
        for m in self.train_only:
            for part, idx in parts.items():
                leaked = idx[rows[m][idx] >= 0] if part != "train" else idx[:0]
                if len(leaked):
                    raise StellarDataError(
                        f"train_only modality {m!r} is present for {len(leaked)} {part} object(s) "
                        f"{meta['object_id'].iloc[leaked].tolist()[:10]}: it must exist for training objects only "
                        "(the source and the datamodule must use the same split)"
                    )

    def subset_loader(self, part: str, modalities: Sequence[str]) -> DataLoader:
        """DataLoader over the objects of ``part`` that have every one of ``modalities``, the others masked
        (:meth:`MultiModalDataset.restricted`)."""
        ds = cast(MultiModalDataset, self.part(part)).restricted(modalities)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=0, collate_fn=_batched)

    def modality_audit(self) -> dict[str, Any]:
        """Per modality: rows served per part and the number of objects whose rows are served in more than one part
        (0 by construction: the figure a leakage test checks)."""
        out: dict[str, Any] = {}
        for m in self.modules:
            seen: dict[str, set[str]] = {}
            for part, ds in self._parts.items():
                r = cast(MultiModalDataset, ds).rows[m].numpy()
                seen[part] = set(self.row_ids[m][r[r >= 0]])
            parts = list(seen)
            shared = set().union(*(seen[a] & seen[b] for i, a in enumerate(parts) for b in parts[i + 1 :]))
            out[m] = {"rows": {p: len(s) for p, s in seen.items()}, "objects_in_several_parts": len(shared)}
        return out

    def arrays(self, part: str, modalities: Sequence[str] | None = None) -> dict[str, Any]:
        """One part as (nested) numpy arrays: the batch of every object of the part, or, with ``modalities``, of the
        objects that have every one of them, the others masked (:meth:`MultiModalDataset.restricted`)."""
        ds = cast(MultiModalDataset, self.part(part))
        if modalities is not None:
            ds = ds.restricted(modalities)

        def to_numpy(x: Any) -> Any:
            return {k: to_numpy(v) for k, v in x.items()} if isinstance(x, dict) else x.numpy()

        return cast(dict[str, Any], to_numpy(ds.__getitems__(range(len(ds)))))
