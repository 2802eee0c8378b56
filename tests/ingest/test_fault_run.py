"""The whole policy end to end: 200 SDSS targets against a replay server injecting ~20% faults, a rerun that
fetches only the failures, and a run killed with SIGKILL that resumes without losing or re-downloading anything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from stellar.data.ingest.cache import RawCache
from stellar.data.ingest.manifest import Manifest
from stellar.data.ingest.policy import Fetcher, FetchPolicy
from stellar.data.ingest.replay import PERMANENT, FaultPlan, ReplayServer
from stellar.data.ingest.runner import ingest
from stellar.data.ingest.sdss import SDSSConnector
from stellar.data.ingest.validate import check_fits
from stellar.data.store import DatasetStore
from tests.ingest.conftest import sdss_route

N = 200
REPO = Path(__file__).resolve().parents[2]


def _targets(n: int = N) -> pd.DataFrame:
    return pd.DataFrame(
        {"plate": "4455", "mjd": "55539", "fiber": [str(i) for i in range(1, n + 1)], "run2d": "v5_13_2"}
    )


def _key_of(conn: SDSSConnector, target: str) -> str:
    plate, mjd, fiber = (int(x) for x in target.split("-"))
    return conn.spectrum_request(plate, mjd, fiber, "v5_13_2").key


def _path_of(target: str) -> str:
    """The replay server's key (path and query) of a target's spectrum request."""
    plate, mjd, fiber = (int(x) for x in target.split("-"))
    name = f"spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits"
    return f"/sas/dr17/eboss/spectro/redux/v5_13_2/spectra/lite/{plate:04d}/{name}?"


def test_200_targets_with_20_percent_faults_then_a_rerun(tmp_path: Path, fast_policy: FetchPolicy) -> None:
    plan = FaultPlan(rate=0.2, seed=3, stall_s=1.5, retry_after="0.1")
    store, manifest = DatasetStore(tmp_path / "store"), Manifest(tmp_path / "manifest.jsonl")
    cache = RawCache(tmp_path / "cache")
    t0 = time.perf_counter()
    with ReplayServer(sdss_route, plan) as srv:
        conn = SDSSConnector(sas_url=srv.url + "/sas")
        rep = ingest(
            conn, _targets(), store=store, fetcher=Fetcher(cache, fast_policy), manifest=manifest, progress=False
        )
        outcomes = {}
        for key, attempt, outcome in srv.log.entries:
            if attempt == 0:
                outcomes[key] = outcome.removesuffix("-client-gone")
        faulty = {k for k, o in outcomes.items() if o != "ok"}
        # ~20% of targets get a fault; every kind shows up
        assert 0.12 * N <= len(faulty) <= 0.3 * N
        assert {"503", "429", "stall", "truncate", "corrupt", "404", "always503"} <= set(outcomes.values())

        # every target is stored or failed with its reason; transient faults are all recovered
        stored = set(store.open(rep.datasets[0]).meta["object_id"])
        records = manifest.records()
        assert len(stored) + rep.n_failed == N and len(records) == N
        assert {f"sdss-{t}" for t, r in records.items() if r["status"] == "done"} == stored
        assert set(rep.failed.values()) <= {"HTTP 404", "HTTP 503 (after 4 attempts)"}
        permanent = {k for k, o in outcomes.items() if o in PERMANENT}
        assert {_path_of(t) for t in rep.failed} == permanent

        # no failure is cached, and every cached answer is a complete FITS file
        done_keys = {_key_of(conn, t) for t, r in records.items() if r["status"] == "done"}
        assert set(cache.keys()) == done_keys
        for key in done_keys:
            path = cache.get(key)
            assert path is not None
            check_fits(path.read_bytes())

        # the rerun fetches only what failed (the faults are gone now)
        srv.plan = FaultPlan()
        n_before = len(srv.log.entries)
        rep2 = ingest(
            conn, _targets(), store=store, fetcher=Fetcher(cache, fast_policy), manifest=manifest, progress=False
        )
        second = [k for k, _, _ in srv.log.entries[n_before:]]
    assert sorted(second) == sorted(permanent)
    assert rep2.n_failed == 0 and rep2.n_skipped_done == N - rep.n_failed
    assert store.open(rep2.datasets[0]).n_rows == N
    assert time.perf_counter() - t0 < 60


def test_kill_mid_run_then_resume(tmp_path: Path) -> None:
    targets = tmp_path / "targets.csv"
    _targets().to_csv(targets, index=False)
    cache, manifest = RawCache(tmp_path / "cache"), Manifest(tmp_path / "cache" / "manifests" / "sdss.jsonl")
    with ReplayServer(sdss_route, FaultPlan(latency_s=0.05)) as srv:
        cmd = [
            sys.executable,
            "-m",
            "stellar.ingest",
            "survey=sdss",
            f"targets={targets}",
            f"store={tmp_path / 'store'}",
            f"cache_dir={tmp_path / 'cache'}",
            "progress=false",
            f"surveys.sdss.connector.sas_url={srv.url}/sas",
            "policy.concurrency=4",
            "policy.timeout_s=5",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ]
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 60
        while len(manifest.done()) < 40 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert 40 <= len(manifest.done()) < N, "the run should be killed mid-way"
        done_at_kill = manifest.done()
        cached_at_kill = set(cache.keys())
        assert not (tmp_path / "store").exists() or DatasetStore(tmp_path / "store").list() == []

        n_before = len(srv.log.entries)
        conn = SDSSConnector(sas_url=srv.url + "/sas")
        policy = FetchPolicy(timeout_s=5.0, concurrency=8, seed=0)
        rep = ingest(
            conn,
            _targets(),
            store=DatasetStore(tmp_path / "store"),
            fetcher=Fetcher(cache, policy),
            manifest=manifest,
            progress=False,
        )
        refetched = {k for k, _, _ in srv.log.entries[n_before:]}
    assert rep.n_failed == 0 and rep.n_skipped_done == len(done_at_kill)
    assert DatasetStore(tmp_path / "store").open(rep.datasets[0]).n_rows == N  # nothing lost
    assert not refetched & cached_at_kill  # nothing complete downloaded again
    assert {_key_of(conn, t) for t in done_at_kill} <= cached_at_kill
    assert len(refetched) == N - len(cached_at_kill)


@pytest.mark.parametrize("offline", [True])
def test_offline_rerun_needs_no_server(tmp_path: Path, fast_policy: FetchPolicy, offline: bool) -> None:
    cache, manifest = RawCache(tmp_path / "cache"), Manifest(tmp_path / "m.jsonl")
    with ReplayServer(sdss_route) as srv:
        conn = SDSSConnector(sas_url=srv.url + "/sas")
        ingest(conn, _targets(10), store=None, fetcher=Fetcher(cache, fast_policy), manifest=manifest, progress=False)
    # the server is gone: an offline run with a fresh manifest still builds the dataset from the cache
    policy = FetchPolicy(offline=offline)
    rep = ingest(
        conn,
        _targets(10),
        store=DatasetStore(tmp_path / "store"),
        fetcher=Fetcher(cache, policy),
        manifest=Manifest(tmp_path / "m2.jsonl"),
        progress=False,
    )
    assert rep.n_done == 10 and rep.fetch["downloads"] == 0 and rep.fetch["cache_hits"] == 10
    rep = ingest(
        conn,
        _targets(12),
        store=None,
        fetcher=Fetcher(cache, policy),
        manifest=Manifest(tmp_path / "m3"),
        progress=False,
    )
    assert set(rep.failed) == {"4455-55539-0011", "4455-55539-0012"}
    assert all("offline and not in the cache" in why for why in rep.failed.values())
