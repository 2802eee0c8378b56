"""Serving throughput and latency: the batched spectral endpoint beside the same API with ``max_batch_size=1``.

Starts ``python serve.py`` twice from one run (the batched settings of ``conf/serve.yaml``, then
``max_batch_size=1``), each on 127.0.0.1 with only the spectral endpoint, and sends the same requests — SDSS-like
spectra of the model grid's length (``--per-request`` of them per request, default 1), flux only, as a client with
no wavelength axis would — at concurrency 1, 8 and 32, in each ``--format`` (``json``, and ``binary``: the Arrow
IPC stream of :mod:`stellar.serving.binary`, answered in Arrow). Prints spectra per second and p50/p99 latency per
level, the throughput ratio, and the in-process ``stellar.load(...).predict`` throughput on the same spectra, in
calls of ``--per-request`` spectra (the ceiling), with each server figure's fraction of it.

Needs a registered spectral model (``python train.py register=true``); the weights do not matter for speed.

    python benchmarks/serving.py                 # 400 requests per level (a few minutes on 2 cores)
    python benchmarks/serving.py --quick         # 120 requests per level
    python benchmarks/serving.py --quick --per-request 64 --format json,binary --concurrency 8 --no-single
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(args: argparse.Namespace, max_batch_size: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "serve.py",
        f"port={port}",
        f"registry.root={args.registry}",
        f"endpoints.spectral.model={args.model}",
        "endpoints.lightcurve=null",
        "endpoints.sed=null",
        f"max_batch_size={max_batch_size}",
        f"batch_timeout={args.batch_timeout}",
        "log_level=warning",
        f"hydra.run.dir={log_path.parent / f'hydra_{max_batch_size}'}",
        *args.server_args,
    ]
    log = open(log_path, "w")  # noqa: SIM115 - the server process owns it until it stops
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL after 20 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


async def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with session.get(f"{url}/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout} s")


#: request headers of each --format
HEADERS = {
    "json": {"Content-Type": "application/json"},
    "binary": {"Content-Type": "application/vnd.apache.arrow.stream", "Accept": "application/vnd.apache.arrow.stream"},
}


async def load(
    url: str, bodies: list[bytes], concurrency: int, fmt: str = "json", per_request: int = 1
) -> dict[str, float]:
    """Send every body (of ``per_request`` spectra, in ``fmt``) with ``concurrency`` clients; throughput (spectra
    per second) and latency percentiles."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, headers=HEADERS[fmt]) as session:

        async def client() -> None:
            nonlocal errors
            while not queue.empty():
                body = queue.get_nowait()
                t0 = time.perf_counter()
                async with session.post(f"{url}/predict/spectral", data=body) as r:
                    await r.read()
                    errors += r.status != 200
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "format": fmt,
        "n": len(bodies),
        "per_request": per_request,
        "errors": errors,
        "throughput": len(bodies) * per_request / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def make_spectra(n: int, n_pix: int, seed: int = 0) -> np.ndarray:
    """``n`` SDSS-like spectra (a tilted continuum, one absorption line, noise), rounded to 5 decimals."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, n_pix)
    cont = 1 + rng.uniform(-0.5, 0.5, (n, 1)) * x + rng.uniform(-0.3, 0.3, (n, 1)) * x**2
    lines = 1 - 0.3 * np.exp(-0.5 * ((x - rng.uniform(0.2, 0.8, (n, 1))) / 0.003) ** 2)
    return np.round(cont * lines + rng.normal(0, 0.02, (n, n_pix)), 5)


def make_bodies(flux: np.ndarray, per_request: int, model: str, fmt: str) -> list[bytes]:
    """Request bodies of ``per_request`` consecutive spectra each, in ``fmt`` (``json`` or ``binary``)."""
    import pyarrow as pa

    from stellar.serving.binary import encode_arrow

    bodies = []
    for s in range(0, len(flux) - per_request + 1, per_request):
        rows = flux[s : s + per_request]
        if fmt == "json":
            bodies.append(json.dumps({"spectra": rows.tolist(), "model": model}).encode())
        else:
            column = pa.FixedSizeListArray.from_arrays(pa.array(rows.astype(np.float32).ravel()), rows.shape[1])
            table = pa.table({"spectra": column}).replace_schema_metadata({"model": json.dumps(model)})
            bodies.append(encode_arrow(table))
    return bodies


def in_process(args: argparse.Namespace, flux: np.ndarray, repeats: int = 3) -> float:
    """Spectra per second of ``stellar.load(...).predict`` on ``flux`` in calls of ``--per-request`` spectra, in
    this process with one torch thread (as the server's workers), best of ``repeats``."""
    import torch

    import stellar

    torch.set_num_threads(1)
    predictor = stellar.load(args.model, registry=args.registry)
    k = args.per_request
    predictor.predict(flux[:k])  # warm-up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for s in range(0, len(flux) - k + 1, k):
            predictor.predict(flux[s : s + k])
        best = min(best, time.perf_counter() - t0)
    rate = (len(flux) // k) * k / best
    print(f"in process: stellar.load(...).predict, {k} spectra per call: {rate:.1f} spectra/s (best of {repeats})")
    return float(rate)


def server_cpu_s(proc: subprocess.Popen) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process of the server, keyed by its role."""
    import psutil

    root = psutil.Process(proc.pid)
    out: dict[str, float] = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            cmd = " ".join(p.cmdline())
        except psutil.NoSuchProcess:
            continue
        # LitServe's HTTP server(s) and its multiprocessing manager are both forks of serve.py: one share
        role = "worker" if "spawn_main" in cmd else "resource_tracker" if "resource_tracker" in cmd else "http+manager"
        if p.pid == root.pid:
            role = "main"
        out[role] = out.get(role, 0.0) + t.user + t.system
    return out


def measure(
    args: argparse.Namespace, max_batch_size: int, bodies: dict[str, list[bytes]], out_dir: Path
) -> list[dict[str, Any]]:
    proc, url = start_server(args, max_batch_size, out_dir / f"server_{max_batch_size}.log")
    try:
        asyncio.run(wait_ready(url, proc))
        rows = []
        for fmt, c in itertools.product(bodies, args.concurrency):
            asyncio.run(load(url, bodies[fmt][:20], 4, fmt))  # warm-up
            before, c0 = server_cpu_s(proc), time.process_time()
            r = asyncio.run(load(url, bodies[fmt], c, fmt, args.per_request))
            after, client = server_cpu_s(proc), time.process_time() - c0
            r["max_batch_size"] = max_batch_size
            # CPU per spectrum of each server process (HTTP, inference worker, LitServe's queue manager) and of
            # the load generator: what the cores were spent on, whatever else the machine was running
            n = len(bodies[fmt]) * args.per_request
            r["cpu_ms_per_spectrum"] = {k: 1000 * (after[k] - before.get(k, 0.0)) / n for k in after}
            r["cpu_ms_per_spectrum"]["client"] = 1000 * client / n
            cpu = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_ms_per_spectrum"].items())
            print(
                f"  max_batch_size={max_batch_size:>2} {fmt:>6} c={c:>2}: {r['throughput']:7.1f} spectra/s, "
                f"p50 {r['p50_ms']:7.1f} ms, p99 {r['p99_ms']:7.1f} ms, errors {r['errors']}; "
                f"CPU ms/spectrum: {cpu}",
                flush=True,
            )
            rows.append(r)
        return rows
    finally:
        stop_server(proc)


def worker_breakdown(args: argparse.Namespace, bodies: list[bytes], repeats: int = 3) -> dict[str, float]:
    """Worker compute per spectrum, in this process: preprocessing and forward pass, one at a time vs one batch."""
    import torch

    from stellar.serving.api import SpectralAPI
    from stellar.serving.schemas import SpectralRequest

    torch.set_num_threads(1)  # as the server's workers (num_threads=1)
    api = SpectralAPI(args.model, registry_root=args.registry, api_path="/x")
    api.setup("cpu")
    rows = [api.decode_request(SpectralRequest.model_validate_json(b)).rows[0] for b in bodies]  # type: ignore[union-attr]
    n = len(rows)

    def best(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times) * 1000 / n

    inputs = api.preprocess(rows)
    one = [{k: v[i : i + 1] for k, v in inputs.items()} for i in range(n)]
    out = {
        "preprocess_1": best(lambda: [api.preprocess([r]) for r in rows]),
        f"preprocess_{n}": best(lambda: api.preprocess(rows)),
        "forward_1": best(lambda: [api._outputs(x) for x in one]),
        f"forward_{n}": best(lambda: api._outputs(inputs)),
    }
    print("worker compute per spectrum (ms, best of 3): " + ", ".join(f"{k} {v:.2f}" for k, v in out.items()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", default=os.environ.get("STELLAR_REGISTRY", str(REPO / "registry")))
    p.add_argument("--model", default="spectral_cnn")
    p.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout", type=float, default=0.005)
    p.add_argument("--quick", action="store_true", help="120 requests per level")
    p.add_argument("--per-request", type=int, default=1, help="spectra per request (and per in-process call)")
    p.add_argument("--format", default="json", help="comma-separated request/response formats: json, binary")
    p.add_argument("--no-single", action="store_true", help="skip the max_batch_size=1 server")
    p.add_argument(
        "--set",
        dest="server_args",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a serve.py override for both servers, e.g. --set num_threads=4 --set api_servers=2 (repeatable)",
    )
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serving"))
    args = p.parse_args()
    n = 120 if args.quick else args.requests

    from stellar.registry import ModelRegistry

    version = ModelRegistry(args.registry).get(args.model)
    n_pix = len(version.preprocessing().grid)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    formats = [f.strip() for f in args.format.split(",")]
    unknown = set(formats) - set(HEADERS)
    if unknown:
        p.error(f"--format: {sorted(unknown)} unknown; choose from {sorted(HEADERS)}")
    flux = make_spectra(n * args.per_request, n_pix)
    bodies = {fmt: make_bodies(flux, args.per_request, args.model, fmt) for fmt in formats}
    print(
        f"{version.tag} ({args.registry}): {n} requests per level, {args.per_request} spectra x {n_pix} px per "
        f"request, formats {formats}, {os.cpu_count()} CPUs"
    )
    first = make_bodies(flux[: args.max_batch_size], 1, args.model, "json")
    breakdown = worker_breakdown(args, first)
    ceiling = in_process(args, flux)
    batched = measure(args, args.max_batch_size, bodies, out_dir)
    single = [] if args.no_single else measure(args, 1, bodies, out_dir)

    print(
        f"\n| format | concurrency | batched (max_batch_size={args.max_batch_size}) | of in-process "
        "| max_batch_size=1 |"
    )
    print("|---|---|---|---|---|")
    for b, s in itertools.zip_longest(batched, single):
        cells = [
            "-" if r is None else f"{r['throughput']:.1f} spectra/s, p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms"
            for r in (b, s)
        ]
        share = b["throughput"] / ceiling
        print(f"| {b['format']} | {b['concurrency']} | {cells[0]} | **{share:.0%}** | {cells[1]} |")
    print(f"in-process stellar.load(...).predict ({args.per_request} spectra per call): {ceiling:.1f} spectra/s")
    result = {"batched": batched, "single": single, "worker_ms_per_spectrum": breakdown, "in_process": ceiling}
    (out_dir / "serving.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
