"""One LitServe server for every configured endpoint, with a payload limit, an optional API key and metrics.

:func:`build_server` turns ``conf/serve.yaml`` into a :class:`litserve.LitServer`; ``serve.py`` runs it through
``stellar.pipelines.serve.run``. The two ASGI middlewares answer before any parsing: 413 for a body larger than
``max_body_mb`` (by its ``Content-Length`` or, when streamed, as soon as it grows past the limit) and 401 for a
``/predict`` request without the right ``X-API-Key`` when the environment variable named by ``api_key_env`` is set.
The third, :class:`MetricsMiddleware`, counts every request for ``GET /metrics`` (:mod:`stellar.serving.metrics`).
Inside them all, :class:`~stellar.serving.binary.BinaryFormatMiddleware` answers every ``POST`` to a ``/predict/*``
endpoint, in JSON or Arrow (FastAPI's own route is left for the OpenAPI schema and endpoints without pydantic schemas).
"""

from __future__ import annotations

import hmac
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import litserve as ls
from fastapi.exceptions import RequestValidationError
from hydra.utils import instantiate
from omegaconf import DictConfig

from stellar.errors import StellarConfigError
from stellar.serving.base import StellarAPI
from stellar.serving.binary import BinaryFormatMiddleware, Endpoints
from stellar.serving.metrics import FIXED_ROUTES, HTTPMetrics, metrics_app, prepare_multiprocess_dir
from stellar.serving.request_log import RequestLogConfig
from stellar.serving.validation import validation_error_response

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _TooLargeError(Exception):
    pass


class BodyLimitMiddleware:
    """413 for request bodies over ``max_bytes``, whether announced by ``Content-Length`` or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = f"request body exceeds the limit of {self.max_bytes} bytes (max_body_mb)"
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _answer(send, 400, "Content-Length is not an integer")
                return
            if declared > self.max_bytes:
                await _answer(send, 413, too_large)
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLargeError:
            if not started:
                await _answer(send, 413, too_large)


class APIKeyMiddleware:
    """401 for ``/predict`` requests whose ``X-API-Key`` header is not ``key`` (compared in constant time)."""

    def __init__(self, app: ASGIApp, key: str, prefix: str = "/predict"):
        self.app = app
        self.key = key.encode()
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(self.prefix):
            given = dict(scope.get("headers") or []).get(b"x-api-key", b"")
            if not hmac.compare_digest(given, self.key):
                await _answer(send, 401, "missing or wrong X-API-Key header")
                return
        await self.app(scope, receive, send)


class MetricsMiddleware:
    """Counts every HTTP request by route, model and status, its errors and its latency.

    Parameters
    ----------
    app : ASGI app
        The app it wraps (the outermost middleware: it sees the answers of the others).
    models : Mapping[str, str]
        Route → the model it serves (the endpoints of ``conf/serve.yaml``).
    """

    def __init__(self, app: ASGIApp, models: Mapping[str, str]):
        self.app = app
        self.models = dict(models)
        self.routes = {*self.models, *FIXED_ROUTES}
        self.metrics: HTTPMetrics | None = None  # created on the first request, in the process that serves it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.metrics is None:
            self.metrics = HTTPMetrics()
        path = str(scope.get("path", ""))
        endpoint = path if path in self.routes else "other"
        model = self.models.get(path, "")
        status = 500  # what the client gets when the app raises before answering
        start = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            m = self.metrics
            m.latency.labels(endpoint, model).observe(time.perf_counter() - start)
            m.requests.labels(endpoint, model, str(status)).inc()
            if status >= 400:
                m.errors.labels(endpoint, model, f"{status // 100}xx").inc()


class StellarServer(ls.LitServer):
    """LitServe's server, with each endpoint's request queue and the answer queues of LitServe's multiprocessing
    transport :func:`multiprocessing.Queue` s (pipes) instead of queues of its multiprocessing manager, when
    ``pipe_queues`` is true (``request_queue: pipe`` in ``conf/serve.yaml``).

    A manager queue's ``put`` is a blocking round trip to the manager process, on the HTTP process's event loop, and
    the worker's ``get`` another, and every answer the same again: profiled at one spectrum per request, the request
    ``put`` alone was 41% of the HTTP process's samples. A pipe queue's ``put`` hands the object to a feeder thread
    and returns; the reader reads the pipe. The queues are made from the ``spawn`` context, as LitServe starts its
    inference workers. The manager itself still runs (LitServe keeps its worker status and shutdown event there).
    """

    def __init__(self, *args: Any, pipe_queues: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pipe_queues = pipe_queues

    def _init_manager(self, num_api_servers: int) -> Any:
        manager = super()._init_manager(num_api_servers)
        queues = getattr(self, "litapi_request_queues", None)
        answers = getattr(getattr(self, "_transport", None), "_queues", None)  # MPQueueTransport's, one per API server
        if self.pipe_queues and isinstance(queues, dict):
            ctx = multiprocessing.get_context("spawn")
            for path in queues:
                queues[path] = ctx.Queue()
            if isinstance(answers, list):
                answers[:] = [ctx.Queue() for _ in answers]
        elif self.pipe_queues:  # a LitServe that keeps its queues elsewhere: say so, serve on its own queues
            log.warning("request_queue=pipe not applied: this LitServe has no litapi_request_queues")
        return manager


def build_apis(cfg: DictConfig) -> list[ls.LitAPI]:
    """The configured endpoints (``cfg.endpoints``: name → ``_target_`` node; ``null`` leaves one out)."""
    apis = [instantiate(node) for node in (cfg.get("endpoints") or {}).values() if node]
    if not apis:
        raise StellarConfigError("endpoints is empty: configure at least one endpoint in conf/serve.yaml")
    return apis


def build_server(cfg: DictConfig) -> StellarServer:
    """A LitServer with every configured endpoint, the payload limit, the optional API key, 422 answers that are
    strict JSON (no ``NaN``/``Infinity`` echoed from the body), Prometheus metrics at ``GET /metrics`` (``metrics``;
    not behind the API key) and the optional request log (``request_log.dir``)."""
    apis = build_apis(cfg)
    endpoints = Endpoints()  # first in the list: the innermost middleware, inside the payload limit and API key
    middlewares: list[Any] = [(BinaryFormatMiddleware, {"endpoints": endpoints})]
    middlewares.append((BodyLimitMiddleware, {"max_bytes": int(float(cfg.max_body_mb) * 2**20)}))
    key_env = cfg.get("api_key_env")
    key = os.environ.get(str(key_env)) if key_env else None
    if key:
        middlewares.append((APIKeyMiddleware, {"key": key}))
        log.info("API key required on /predict (from $%s)", key_env)
    metrics_dir = prepare_multiprocess_dir() if cfg.get("metrics", True) else None
    if metrics_dir:  # last in the list: the outermost middleware, it sees the others' 401s and 413s
        models = {api.api_path: api.model_name for api in apis if isinstance(api, StellarAPI)}
        middlewares.append((MetricsMiddleware, {"models": models}))
    request_log = RequestLogConfig.from_cfg(cfg.get("request_log"))
    for api in apis:
        if isinstance(api, StellarAPI):
            api.enable_monitoring(metrics_dir, request_log)
    queue = str(cfg.get("request_queue", "pipe"))
    if queue not in ("pipe", "manager"):
        raise StellarConfigError(f"request_queue must be 'pipe' or 'manager', found {queue!r}")
    server = StellarServer(
        apis,
        pipe_queues=queue == "pipe",
        accelerator=str(cfg.get("accelerator", "cpu")),
        devices=cfg.get("devices", 1),
        workers_per_device=int(cfg.get("workers_per_device", 1)),
        timeout=float(cfg.get("timeout", 30)),
        middlewares=middlewares,
        fast_queue=bool(cfg.get("fast_queue", False)),
    )
    endpoints.attach(server, apis)  # Arrow requests and answers (stellar.serving.binary)
    server.app.add_exception_handler(RequestValidationError, validation_error_response)  # 422s as strict JSON
    if metrics_dir:
        server.app.add_route("/metrics", metrics_app(metrics_dir), methods=["GET"], include_in_schema=False)
    return server
