"""Ingest throughput against a local replay server with injected latency: concurrent vs one at a time.

    python benchmarks/ingest_concurrency.py                      # 60 SDSS targets, 200 ms latency, 8 vs 1
    python benchmarks/ingest_concurrency.py --n 200 --latency 0.2 --concurrency 16 --payload big

Every request of the SDSS connector is answered by a real SDSS spectrum (``--payload small``: the 109 kB
image-layout file, ``big``: the 1.5 MB BOSS spec file) after ``--latency`` seconds, by a threaded HTTP server on
127.0.0.1. Each mode starts from an empty cache and manifest and runs the whole ingest (fetch, validate, cache,
parse, store). Prints targets/s of each mode and their ratio; writes benchmarks/results/ingest_concurrency.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from stellar.data.ingest.cache import RawCache
from stellar.data.ingest.manifest import Manifest
from stellar.data.ingest.policy import Fetcher, FetchPolicy
from stellar.data.ingest.replay import FaultPlan, ReplayServer
from stellar.data.ingest.runner import ingest
from stellar.data.ingest.sdss import SDSSConnector
from stellar.data.store import DatasetStore

REPO = Path(__file__).resolve().parents[1]
PAYLOADS = {
    "small": REPO / "tests" / "data" / "raw" / "sdss" / "SDSSJ220248.31+123656.3.fits",
    "big": REPO / "tests" / "data" / "raw" / "sdss" / "spec-4455-55539-0692.fits",
}


def one_run(n: int, concurrency: int, latency_s: float, body: bytes) -> dict[str, float]:
    targets = pd.DataFrame(
        {"plate": "4455", "mjd": "55539", "fiber": [str(i) for i in range(1, n + 1)], "run2d": "v5_13_2"}
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        ReplayServer(
            lambda path, params: (body, "application/fits") if path.endswith(".fits") else None,
            FaultPlan(latency_s=latency_s),
        ) as srv,
    ):
        policy = FetchPolicy(timeout_s=30.0, concurrency=concurrency, seed=0)
        t0 = time.perf_counter()
        rep = ingest(
            SDSSConnector(sas_url=srv.url + "/sas"),
            targets,
            store=DatasetStore(Path(tmp) / "store"),
            fetcher=Fetcher(RawCache(Path(tmp) / "cache"), policy),
            manifest=Manifest(Path(tmp) / "m"),
            progress=False,
        )
        wall = time.perf_counter() - t0
    if rep.n_failed:
        raise RuntimeError(f"{rep.n_failed} target(s) failed: {rep.failed}")
    return {"concurrency": concurrency, "wall_s": wall, "targets_per_s": n / wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60, help="targets per mode")
    p.add_argument("--latency", type=float, default=0.2, help="injected latency per request, s")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight in the concurrent mode")
    p.add_argument("--payload", choices=sorted(PAYLOADS), default="small")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    body = PAYLOADS[args.payload].read_bytes()
    serial = one_run(args.n, 1, args.latency, body)
    concurrent = one_run(args.n, args.concurrency, args.latency, body)
    ratio = concurrent["targets_per_s"] / serial["targets_per_s"]
    print(f"{args.n} SDSS targets, {args.latency * 1000:.0f} ms latency, payload {args.payload} ({len(body)} B)")
    print(f"one at a time : {serial['targets_per_s']:.2f} targets/s ({serial['wall_s']:.1f} s)")
    print(
        f"concurrency {args.concurrency:2d}: {concurrent['targets_per_s']:.2f} targets/s ({concurrent['wall_s']:.1f} s)"
    )
    print(f"ratio         : {ratio:.1f}x (ideal {args.concurrency}x)")
    out = REPO / "benchmarks" / "results" / "ingest_concurrency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"args": vars(args), "serial": serial, "concurrent": concurrent, "ratio": ratio}, indent=2)
    )


if __name__ == "__main__":
    main()
