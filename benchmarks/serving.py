"""Serving throughput and latency against the model's own speed: one run, the whole matrix.

First, in this process with one torch thread (as the server's workers): the worker's raw batched compute
(preprocessing + forward pass, ``--max-batch-size`` spectra at a time: **the ceiling**) and the throughput of
``stellar.load(...).predict`` in calls of each ``--per-request`` size. Then ``python serve.py`` (the batched settings
of ``conf/serve.yaml``, only the spectral endpoint, on 127.0.0.1) is sent SDSS-like spectra of the model grid's
length, flux only, at every (spectra per request × ``--format`` × concurrency) cell: ``json``, and ``binary`` (the
Arrow IPC stream of :mod:`stellar.serving.binary`, answered in Arrow). Each cell sends ``--spectra`` spectra (at
least two requests per client, at most four times ``--spectra``: 1,024 per request at concurrency 32 is 16 requests
in flight) and prints spectra/s, p50/p99 latency per request and CPU ms per spectrum of the HTTP process (with
LitServe's queue manager), the inference worker and the load generator (the client). ``--single`` runs the same
matrix again with ``max_batch_size=1`` (batched vs unbatched).

Needs a registered spectral model (``python train.py register=true``); the weights do not matter for speed.

    python benchmarks/serving.py                 # 4,096 spectra per cell, 1/32/1,024 per request (~10 min, 2 cores)
    python benchmarks/serving.py --quick         # 1,024 spectra per cell
    python benchmarks/serving.py --per-request 64 --concurrency 8 --spectra 4096   # the 64-per-request anchor
    python benchmarks/serving.py --per-request 1 --format json --single            # batched vs unbatched
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


def in_process(predictor: Any, flux: np.ndarray, k: int, repeats: int = 2) -> tuple[float, float]:
    """Spectra per second of ``predictor.predict`` (a ``stellar.load(...)`` object) on ``flux`` in calls of ``k``
    spectra, in this process with one torch thread (as the server's workers), and its CPU ms per spectrum; best of
    ``repeats``."""
    predictor.predict(flux[:k])  # warm-up
    best, best_cpu = np.inf, np.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(0, len(flux) - k + 1, k):
            predictor.predict(flux[s : s + k])
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
    n = (len(flux) // k) * k
    rate, cpu = n / best, 1000 * best_cpu / n
    print(
        f"in process: stellar.load(...).predict, {k} spectra per call: {rate:.1f} spectra/s, {cpu:.2f} CPU ms per "
        f"spectrum (best of {repeats})"
    )
    return float(rate), float(cpu)


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


def cell_requests(per_request: int, concurrency: int, spectra: int) -> int:
    """Requests in one cell: ``spectra`` spectra in all, and at least two per client, but never more than four times
    ``spectra`` (so 1,024 per request at concurrency 32 sends 16 requests: 16 in flight, not 32)."""
    budget = -(-spectra // per_request)
    return max(budget, min(2 * concurrency, -(-4 * spectra // per_request)))


def measure(
    args: argparse.Namespace, max_batch_size: int, pools: dict[tuple[int, str], list[bytes]], out_dir: Path
) -> list[dict[str, Any]]:
    """Every (spectra per request, format, concurrency) cell against one server of ``max_batch_size``."""
    proc, url = start_server(args, max_batch_size, out_dir / f"server_{max_batch_size}.log")
    try:
        asyncio.run(wait_ready(url, proc))
        rows = []
        for (k, fmt), c in itertools.product(pools, args.concurrency):
            pool = pools[k, fmt]
            n = cell_requests(k, c, args.spectra)
            bodies = [pool[i % len(pool)] for i in range(n)]  # the same bytes objects again: no extra memory
            asyncio.run(load(url, bodies[: min(n, 4)], min(c, 4), fmt))  # warm-up
            before, c0 = server_cpu_s(proc), time.process_time()
            r = asyncio.run(load(url, bodies, c, fmt, k))
            after, client = server_cpu_s(proc), time.process_time() - c0
            r["max_batch_size"] = max_batch_size
            r["in_flight"] = min(c, n)
            # CPU per spectrum of each server process (HTTP, inference worker, LitServe's queue manager) and of
            # the load generator: what the cores were spent on, whatever else the machine was running
            r["cpu_ms_per_spectrum"] = {k_: 1000 * (after[k_] - before.get(k_, 0.0)) / (n * k) for k_ in after}
            r["cpu_ms_per_spectrum"]["client"] = 1000 * client / (n * k)
            cpu = ", ".join(f"{k_} {v:.2f}" for k_, v in r["cpu_ms_per_spectrum"].items())
            print(
                f"  max_batch_size={max_batch_size:>2} {k:>4}/request {fmt:>6} c={c:>2} ({n} requests): "
                f"{r['throughput']:7.1f} spectra/s, p50 {r['p50_ms']:7.1f} ms, p99 {r['p99_ms']:7.1f} ms, "
                f"errors {r['errors']}; CPU ms/spectrum: {cpu}",
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

    def best(fn: Any) -> tuple[float, float]:
        """Best wall and best CPU ms per spectrum over ``repeats`` calls."""
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return min(wall) * 1000 / n, min(cpu) * 1000 / n

    inputs = api.preprocess(rows)
    one = [{k: v[i : i + 1] for k, v in inputs.items()} for i in range(n)]
    timed = {
        "preprocess_1": best(lambda: [api.preprocess([r]) for r in rows]),
        f"preprocess_{n}": best(lambda: api.preprocess(rows)),
        "forward_1": best(lambda: [api._outputs(x) for x in one]),
        f"forward_{n}": best(lambda: api._outputs(inputs)),
    }
    out = {k: v[0] for k, v in timed.items()} | {f"cpu_{k}": v[1] for k, v in timed.items()}
    print(
        "worker compute per spectrum (ms, best of 3, wall / CPU): "
        + ", ".join(f"{k} {w:.2f} / {c:.2f}" for k, (w, c) in timed.items())
    )
    return out


def print_table(rows: list[dict[str, Any]], ceiling: float, anchors: dict[int, tuple[float, float]]) -> None:
    """The matrix as a Markdown table: each cell's share of the raw ceiling and of ``predict`` at its size, and
    the server's CPU per spectrum (HTTP + worker) over ``predict``'s (load-independent)."""
    print(
        "\n| spectra/request | format | concurrency | spectra/s | p50 / p99 ms | of ceiling | of predict | "
        "CPU ms/spectrum: HTTP + manager | worker | client | server CPU / predict CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu, (anchor, anchor_cpu) = r["cpu_ms_per_spectrum"], anchors[r["per_request"]]
        server_cpu = cpu.get("http+manager", 0) + cpu.get("worker", 0)
        c = f"{r['concurrency']}" + (f" ({r['in_flight']} in flight)" if r["in_flight"] < r["concurrency"] else "")
        print(
            f"| {r['per_request']} | {r['format']} | {c} | {r['throughput']:.1f} | {r['p50_ms']:.1f} / "
            f"{r['p99_ms']:.1f} | **{r['throughput'] / ceiling:.0%}** | {r['throughput'] / anchor:.0%}"
            f" | {cpu.get('http+manager', 0):.2f} | {cpu.get('worker', 0):.2f} | {cpu['client']:.2f} |"
            f" {server_cpu / anchor_cpu:.2f}x |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", default=os.environ.get("STELLAR_REGISTRY", str(REPO / "registry")))
    p.add_argument("--model", default="spectral_cnn")
    p.add_argument("--spectra", type=int, default=4096, help="spectra per cell (at least 2 requests per client)")
    p.add_argument("--per-request", type=int, nargs="+", default=[1, 32, 1024], help="spectra per request")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--format", default="json,binary", help="comma-separated request/response formats: json, binary")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout", type=float, default=0.005)
    p.add_argument("--quick", action="store_true", help="1,024 spectra per cell")
    p.add_argument("--single", action="store_true", help="also the same matrix with max_batch_size=1")
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
    if args.quick:
        args.spectra = 1024

    import torch

    import stellar
    from stellar.registry import ModelRegistry

    version = ModelRegistry(args.registry).get(args.model)
    n_pix = len(version.preprocessing().grid)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    formats = [f.strip() for f in args.format.split(",")]
    unknown = set(formats) - set(HEADERS)
    if unknown:
        p.error(f"--format: {sorted(unknown)} unknown; choose from {sorted(HEADERS)}")
    flux = make_spectra(max(args.spectra, *args.per_request), n_pix)
    pools = {(k, fmt): make_bodies(flux, k, args.model, fmt) for k in args.per_request for fmt in formats}
    largest = max(len(b) for pool in pools.values() for b in pool)
    args.server_args.append(f"max_body_mb={max(16, -(-2 * largest // 2**20))}")  # room for the largest request
    print(
        f"{version.tag} ({args.registry}): {args.spectra} spectra per cell, {args.per_request} spectra x {n_pix} px "
        f"per request, formats {formats}, concurrency {args.concurrency}, {os.cpu_count()} CPUs"
    )
    breakdown = worker_breakdown(args, make_bodies(flux[: args.max_batch_size], 1, args.model, "json"))
    b = args.max_batch_size
    ceiling = 1000 / (breakdown[f"preprocess_{b}"] + breakdown[f"forward_{b}"])
    cpu_ceiling = 1000 / (breakdown[f"cpu_preprocess_{b}"] + breakdown[f"cpu_forward_{b}"])
    print(
        f"in process: the worker's raw batched compute (preprocess + forward, {b} at a time): {ceiling:.1f} "
        f"spectra/s by wall time, {cpu_ceiling:.1f} by CPU time (what an idle core would do)"
    )
    torch.set_num_threads(1)
    predictor = stellar.load(args.model, registry=args.registry)
    anchors = {k: in_process(predictor, flux[: max(k, min(len(flux), 64 * k, 1024))], k) for k in args.per_request}
    batched = measure(args, args.max_batch_size, pools, out_dir)
    single = measure(args, 1, pools, out_dir) if args.single else []

    print(
        f"\nin-process ceiling (raw batched compute): {ceiling:.1f} spectra/s (by CPU time {cpu_ceiling:.1f}); "
        "stellar.load(...).predict: "
        + ", ".join(f"{k}/call {v:.1f} spectra/s, {c:.2f} CPU ms/spectrum" for k, (v, c) in anchors.items())
    )
    print(f"batched server (max_batch_size={b}):")
    print_table(batched, ceiling, anchors)
    if single:
        print("\nmax_batch_size=1:")
        print_table(single, ceiling, anchors)
    one = [r for r in batched if r["per_request"] == 1 and r["concurrency"] == 1 and r["format"] == "json"]
    if one:
        print(
            f"\nsingle-spectrum latency (JSON, concurrency 1): p50 {one[0]['p50_ms']:.1f} ms, "
            f"p99 {one[0]['p99_ms']:.1f} ms"
        )
    result = {
        "batched": batched,
        "single": single,
        "worker_ms_per_spectrum": breakdown,
        "ceiling": ceiling,
        "ceiling_by_cpu": cpu_ceiling,
        "predict": anchors,
    }
    (out_dir / "serving.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
