"""A load run against a running ``serve.py``: requests to each model's endpoint, then ``/metrics`` and the request log.

    python serve.py registry.root=/tmp/BR/registry request_log.dir=/tmp/BR/requests request_log.flush_seconds=1 &
    PYTHONPATH=. python experiments/monitoring/load_run.py --registry /tmp/BR/registry --models sed_xgboost \\
        --n 200 --concurrency 8 --request-log /tmp/BR/requests

Each model's endpoint is found from its registry manifest (modality → route of ``conf/serve.yaml``); the bodies are
seeded synthetic objects shaped for the model (its bands, a spectrum, a light curve), 1 to ``--max-rows`` objects
each (``--bad``: that fraction names a model the endpoint does not serve, a 404). Prints the answer statuses and
latency percentiles, the ``stellar_*`` lines of ``/metrics``, and the rows of the request log (after waiting for its
time-based flush); ``--out`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from stellar.errors import StellarDataError
from stellar.registry import ModelRegistry
from stellar.serving.request_log import read_request_log

#: the route of each model modality (conf/serve.yaml)
ROUTES = {"spectra": "/predict/spectral", "lightcurve": "/predict/lightcurve", "sed": "/predict/sed"}


def body(modality: str, manifest: dict[str, Any], n: int, rng: np.random.Generator) -> dict[str, Any]:
    """A request of ``n`` synthetic objects for a model of ``modality``."""
    if modality == "sed":
        bands = list(manifest.get("bands") or manifest["preprocessing"]["bands"])
        v = rng.uniform(6.0, 10.0, n)
        colour = rng.uniform(0.0, 1.5, n)
        mags = v[:, None] + colour[:, None] * np.linspace(1.0, 0.0, len(bands))[None, :]
        plx = rng.uniform(1.0, 30.0, n)
        return {
            "magnitudes": mags.round(3).tolist(),
            "bands": bands,
            "parallax": plx.round(2).tolist(),
            "parallax_err": (plx * rng.uniform(0.03, 0.2, n)).round(2).tolist(),
        }
    if modality == "spectra":
        x = np.linspace(0.0, 1.0, 300)
        flux = 1.0 + 0.3 * x[None, :] * rng.uniform(-1, 1, (n, 1)) + 0.02 * rng.normal(size=(n, 300))
        return {"spectra": flux.round(4).tolist()}
    if modality == "lightcurve":
        t = np.sort(rng.uniform(0.0, 100.0, (n, 60)), axis=1)
        period = rng.uniform(0.3, 5.0, (n, 1))
        mag = 15.0 + 0.3 * np.sin(2 * np.pi * t / period) + 0.02 * rng.normal(size=t.shape)
        return {"lightcurves": mag.round(4).tolist(), "times": t.round(4).tolist()}
    raise SystemExit(f"no load for modality {modality!r} (one of {sorted(ROUTES)})")


def hipparcos_body(stars: Any, n: int, rng: np.random.Generator, v_shift: float = 0.0) -> dict[str, Any]:
    """A request of ``n`` real Hipparcos stars (the catalogue's V, B−V, parallax and its error), ``v_shift`` mag
    fainter (a deeper survey's population seen by the same model)."""
    rows = stars.iloc[rng.integers(0, len(stars), n)]
    v = rows["Vmag"].to_numpy() + v_shift
    b = v + rows["B-V"].to_numpy()
    return {
        "magnitudes": np.stack([b, v], axis=1).round(3).tolist(),
        "bands": ["johnson_b", "johnson_v"],
        "parallax": rows["Plx"].round(3).tolist(),
        "parallax_err": rows["e_Plx"].round(3).tolist(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registry", required=True, help="registry root the server serves from")
    ap.add_argument("--models", nargs="+", required=True, help="registered model names (their latest version)")
    ap.add_argument("--n", type=int, default=200, help="requests per model")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    ap.add_argument("--max-rows", type=int, default=4, help="most objects per request (1 to this, uniformly)")
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="the running serve.py")
    ap.add_argument("--request-log", help="the server's request_log.dir: count its rows after the run")
    ap.add_argument("--wait", type=float, default=15.0, help="s to wait for the request log's time-based flush")
    ap.add_argument("--bad", type=float, default=0.0, help="fraction of requests naming an unknown model (a 404)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the figures to this JSON file")
    ap.add_argument("--hipparcos", help="SED bodies from this hipparcos_giant_dwarf.csv's real stars, not synthetic")
    ap.add_argument("--v-shift", type=float, default=0.0, help="with --hipparcos: make the stars this many mag fainter")
    args = ap.parse_args(argv)
    stars = None
    if args.hipparcos:
        import pandas as pd

        stars = pd.read_csv(args.hipparcos)

    registry = ModelRegistry(args.registry)
    rng = np.random.default_rng(args.seed)
    jobs: list[tuple[str, dict[str, Any], int]] = []
    for name in args.models:
        manifest = registry.get(name, "latest").manifest
        route = ROUTES.get(str(manifest.get("modality")), "")
        for _ in range(args.n):
            n = int(rng.integers(1, args.max_rows + 1))
            if stars is not None and manifest.get("modality") == "sed":
                payload = hipparcos_body(stars, n, rng, args.v_shift)
            else:
                payload = body(str(manifest.get("modality")), manifest, n, rng)
            if rng.uniform() < args.bad:
                payload["model"] = "not_registered"
            jobs.append((route, payload, n))

    def fire(job: tuple[str, dict[str, Any], int]) -> tuple[str, int, float, int]:
        route, payload, n = job
        start = time.perf_counter()
        r = client.post(route, json=payload)
        return route, r.status_code, time.perf_counter() - start, n

    started = time.perf_counter()
    with httpx.Client(base_url=args.url, timeout=60) as client, ThreadPoolExecutor(args.concurrency) as pool:
        answers = list(pool.map(fire, jobs))
        wall = time.perf_counter() - started
        metrics = client.get("/metrics").text
    latency = np.array([a[2] for a in answers])
    statuses: dict[str, int] = {}
    for a in answers:
        statuses[str(a[1])] = statuses.get(str(a[1]), 0) + 1
    objects = sum(a[3] for a in answers if a[1] == 200)
    figures: dict[str, Any] = {
        "requests": len(answers),
        "statuses": statuses,
        "objects_answered": objects,
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(answers) / wall, 1),
        "latency_ms": {f"p{q}": round(float(np.percentile(latency, q)) * 1e3, 1) for q in (50, 90, 99)},
    }
    print(json.dumps(figures, indent=2))
    print("\n".join(line for line in metrics.splitlines() if "stellar_" in line))
    if args.request_log:
        deadline = time.monotonic() + args.wait
        rows = 0
        while time.monotonic() < deadline:  # the last rows wait for flush_seconds (or the server's shutdown)
            try:
                rows = len(read_request_log(args.request_log))
            except StellarDataError:
                rows = 0
            if rows >= objects:
                break
            time.sleep(0.5)
        figures["request_log_rows"] = rows
        print(f"request log {args.request_log}: {rows} rows (objects answered: {objects})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({**figures, "metrics_text": metrics}, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
