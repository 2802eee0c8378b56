"""The one fetch policy every survey connector goes through: cache, retries, backoff, concurrency, offline.

A request is described by :class:`Request` (method, URL, parameters). Its cache key is a SHA-256 over those, so
the same query always maps to the same cached answer. :class:`Fetcher` answers a request from the
:class:`~stellar.data.ingest.cache.RawCache` when a valid copy is there; otherwise it downloads it, retrying
timeouts, connection errors, truncated bodies, HTTP 429 and 5xx with exponential backoff and full jitter (a
``Retry-After`` header wins over the computed delay), validates the body (FITS that opens, a VOTable that parses,
a body as long as its ``Content-Length``) and only then caches it. A failed or truncated answer is never cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests

from stellar.data.ingest.cache import RawCache
from stellar.data.ingest.validate import validate_body
from stellar.errors import CorruptPayloadError, StellarDataError, StellarValueError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class FetchError(StellarDataError):
    """A request that could not be answered; ``reason`` is a short text for the manifest."""

    def __init__(self, reason: str, *, retryable: bool = True):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class Request:
    """One HTTP request. ``params`` go in the query string for GET and in the form body for POST."""

    url: str
    params: tuple[tuple[str, str], ...] = ()
    method: str = "GET"
    kind: str = "bytes"  # what the body must be: fits, votable, csv, json, bytes

    @classmethod
    def make(cls, url: str, params: Mapping[str, Any] | None = None, *, method: str = "GET", kind: str = "bytes"):
        items = tuple(sorted((str(k), str(v)) for k, v in (params or {}).items()))
        return cls(url=url, params=items, method=method.upper(), kind=kind)

    @property
    def key(self) -> str:
        """SHA-256 of the method, URL and sorted parameters: the cache key of this query."""
        text = json.dumps([self.method, self.url, list(self.params)], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class FetchPolicy:
    """How hard to try and how many requests a survey may have in flight.

    Parameters
    ----------
    timeout_s : float, s
        Connect and read timeout of one attempt (a stalled body counts as a read timeout).
    retries : int
        Further attempts after the first, for retryable failures only (404 and other 4xx fail at once).
    backoff_base_s, backoff_max_s : float, s
        Delay before retry ``k`` (0-based) is drawn uniformly from ``[0, min(max, base * 2**k)]`` (full jitter).
    retry_after_max_s : float, s
        Longest ``Retry-After`` honoured; a longer one is clipped (and logged).
    concurrency : int
        Requests in flight at once for this survey.
    offline : bool
        Read only the cache; a miss is a failure, never a download.
    """

    timeout_s: float = 30.0
    retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 120.0
    concurrency: int = 4
    offline: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise StellarValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.retries < 0:
            raise StellarValueError(f"retries must be >= 0, got {self.retries}")
        if self.timeout_s <= 0:
            raise StellarValueError(f"timeout_s must be > 0 s, got {self.timeout_s}")

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff before retry ``attempt`` (0-based), in seconds."""
        return rng.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * (2.0**attempt)))


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass
class FetchStats:
    """Counters of one fetcher, thread-safe through ``lock``."""

    downloads: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    bytes: int = 0
    corrupt_refetched: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("downloads", "cache_hits", "retries", "failures", "bytes")} | {
            "corrupt_refetched": self.corrupt_refetched
        }


class Fetcher:
    """Answers :class:`Request` objects through the cache and the retry policy.

    Parameters
    ----------
    cache : RawCache
        Where valid answers are kept, exactly as downloaded.
    policy : FetchPolicy
        Timeouts, retries, backoff, concurrency, offline.
    validate : callable, optional
        ``validate(kind, body) -> None``; raises :class:`CorruptPayloadError`. Defaults to
        :func:`stellar.data.ingest.validate.validate_body`.
    sleep : callable
        Injected for tests; ``time.sleep`` by default.
    """

    def __init__(
        self,
        cache: RawCache,
        policy: FetchPolicy,
        *,
        validate: Callable[[str, bytes], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "stellar-ingest/0.1",
    ):
        self.cache = cache
        self.policy = policy
        self.validate = validate or validate_body
        self.sleep = sleep
        self.stats = FetchStats()
        self._slots = threading.BoundedSemaphore(policy.concurrency)
        self._rng = random.Random(policy.seed)
        self._local = threading.local()
        self._ua = user_agent

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers["User-Agent"] = self._ua
            self._local.session = s
        return s

    def cached(self, request: Request, *, verify: bool = False) -> Path | None:
        """The cached body of ``request`` if it is there and intact, else ``None`` (a bad copy is removed).

        Intact means the size and SHA-256 recorded when it was stored, after it passed validation; ``verify``
        also re-runs the validation (slower: a FITS file's headers are parsed again).
        """
        check = (lambda body: self.validate(request.kind, body)) if verify else None
        return self.cache.get(request.key, check=check)

    def fetch(self, request: Request) -> Path:
        """Path of the valid cached body of ``request``, downloading it first when needed.

        Raises
        ------
        FetchError
            Offline and not cached, a non-retryable status, or retries exhausted; ``reason`` says which.
        """
        return self._answer(request, lambda: self._download(request))

    def fetch_computed(self, request: Request, produce: Callable[[], bytes]) -> Path:
        """Like :meth:`fetch`, for answers a client library produces (a lightkurve search, an astroquery call).

        ``produce()`` is retried with the same backoff on network-looking errors (``OSError``, ``requests``
        errors, or a message naming a timeout, 429 or 5xx); its bytes are validated and cached under
        ``request.key``. Offline, only the cache answers.
        """

        def classified() -> bytes:
            try:
                return produce()
            except Exception as err:  # client libraries raise their own types; only network-looking ones retry
                text = str(err).lower()
                network = isinstance(err, (OSError, requests.RequestException)) or any(
                    w in text for w in ("timeout", "timed out", "429", "500", "502", "503", "504")
                )
                raise FetchError(f"{type(err).__name__}: {err}", retryable=network) from err

        return self._answer(request, classified)

    def _answer(self, request: Request, produce: Callable[[], bytes]) -> Path:
        """The cache, or ``produce()`` under the retry policy; only a body that validates is cached."""
        path = self.cached(request)
        if path is not None:
            self.stats.add(cache_hits=1)
            return path
        if self.policy.offline:
            self.stats.add(failures=1)
            raise FetchError(f"offline and not in the cache: {request.url}", retryable=False)
        last = "no attempt"
        for attempt in range(self.policy.retries + 1):
            delay: float | None = None
            try:
                with self._slots:
                    body = produce()
                self.validate(request.kind, body)
                path = self.cache.put(request.key, body, {"url": request.url, "params": list(request.params)})
                self.stats.add(downloads=1, bytes=len(body))
                return path
            except FetchError as err:
                last = err.reason
                if not err.retryable:
                    self.stats.add(failures=1)
                    raise
                delay = getattr(err, "retry_after", None)
            except CorruptPayloadError as err:
                last = f"corrupt payload: {err}"
                self.stats.add(corrupt_refetched=1)
            if attempt == self.policy.retries:
                break
            wait = self.policy.backoff_s(attempt, self._rng) if delay is None else delay
            if wait > self.policy.retry_after_max_s:
                log.warning("Retry-After of %.0f s clipped to %.0f s", wait, self.policy.retry_after_max_s)
                wait = self.policy.retry_after_max_s
            self.stats.add(retries=1)
            log.debug("retry %d of %s in %.2f s after: %s", attempt + 1, request.url, wait, last)
            self.sleep(wait)
        self.stats.add(failures=1)
        raise FetchError(f"{last} (after {self.policy.retries + 1} attempts)")

    def _download(self, request: Request) -> bytes:
        t = self.policy.timeout_s
        data = dict(request.params)
        try:
            if request.method == "POST":
                resp = self._session().post(request.url, data=data, timeout=(t, t), stream=True)
            else:
                resp = self._session().get(request.url, params=data, timeout=(t, t), stream=True)
            with resp:
                if resp.status_code in RETRY_STATUS:
                    err = FetchError(f"HTTP {resp.status_code}")
                    err.retry_after = _retry_after_s(resp.headers.get("Retry-After"))  # type: ignore[attr-defined]
                    raise err
                if resp.status_code >= 400:
                    raise FetchError(f"HTTP {resp.status_code}", retryable=False)
                chunks = []
                deadline = time.monotonic() + 10 * t  # a body trickling in forever is a stall too
                for chunk in resp.iter_content(1 << 16):
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise FetchError(f"body not complete after {10 * t:.1f} s")
                body = b"".join(chunks)
                expected = resp.headers.get("Content-Length")
                if expected is not None and expected.isdigit() and int(expected) != len(body):
                    raise FetchError(f"short read: {len(body)} of {expected} bytes")
                return body
        except requests.Timeout as err:
            raise FetchError(f"timeout after {t:.1f} s") from err
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as err:
            text = str(err)
            kind = "short read" if "IncompleteRead" in text or "incomplete" in text.lower() else "connection error"
            if "timed out" in text.lower():
                kind = f"timeout after {t:.1f} s"
            raise FetchError(kind) from err
