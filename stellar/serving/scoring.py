"""Catalogue scoring: every object of a catalogue through a registered model, partition by partition, resumable.

``python -m stellar.serving.scoring model=<name>[@<version or alias>] input=<catalogue> output=<folder or file>``
(config ``conf/score.yaml``; the entry point is :mod:`stellar.score`, today's flags still work). Inputs (paths or
fsspec URLs, see :mod:`stellar.serving.catalogue`):

- **tables** (a ``.parquet`` file or a folder of them, e.g. a HATS catalogue; ``.csv``; ``.fits``), one object per
  row for spectra (a ``flux`` array column — Parquet list or FITS vector — or numeric columns ``flux_0 …
  flux_{M-1}``; optional ``wavelength`` and ``flux_err`` the same way, and a scalar ``redshift``) and for SEDs (a
  magnitude column per model band, named as the band, ``sdss_g``, or as its last part, ``g``; optional
  ``<column>_err``, ``ebv``, ``parallax`` and ``parallax_err``, mas), or one *point* per row for light curves (long
  format: ``time``, ``mag`` or ``flux``, optional ``mag_err``/``flux_err`` and ``band``, grouped by the id column).
  Rows become requests of the modality's API and go through the very decode → preprocess → predict path the server
  runs, so a bad object gets its message in the ``error`` column instead of a prediction;
- a **dataset folder** that the model's training datamodule can read (``datamodule.data_dir``, e.g. MILES), read
  through the dataset store with the datamodule's own preprocessing.

Each partition (at most ``partition_rows`` objects of one file) is scored on its own — in this process
(:class:`~stellar.serving.executors.Synchronous`) or on a Dask cluster
(:class:`~stellar.serving.executors.DaskCluster`), where each worker loads the model once — and written atomically to
one output Parquet file carrying the model, version and calibrator in its metadata. A rerun skips the partitions already
written (after checking that ``_job.json`` names the same model, by its files' hashes, and the same input), so an
interrupted run resumes where it stopped. Columns: the id column, ``predicted_class``, ``p_<class>`` per class,
``<target>_mean`` and ``<target>_std``, ``valid_fraction``, ``ood_score`` and ``ood`` (against the model's training
reference, for versions that have one) and ``error``. An ``output`` ending in ``.csv`` or ``.parquet`` gets the
partitions (written to ``<output>.parts/``) joined into that one file.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stellar.errors import StellarDataError, StellarError, StellarValueError
from stellar.registry import DEFAULT_ROOT, LATEST, ModelRegistry
from stellar.serving import catalogue
from stellar.serving.catalogue import Partition, read_table
from stellar.serving.table_requests import MODALITIES, modality_of
from stellar.utils import urls

if TYPE_CHECKING:  # the predictor imports LitServe: loaded in the worker, when a partition is scored
    from stellar.serving.predictor import Predictor

log = logging.getLogger(__name__)

#: objects per decode → predict call inside a partition (bounds memory)
SCORE_BATCH = 4096

__all__ = ["Scored", "ScoringJob", "read_table", "score", "score_partition"]


# ---- one partition (on a worker) -------------------------------------------------------------------------------


def _predictor_for(version: Any) -> Predictor:
    """The :class:`~stellar.serving.predictor.Predictor` of ``version``: scoring, serving and ``stellar.load``
    share one predictor."""
    from stellar.serving.predictor import Predictor

    return Predictor.from_version(version, api_path="/score", num_threads=1)


def _rows_of(api: Any, oids: Sequence[str], outputs: Sequence[Any]) -> list[dict[str, Any]]:
    from stellar.serving.api import Failure

    rows = []
    for oid, out in zip(oids, outputs, strict=True):
        row: dict[str, Any] = {"object_id": oid, "error": ""}
        if isinstance(out, Failure):
            row["error"] = out.detail
        else:
            row.update(_flatten(out[1][0]))
        rows.append(row)
    return rows


def _flatten(pred: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"predicted_class": pred.get("predicted_class"), "valid_fraction": pred["valid_fraction"]}
    if "ood_score" in pred:  # models with a training reference
        row["ood_score"], row["ood"] = pred["ood_score"], pred["ood"]
    row.update({f"p_{c}": p for c, p in pred["probabilities"].items()})
    for t, est in pred["targets"].items():
        row[f"{t}_mean"], row[f"{t}_std"] = est["mean"], est["std"]
    return row


def _score_requests(predictor: Predictor, items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return _rows_of(predictor.api, [oid for oid, _ in items], predictor.answer([body for _, body in items]))


@dataclasses.dataclass(frozen=True)
class ScoringJob:
    """What every partition of a run is scored with (small and picklable: it travels to Dask workers)."""

    registry_root: str
    model: str
    version: int
    modality: str  # a key of :data:`~stellar.serving.table_requests.MODALITIES`
    id_column: str = "object_id"
    store_root: str | None = None


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _cached_predictor(registry_root: str, model: str, version: int) -> Predictor:
    return _predictor_for(ModelRegistry(registry_root).get(model, version))


def loaded_predictor(job: ScoringJob) -> Predictor:
    """The predictor of ``job``'s model version, loaded once per process (a Dask worker's, or this one)."""
    with _LOCK:  # threads of one worker share one model (predicting is thread-safe) instead of each loading it
        return _cached_predictor(job.registry_root, job.model, job.version)


def score_partition(part: Partition, job: ScoringJob, out_dir: str) -> tuple[str, int, int]:
    """Score the objects of ``part`` and write them to their output partition under ``out_dir``.

    Returns
    -------
    key : str
        The partition's key.
    n_objects, n_errors : int
        Objects written, and those among them with an error instead of a prediction.
    """
    predictor = loaded_predictor(job)
    api = predictor.api
    try:
        rows = _dataset_rows(api, job, part) if part.dataset else _table_rows(predictor, job, part)
    except StellarError:
        raise
    except Exception as err:  # a corrupt file, a storage error: say which partition (a Dask worker's error says not)
        raise StellarDataError(
            f"partition {part.key} (objects {part.start}:{part.stop} of {part.source}) could not be scored: "
            f"{type(err).__name__}: {err}"
        ) from err
    frame = pd.DataFrame(rows).rename(columns={"object_id": job.id_column})
    meta = {
        "model": job.model,
        "version": job.version,
        "calibrator": type(api.calibrator).__name__ if api.calibrator is not None else None,
        "interval_calibrator": type(api.interval_calibrator).__name__ if api.interval_calibrator else None,
        "input": part.identity(),
    }
    catalogue.write_partition(frame, catalogue.output_path(out_dir, part), meta)
    n_err = int((frame["error"] != "").sum()) if len(frame) else 0
    return part.key, len(frame), n_err


def _table_rows(predictor: Predictor, job: ScoringJob, part: Partition) -> list[dict[str, Any]]:
    df = catalogue.read_partition(part, job.id_column)
    catalogue.require_column(df, job.id_column, part.source)
    requests = MODALITIES[job.modality].requests(df, job.id_column, predictor.api)
    rows: list[dict[str, Any]] = []
    while batch := list(itertools.islice(requests, SCORE_BATCH)):
        rows += _score_requests(predictor, batch)
    return rows


def _dataset_rows(api: Any, job: ScoringJob, part: Partition) -> list[dict[str, Any]]:
    ids, arrays = _dataset_arrays(job.registry_root, job.model, job.version, part.source, job.store_root)
    sel = {k: np.asarray(v)[part.start : part.stop] for k, v in arrays.items()}
    preds = api._predictions(sel)
    return [
        {"object_id": i, "error": "", **_flatten(p)} for i, p in zip(ids[part.start : part.stop], preds, strict=True)
    ]


@functools.lru_cache(maxsize=2)
def _dataset_arrays(
    registry_root: str, model: str, version: int, src: str, store_root: str | None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Object ids and model inputs of a dataset folder read by the model's own datamodule (through the store)."""
    from hydra.utils import instantiate
    from omegaconf import open_dict

    v = ModelRegistry(registry_root).get(model, version)
    cfg = v.training_config()
    with open_dict(cfg):
        cfg.datamodule.data_dir = str(src)
        if store_root:
            cfg.datamodule.store_root = str(store_root)
        if "source" in cfg.datamodule and "data_dir" in cfg.datamodule.source:
            cfg.datamodule.source.data_dir = str(src)
    dm = instantiate(cfg.datamodule, split=None)
    dm.setup("test")
    arrays = dm.arrays("test") if hasattr(dm, "arrays") else None
    if arrays is None:
        raise StellarDataError(f"the datamodule of {v.tag} cannot list its rows as arrays")
    ids = dm.meta["object_id"].astype(str).to_numpy()[np.asarray(arrays["index"])]
    return ids, {k: np.asarray(a) for k, a in arrays.items()}


# ---- a whole catalogue (the driver) ------------------------------------------------------------------------------


@dataclasses.dataclass
class Scored:
    """What a :func:`score` run did.

    Attributes
    ----------
    output : str
        Where the scores are (a folder, or the joined ``.csv``/``.parquet``).
    n_objects : int
        Objects of every partition of the input.
    n_errors : int
        Objects with an error instead of a prediction (counted in the joined table; 0 for a folder output).
    partitions : int
        Partitions of the input.
    computed : list of str
        Keys of the partitions computed by this run (the others were finished before).
    n_computed : int
        Objects of those partitions.
    seconds : float, s
        Wall time of the run (cluster start included).
    frame : DataFrame, optional
        The joined table, for a ``.csv``/``.parquet`` output.
    """

    output: str
    n_objects: int
    n_errors: int
    partitions: int
    computed: list[str]
    n_computed: int
    seconds: float
    frame: pd.DataFrame | None = None

    @property
    def objects_per_second(self) -> float:
        """Objects of the partitions computed now per second of this run, s⁻¹ (0 when none was computed)."""
        return self.n_computed / self.seconds if self.seconds > 0 else 0.0


def score(
    input: str | Any,
    output: str | Any,
    model: str,
    ref: str | int = LATEST,
    registry_root: str = DEFAULT_ROOT,
    id_column: str = "object_id",
    partition_rows: int = 256,
    progress: bool = True,
    store_root: str | None = None,
    executor: Any = None,
) -> Scored:
    """Score every object of ``input`` with a registered model into ``output``, skipping finished partitions.

    Parameters
    ----------
    input : str or path
        A table (``.parquet``, ``.csv``, ``.fits``), a folder of Parquet files (any depth: HATS layouts too) or a
        dataset folder of the model's datamodule; a path or an fsspec URL.
    output : str or path
        A folder (path or URL) of output partitions; or a ``.csv``/``.parquet`` file, joined at the end from the
        partitions in ``<output>.parts/`` (removed then).
    model, ref : str
        Registered model name and version/alias/``latest``.
    registry_root : str
        Registry root (path or URL).
    id_column : str
        Column holding the object ids (tables); the output's id column has the same name.
    partition_rows : int
        Most objects per partition (the unit of parallelism and of resuming); larger files are cut.
    progress : bool
        Show a tqdm progress bar (objects).
    store_root : str, optional
        Dataset store for a dataset folder (default: the one in the model's training config).
    executor : Synchronous or DaskCluster, optional
        Where partitions are scored (default: this process, one after another).
    """
    from tqdm.auto import tqdm

    from stellar.serving.executors import Synchronous

    t0 = time.perf_counter()
    if int(partition_rows) < 1:
        raise StellarValueError(f"partition_rows must be >= 1; got {partition_rows}")
    out, joined = str(output), catalogue.is_table(str(output))
    if not joined and "." in out.rstrip("/").rsplit("/", 1)[-1]:
        raise StellarValueError(f"output={out!r} must end in .csv or .parquet, or be a folder (no suffix)")
    version = ModelRegistry(registry_root).get(model, ref)
    modality = str(version.manifest.get("modality"))
    job = ScoringJob(str(version.registry.root), version.name, version.version, modality, id_column, store_root)
    parts, identity = _plan(str(input), job, modality_of(version).per_row, int(partition_rows))
    out_dir = f"{out}.parts" if joined else out
    key = {**identity, "model": version.tag, "model_files": _files_digest(version.manifest),
           "partition_rows": int(partition_rows), "id_column": id_column}  # fmt: skip
    done = catalogue.finished(out_dir)
    catalogue.claim_job(out_dir, key, replace=not done)  # no partition yet: a failed start's job is replaced
    todo = [p for p in parts if p.key not in done]
    total = sum(p.stop - p.start for p in parts)
    computed: list[str] = []
    n_new = 0
    with (
        executor or Synchronous() as ex,
        tqdm(total=total, disable=not progress, unit="obj", desc=f"scoring with {version.tag}") as bar,
    ):
        bar.update(total - sum(p.stop - p.start for p in todo))
        for k, n, _ in ex.map_unordered(score_partition, todo, job, out_dir):
            computed.append(k)
            n_new += n
            bar.update(n)
    result = Scored(out, total, 0, len(parts), computed, n_new, 0.0)
    if joined:
        result.frame = _join(out_dir, parts, out)
        result.n_errors = int((result.frame["error"] != "").sum())
    result.seconds = time.perf_counter() - t0
    log.info("scored %d objects (%d of %d partitions now) -> %s", total, len(computed), len(parts), out)
    return result


def _files_digest(manifest: dict[str, Any]) -> str:
    """A digest of a version's files (their SHA-256 in its manifest): another registry's ``name:vN``, other weights
    under the same tag, is another model; the same version in a registry moved elsewhere is the same one."""
    files = json.dumps(manifest.get("files", {}), sort_keys=True).encode()
    return hashlib.sha256(files).hexdigest()[:16]


def _plan(src: str, job: ScoringJob, per_row: bool, partition_rows: int) -> tuple[list[Partition], dict[str, Any]]:
    """The partitions of ``src`` and its identity."""
    files, base = catalogue.input_files(src)
    if files:
        counts = [catalogue.n_objects(f, per_row, job.id_column) for f in files]
        parts = catalogue.partitions(files, base, counts, partition_rows, per_row)
    else:  # a dataset folder: the model's datamodule reads it
        ids, _ = _dataset_arrays(job.registry_root, job.model, job.version, src, job.store_root)
        parts = catalogue.partitions([src], "", [len(ids)], partition_rows, dataset=True)
        # identified by every file in it: the folder's own size and mtime miss a file rewritten in place
        files, base = [urls.join(src, rel) for rel in urls.find(src)], src
    if not parts:
        raise StellarDataError(f"input={src!r} holds no objects to score")
    return parts, catalogue.input_identity(files, base)


def _join(out_dir: str, parts: list[Partition], out: str) -> pd.DataFrame:
    """The partitions joined into ``out`` (CSV or Parquet, written atomically), then removed."""
    frame = catalogue.join(out_dir, parts)
    if out.lower().endswith(".csv"):
        catalogue.write_bytes(out, frame.to_csv(index=False).encode())
    else:
        catalogue.write_bytes(out, catalogue.parquet_bytes(frame))
    catalogue.remove(out_dir)
    return frame


if __name__ == "__main__":
    # the entry point is stellar.score (Hydra, conf/score.yaml → stellar.pipelines.score.run): serving sits below the
    # pipelines and never imports them, so this command runs that module as the script instead
    import runpy

    runpy.run_module("stellar.score", run_name="__main__", alter_sys=True)
