"""A local HTTP server that replays recorded survey answers and injects faults, for tests and benchmarks.

Faults are decided per request key (path and query, or path and POST body) from a seeded hash, so a run is
reproducible: ``transient`` faults hit only the first attempt(s) of a key, ``permanent`` ones every attempt.

Fault kinds: ``503``; ``429`` with ``Retry-After``; ``stall`` (no answer for ``stall_s``, past the client's
timeout); ``truncate`` (``Content-Length`` of the whole body, then half of it and a closed connection);
``corrupt`` (the full length, but the first 80 bytes overwritten: a bad FITS or table); and the permanent
``404`` and ``always503``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TRANSIENT = ("503", "429", "stall", "truncate", "corrupt")
PERMANENT = ("404", "always503")

#: route(path, params) -> (body, content type) or None for 404
Route = Callable[[str, dict[str, str]], "tuple[bytes, str] | None"]


@dataclass
class FaultPlan:
    """Which requests fail and how. ``rate`` is the share of keys with a fault; ``permanent_share`` of those
    fail on every attempt; transient ones fail on their first ``transient_attempts`` attempts."""

    rate: float = 0.0
    permanent_share: float = 0.25
    transient_attempts: int = 1
    seed: int = 0
    stall_s: float = 2.0
    retry_after: str = "1"
    latency_s: float = 0.0

    def fault(self, key: str, attempt: int) -> str | None:
        h = hashlib.sha256(f"{self.seed}|{key}".encode()).digest()
        u = int.from_bytes(h[:8], "big") / 2.0**64
        if u >= self.rate:
            return None
        v = int.from_bytes(h[8:16], "big") / 2.0**64
        if v < self.permanent_share:
            return PERMANENT[h[16] % len(PERMANENT)]
        return TRANSIENT[h[17] % len(TRANSIENT)] if attempt < self.transient_attempts else None


@dataclass
class ReplayLog:
    """Every request the server saw: (key, attempt, outcome) in order, and the attempts per key."""

    entries: list[tuple[str, int, str]] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_attempt(self, key: str) -> int:
        with self.lock:
            n = self.attempts[key]
            self.attempts[key] += 1
            return n

    def add(self, key: str, attempt: int, outcome: str) -> None:
        with self.lock:
            self.entries.append((key, attempt, outcome))

    def served(self) -> list[str]:
        """Keys answered in full (status 200, no fault)."""
        with self.lock:
            return [k for k, _, o in self.entries if o == "ok"]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (after a stall or a truncated body) is expected here, not an error."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class ReplayServer:
    """``with ReplayServer(route, plan) as srv: ... srv.url ...`` serves on 127.0.0.1 on a free port."""

    def __init__(self, route: Route, plan: FaultPlan | None = None, host: str = "127.0.0.1", port: int = 0):
        self.route = route
        self.plan = plan or FaultPlan()
        self.log = ReplayLog()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                server._answer(self, parts.path, dict(parse_qsl(parts.query)), parts.path + "?" + parts.query)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n).decode() if n else ""
                params = dict(parse_qsl(raw))
                server._answer(self, urlsplit(self.path).path, params, urlsplit(self.path).path + "?" + raw)

        self.httpd = _QuietServer((host, port), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def _answer(self, h: BaseHTTPRequestHandler, path: str, params: dict[str, str], key: str) -> None:
        attempt = self.log.next_attempt(key)
        fault = self.plan.fault(key, attempt)
        if self.plan.latency_s:
            time.sleep(self.plan.latency_s)
        try:
            if fault == "stall":
                self.log.add(key, attempt, fault)
                time.sleep(self.plan.stall_s)
                h.close_connection = True
                return
            if fault in ("503", "always503", "429", "404"):
                self.log.add(key, attempt, fault)
                h.send_response(404 if fault == "404" else 429 if fault == "429" else 503)
                if fault == "429":
                    h.send_header("Retry-After", self.plan.retry_after)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            found = self.route(path, params)
            if found is None:
                self.log.add(key, attempt, "404-route")
                h.send_response(404)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            body, ctype = found
            if fault == "corrupt":
                body = b"\x00garbage" * 10 + body[80:]
            h.send_response(200)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if fault == "truncate":
                h.wfile.write(body[: len(body) // 2])
                h.wfile.flush()
                h.close_connection = True
                self.log.add(key, attempt, fault)
                return
            h.wfile.write(body)
            self.log.add(key, attempt, fault or "ok")
        except (BrokenPipeError, ConnectionResetError):
            self.log.add(key, attempt, f"{fault or 'ok'}-client-gone")

    def __enter__(self) -> ReplayServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_forever(route: Route, plan: FaultPlan, port: int = 0) -> None:
    """Run a replay server in the foreground (for a subprocess in tests); prints its URL on the first line."""
    srv = ReplayServer(route, plan, port=port)
    print(srv.url, flush=True)
    srv.httpd.serve_forever()
