"""Peak memory of one 10,000-spectrum request: answers streamed in chunks of rows vs written whole, JSON and Arrow.

Starts ``python serve.py`` twice from one run, with only the spectral endpoint: once as configured (answers of
more than ``stream_rows`` objects are streamed, :mod:`stellar.serving.responses`), once with
``+endpoints.spectral.stream_rows=null`` (every answer validated, converted and serialised whole, as before
streaming). Each server gets the same request of ``--n`` spectra, in JSON and as an Arrow IPC stream (answered in
the same format), ``--repeats`` times each. Before each request the peak resident memory (``VmHWM``) of every
process of the server is reset (``/proc/<pid>/clear_refs``); after it the script prints, summed over the HTTP side
(``serve.py`` and the processes it forks: the uvicorn server, LitServe's queue broker) and over the inference worker,
each process's peak above its resident memory before the request, in MB, beside the seconds the request took and
the sizes of the request and answer bodies. The client reads the answer as it arrives (``httpx`` streaming), so
its own memory is not part of the figures.

First, in this process, the answer alone: CPU seconds and ``tracemalloc`` peak of writing an answer of ``--n``
objects (shaped as spectral_multitask's) whole, as FastAPI's route and the Arrow middleware do, and streamed;
``--encode-only`` stops there.

Spectra are ``--n-pix`` samples each (default 100: ``MAX_TOTAL`` allows 1,000,000 samples per request, so 10,000
full-length spectra are refused); the answer's size does not depend on it.

Needs a registered spectral model (``python train.py register=true``); the weights do not matter.

    python benchmarks/large_request.py --registry registry --model spectral_cnn
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's server helpers
from serving import make_bodies, make_spectra, start_server, stop_server, wait_ready

REPO = Path(__file__).resolve().parents[1]
MB = 2**20


def start(args: argparse.Namespace, stream_rows: str, log_path: Path) -> tuple[Any, str]:
    """``serve.py`` with only the spectral endpoint and ``stream_rows`` (``null``: never stream), once ready."""
    extra = ["endpoints.multimodal=null", f"max_body_mb={args.max_body_mb}", "metrics=false"]
    server = argparse.Namespace(
        registry=args.registry,
        model=args.model,
        batch_timeout=0.005,
        server_args=[*extra, f"+endpoints.spectral.stream_rows={stream_rows}"],
    )
    proc, url = start_server(server, 32, log_path)
    asyncio.run(wait_ready(url, proc))
    return proc, url


def processes(proc: Any) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """The server's HTTP side (``serve.py`` and the processes it forks: the uvicorn server and LitServe's queue
    broker) and its inference workers (spawned: ``multiprocessing.spawn`` in their command line)."""
    every = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    every = [p for p in every if "resource_tracker" not in " ".join(p.cmdline())]
    workers = [p for p in every if "spawn_main" in " ".join(p.cmdline())]
    return [p for p in every if p not in workers], workers


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peaks(procs: list[psutil.Process]) -> dict[int, int]:
    """Reset ``VmHWM`` of ``procs`` to their current resident memory; returns that memory (kB) per pid."""
    for p in procs:
        Path(f"/proc/{p.pid}/clear_refs").write_text("5")
    return {p.pid: _status_kb(p.pid, "VmRSS:") for p in procs}


def one_request(url: str, body: bytes, fmt: str) -> tuple[float, int]:
    """Seconds and answer bytes of one request, the answer read in pieces as it arrives."""
    arrow = "application/vnd.apache.arrow.stream"
    kind = "application/json" if fmt == "json" else arrow
    headers = {"Content-Type": kind, "Accept": kind}
    size = 0
    start = time.perf_counter()
    with httpx.stream("POST", f"{url}/predict/spectral", content=body, headers=headers, timeout=600) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.read()[:500]!r}")
        for piece in r.iter_bytes():
            size += len(piece)
    return time.perf_counter() - start, size


def measure(args: argparse.Namespace, bodies: dict[str, bytes], stream_rows: str) -> list[dict[str, Any]]:
    out = Path(args.out)
    proc, url = start(args, stream_rows, out / f"server_{stream_rows}.log")
    rows = []
    try:
        http, workers = processes(proc)
        for fmt, body in bodies.items():
            one_request(url, body, fmt)  # warm-up: first-call imports and allocations are not the answer's
            runs = []
            for _ in range(args.repeats):
                before = reset_peaks([*http, *workers])
                seconds, answer = one_request(url, body, fmt)
                peak_http = sum(_status_kb(p.pid, "VmHWM:") - before[p.pid] for p in http) / 1024
                peak_worker = sum(_status_kb(p.pid, "VmHWM:") - before[p.pid] for p in workers) / 1024
                runs.append((seconds, peak_http, peak_worker, answer))
            rows.append(
                {
                    "answers": "streamed" if stream_rows != "null" else "whole",
                    "format": fmt,
                    "request_MB": len(body) / MB,
                    "answer_MB": runs[0][3] / MB,
                    "seconds": statistics.median(r[0] for r in runs),
                    "http_side_peak_MB": statistics.median(r[1] for r in runs),
                    "worker_peak_MB": statistics.median(r[2] for r in runs),
                }
            )
    finally:
        stop_server(proc)
    return rows


def _answer(n: int) -> dict[str, Any]:
    """An answer of ``n`` objects shaped as spectral_multitask's: 7 classes, 3 targets with 95% intervals."""
    classes = list("OBAFGKM")
    rng = np.random.default_rng(0)
    preds = []
    for k in range(n):
        p = rng.dirichlet(np.ones(len(classes)))
        means = {"teff": 5000.0 + k % 3000, "logg": 4.4, "feh": -0.1}
        est = {t: {"mean": m, "std": 0.1, "interval_95": (m - 0.2, m + 0.2)} for t, m in means.items()}
        probs = dict(zip(classes, p.tolist(), strict=True))
        preds.append({"predicted_class": max(probs, key=probs.__getitem__), "probabilities": probs, "targets": est,
                      "valid_fraction": 1.0})  # fmt: skip
    meta = {"model": "m", "version": 1, "modality": "spectral", "calibrated": True, "intervals_calibrated": True}
    return {**meta, "predictions": preds, "assumed": []}


def encode_in_process(n: int) -> list[dict[str, Any]]:
    """CPU seconds and tracemalloc peak (MB above the answer dict) of writing an answer of ``n`` objects: whole, as
    FastAPI's route (validate, dump, ``JSONResponse``) and the Arrow middleware (validate, dump, one table) do, and
    streamed (:class:`~stellar.serving.responses.StreamedAnswer` sent to an ASGI ``send`` that drops each chunk)."""
    import tracemalloc

    from starlette.responses import JSONResponse

    from stellar.serving.responses import StreamedAnswer, encode_arrow, response_table
    from stellar.serving.schemas import PredictionResponse

    answer = _answer(n)

    async def drop(message: dict[str, Any]) -> None:
        return None

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    def streamed(fmt: str) -> None:
        r = StreamedAnswer(answer, PredictionResponse)
        asyncio.run(
            (r.as_arrow() if fmt == "binary" else r)({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, drop)
        )

    paths = {
        ("whole", "json"): lambda: JSONResponse(PredictionResponse.model_validate(answer).model_dump(mode="json")),
        ("whole", "binary"): lambda: encode_arrow(
            response_table(PredictionResponse.model_validate(answer).model_dump(mode="json"))
        ),
        ("streamed", "json"): lambda: streamed("json"),
        ("streamed", "binary"): lambda: streamed("binary"),
    }
    rows = []
    for (how, fmt), run in paths.items():
        tracemalloc.start()
        cpu = time.process_time()
        run()
        cpu = time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append({"answers": how, "format": fmt, "cpu_s": cpu, "peak_MB": peak / MB})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", default=os.environ.get("STELLAR_REGISTRY", str(REPO / "registry")))
    p.add_argument("--model", default="spectral_cnn")
    p.add_argument("--n", type=int, default=10_000, help="spectra in the request")
    p.add_argument("--n-pix", type=int, default=100, help="samples per spectrum")
    p.add_argument("--repeats", type=int, default=3, help="requests per cell (the median is printed)")
    p.add_argument("--max-body-mb", type=float, default=64)
    p.add_argument("--out", default="/tmp/stellar-large-request")
    p.add_argument("--encode-only", action="store_true", help="only the in-process encoding of the answer")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    enc = encode_in_process(args.n)
    print(f"writing an answer of {args.n} objects in process (CPU s under tracemalloc; peak MB above the answer):")
    for r in enc:
        print(f"  {r['answers']:>9} {r['format']:>7}: {r['cpu_s']:6.2f} s  peak {r['peak_MB']:7.1f} MB")
    for fmt in ("json", "binary"):
        whole, streamed = (
            next(r for r in enc if r["format"] == fmt and r["answers"] == a) for a in ("whole", "streamed")
        )
        print(f"  {fmt}: peak whole / streamed = {whole['peak_MB'] / streamed['peak_MB']:.1f}x")
    if args.encode_only:
        return
    flux = make_spectra(args.n, args.n_pix)
    bodies = {fmt: make_bodies(flux, args.n, args.model, fmt)[0] for fmt in ("json", "binary")}
    print(f"{args.n} spectra x {args.n_pix} px per request, {args.model} ({args.registry}), {args.repeats} each")
    rows = measure(args, bodies, "null") + measure(args, bodies, "1024")
    header = ("answers", "format", "request_MB", "answer_MB", "seconds", "http_side_peak_MB", "worker_peak_MB")
    print(" ".join(f"{h:>15}" for h in header))
    for r in rows:
        print(" ".join(f"{r[h]:>15.2f}" if isinstance(r[h], float) else f"{r[h]:>15}" for h in header))
    for fmt in bodies:
        whole, streamed = (
            next(r for r in rows if r["format"] == fmt and r["answers"] == a) for a in ("whole", "streamed")
        )
        ratio = whole["http_side_peak_MB"] / max(streamed["http_side_peak_MB"], 1e-9)
        print(
            f"{fmt}: HTTP-process peak, whole / streamed = {ratio:.2f}x; seconds {whole['seconds']:.2f} -> "
            f"{streamed['seconds']:.2f}"
        )
    (Path(args.out) / "large_request.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
