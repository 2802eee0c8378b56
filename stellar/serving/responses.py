"""How a ``/predict/*`` answer is written: the media type negotiated from ``Accept``, and large answers in chunks.

**Negotiation.** :func:`negotiate` reads ``Accept`` as HTTP does (a list of media ranges, each with an optional
``q`` weight, ``*/*`` and ``application/*`` wildcards): the answer is JSON or an Arrow IPC stream, whichever has the
highest weight (JSON on a tie, and without the header). When the header accepts neither (``text/csv``, or every
weight 0), the answer is a 406 in JSON naming the two formats: a client that asked for something else is told so
rather than handed a format it did not ask for.

**Streaming.** An answer with more than ``stream_rows`` objects (an endpoint's argument, default
:data:`STREAM_ROWS`) leaves the inference worker as a :class:`StreamedAnswer`: the answer's dict, which the HTTP
process writes in chunks of ``stream_rows`` objects with Starlette's :class:`~starlette.responses.StreamingResponse`
(HTTP chunked transfer) instead of validating, converting and serialising all of it at once. JSON is one valid
document written incrementally, with the fields and field order of the unstreamed answer; Arrow is one record batch
per chunk of rows, with one schema (every class and target column) for the whole stream. Every check of the answer
(its response schema) runs on all of it before the first byte is sent, so a failure is one JSON error, never a
half-written 200; requests that fail in the worker are answered before any of this (their 4xx is decided there).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = [
    "ARROW_STREAM",
    "JSON",
    "STREAM_ROWS",
    "StreamedAnswer",
    "encode_arrow",
    "negotiate",
    "not_acceptable",
    "response_table",
]

JSON = "application/json"
#: the media type of an Arrow IPC stream (:mod:`stellar.serving.binary`)
ARROW_STREAM = "application/vnd.apache.arrow.stream"

#: objects per chunk of a streamed answer; answers with more objects than this are streamed
STREAM_ROWS = 1024

_FORMATS = (JSON, ARROW_STREAM)  # in order of preference on equal weights


def _ranges(accept: str) -> Iterator[tuple[str, float]]:
    """(media range, weight) of each element of an ``Accept`` header; a weight that is not a number counts 0."""
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media:
            yield media.lower(), q


def negotiate(accept: str | None) -> str | None:
    """The media type of the answer to a request with this ``Accept`` header.

    Parameters
    ----------
    accept : str or None
        The header (``None`` or empty: none sent).

    Returns
    -------
    str or None
        ``"application/json"`` or :data:`ARROW_STREAM`; ``None`` when the header accepts
        neither (answer 406, see :func:`not_acceptable`).

    Examples
    --------
    >>> negotiate("application/json;q=0.5, application/vnd.apache.arrow.stream")
    'application/vnd.apache.arrow.stream'
    >>> negotiate("application/vnd.apache.arrow.stream;q=0.2, */*;q=0.8")
    'application/json'
    >>> negotiate("text/csv") is None
    True
    """
    if not accept or not accept.strip():
        return JSON
    weight = dict.fromkeys(_FORMATS, 0.0)
    exact: set[str] = set()
    for media, q in _ranges(accept):
        for fmt in _FORMATS:
            if media == fmt:  # an exact range overrides the wildcards, whatever its order
                weight[fmt] = q if fmt not in exact else max(weight[fmt], q)
                exact.add(fmt)
            elif fmt not in exact and media in ("*/*", "application/*"):
                weight[fmt] = max(weight[fmt], q)
    best = max(_FORMATS, key=lambda f: weight[f])  # the first of equals: JSON
    return best if weight[best] > 0 else None


def not_acceptable(accept: str) -> JSONResponse:
    """The 406 answer to an ``Accept`` header that :func:`negotiate` cannot satisfy."""
    detail = f"Accept {accept!r} accepts no format of this endpoint: ask for {JSON} or {ARROW_STREAM}"
    return JSONResponse(status_code=406, content={"detail": detail})


def response_table(
    response: Mapping[str, Any], classes: list[str] | None = None, targets: list[str] | None = None
) -> pa.Table:
    """The Arrow table of a prediction response (a :class:`~stellar.serving.schemas.PredictionResponse` as a
    dict): one row per object, the request-level fields in the schema metadata.

    ``classes`` and ``targets`` name the ``p_<class>`` and ``<target>_*`` columns (default: those of the
    predictions), so that every chunk of a streamed answer has the same schema."""
    preds = response["predictions"]
    if classes is None:
        classes = list(dict.fromkeys(c for p in preds for c in p.get("probabilities", {})))
    if targets is None:
        targets = list(dict.fromkeys(t for p in preds for t in p.get("targets", {})))
    cols: dict[str, pa.Array] = {
        "predicted_class": pa.array([p.get("predicted_class") for p in preds], pa.string()),
        "valid_fraction": pa.array([p["valid_fraction"] for p in preds], pa.float64()),
        "ood_score": pa.array([p.get("ood_score") for p in preds], pa.float64()),
        "ood": pa.array([p.get("ood") for p in preds], pa.bool_()),
    }
    for c in classes:
        cols[f"p_{c}"] = pa.array([p["probabilities"].get(c) for p in preds], pa.float64())
    for t in targets:
        est = [p["targets"].get(t) or {} for p in preds]
        intervals = [e.get("interval_95") or (None, None) for e in est]
        cols[f"{t}_mean"] = pa.array([e.get("mean") for e in est], pa.float64())
        cols[f"{t}_std"] = pa.array([e.get("std") for e in est], pa.float64())
        cols[f"{t}_lo95"] = pa.array([i[0] for i in intervals], pa.float64())
        cols[f"{t}_hi95"] = pa.array([i[1] for i in intervals], pa.float64())
    meta = {k: json.dumps(v) for k, v in response.items() if k != "predictions"}
    return pa.table(cols).replace_schema_metadata(meta)


def encode_arrow(table: pa.Table) -> bytes:
    """``table`` as one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


class StreamedAnswer(StreamingResponse):
    """A prediction answer written in chunks of rows (see the module docstring).

    It crosses LitServe's response queue from the inference worker as the answer's dict (it is picklable: the chunk
    iterator is made only when the HTTP process sends it), and FastAPI's route and
    :class:`~stellar.serving.binary.BinaryFormatMiddleware` send it as it is.

    Parameters
    ----------
    answer : dict
        The endpoint's answer (a ``PredictionResponse`` as a dict).
    response_class : pydantic model class
        The endpoint's response schema, checked on every object before the first byte is sent.
    chunk_rows : int
        Objects per chunk (per Arrow record batch).
    media_type : str
        ``"application/json"`` or :data:`ARROW_STREAM` (see :meth:`as_arrow`).
    """

    def __init__(
        self,
        answer: dict[str, Any],
        response_class: type[BaseModel],
        chunk_rows: int = STREAM_ROWS,
        media_type: str = JSON,
    ):
        # not StreamingResponse.__init__: it takes the chunk iterator, which is made only when the answer is sent
        self.answer = answer
        self.response_class = response_class
        self.chunk_rows = max(1, int(chunk_rows))
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(None)
        rows: Any = response_class.model_fields["predictions"].annotation  # list[Prediction] or a subclass
        self._rows: TypeAdapter[list[BaseModel]] = TypeAdapter(rows)

    def as_arrow(self) -> StreamedAnswer:
        """The same answer written as an Arrow IPC stream."""
        return StreamedAnswer(self.answer, self.response_class, self.chunk_rows, ARROW_STREAM)

    def _chunks(self) -> Iterator[list[dict[str, Any]]]:
        preds = self.answer["predictions"]
        for s in range(0, len(preds), self.chunk_rows):
            yield preds[s : s + self.chunk_rows]

    def _models(self, chunk: list[dict[str, Any]]) -> list[BaseModel]:
        return self._rows.validate_python(chunk)

    def _envelope(self) -> BaseModel:
        return self.response_class.model_validate({**self.answer, "predictions": []})

    def _check(self) -> tuple[list[str], list[str]]:
        """Validate every chunk (models dropped at once) and collect the class and target columns of the stream."""
        classes: dict[str, None] = {}
        targets: dict[str, None] = {}
        for chunk in self._chunks():
            self._models(chunk)
            for p in chunk:
                classes.update(dict.fromkeys(p.get("probabilities") or ()))
                targets.update(dict.fromkeys(p.get("targets") or ()))
        return list(classes), list(targets)

    def _json_body(self) -> Iterator[bytes]:
        envelope = self._envelope().model_dump_json().encode()
        head, _, tail = envelope.partition(b'"predictions":[]')  # keys are never escaped: the one occurrence
        yield head + b'"predictions":['
        for k, chunk in enumerate(self._chunks()):
            rows = self._rows.dump_json(self._models(chunk))[1:-1]  # the objects of a JSON list, without brackets
            yield b"," + rows if k else rows
        yield b"]" + tail

    def _arrow_body(self, classes: list[str], targets: list[str]) -> Iterator[bytes]:
        meta = self._envelope().model_dump(mode="json")
        sink = io.BytesIO()
        writer: pa.ipc.RecordBatchStreamWriter | None = None
        for chunk in self._chunks():
            dumped = [m.model_dump(mode="json") for m in self._models(chunk)]
            table = response_table({**meta, "predictions": dumped}, classes, targets)
            if writer is None:
                writer = pa.ipc.new_stream(sink, table.schema)
            writer.write_batch(table.combine_chunks().to_batches()[0])
            yield _drain(sink)
        if writer is not None:
            writer.close()
        yield _drain(sink)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            classes, targets = self._check()
        except (ValidationError, KeyError, TypeError) as err:  # the worker's answer broke the response schema
            detail = f"the answer does not match {self.response_class.__name__}: {err}"
            await JSONResponse(status_code=500, content={"detail": detail})(scope, receive, send)
            return
        body = self._arrow_body(classes, targets) if self.media_type == ARROW_STREAM else self._json_body()
        self.body_iterator = _in_threadpool(body)
        await super().__call__(scope, receive, send)

    def __reduce__(self) -> tuple[Any, ...]:  # across the response queue: the answer, never an iterator
        return (StreamedAnswer, (self.answer, self.response_class, self.chunk_rows, self.media_type))


def _drain(sink: io.BytesIO) -> bytes:
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data


def _in_threadpool(chunks: Iterator[bytes]) -> Any:
    from starlette.concurrency import iterate_in_threadpool

    return iterate_in_threadpool(chunks)  # encoding a chunk takes milliseconds: off the event loop
