"""Prometheus metrics of the server, correct across its processes: requests, errors, latency, predicted classes.

A LitServe server is several processes: ``api_servers`` HTTP processes (forked from the launcher) parse requests
and answer them, and one spawned inference worker per endpoint and device runs the model. Each process keeping its
own in-memory counters would make every scrape of ``/metrics`` report the share of whichever process answered it
(and the worker-side counts, such as predicted classes, never). So the server runs ``prometheus_client`` in its
multiprocess mode (as its documentation prescribes for pre-forking servers, and as Prometheus set-ups for LitServe
do). LitServe's own ``Logger`` (``LitAPI.log`` → a queue → one logger process that could own the counters) is not
used: it sees only what the workers log, not the HTTP statuses (the 401s and 413s of the middlewares, the 422s of
request validation) nor the latency the client sees, and costs a queue message per event.

:func:`prepare_multiprocess_dir` gives the server a fresh, private folder in ``PROMETHEUS_MULTIPROC_DIR`` before any
process starts, every process writes its counters to its own memory-mapped files there, and ``GET /metrics``
(:func:`metrics_app`) sums the files of all processes, alive or finished, at each scrape. The HTTP-side metrics are
counted by :class:`~stellar.serving.server.MetricsMiddleware`, outermost, so that the 401s and 413s of the other
middlewares count too; the worker-side ones by :class:`WorkerMetrics` in
:meth:`stellar.serving.base.StellarAPI.predict`.

Metrics (all prefixed ``stellar_``):

- ``stellar_requests_total{endpoint, model, status}`` and ``stellar_request_errors_total{endpoint, model, kind}``
  (``kind``: ``4xx`` or ``5xx``), counted in the HTTP processes;
- ``stellar_request_duration_seconds{endpoint, model}``: a histogram of the time from the request's arrival to the
  end of its answer, with buckets from 1 ms to 10 s;
- ``stellar_objects_predicted_total{endpoint, model, version}`` and
  ``stellar_predicted_class_total{endpoint, model, version, class}``, counted in the inference workers;
- ``stellar_request_log_errors_total{endpoint, model, version}``: request-log writes that failed (the requests did
  not).

``endpoint`` is the route (``/predict/spectral``, ``/health``, ``/metrics``) or ``other`` for a path the server does
not serve, so that random paths cannot grow the label set without bound.
"""

from __future__ import annotations

import atexit
import collections
import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.responses import Response

#: the variable through which prometheus_client's multiprocess mode finds its folder (in every child process)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: latency buckets, s: 1 ms to 10 s, about three per decade
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: routes counted under their own name besides the endpoints (anything else is ``other``)
FIXED_ROUTES = ("/health", "/metrics", "/info", "/docs", "/openapi.json")


def prepare_multiprocess_dir() -> str:
    """A fresh, empty folder for the metric files of this server's processes, set as ``PROMETHEUS_MULTIPROC_DIR``.

    Called in the launching process before any HTTP process is forked or inference worker spawned: they inherit the
    variable. prometheus_client picks its value class once, when it is imported; a process that imported it before
    (or that built another server, as the tests do) is switched to multiprocess values in this folder, so the
    metrics it creates afterwards are written there. The folder is removed when the launching process exits.
    """
    path = tempfile.mkdtemp(prefix="stellar-metrics-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ[MULTIPROC_ENV] = path
    values.ValueClass = values.MultiProcessValue()
    return path


def use_multiprocess_dir(path: str) -> None:
    """Write this (inference worker) process's metrics to ``path``, the folder of its server."""
    os.environ[MULTIPROC_ENV] = path
    values.ValueClass = values.MultiProcessValue()


def metrics_app(path: str) -> Any:
    """The ``GET /metrics`` handler: the text exposition format of the metrics summed over the processes' files."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)

    async def metrics(request: Any) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


class HTTPMetrics:
    """The counters of the HTTP processes (created with no registry: the collector reads them from the files)."""

    def __init__(self) -> None:
        self.requests = Counter(
            "stellar_requests", "HTTP requests by status", ["endpoint", "model", "status"], registry=None
        )
        self.errors = Counter(
            "stellar_request_errors", "HTTP requests answered 4xx or 5xx", ["endpoint", "model", "kind"], registry=None
        )
        self.latency = Histogram(
            "stellar_request_duration_seconds",
            "time from a request's arrival to the end of its answer",
            ["endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )


class WorkerMetrics:
    """The counters of one endpoint's inference worker: objects predicted, predicted classes, request-log errors.

    Parameters
    ----------
    endpoint, model : str
        Route and registered model name.
    version : int
        The registry version served.
    class_names : Iterable[str]
        The model's classes: each starts at 0, so that a scrape shows the classes never predicted too.
    """

    def __init__(self, endpoint: str, model: str, version: int, class_names: Iterable[str]):
        self.labels = (endpoint, model, str(version))
        names = ["endpoint", "model", "version"]
        self.objects = Counter("stellar_objects_predicted", "objects (rows) predicted", names, registry=None).labels(
            *self.labels
        )
        self.classes = Counter("stellar_predicted_class", "predicted classes", [*names, "class"], registry=None)
        self.log_errors = Counter(
            "stellar_request_log_errors", "request-log writes that failed", names, registry=None
        ).labels(*self.labels)
        for c in class_names:
            self.classes.labels(*self.labels, c)

    def record(self, predicted_classes: list[str | None]) -> None:
        """Count the objects of a batch and their predicted classes (``None``: a model without classes)."""
        self.objects.inc(len(predicted_classes))
        for c, k in collections.Counter(c for c in predicted_classes if c is not None).items():
            self.classes.labels(*self.labels, c).inc(k)  # one write per class, not per object
