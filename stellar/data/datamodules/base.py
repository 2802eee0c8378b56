"""The store-backed base DataModule that every modality subclasses.

``prepare_data`` makes sure the source's dataset is in the store (building it once through the modality's
preprocessing); ``setup`` reads only the store, applies the split and serves batches as dicts of tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler

from stellar.data.datamodules.streaming import StreamingPart
from stellar.data.labels import MK_CLASSES
from stellar.data.sources.base import Source
from stellar.data.store import Dataset as StoredDataset
from stellar.data.store import DatasetStore
from stellar.errors import StellarConfigError, StellarDataError
from stellar.evaluation.splits import SplitResult

log = logging.getLogger(__name__)


class TensorDictDataset(Dataset):
    """Rows of a dict of equally long tensors; fetches whole batches at once through ``__getitems__``."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        lengths = {len(v) for v in tensors.values()}
        if len(lengths) != 1:
            raise StellarDataError(f"tensors have different lengths {sorted(lengths)}")
        self.tensors = tensors
        self.length = lengths.pop()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}

    def __getitems__(self, idx: list[int]) -> dict[str, torch.Tensor]:
        ix = torch.as_tensor(idx, dtype=torch.long)
        return {k: v[ix] for k, v in self.tensors.items()}


def _batched(batch: Any) -> Any:
    """Collate for ``__getitems__``: the dataset already returns a batch."""
    return batch


class StellarDataModule(L.LightningDataModule):
    """Store-backed base DataModule.

    Parameters
    ----------
    source : Source
        Where the dataset comes from (simulator, a folder of survey files…); it builds the stored dataset once.
    store_root : str
        Dataset store root (path or fsspec URL).
    split : callable, optional
        Split strategy (metadata table → :class:`SplitResult`); ``None`` puts every row in the test part
        (scoring a whole folder).
    batch_size, num_workers : int
        DataLoader settings.
    class_names : sequence of str
        Class list; rows whose ``class_key`` is not in it get label -1 (ignored by the losses).
    class_key : str
        Metadata column holding the class name.
    targets : sequence of str
        Regression target columns (physical units; NaN where unknown).
    log_targets : sequence of str
        Targets standardised in log10 space (must be positive).
    data_dir : str, optional
        The source folder, for sources that read one (kept here so configs can set ``datamodule.data_dir``).
    preprocessing : object, optional
        The modality's preprocessing (``to_dict()`` and a call); it is hashed into the dataset name and handed to
        ``source.build``. ``None`` takes :meth:`default_preprocessing`.
    label_fraction : float
        Fraction of the training part whose labels are used, in (0, 1]: a seeded draw of that many training rows
        (at least 2) is kept and the others' labels are hidden by leaving those rows out of the training part (a
        supervised model gets nothing from them); validation and test parts are unchanged, so every fraction is
        scored on the same test objects. The target standardisation is computed on the kept rows.
    label_seed : int
        Seed of that draw.
    streaming : bool
        Serve the parts as :class:`~stellar.data.datamodules.streaming.StreamingPart` iterables that read the store
        one zarr chunk at a time (training sets larger than memory) instead of loading the fields into memory; the
        batches are the same dicts. :meth:`arrays` then materialises only the val and test parts and refuses the
        train part (estimators fit in memory: keep ``streaming`` false for them).
    shuffle_buffer : int
        Rows of the training part's shuffle buffer when streaming (memory: this many rows of the batch fields).
    read_ahead : int
        Chunks read ahead by a background thread when streaming (0: none).
    stream_seed : int
        Seed of the streamed chunk order and shuffle draws (combined with the epoch number).
    """

    #: arrays of the stored dataset that become batch fields
    fields: tuple[str, ...] = ()

    def __init__(
        self,
        source: Source,
        store_root: str,
        split: Any = None,
        batch_size: int = 128,
        num_workers: int = 0,
        class_names: Sequence[str] = MK_CLASSES,
        class_key: str = "mk_class",
        targets: Sequence[str] = ("teff", "logg", "feh"),
        log_targets: Sequence[str] = ("teff",),
        data_dir: str | None = None,
        preprocessing: Any = None,
        label_fraction: float = 1.0,
        label_seed: int = 0,
        streaming: bool = False,
        shuffle_buffer: int = 4096,
        read_ahead: int = 2,
        stream_seed: int = 0,
    ):
        super().__init__()
        if not 0.0 < float(label_fraction) <= 1.0:
            raise StellarConfigError(f"label_fraction must be in (0, 1]; got {label_fraction}")
        self.label_fraction = float(label_fraction)
        self.label_seed = int(label_seed)
        if int(shuffle_buffer) < 1 or int(read_ahead) < 0:
            raise StellarConfigError(
                f"shuffle_buffer must be >= 1 and read_ahead >= 0 (rows, chunks); got {shuffle_buffer}, {read_ahead}"
            )
        self.streaming, self.shuffle_buffer = bool(streaming), int(shuffle_buffer)
        self.read_ahead, self.stream_seed = int(read_ahead), int(stream_seed)
        self.preprocessing = preprocessing if preprocessing is not None else self.default_preprocessing()
        self.source = source
        self.store = DatasetStore(store_root)
        self.split = split
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.class_names = list(class_names)
        self.class_key = class_key
        self.targets = list(targets)
        self.log_targets = set(log_targets)
        self.data_dir = data_dir
        self.dataset: StoredDataset | None = None
        self.split_result: SplitResult | None = None
        self.target_stats: dict[str, tuple[float, float]] = {}
        self._parts: dict[str, TensorDictDataset | StreamingPart] = {}

    # ---- modality hooks ----------------------------------------------------------------------------------
    def default_preprocessing(self) -> Any:
        """The modality's preprocessing when none is given (``None``: the source stores its data as read)."""
        return None

    @property
    def dataset_name(self) -> str:
        """The source's name for the stored dataset this preprocessing gives."""
        prep = self.preprocessing.to_dict() if self.preprocessing is not None else {}
        return self.source.dataset_name(prep)

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`DatasetStore.write` for this source (the modality's preprocessing)."""
        return self.source.build(self.preprocessing)

    # ---- Lightning hooks ---------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.store.get_or_create(self.dataset_name, self.build_kwargs)

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        self.prepare_data()
        ds = self.store.open(self.dataset_name)
        meta = ds.meta.copy()
        meta["label"] = self.encode_labels(meta)
        names = np.asarray([*self.class_names, "unlabelled"], dtype=object)
        meta["class_name"] = names[meta["label"].to_numpy()]  # -1 picks "unlabelled"
        missing = [t for t in self.targets if t not in meta.columns]
        if missing:
            raise StellarConfigError(f"targets {missing} are not columns of dataset {ds.name!r}: {list(meta.columns)}")
        result = self.keep_labelled(self.split(meta) if self.split is not None else self._score_all(meta))
        self.dataset, self.meta, self.split_result = ds, meta, result
        self.target_stats = self._target_stats(meta.iloc[result.train]) if len(result.train) else {}
        # streaming reads one row here to learn the field names (and to fail early on a bad derivation)
        arrays = self.load_arrays(ds, meta.iloc[:1], slice(0, 1)) if self.streaming else self.load_arrays(ds, meta)
        clash = sorted(set(self.targets) & {*arrays, "label", "index"})
        if clash:  # the target would replace the input in every batch: a label leak
            raise StellarConfigError(
                f"targets {clash} have the names of input fields of dataset {ds.name!r} ({sorted(arrays)}); "
                "a target must not replace an input"
            )
        for part, idx in result.parts().items():
            self._parts[part] = self._streaming_part(ds, meta, idx) if self.streaming else \
                TensorDictDataset(self._tensors(arrays, meta, idx))  # fmt: skip
        log.info("dataset %s: %s rows per part", ds.name, {k: len(v) for k, v in result.parts().items()})

    def _streaming_part(self, ds: StoredDataset, meta: pd.DataFrame, idx: np.ndarray) -> StreamingPart:
        """The rows ``idx`` of ``ds`` as a streaming part; its fields are :meth:`load_arrays` of one chunk at a time."""

        def read(rows: slice) -> dict[str, np.ndarray]:
            return self.load_arrays(ds, meta.iloc[rows], rows)

        columns = {"label": meta["label"].to_numpy(), **{t: meta[t].to_numpy(dtype=np.float32) for t in self.targets}}
        return StreamingPart(
            read, idx, len(meta), ds.chunk_rows, columns, self.batch_size, buffer_rows=self.shuffle_buffer,
            seed=self.stream_seed, read_ahead=self.read_ahead, num_workers=self.num_workers,
        )  # fmt: skip

    def load_arrays(self, ds: StoredDataset, meta: pd.DataFrame, rows: slice | None = None) -> dict[str, np.ndarray]:
        """Row-aligned arrays that become batch fields: the stored ``fields`` (a modality may derive more).

        ``rows`` (a contiguous range; ``None``: all) is what a streaming part reads, one chunk at a time, with
        ``meta`` the table's rows of that range; a derived field is computed from those rows alone.
        """
        return {f: ds.load(f, rows) for f in self.fields}

    def encode_labels(self, meta: pd.DataFrame) -> np.ndarray:
        """Class index of every row, -1 where the class is missing or outside ``class_names``."""
        if self.class_key not in meta.columns:
            return np.full(len(meta), -1, dtype=np.int64)
        lookup = {c: i for i, c in enumerate(self.class_names)}
        return np.asarray([lookup.get(str(v), -1) for v in meta[self.class_key]], dtype=np.int64)

    def keep_labelled(self, result: SplitResult) -> SplitResult:
        """``result`` with its training part reduced to a seeded ``label_fraction`` of its rows (sorted), recorded
        in the audit; unchanged when ``label_fraction`` is 1."""
        if self.label_fraction >= 1.0 or not len(result.train):
            return result
        n = len(result.train)
        k = min(n, max(2, round(self.label_fraction * n)))
        keep = np.random.default_rng(self.label_seed).choice(n, size=k, replace=False)
        result.train = np.sort(result.train[keep])
        result.audit["label_fraction"] = {"fraction": self.label_fraction, "seed": self.label_seed,
                                          "train_rows": n, "labelled_rows": k}  # fmt: skip
        log.info("label_fraction %.3g: %d of %d training rows keep their labels", self.label_fraction, k, n)
        return result

    @staticmethod
    def _score_all(meta: pd.DataFrame) -> SplitResult:
        empty = np.array([], dtype=np.int64)
        return SplitResult(train=empty, val=empty, test=np.arange(len(meta)), audit={"strategy": "none"})

    def _target_stats(self, train: pd.DataFrame) -> dict[str, tuple[float, float]]:
        stats = {}
        for t in self.targets:
            v = train[t].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            if t in self.log_targets:
                v = np.log10(v[v > 0])
            if len(v) < 2:
                raise StellarDataError(f"target {t!r} has fewer than 2 known values in the training part")
            stats[t] = (float(v.mean()), float(max(v.std(), 1e-6)))
        return stats

    def _tensors(self, arrays: dict[str, np.ndarray], meta: pd.DataFrame, idx: np.ndarray) -> dict[str, torch.Tensor]:
        out = {k: torch.from_numpy(np.ascontiguousarray(a[idx])) for k, a in arrays.items()}
        out["label"] = torch.from_numpy(meta["label"].to_numpy()[idx])
        for t in self.targets:
            out[t] = torch.from_numpy(meta[t].to_numpy(dtype=np.float32)[idx])
        out["index"] = torch.from_numpy(idx.astype(np.int64))
        return out

    def part(self, name: str) -> TensorDictDataset | StreamingPart:
        if name not in self._parts:
            raise StellarDataError(f"part {name!r} is not set up; call setup() first (parts: {list(self._parts)})")
        return self._parts[name]

    def arrays(self, part: str) -> dict[str, np.ndarray]:
        """One part as numpy arrays (the batch fields, ``label``, targets and ``index``), for estimators.

        When streaming, the val and test parts are read into memory (they are small); the train part is refused.
        """
        ds = self.part(part)
        if isinstance(ds, TensorDictDataset):
            return {k: v.numpy() for k, v in ds.tensors.items()}
        if part == "train":
            raise StellarConfigError(
                "datamodule.streaming=true never loads the train part into memory, and this step needs it as arrays "
                "(an estimator's fit: XGBoost, ridge, Cannon…); set datamodule.streaming=false"
            )
        return ds.materialise()

    def loader(
        self,
        part: str,
        shuffle: bool = False,
        collate_fn: Callable[[Any], Any] | None = None,
        sampler: Sampler[int] | None = None,
    ) -> DataLoader:
        """DataLoader over one part (``train``, ``val`` or ``test``); ``collate_fn`` maps each batch dict (e.g. a
        training-only augmentation); ``sampler`` picks the rows (not with ``shuffle``, nor for a streaming part). A
        streaming part shuffles itself (chunk order and buffer) when ``shuffle``; its workers prefetch
        ``prefetch_factor`` batches each."""
        ds = self.part(part)
        streaming = isinstance(ds, StreamingPart)
        return DataLoader(
            ds.replace(shuffle=shuffle).with_world() if isinstance(ds, StreamingPart) else ds,
            batch_size=None if streaming else self.batch_size,  # a streaming part yields whole batches
            shuffle=shuffle and not streaming,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_fn or _batched,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.evaluation_loader("test")

    def evaluation_loader(self, part: str) -> DataLoader:
        """The loader that ``trainer.validate``/``trainer.test`` score ``part`` with: under DDP (a process group of
        several ranks) each rank gets a disjoint share of the rows, every row once.

        Lightning's default there is a ``DistributedSampler``, which pads the last round with the first rows again so
        that every rank has as many; a padded row would count twice in the epoch metrics. Lightning keeps a sampler
        that is already distributed. A streaming part shares its chunks between the ranks itself.
        """
        ds = self.part(part)
        if isinstance(ds, StreamingPart) or not dist.is_available() or not dist.is_initialized():
            return self.loader(part)
        if len(ds) < dist.get_world_size():
            # a rank with no rows skips the whole evaluation loop, and the others would wait for it forever in the
            # epoch-end metric sync
            raise StellarConfigError(
                f"the {part} part has {len(ds)} rows, fewer than the {dist.get_world_size()} DDP ranks: a rank would "
                "have none to score and the others would wait for it; use fewer devices or a larger part"
            )
        return self.loader(part, sampler=UnrepeatedDistributedSampler(ds, shuffle=False))

    def predict_dataloader(self) -> DataLoader:
        return self.loader("test", shuffle=False)
