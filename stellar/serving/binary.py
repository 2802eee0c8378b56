"""The binary request/response format of every ``/predict/*`` endpoint: Arrow IPC streams beside JSON.

A client sends ``Content-Type: application/vnd.apache.arrow.stream`` and/or ``Accept:
application/vnd.apache.arrow.stream``; JSON stays the default both ways. Arrow rather than ``.npy``/``.npz``: one
stream carries named columns of different types (ragged ``list<float32>`` rows, per-object scalars, strings), so
every field of a request schema has one obvious encoding, and the answer is a table that pandas, astropy and
polars read without a schema of ours.

The request stream (one or more record batches) holds one row per object and one column per field of the
endpoint's request schema, named as in JSON: ``spectra`` as ``list<float32>`` (or float64, or a fixed-size list),
``redshift`` as a float column… Request-level options (``model``, ``medium``, ``unit``, a shared ``bands`` list)
travel in the schema metadata, each value JSON (a bare string is taken as the string). Array fields
(:class:`~stellar.serving.arrays.ArrayRows`) become numpy rows straight from the column's buffers, with no Python
float made; the other columns Python values. They become the very pydantic request object the JSON body becomes,
so validation, limits and 4xx answers are the endpoint's own.

:class:`BinaryFormatMiddleware` answers every ``POST`` to these endpoints itself, JSON too (parsed by orjson,
:func:`decode_json`; the answer written by orjson), inside the payload-limit, API-key and metrics middlewares, and
hands the object to the endpoint's LitServe handler exactly as LitServe's own route does. FastAPI's route (the
standard library's JSON parser, its dependency resolution, its ``jsonable_encoder`` walk over every float of the
answer) cost about a third of the HTTP process's time per request.

The Arrow answer has one row per object: ``predicted_class``, ``valid_fraction``, ``ood_score``, ``ood``, a
``p_<class>`` column per class and ``<target>_mean``, ``<target>_std``, ``<target>_lo95``, ``<target>_hi95``
per target; ``model``, ``version``, ``modality``, ``calibrated``, ``intervals_calibrated`` and ``assumed`` are
in the schema metadata (JSON values). Errors are always answered in JSON (``{"detail": ...}``).
"""

from __future__ import annotations

import inspect
import json
import struct
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse, Response

from stellar.serving.arrays import array_fields
from stellar.serving.responses import (
    ARROW_STREAM,
    StreamedAnswer,
    encode_arrow,
    negotiate,
    not_acceptable,
    response_table,
)
from stellar.serving.schemas import MAX_ROWS
from stellar.serving.validation import strict_json

__all__ = [
    "ARROW_STREAM",
    "BinaryFormatMiddleware",
    "Endpoints",
    "decode_arrow",
    "decode_json",
    "encode_arrow",
    "response_table",
]


class BodyError(Exception):
    """A request body that cannot be read (the HTTP status and why)."""

    def __init__(self, status: int, detail: Any):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _option(raw: bytes) -> Any:
    text = raw.decode()
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to parse: the string, refused by the schema
        return text


def decode_arrow(body: bytes, request_class: type[BaseModel]) -> BaseModel:
    """The request object of an Arrow IPC stream (see the module docstring for the columns).

    Parameters
    ----------
    body : bytes
        The whole stream.
    request_class : pydantic model class
        The endpoint's request schema (e.g. :class:`~stellar.serving.schemas.SpectralRequest`).

    Raises
    ------
    BodyError
        400 for a stream Arrow cannot read (truncated, not Arrow) or with compressed record batches, 422 for
        values the schema refuses (wrong type, shape, NaN-only rows…, with pydantic's list of errors located as in
        a JSON body).
    """
    try:
        if any(_compressed(m.metadata.to_pybytes()) for m in pa.ipc.MessageReader.open_stream(pa.BufferReader(body))):
            raise BodyError(400, "compressed Arrow record batches are not accepted (they expand past max_body_mb)")
        table = pa.ipc.open_stream(pa.BufferReader(body)).read_all()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, struct.error, IndexError) as err:
        raise BodyError(400, f"body is not a readable Arrow IPC stream ({ARROW_STREAM}): {err}") from err
    try:
        fields: dict[str, Any] = {k.decode(): _option(v) for k, v in (table.schema.metadata or {}).items()}
    except UnicodeDecodeError as err:
        raise BodyError(422, f"schema metadata must be UTF-8 text (JSON values): {err}") from err
    repeated = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
    if repeated:
        raise BodyError(422, f"columns {repeated} sent more than once: send each field as one column")
    clash = set(fields) & set(table.column_names)
    if clash:
        raise BodyError(422, f"{sorted(clash)} sent both as columns and as schema metadata: send each once")
    if table.num_rows > MAX_ROWS:
        raise BodyError(422, f"the stream has {table.num_rows} rows (objects); at most {MAX_ROWS} per request")
    expanding = [n for n, t in zip(table.column_names, table.schema.types, strict=True) if _expands(t)]
    if expanding:
        raise BodyError(422, f"columns {expanding} hold lists of null, run-end or dictionary values: send plain values")
    arrays = array_fields(request_class)
    for name in table.column_names:
        column = table.column(name)
        rows = _column_rows(column) if name in arrays else None
        fields[name] = column.to_pylist() if rows is None else rows
    return _validate(fields, request_class)


def _expands(t: pa.DataType, nested: bool = False) -> bool:
    """Whether a column of type ``t`` can hold more values than the body has bytes: inside lists, null, run-end
    encoded and dictionary values take no bytes per value (a 300-byte stream holds a row of 10⁹ nulls), so they
    would expand without bound into Python values. At the top they are bounded by the rows (``MAX_ROWS``)."""
    if pa.types.is_null(t):
        return nested
    if pa.types.is_run_end_encoded(t) or pa.types.is_dictionary(t):
        return nested or _expands(t.value_type, nested)
    if pa.types.is_struct(t):
        return any(_expands(t.field(i).type, nested) for i in range(t.num_fields))
    if pa.types.is_map(t):
        return _expands(t.key_type, True) or _expands(t.item_type, True)
    if pa.types.is_nested(t):  # list, large list, fixed-size list, list views
        return _expands(t.value_type, True)
    return False


def _compressed(meta: bytes) -> bool:
    """Whether the IPC message of flatbuffer ``meta`` is a record batch (or dictionary batch) with compressed
    buffers: a few kB of zstd expand to GB, past the body limit, so they are refused before Arrow decompresses them.
    Flatbuffers: ``Message.header`` (field 2) of type 3 (``RecordBatch``) or 4 (``DictionaryBatch``, whose ``data``,
    field 1, is the record batch); ``RecordBatch.compression`` is field 3 (Arrow's Message.fbs)."""

    def fields(pos: int) -> Any:  # a table's field → its offset from the table (0: absent)
        vtable = pos - struct.unpack_from("<i", meta, pos)[0]
        size = struct.unpack_from("<H", meta, vtable)[0]
        return lambda i: struct.unpack_from("<H", meta, vtable + 4 + 2 * i)[0] if 4 + 2 * i < size else 0

    def child(pos: int, offset: int) -> int:
        return pos + offset + struct.unpack_from("<I", meta, pos + offset)[0]

    root = struct.unpack_from("<I", meta, 0)[0]
    message = fields(root)
    kind = meta[root + message(1)] if message(1) else 0
    if kind not in (3, 4) or not message(2):
        return False
    header = child(root, message(2))
    if kind == 4:
        data = fields(header)(1)
        if not data:
            return False
        header = child(header, data)
    return bool(fields(header)(3))


def _column_rows(column: pa.ChunkedArray) -> np.ndarray | list[np.ndarray] | None:
    """A column of lists of numbers as numpy rows (no Python float made): a 2-D array when every row has the same
    length, else one 1-D array per row; ``None`` for anything else (nulls, strings…), which goes to pydantic as
    Python values and is refused there with its usual error."""
    column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    t = column.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        return None
    values = column.flatten()
    if column.null_count or values.null_count:
        return None
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        return None
    flat = values.to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(t):
        return flat.reshape(len(column), t.list_size)
    if not len(column):  # no rows (np.split below would make one empty row of them)
        return flat.reshape(0, 0)
    offsets = column.offsets.to_numpy() - column.offsets[0].as_py()
    lengths = np.diff(offsets)
    if len(lengths) and (lengths == lengths[0]).all():
        return flat.reshape(len(column), lengths[0])
    return np.split(flat, offsets[1:-1])


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


class Endpoints:
    """The ``/predict/*`` routes that :class:`BinaryFormatMiddleware` answers in binary, filled in by
    :meth:`attach` once the LitServer exists (the middleware is declared before it)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[Any, type[BaseModel], type[BaseModel]]] = {}

    def attach(self, server: Any, apis: list[Any]) -> None:
        """Route → (LitServe request handler, request schema, response schema) of every endpoint of ``server``
        whose ``decode_request`` and ``encode_response`` are annotated with pydantic models (others stay JSON)."""
        from litserve.server import RegularRequestHandler

        for api in apis:
            request_class = inspect.signature(api.decode_request).parameters["request"].annotation
            response_class = inspect.signature(api.encode_response).return_annotation
            if not all(inspect.isclass(c) and issubclass(c, BaseModel) for c in (request_class, response_class)):
                continue
            self.routes[api.api_path] = (RegularRequestHandler(api, server), request_class, response_class)


class BinaryFormatMiddleware:
    """Answers every ``POST /predict/*`` of a pydantic endpoint, in JSON or Arrow (:data:`ARROW_STREAM`) either way;
    415 for a body of any other media type, 406 for an ``Accept`` that takes neither
    (:func:`~stellar.serving.responses.negotiate`). Other routes and methods pass through untouched.

    Parameters
    ----------
    app : ASGI app
        The app it wraps (declared first: the innermost middleware, inside the payload limit and API key).
    endpoints : Endpoints
        The routes it answers, attached after the server is built.
    """

    def __init__(self, app: Any, endpoints: Endpoints):
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = self.endpoints.routes.get(str(scope.get("path", ""))) if scope["type"] == "http" else None
        if route is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        content_type = _media_type(headers.get("content-type", "application/json"))
        answer_type = negotiate(headers.get("accept"))
        if answer_type is None:
            response: Response = not_acceptable(headers["accept"])
        else:
            response = await self._answer(receive, route, content_type, answer_type == ARROW_STREAM)
        await response(scope, receive, send)

    async def _answer(self, receive: Any, route: Any, content_type: str, wants_arrow: bool) -> Response:
        from fastapi import HTTPException

        handler, request_class, response_class = route
        if content_type != ARROW_STREAM and not _is_json(content_type):
            why = f"Content-Type {content_type!r} is not accepted: send application/json or {ARROW_STREAM}"
            return JSONResponse(status_code=415, content={"detail": why})
        body = await _read_body(receive)
        try:
            if content_type == ARROW_STREAM:
                parsed = decode_arrow(body, request_class)
            else:
                parsed = decode_json(body, request_class)
            answer = await handler.handle_request(parsed, request_class)
        except BodyError as err:
            return JSONResponse(status_code=err.status, content={"detail": err.detail})
        except HTTPException as err:
            return JSONResponse(status_code=err.status_code, content={"detail": err.detail})
        if isinstance(answer, StreamedAnswer):  # a large answer, written in chunks of rows
            return answer.as_arrow() if wants_arrow else answer
        if isinstance(answer, Response):  # an endpoint's 4xx (always JSON)
            return answer
        valid = response_class.model_validate(answer)  # as FastAPI checks the JSON route
        if wants_arrow:
            return Response(encode_arrow(response_table(valid.model_dump(mode="json"))), media_type=ARROW_STREAM)
        return Response(orjson.dumps(valid.model_dump()), media_type="application/json")


async def _read_body(receive: Any) -> bytes:
    """The whole request body (the payload limit, outside, stops it growing past ``max_body_mb``)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def decode_json(body: bytes, request_class: type[BaseModel]) -> BaseModel:
    """The request object of a JSON body, parsed by orjson (``NaN``/``Infinity`` literals, which orjson refuses,
    by the standard library: they are masked values).

    Raises
    ------
    BodyError
        422 for a body that is not JSON (``json_invalid`` at the character where it fails, as FastAPI answers) or
        that the schema refuses (pydantic's errors located as FastAPI locates them).
    """
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            fields = json.loads(body)
        except (ValueError, RecursionError) as err:  # RecursionError: nested deeper than the parser allows
            where = getattr(err, "pos", 0)
            error = {"type": "json_invalid", "loc": ["body", where], "msg": "JSON decode error", "input": {}}
            raise BodyError(422, [{**error, "ctx": {"error": getattr(err, "msg", str(err))}}]) from err
    return _validate(fields, request_class)


def _validate(fields: Any, request_class: type[BaseModel]) -> BaseModel:
    """``request_class`` validated from ``fields``; a 422 :class:`BodyError` with pydantic's errors (strict JSON,
    array inputs echoed as lists) when the schema refuses them."""
    try:
        return request_class.model_validate(fields)
    except ValidationError as err:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in err.errors(include_url=False)]
        try:
            encoded = strict_json(jsonable_encoder(errors, custom_encoder={np.ndarray: np.ndarray.tolist}))
        except RecursionError:  # an input nested too deep to echo: the errors without their input
            encoded = strict_json(jsonable_encoder([{k: v for k, v in e.items() if k != "input"} for e in errors]))
        raise BodyError(422, encoded) from err
