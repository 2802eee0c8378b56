"""The base LitServe API that every modality's endpoint subclasses: one registered model, decoded jobs, failures
as values, batched preprocessing and prediction, and the response.

The flow of a request: pydantic validates the body in the HTTP process (:mod:`stellar.serving.schemas`); in the
inference worker :meth:`StellarAPI.decode_request` turns it into per-object rows (checks that need the model,
such as its name and wavelength coverage, happen here); :meth:`StellarAPI.predict` takes the rows of every
request of a batch, runs the modality's preprocessing on groups of compatible rows at once (the very object the
datamodule used, rebuilt from the registry version), one forward pass, calibration, and splits the results back
per request. A request that fails is answered on its own with a 4xx; the other requests of its batch are not
affected (LitServe fails a whole batch when a method raises, so failures travel as values, never as exceptions).
"""

# no ``from __future__ import annotations``: LitServe reads the request and response classes of decode_request and
# encode_response from their annotations, which must therefore be classes, not strings

import logging
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import litserve as ls
import numpy as np
from fastapi.responses import JSONResponse

from stellar.errors import StellarConfigError, StellarError
from stellar.monitoring.summaries import summarize
from stellar.registry import DEFAULT_ROOT, LATEST, ModelRegistry, ModelVersion
from stellar.serving.metrics import WorkerMetrics, use_multiprocess_dir
from stellar.serving.request_log import RequestLog, RequestLogConfig, new_request_id, prediction_rows
from stellar.serving.responses import STREAM_ROWS, StreamedAnswer
from stellar.serving.schemas import PredictionResponse

log = logging.getLogger(__name__)

#: rows per forward pass (bounds memory for large batches)
CHUNK_ROWS = 256


@dataclass
class Failure:
    """A request that cannot be answered: the HTTP status and what was wrong."""

    status: int
    detail: str


@dataclass
class Job:
    """One decoded request: an input row per object, and what was assumed about them."""

    rows: list[dict[str, Any]]
    assumed: list[str] = field(default_factory=list)


class StellarAPI(ls.LitAPI):
    """A registered model behind one endpoint (subclasses: one per modality).

    Parameters
    ----------
    model : str
        Registered model name.
    ref : str or int
        Version (``3``, ``"v3"``), alias (``"production"``) or ``"latest"``.
    registry_root : str
        Registry root (path or fsspec URL).
    api_path : str
        Route, e.g. ``/predict/spectral``.
    max_batch_size : int
        Most requests the worker takes into one batch.
    batch_timeout : float, s
        How long the worker waits to fill a batch.
    num_threads : int, optional
        torch threads of the worker (``None``: torch's default).
    stream_rows : int, optional
        Answers with more objects are written in chunks of this many (:mod:`stellar.serving.responses`);
        ``None``: never.
    """

    modality = "generic"
    #: the kind of ingest record (:mod:`stellar.serving.files`) a folder of survey files gives this endpoint
    record_kind: str | None = None

    def __init__(
        self,
        model: str,
        ref: str | int = LATEST,
        registry_root: str = DEFAULT_ROOT,
        api_path: str = "/predict",
        max_batch_size: int = 16,
        batch_timeout: float = 0.01,
        num_threads: int | None = 1,
        stream_rows: int | None = STREAM_ROWS,
    ):
        super().__init__(max_batch_size=int(max_batch_size), batch_timeout=float(batch_timeout), api_path=api_path)
        self.model_name = model
        self.ref = ref
        self.registry_root = str(registry_root)
        self.num_threads = num_threads
        self.stream_rows = stream_rows
        self.load_error: str | None = None
        self.version_number = 0
        self.class_names: list[str] = []
        self.targets: list[str] = []
        self.metrics_dir: str | None = None
        self.request_log_cfg: RequestLogConfig | None = None
        self.worker_metrics: WorkerMetrics | None = None
        self.request_log: RequestLog | None = None

    def enable_monitoring(self, metrics_dir: str | None, request_log: RequestLogConfig | None) -> None:
        """Count this endpoint's predictions in the server's metric files (``metrics_dir``) and keep its request
        log; both start in :meth:`setup`, in the inference worker. ``None`` leaves either off."""
        self.metrics_dir = metrics_dir
        self.request_log_cfg = request_log

    # ---- setup -------------------------------------------------------------------------------------------
    def setup(self, device: str = "cpu") -> None:
        """Load the model, its calibrators (class probabilities, regression intervals) and its preprocessing.

        A model that is not registered (yet) does not stop the server: this endpoint answers 404 saying so.
        """
        import torch

        from stellar.evaluation.calibration import calibrated_probs  # imported here, not on the first request

        self._calibrated_probs = calibrated_probs
        self.interval_calibrator: Any = None
        self.reference: Any = None
        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        self.device = device
        try:
            version = ModelRegistry(self.registry_root).get(self.model_name, self.ref)
            self.net = version.load_model()
            self.calibrator = version.calibrator()
            self.interval_calibrator = version.interval_calibrator()  # None for versions without one
            self.use_preprocessing(self.load_preprocessing(version))
            self.reference = self.load_reference(version)
        except StellarError as err:
            self.load_error = f"model {self.model_name!r} ({self.ref}) is not available at {self.api_path}: {err}"
            log.error("%s", self.load_error)
            return
        self.version_number = version.version
        self.class_names = version.class_names
        self.targets = version.targets
        self.inputs = tuple(getattr(self.net, "inputs", ()))
        if hasattr(self.net, "to"):
            self.net = self.net.to(device)
        self._start_monitoring()
        log.info("%s serves %s at %s", type(self).__name__, version.tag, self.api_path)

    def _start_monitoring(self) -> None:
        if self.metrics_dir:
            use_multiprocess_dir(self.metrics_dir)
            self.worker_metrics = WorkerMetrics(self.api_path, self.model_name, self.version_number, self.class_names)
        if self.request_log_cfg is not None:
            on_error = self.worker_metrics.log_errors.inc if self.worker_metrics else None
            self.request_log = RequestLog(self.request_log_cfg, self.api_path, on_error).start()

    def load_reference(self, version: ModelVersion) -> Any:
        """The training reference of ``version`` for per-object OOD scores (``None``, logged, for versions from
        before monitoring: their answers carry no score)."""
        if "reference.npz" not in version.files:
            log.warning("%s has no training reference: %s answers carry no OOD score", version.tag, self.api_path)
            return None
        return version.reference()

    def ood_scores(self, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
        """Out-of-distribution score and flag of every row against the training reference (``None`` without one,
        or when the score cannot be computed, which is logged and never fails the request)."""
        if self.reference is None:
            return None
        try:
            score, flag = self.reference.ood(self.summary_inputs(arrays), self.prep)
        except (StellarError, ValueError, KeyError) as err:
            log.warning("%s: no OOD score for this batch: %s", self.api_path, err)
            return None
        return np.asarray(score), np.asarray(flag)

    def load_preprocessing(self, version: ModelVersion) -> Any:
        """The training preprocessing of ``version`` (``None`` if it stores none)."""
        return version.preprocessing()

    def check_preprocessing(self, prep: Any) -> None:
        """Refuse a model whose stored preprocessing this endpoint cannot apply."""

    def use_preprocessing(self, prep: Any) -> None:
        """Check ``prep`` and keep it as the preprocessing of every request (and what derives from it)."""
        self.check_preprocessing(prep)
        self.prep = prep

    # ---- per request -------------------------------------------------------------------------------------
    def _decode(self, request: Any) -> Job | Failure:
        if self.load_error:
            return Failure(404, self.load_error)
        if request.model is not None and request.model != self.model_name:
            return Failure(
                404,
                f"unknown model {request.model!r}: {self.api_path} serves {self.model_name!r} (v{self.version_number})",
            )
        try:
            return self.to_job(request)
        except StellarError as err:
            return Failure(422, str(err))
        except (ValueError, TypeError, IndexError, ArithmeticError) as err:  # input the schema let through
            log.warning("request refused by %s: %r", type(self).__name__, err)
            return Failure(422, f"invalid input: {err}")

    def to_job(self, request: Any) -> Job:
        """Per-object input rows of a validated request (modality-specific)."""
        raise NotImplementedError

    def bodies(self, data: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], list[list[str]]]:
        """Request bodies (one per object) and per-object notes of what Python users hold (modality-specific, see
        :mod:`stellar.serving.inputs`); what :meth:`stellar.serving.predictor.Predictor.predict` sends here."""
        raise StellarConfigError(f"{type(self).__name__} takes no Python inputs; send request bodies to answer()")

    def record_arguments(self, record: Any) -> tuple[dict[str, Any], list[str]]:
        """The arguments of :meth:`bodies` for one ingest record of :attr:`record_kind`, and notes of what was
        done to it (modality-specific, see :mod:`stellar.serving.files`)."""
        raise StellarConfigError(f"{type(self).__name__} reads no survey files")

    def group_key(self, row: dict[str, Any]) -> Hashable:
        """Rows with the same key are preprocessed together in one call."""
        raise NotImplementedError

    def preprocess(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Model inputs (arrays with a first axis of ``len(rows)``) of a group of compatible rows."""
        raise NotImplementedError

    def merge_inputs(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Model inputs of several groups of rows, stacked along the first axis in order."""
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def valid_fraction(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        mask = inputs.get("mask")
        n = len(next(iter(inputs.values())))
        if mask is None:
            return np.ones(n)
        return 1.0 - mask.reshape(n, -1).mean(axis=1)

    # ---- LitAPI ------------------------------------------------------------------------------------------
    def batch(self, inputs: list[Job | Failure]) -> list[Job | Failure]:
        return list(inputs)

    def unbatch(self, output: list[Any]) -> list[Any]:
        return list(output)

    def predict(self, x: Any) -> Any:
        """Predictions of one decoded request, or of a list of them (a batch)."""
        jobs = x if isinstance(x, list) else [x]
        results: list[Any] = list(jobs)
        todo = [i for i, j in enumerate(jobs) if isinstance(j, Job)]
        inputs = self._preprocess_jobs(jobs, todo, results)
        todo = [i for i in todo if isinstance(results[i], Job)]
        if todo:
            arrays = self.merge_inputs([inputs[i] for i in todo])
            preds = self._predictions(arrays)
            start = 0
            for i in todo:
                n = len(jobs[i].rows)
                mine = preds[start : start + n]
                start += n
                broken = [r for r, p in enumerate(mine) if p.get("not_finite")]
                if broken:
                    why = "the model's output is not finite (values far outside the training range?)"
                    results[i] = Failure(422, f"object(s) {broken}: {why}")
                else:
                    results[i] = (jobs[i], mine)
            self._monitor(jobs, todo, arrays, preds, results)
        return results if isinstance(x, list) else results[0]

    def summary_inputs(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """The model inputs as :func:`~stellar.monitoring.summaries.summarize` reads them (here: as they are)."""
        return arrays

    def _monitor(
        self,
        jobs: list[Any],
        todo: list[int],
        arrays: dict[str, np.ndarray],
        preds: list[dict[str, Any]],
        results: list[Any],
    ) -> None:
        """Count the objects answered in the metrics and log them in the request log; never fails the batch."""
        if self.worker_metrics is None and self.request_log is None:
            return
        keep: list[int] = []
        request_ids: list[str] = []
        rows: list[int] = []
        start = 0
        for i in todo:
            n = len(jobs[i].rows)
            if not isinstance(results[i], Failure):
                keep += range(start, start + n)
                request_ids += [new_request_id()] * n
                rows += range(n)
            start += n
        if not keep:
            return
        answered = [preds[k] for k in keep]
        if self.worker_metrics is not None:
            self.worker_metrics.record([p.get("predicted_class") for p in answered])
        if self.request_log is None:
            return
        try:
            mine = {k: v[keep] for k, v in arrays.items()}
            meta = {"model": self.model_name, "version": self.version_number}
            self.request_log.append(  # the columns are made in the log's thread, when it writes them
                meta,
                request_ids,
                rows,
                partial(prediction_rows, answered, self.class_names, self.targets),
                partial(summarize, self.summary_inputs(mine), self.prep),
                mine,
            )
        except Exception:  # the log must never fail a request: say so, count it, go on
            self.request_log.report_failure(f"logging {len(keep)} rows of {self.api_path}")

    def _preprocess_jobs(
        self, jobs: list[Any], todo: list[int], results: list[Any]
    ) -> dict[int, dict[str, np.ndarray]]:
        """Preprocess the rows of every job, grouped by :meth:`group_key`; a job with a bad row becomes a 422."""
        groups: dict[Hashable, list[tuple[int, int]]] = {}
        for i in todo:
            for r, row in enumerate(jobs[i].rows):
                groups.setdefault(self.group_key(row), []).append((i, r))
        per_row: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for members in groups.values():
            rows = [jobs[i].rows[r] for i, r in members]
            try:
                out = self.preprocess(rows)
                for k, (i, r) in enumerate(members):
                    per_row[i, r] = {key: v[k : k + 1] for key, v in out.items()}
            except (StellarError, ValueError, ArithmeticError):  # isolate the offending request(s): row by row
                for (i, r), row in zip(members, rows, strict=True):
                    try:
                        per_row[i, r] = self.preprocess([row])
                    except (StellarError, ValueError, ArithmeticError) as err:
                        results[i] = Failure(422, f"row {r}: {err}")
        inputs = {}
        for i in todo:
            if isinstance(results[i], Job):
                rows_out = [per_row[i, r] for r in range(len(jobs[i].rows))]
                inputs[i] = self.merge_inputs(rows_out)
                empty = np.flatnonzero(self.valid_fraction(inputs[i]) == 0)
                if len(empty):  # e.g. zero or negative flux: nothing survives the training preprocessing
                    why = "no valid sample after preprocessing (masked: non-finite, non-positive or off the grid)"
                    results[i] = Failure(422, f"object(s) {empty.tolist()} have {why}")
        return inputs

    def _outputs(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model-output contract (physical units) of model inputs, in chunks of :data:`CHUNK_ROWS`."""
        if hasattr(self.net, "predict_outputs"):  # estimators (XGBoost) follow the same contract on numpy arrays
            return dict(self.net.predict_outputs(arrays))
        import torch

        n = len(next(iter(arrays.values())))
        parts: list[dict[str, np.ndarray]] = []
        with torch.inference_mode():
            for s in range(0, n, CHUNK_ROWS):
                tensors = [torch.as_tensor(arrays[k][s : s + CHUNK_ROWS]).to(self.device) for k in self.inputs]
                out = self.net.to_physical(self.net(*tensors))
                parts.append({k: v.float().cpu().numpy() for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def subset_groups(self, arrays: dict[str, np.ndarray]) -> list[str] | None:
        """The modality subset of each row (``None`` here: one modality; the multi-modal endpoint overrides it)."""
        return None

    def _predictions(self, arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        out = self._outputs(arrays)
        valid = self.valid_fraction(arrays)
        n = len(valid)
        # values far outside the training range can overflow the network: those rows are refused, not calibrated
        bad = np.zeros(n, bool)
        if "logits" in out:
            bad |= ~np.isfinite(out["logits"]).all(axis=1)
        for t in self.targets:
            bad |= ~np.isfinite(out[f"{t}_mean"])
        probs = None
        if "logits" in out and self.class_names:
            probs = np.full(out["logits"].shape, np.nan)
            if (~bad).any():
                probs[~bad] = self._calibrated_probs(self.calibrator, out["logits"][~bad])
        intervals: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if self.interval_calibrator is not None:  # the calibrated 95% interval, then the calibrated 1-sigma std
            groups = self.subset_groups(arrays)  # the modality subset of each row, for a per-subset calibrator
            intervals = {t: self.interval_calibrator.interval(out, t, 0.95, groups) for t in self.targets}
            out = self.interval_calibrator.transform(out, groups)
        ood = self.ood_scores(arrays)
        preds = []
        for k in range(n):
            p: dict[str, Any] = {"valid_fraction": float(valid[k]), "probabilities": {}, "targets": {}}
            if ood is not None:
                p["ood_score"], p["ood"] = _finite(ood[0][k]), bool(ood[1][k])
            if bad[k]:
                preds.append({**p, "not_finite": True})
                continue
            if probs is not None:
                p["probabilities"] = {c: _finite(probs[k, j]) or 0.0 for j, c in enumerate(self.class_names)}
                p["predicted_class"] = self.class_names[int(np.argmax(probs[k]))]
            for t in self.targets:
                logvar = float(out[f"{t}_logvar"][k])
                std = math.exp(0.5 * logvar) if math.isfinite(logvar) and logvar < 1400 else None
                p["targets"][t] = {"mean": _finite(out[f"{t}_mean"][k]), "std": std}
                if t in intervals:
                    lo, hi = _finite(intervals[t][0][k]), _finite(intervals[t][1][k])
                    p["targets"][t]["interval_95"] = None if lo is None or hi is None else (lo, hi)
            preds.append(p)
        return preds

    def encode_response(self, output: Any) -> PredictionResponse:
        if isinstance(output, Failure):
            return JSONResponse(status_code=output.status, content={"detail": output.detail})  # type: ignore[return-value]
        job, preds = output
        answer = {
            "model": self.model_name,
            "version": self.version_number,
            "modality": self.modality,
            "calibrated": self.calibrator is not None,
            "intervals_calibrated": self.interval_calibrator is not None,
            "predictions": preds,
            "assumed": job.assumed,
        }
        if self.stream_rows is not None and len(preds) > self.stream_rows:  # written in chunks by the HTTP process
            response_class = type(self).encode_response.__annotations__["return"]
            return StreamedAnswer(answer, response_class, self.stream_rows)  # type: ignore[return-value]
        return answer  # type: ignore[return-value]  # FastAPI validates it against PredictionResponse


def _finite(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def float_rows(rows: Sequence[Any]) -> list[np.ndarray]:
    """One float64 array per row of a request's (possibly ragged) rows (views of a validated 2-D array)."""
    return [np.asarray(r, dtype=np.float64) for r in rows]
