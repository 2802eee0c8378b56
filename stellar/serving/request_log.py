"""The server's optional request log: a bounded, rolling Parquet record of what each endpoint was asked and answered.

Written in the inference worker (:meth:`stellar.serving.base.StellarAPI.predict`), where the preprocessed model
inputs and the predictions of a batch are at hand: one row per predicted object with the UTC time, the endpoint,
model and version, a request id and the object's row in its request, the predicted class and the calibrated
probability of every class (``p_<class>``), the mean and standard deviation of every regression target
(``<target>_mean``, ``<target>_std``), the valid fraction of its input, and its input summaries
(:func:`stellar.monitoring.summaries.summarize` of the model inputs, ``in_`` prefixed: S/N, number of epochs, bands
present…) — never the raw payload unless ``payloads: true`` (then ``payload_<input>``: the flattened model input, with
its shape in ``payload_<input>_shape``). ``stellar.monitor requests=<dir>`` reads a log folder as one batch with
:func:`read_request_log`.

Files: ``<dir>/<endpoint-slug>/requests-<utc>-<pid>-<seq>.parquet``, each written to a hidden temporary file and
moved into place (``os.replace``), so a reader never sees half a file. Rows are buffered and written, by a thread of
the log's own so that no batch waits for the disk, when ``flush_rows`` are waiting, ``flush_seconds`` after the
oldest waiting row, and when the worker stops (SIGTERM, as the server stops its workers, or exit). After each
write the oldest files of the endpoint are deleted until at most ``max_rows`` rows are kept. A write that fails is
logged and counted (``stellar_request_log_errors_total``); it never fails a request.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stellar.errors import StellarConfigError, StellarDataError
from stellar.utils import urls

log = logging.getLogger(__name__)

#: the file names of a log folder (hidden temporary files never match)
FILE_GLOB = "requests-*.parquet"


@dataclass(frozen=True)
class RequestLogConfig:
    """``request_log`` of ``conf/serve.yaml``.

    Parameters
    ----------
    dir : str
        The log folder (one sub-folder per endpoint).
    max_rows : int
        Most rows kept per endpoint; the oldest files are deleted first.
    flush_rows : int
        Rows buffered before a file is written (at most ``max_rows``).
    flush_seconds : float
        Longest a row waits in the buffer.
    payloads : bool
        Also store the model inputs of every object (large; off by default).
    """

    dir: str
    max_rows: int = 1_000_000
    flush_rows: int = 1000
    flush_seconds: float = 10.0
    payloads: bool = False

    @classmethod
    def from_cfg(cls, node: Mapping[str, Any] | None) -> RequestLogConfig | None:
        """The configuration of a ``request_log`` node, or ``None`` when it is off (``dir: null``)."""
        if not node or not node.get("dir"):
            return None
        cfg = cls(
            dir=str(node["dir"]),
            max_rows=int(node.get("max_rows", cls.max_rows)),
            flush_rows=int(node.get("flush_rows", cls.flush_rows)),
            flush_seconds=float(node.get("flush_seconds", cls.flush_seconds)),
            payloads=bool(node.get("payloads", cls.payloads)),
        )
        if cfg.max_rows < 1 or not 1 <= cfg.flush_rows <= cfg.max_rows:
            raise StellarConfigError(
                f"request_log: need 1 <= flush_rows <= max_rows, got flush_rows={cfg.flush_rows}, "
                f"max_rows={cfg.max_rows}"
            )
        if not cfg.flush_seconds > 0:
            raise StellarConfigError(f"request_log.flush_seconds must be > 0, got {cfg.flush_seconds}")
        if not urls.is_local(cfg.dir):  # files are renamed into place and rolled away by several workers
            raise StellarConfigError(
                f"request_log.dir={cfg.dir!r}: the server writes its log to a local folder; copy that folder to "
                "object storage for python -m stellar.monitor requests=<URL>"
            )
        return cfg


def endpoint_slug(api_path: str) -> str:
    """The folder name of an endpoint's log: ``/predict/spectral`` → ``predict_spectral``."""
    return re.sub(r"[^A-Za-z0-9]+", "_", api_path).strip("_") or "root"


def prediction_rows(preds: list[dict[str, Any]], class_names: list[str], targets: list[str]) -> dict[str, list[Any]]:
    """The prediction columns of the log (``predicted_class``, ``p_<class>``, ``<target>_mean``/``_std``,
    ``valid_fraction``) of a list of per-object predictions as the endpoints answer them."""
    cols: dict[str, list[Any]] = {"predicted_class": [p.get("predicted_class") for p in preds]}
    for c in class_names:
        cols[f"p_{c}"] = [p["probabilities"].get(c, np.nan) for p in preds]
    for t in targets:
        for stat in ("mean", "std"):
            cols[f"{t}_{stat}"] = [_nan_if_none(p["targets"].get(t, {}).get(stat)) for p in preds]
    cols["valid_fraction"] = [p["valid_fraction"] for p in preds]
    if any("ood_score" in p for p in preds):
        cols["ood_score"] = [_nan_if_none(p.get("ood_score")) for p in preds]
    return cols


def _nan_if_none(v: Any) -> float:
    return np.nan if v is None else float(v)


class RequestLog:
    """The request log of one endpoint in one inference worker.

    Parameters
    ----------
    cfg : RequestLogConfig
        Folder, bound, flush policy and whether to store payloads.
    endpoint : str
        The route (its slug names the sub-folder).
    on_error : callable, optional
        Called (no arguments) after each failed write, e.g. to count it in a metric.
    """

    def __init__(self, cfg: RequestLogConfig, endpoint: str, on_error: Callable[[], None] | None = None):
        self.cfg = cfg
        self.endpoint = endpoint
        self.folder = Path(cfg.dir) / endpoint_slug(endpoint)
        self.on_error = on_error
        self._buffer: list[Callable[[], pd.DataFrame]] = []  # each gives the rows of one batch
        self._rows = 0
        self._oldest: float | None = None  # monotonic time of the oldest buffered row
        self._seq = 0
        self._sizes: dict[str, int] = {}  # rows of the files seen (read from their footers once)
        # RLocks: the SIGTERM handler runs in the worker's main thread, which may hold them at that moment
        self._lock = threading.RLock()  # the buffer
        self._io_lock = threading.RLock()  # the files
        self._stop = threading.Event()
        self._wake = threading.Event()  # set when flush_rows are waiting
        self._timer = threading.Thread(target=self._flush_periodically, name="request-log", daemon=True)

    def start(self) -> RequestLog:
        """Write from a thread of the log's own (when ``flush_rows`` are waiting or ``flush_seconds`` after the oldest
        row), and flush what is left when the worker stops (exit or SIGTERM); without it, :meth:`append` writes."""
        self._timer.start()
        atexit.register(self.close)
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGTERM)

            def on_term(signum: int, frame: Any) -> None:
                self.close()
                if callable(previous):
                    previous(signum, frame)
                else:  # the default: die of the signal, as the server expects
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    os.kill(os.getpid(), signal.SIGTERM)

            signal.signal(signal.SIGTERM, on_term)
        return self

    # ---- rows --------------------------------------------------------------------------------------------
    def append(
        self,
        meta: Mapping[str, Any],
        request_ids: list[str],
        rows: list[int],
        preds: Mapping[str, list[Any]] | Callable[[], Mapping[str, list[Any]]],
        summaries: pd.DataFrame | Callable[[], pd.DataFrame],
        arrays: Mapping[str, np.ndarray],
    ) -> None:
        """Buffer one row per object (and have a file written when the buffer is full).

        Parameters
        ----------
        meta : Mapping
            Columns with one value for all rows (``model``, ``version``).
        request_ids, rows : list
            The request of each object and its row in that request.
        preds : Mapping[str, list] or callable
            Prediction columns (:func:`prediction_rows`), or a function that gives them: called when the rows are
            written, in the log's thread, so that the batch does not wait for it.
        summaries : DataFrame or callable
            The objects' input summaries (:func:`~stellar.monitoring.summaries.summarize`), stored ``in_`` prefixed,
            or a function that gives them (called as ``preds``).
        arrays : Mapping[str, ndarray]
            The objects' model inputs, stored when ``payloads`` is on.
        """
        n = len(rows)
        stamp = pd.Timestamp.now(tz="UTC")
        frame = partial(self._frame, stamp, dict(meta), list(request_ids), list(rows), preds, summaries, arrays)
        with self._lock:
            self._buffer.append(frame)
            self._rows += n
            if self._oldest is None:
                self._oldest = time.monotonic()
            full = self._rows >= self.cfg.flush_rows
        if full and self._timer.is_alive():  # written by the log's thread: the batch does not wait for the disk
            self._wake.set()
        elif full:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows to a new file, then keep the endpoint's files within ``max_rows``."""
        with self._lock:  # held only to take the buffer: appends never wait for the disk
            frames, self._buffer, self._rows, self._oldest = self._buffer, [], 0, None
        if not frames:
            return
        with self._io_lock:
            made = []
            for make in frames:  # a batch whose rows cannot be made is lost alone
                try:
                    made.append(make())
                except Exception:
                    self.report_failure(f"making the rows of a batch for {self.folder}")
            if not made:
                return
            try:
                self._write(pd.concat(made, ignore_index=True))
                self._enforce_bound()
            except Exception:
                self.report_failure(f"writing {sum(map(len, made))} rows to {self.folder}")

    def report_failure(self, what: str) -> None:
        """The log must never fail a request: say what failed, count it, go on."""
        log.exception("request log: %s failed", what)
        if self.on_error is not None:
            self.on_error()

    def close(self) -> None:
        """Flush and stop the log's thread (idempotent)."""
        self._stop.set()
        self._wake.set()
        self.flush()

    def _frame(
        self,
        stamp: pd.Timestamp,
        meta: dict[str, Any],
        request_ids: list[str],
        rows: list[int],
        preds: Mapping[str, list[Any]] | Callable[[], Mapping[str, list[Any]]],
        summaries: pd.DataFrame | Callable[[], pd.DataFrame],
        arrays: Mapping[str, np.ndarray],
    ) -> pd.DataFrame:
        """The log rows of one batch (see :meth:`append`)."""
        n = len(rows)
        columns = preds() if callable(preds) else preds
        frame = pd.DataFrame(
            {
                "timestamp": stamp,
                "endpoint": self.endpoint,
                **meta,
                "request_id": request_ids,
                "row": np.asarray(rows, dtype=np.int64),
                **columns,
            },
            index=pd.RangeIndex(n),
        )
        table = summaries() if callable(summaries) else summaries
        if len(table.columns):
            frame = pd.concat([frame, table.add_prefix("in_").reset_index(drop=True)], axis=1)
        if self.cfg.payloads:
            for key, value in arrays.items():
                v = np.asarray(value, dtype=np.float64)
                frame[f"payload_{key}"] = [v[k].ravel() for k in range(n)]
                frame[f"payload_{key}_shape"] = [list(v.shape[1:])] * n
        return frame

    # ---- files -------------------------------------------------------------------------------------------
    def _write(self, frame: pd.DataFrame) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        name = f"requests-{stamp}-{os.getpid()}-{self._seq:06d}.parquet"
        tmp = self.folder / f".{name}.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, self.folder / name)
        self._sizes[name] = len(frame)

    def _enforce_bound(self) -> None:
        """Delete the oldest files (by name: UTC time first) until the endpoint keeps at most ``max_rows`` rows; the
        newest file always stays."""
        import pyarrow.parquet as pq

        files = sorted(self.folder.glob(FILE_GLOB), key=lambda f: f.name)
        sizes = []
        for f in files:
            if f.name not in self._sizes:  # another worker's file
                try:
                    self._sizes[f.name] = pq.read_metadata(f).num_rows
                except FileNotFoundError:  # deleted by another worker meanwhile
                    self._sizes[f.name] = 0
            sizes.append(self._sizes[f.name])
        total = sum(sizes)
        for f, size in zip(files[:-1], sizes[:-1], strict=True):
            if total <= self.cfg.max_rows:
                break
            f.unlink(missing_ok=True)
            self._sizes.pop(f.name, None)
            total -= size

    def _flush_periodically(self) -> None:
        while not self._stop.is_set():
            full = self._wake.wait(min(1.0, self.cfg.flush_seconds))
            self._wake.clear()
            oldest = self._oldest
            if full or (oldest is not None and time.monotonic() - oldest >= self.cfg.flush_seconds):
                self.flush()


def new_request_id() -> str:
    """A random id for one request's rows in the log."""
    return uuid.uuid4().hex


def read_request_log(path: str | os.PathLike[str], endpoint: str | None = None) -> pd.DataFrame:
    """The rows of a request log folder as one table, oldest first.

    Parameters
    ----------
    path : str or PathLike
        The ``request_log.dir`` of the server: a folder or an fsspec URL (e.g. a copy synced to ``s3://…``).
    endpoint : str, optional
        Only this endpoint's rows (its route, ``/predict/spectral``, or its folder name, ``predict_spectral``).

    Returns
    -------
    DataFrame
        The log's columns (see the module docstring); columns that some files lack are NaN there.

    Raises
    ------
    StellarDataError
        If the folder holds no log files (for that endpoint).
    """
    root = str(path)
    pattern = f"{endpoint_slug(endpoint) if endpoint else '*'}/{FILE_GLOB}"
    files = sorted(urls.glob(root, pattern), key=urls.basename)
    if not files:
        where = f"{root} (endpoint {endpoint!r})" if endpoint else root
        raise StellarDataError(
            f"no request log files ({FILE_GLOB}) under {where}: is request_log.dir of the server this folder, and "
            "has it answered a request and flushed (flush_rows, flush_seconds, or shutdown)?"
        )
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f))  # pandas opens a URL through fsspec itself
        except FileNotFoundError:  # rolled away by a live server (max_rows) since the listing
            log.info("request log: %s was deleted while reading the log", f)
    if not frames:
        raise StellarDataError(f"the request log files under {root} were all deleted while reading them")
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values("timestamp", kind="stable", ignore_index=True)
