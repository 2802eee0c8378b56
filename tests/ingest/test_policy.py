"""The fetch policy one fault at a time, against the replay server on 127.0.0.1."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from stellar.data.ingest.cache import RawCache
from stellar.data.ingest.policy import Fetcher, FetchError, FetchPolicy, Request
from stellar.data.ingest.replay import FaultPlan, ReplayServer
from stellar.errors import StellarValueError
from tests.ingest.conftest import SPEC_SMALL, sdss_route

SPEC = "/sas/dr17/eboss/spectro/redux/v5_13_2/spectra/lite/4455/spec-4455-55539-0001.fits"


class ForcedPlan(FaultPlan):
    """Every key gets ``kind`` on its first ``n`` attempts."""

    def __init__(self, kind: str, n: int = 1, **kw: object):
        super().__init__(**kw)  # type: ignore[arg-type]
        self.kind, self.n = kind, n

    def fault(self, key: str, attempt: int) -> str | None:
        return self.kind if attempt < self.n else None


def _fetch(tmp_path: Path, plan: FaultPlan, policy: FetchPolicy, sleeps: list[float] | None = None):
    with ReplayServer(sdss_route, plan) as srv:
        fetcher = Fetcher(
            RawCache(tmp_path / "cache"),
            policy,
            sleep=(sleeps.append if sleeps is not None else None) or (lambda s: None),
        )
        req = Request.make(srv.url + SPEC, kind="fits")
        try:
            return fetcher.fetch(req), fetcher, srv.log, req
        except FetchError as err:
            return err, fetcher, srv.log, req


@pytest.mark.parametrize("kind", ["503", "stall", "truncate", "corrupt"])
def test_transient_fault_is_retried_and_only_the_good_answer_cached(tmp_path: Path, kind: str) -> None:
    policy = FetchPolicy(timeout_s=1.0, retries=2, backoff_base_s=0.01, seed=0)
    path, fetcher, log, req = _fetch(tmp_path, ForcedPlan(kind, stall_s=1.5), policy)
    assert isinstance(path, Path) and path.read_bytes() == SPEC_SMALL
    assert [o.removesuffix("-client-gone") for _, _, o in log.entries] == [kind, "ok"]
    assert fetcher.stats.retries == 1 and fetcher.cache.keys() == [req.key]


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    sleeps: list[float] = []
    policy = FetchPolicy(timeout_s=1.0, retries=3, backoff_base_s=0.01, seed=0)
    path, _, _, _ = _fetch(tmp_path, ForcedPlan("429", n=2, retry_after="7"), policy, sleeps)
    assert isinstance(path, Path)
    assert sleeps == [7.0, 7.0]  # the header's 7 s, not the 10 ms backoff


def test_exhausted_retries_fail_and_cache_nothing(tmp_path: Path) -> None:
    policy = FetchPolicy(timeout_s=1.0, retries=2, backoff_base_s=0.01, seed=0)
    err, fetcher, log, _ = _fetch(tmp_path, ForcedPlan("always503", n=99), policy)
    assert isinstance(err, FetchError) and "HTTP 503 (after 3 attempts)" in err.reason
    assert len(log.entries) == 3 and fetcher.cache.keys() == []


def test_404_is_not_retried(tmp_path: Path) -> None:
    err, fetcher, log, _ = _fetch(tmp_path, ForcedPlan("404", n=99), FetchPolicy(retries=5, seed=0))
    assert isinstance(err, FetchError) and err.reason == "HTTP 404" and not err.retryable
    assert len(log.entries) == 1 and fetcher.cache.keys() == []


def test_corrupt_cache_entry_is_detected_and_fetched_again(tmp_path: Path) -> None:
    policy = FetchPolicy(timeout_s=1.0, retries=1, seed=0)
    with ReplayServer(sdss_route) as srv:
        req = Request.make(srv.url + SPEC, kind="fits")
        path = Fetcher(RawCache(tmp_path / "cache"), policy).fetch(req)
        path.write_bytes(path.read_bytes()[:10_000])  # a short file left by some other tool
        fetcher = Fetcher(RawCache(tmp_path / "cache"), policy)
        assert fetcher.cached(req, verify=True) is None  # detected, and the bad copy removed
        again = fetcher.fetch(req)
        assert again.read_bytes() == SPEC_SMALL and fetcher.stats.downloads == 1
        assert [o for _, _, o in srv.log.entries] == ["ok", "ok"]


def test_offline_reads_only_the_cache(tmp_path: Path) -> None:
    policy = FetchPolicy(timeout_s=1.0, retries=1, seed=0)
    with ReplayServer(sdss_route) as srv:
        req = Request.make(srv.url + SPEC, kind="fits")
        offline = Fetcher(RawCache(tmp_path / "cache"), FetchPolicy(offline=True))
        with pytest.raises(FetchError, match="offline"):
            offline.fetch(req)
        Fetcher(RawCache(tmp_path / "cache"), policy).fetch(req)
        n = len(srv.log.entries)
        assert offline.fetch(req).read_bytes() == SPEC_SMALL and len(srv.log.entries) == n


def test_backoff_is_bounded_full_jitter() -> None:
    p = FetchPolicy(backoff_base_s=1.0, backoff_max_s=8.0)
    rng = random.Random(0)
    for attempt in range(8):
        waits = [p.backoff_s(attempt, rng) for _ in range(200)]
        assert min(waits) >= 0 and max(waits) <= min(8.0, 2.0**attempt)
    assert Request.make("u", {"b": 1, "a": 2}).key == Request.make("u", {"a": 2, "b": 1}).key


def test_policy_refuses_bad_values() -> None:
    with pytest.raises(StellarValueError, match="concurrency"):
        FetchPolicy(concurrency=0)


def test_fetch_computed_retries_network_errors_and_caches_only_success(tmp_path: Path) -> None:
    fetcher = Fetcher(
        RawCache(tmp_path / "c"), FetchPolicy(retries=3, backoff_base_s=0.0, seed=0), sleep=lambda s: None
    )
    calls: list[int] = []

    def flaky() -> bytes:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("MAST answered 503")
        return b'["mast:a.fits"]'

    req = Request.make("lightkurve:search_lightcurve", {"target": "KIC 1"}, kind="json")
    assert fetcher.fetch_computed(req, flaky).read_bytes() == b'["mast:a.fits"]' and len(calls) == 3
    assert fetcher.fetch_computed(req, flaky) and len(calls) == 3  # answered from the cache

    def broken() -> bytes:
        raise KeyError("dataURI")  # not a network problem: no retry, nothing cached

    other = Request.make("lightkurve:search_lightcurve", {"target": "KIC 2"}, kind="json")
    with pytest.raises(FetchError, match="KeyError"):
        fetcher.fetch_computed(other, broken)
    assert fetcher.cache.keys() == [req.key]
