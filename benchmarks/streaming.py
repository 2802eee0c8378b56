"""Larger-than-memory training: one epoch streamed from a store over 3x a memory limit imposed on the training
process, beside the in-memory datamodule on a store that fits.

Two simulated spectra stores are written block by block (``DatasetStore.write_blocks``; the
writer never holds more than one block): a big one whose arrays are ``--factor`` times ``--limit-gib`` (uncompressed,
as they would be in memory) and a small one ``--small-fraction`` of it. Each training run is a fresh interpreter
(this script with ``--child``) that builds ``SpectraDataModule`` on a store and fits a small spectral CNN for one
epoch with a Lightning ``Trainer`` (CPU, ``num_workers=0`` so the one process holds everything; streaming reads
ahead in a thread). Runs: in memory on the small store (the anchor) and streaming on it, alternated ``--repeats``
times (median kept), streaming on the big store, and in memory on the big store (which must fail). Printed: peak
RSS (``VmHWM``), training samples/s and the training loader's rows/s alone (one pass without a model, before the
fit) of each, and the ratios.

The limit: cgroup v2 ``memory.max`` is not available here (the machine has cgroup v1), so the child caps its
address space with ``RLIMIT_AS`` right after its imports at ``VmSize + (limit - VmRSS)``: it may map at most
``limit - RSS`` more bytes. Address space reserved before the cap but untouched then could still become resident
without a new mapping, so the parent also polls the child's ``VmRSS`` every 50 ms and kills it above the limit, and
the script fails if a streaming run's ``VmHWM`` reaches the limit.

    python benchmarks/streaming.py            # limit 1.5 GiB, big store 4.8 GiB (~127k spectra), ~6 min
    python benchmarks/streaming.py --quick    # a 4096-row store: a smoke run, not 3x the limit (~1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "streaming.json"
GIB = 1024**3
BASE_ROWS = 512  # simulated spectra resampled (with fresh noise) into the stores
CHUNK_ROWS = 512


def _status() -> dict[str, float]:
    """VmRSS, VmHWM and VmSize of this process, MiB (Linux)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "VmHWM", "VmSize"):
            out[key] = int(line.split()[1]) / 1024.0
    return out


# ---- building the stores ------------------------------------------------------------------------------------
def _blocks(base: dict[str, Any], n: int, seed: int, block: int) -> Any:
    """``n`` rows resampled from the simulated ``base`` rows with fresh noise drawn from their ``ivar``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays, meta = base["arrays"], base["meta"]
    ivar = arrays["ivar"]
    sigma = np.where(ivar > 0, 1.0 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), 0.0).astype("f4")
    for s in range(0, n, block):
        m = min(block, n - s)
        pick = rng.integers(0, len(meta), m)
        noise = rng.standard_normal((m, ivar.shape[1]), dtype=np.float32) * sigma[pick]
        rows = {k: v[pick] for k, v in arrays.items()}
        rows["flux"] = rows["flux"] + noise
        ids = [f"stream-{s + i}" for i in range(m)]
        part = meta.iloc[pick].reset_index(drop=True).assign(object_id=ids, obs_id=ids)
        part["ra"], part["dec"] = rng.uniform(0, 360, m), np.degrees(np.arcsin(rng.uniform(-1, 1, m)))
        yield rows, part


def build_stores(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Write the big and the small store (once; reused when present) and return their sizes."""
    from stellar.data.preprocess.spectra import SpectrumPreprocessing
    from stellar.data.simulate.spectra import SpectrumSimulator
    from stellar.data.sources import SimulatedSpectraSource
    from stellar.data.store import DatasetStore

    prep = SpectrumPreprocessing(continuum_channel=True)
    row_bytes = len(prep.grid) * (4 + 4 + 1 + 4)  # flux, ivar (f4), mask (bool), continuum (f4)
    big = 4096 if args.quick else -(-int(args.factor * args.limit_gib * GIB) // row_bytes)
    small = max(1024, int(big * args.small_fraction))
    store = DatasetStore(workdir / "store")
    base = None
    out: dict[str, Any] = {"row_bytes": row_bytes}
    for label, n in (("big", big), ("small", small)):
        name = f"stream_{label}_{n}"
        t0 = time.perf_counter()
        if not store.exists(name):
            if base is None:
                base = SimulatedSpectraSource(n=BASE_ROWS, seed=args.seed, simulator=SpectrumSimulator()).build(prep)
            kw = {k: v for k, v in base.items() if k not in ("arrays", "meta")}
            blocks = _blocks(base, n, args.seed + n, 4 * CHUNK_ROWS)
            store.write_blocks(name, blocks, n_rows=n, chunk_rows=CHUNK_ROWS, **kw)
        disk = sum(f.stat().st_size for f in (workdir / "store" / name).rglob("*") if f.is_file())
        out[label] = {"name": name, "rows": n, "gib": n * row_bytes / GIB, "disk_gib": disk / GIB,
                      "write_s": time.perf_counter() - t0}  # fmt: skip
        print(f"  store {name}: {n} rows, {n * row_bytes / GIB:.2f} GiB in memory, {disk / GIB:.2f} GiB on disk "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    out["writer_peak_rss_mib"] = _status()["VmHWM"]
    return out


# ---- one training run (child) -------------------------------------------------------------------------------
class _Stored:
    """A source whose dataset is already in the store (built above)."""

    def __init__(self, name: str):
        self.name = name

    def dataset_name(self, preprocessing: dict[str, Any]) -> str:
        return self.name

    def build(self, preprocessing: Any) -> dict[str, Any]:
        raise RuntimeError(f"dataset {self.name} should have been written by build_stores")


def child_train(args: argparse.Namespace) -> dict[str, Any]:
    import lightning as L
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from stellar.data.datamodules import SpectraDataModule
    from stellar.data.preprocess.spectra import SpectrumPreprocessing
    from stellar.evaluation.splits import RandomSplit

    before = _status()
    limit = int(args.limit_gib * GIB)
    cap = int(before["VmSize"] * 2**20) + limit - int(before["VmRSS"] * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    class Throughput(L.Callback):
        rows, seconds, t0 = 0, 0.0, 0.0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.rows += len(batch["index"])

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            self.seconds = time.perf_counter() - self.t0

    t0 = time.perf_counter()
    dm = SpectraDataModule(
        _Stored(args.name), str(Path(args.workdir) / "store"), split=RandomSplit(fractions=(0.98, 0.01, 0.01)),
        batch_size=args.batch_size, preprocessing=SpectrumPreprocessing(continuum_channel=True),
        streaming=args.mode == "stream", shuffle_buffer=args.buffer, read_ahead=2,
    )  # fmt: skip
    dm.setup("fit")
    overrides = ["model=spectral_cnn", "model.encoder.channels=[4,8,16]", "trainer.max_epochs=1",
                 f"paths.output_dir={args.workdir}", f"paths.store_dir={args.workdir}"]  # fmt: skip
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=overrides)
    model = instantiate(cfg.model, class_names=dm.class_names, target_stats=dm.target_stats)
    meter = Throughput()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=[meter])  # fmt: skip
    setup_s = time.perf_counter() - t0
    t1 = time.perf_counter()  # the data path alone: one pass of the training loader, no model
    loader_rows = sum(len(b["index"]) for b in dm.train_dataloader())
    loader_rows_per_s = loader_rows / (time.perf_counter() - t1)
    trainer.fit(model, datamodule=dm)  # a fresh loader: the same epoch-0 order as the pass above
    after = _status()
    return {"mode": args.mode, "name": args.name, "train_rows": meter.rows, "epoch_s": meter.seconds,
            "loader_rows_per_s": loader_rows_per_s,
            "samples_per_s": meter.rows / meter.seconds, "setup_s": setup_s, "peak_rss_mib": after["VmHWM"],
            "rss_before_mib": before["VmRSS"], "as_cap_mib": cap / 2**20, "limit_mib": limit / 2**20}  # fmt: skip


# ---- parent -------------------------------------------------------------------------------------------------
def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except FileNotFoundError:
        pass
    return 0.0


def spawn(args: argparse.Namespace, workdir: Path, name: str, mode: str) -> dict[str, Any]:
    """One training run in a fresh interpreter, killed if its RSS passes the limit."""
    out = workdir / f"{mode}_{name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--name", name, "--mode", mode,
           "--workdir", str(workdir), "--limit-gib", str(args.limit_gib), "--batch-size", str(args.batch_size),
           "--buffer", str(args.buffer), "--out", str(out)]  # fmt: skip
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}  # no 64 MiB arena reservation per thread under RLIMIT_AS
    t0, watch_peak = time.perf_counter(), 0.0
    proc = subprocess.Popen(cmd, env=env)
    while proc.poll() is None:
        watch_peak = max(watch_peak, _rss_mib(proc.pid))
        if watch_peak > args.limit_gib * 1024:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return {"mode": mode, "name": name, "killed": f"RSS {watch_peak:.0f} MiB over the limit"}
        time.sleep(0.05)
    if proc.returncode != 0:
        return {"mode": mode, "name": name, "failed": f"exit status {proc.returncode}"}
    result = json.loads(out.read_text())
    print(f"  {mode} on {name}: {result['samples_per_s']:.0f} samples/s, peak RSS {result['peak_rss_mib']:.0f} MiB "
          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    return {**result, "watchdog_peak_mib": watch_peak}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median samples/s (a failed run counts as the slowest), with the highest peak RSS of all."""
    ok = sorted((r for r in runs if "samples_per_s" in r), key=lambda r: r["samples_per_s"])
    if len(ok) < len(runs):
        return next(r for r in runs if "samples_per_s" not in r)
    return {**ok[len(ok) // 2], "peak_rss_mib": max(r["peak_rss_mib"] for r in ok), "repeats": len(ok)}


def report(res: dict[str, Any]) -> str:
    s, runs = res["stores"], res["runs"]
    lines = [
        f"limit {res['limit_gib']:.2f} GiB; big store {s['big']['rows']} rows = {s['big']['gib']:.2f} GiB "
        f"({s['big']['gib'] / res['limit_gib']:.1f}x the limit; {s['big']['disk_gib']:.2f} GiB on disk), small "
        f"store {s['small']['rows']} rows = {s['small']['gib']:.2f} GiB",
        f"{'run':<24} {'store GiB':>9} {'train rows':>10} {'samples/s':>10} {'loader rows/s':>13} {'peak RSS MiB':>12}",
    ]
    for key, r in runs.items():
        if "samples_per_s" not in r:
            lines.append(f"{key:<24} {r.get('killed') or r.get('failed')}")
            continue
        gib = s["big" if "big" in key else "small"]["gib"]
        lines.append(
            f"{key:<24} {gib:>9.2f} {r['train_rows']:>10} {r['samples_per_s']:>10.0f} {r['loader_rows_per_s']:>13.0f} "
            f"{r['peak_rss_mib']:>12.0f}"
        )
    for k, v in res["ratios"].items():
        lines.append(f"{k}: {v:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small stores: a smoke run, not 3x the limit")
    p.add_argument("--limit-gib", type=float, default=1.5, help="memory limit of each training process, GiB")
    p.add_argument("--factor", type=float, default=3.2, help="big store size over the limit (uncompressed)")
    p.add_argument("--small-fraction", type=float, default=0.05, help="small store size over the big one")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--buffer", type=int, default=4096, help="shuffle buffer, rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="runs of each small-store path (median kept)")
    p.add_argument("--workdir", default="/tmp/stream/bench")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--name", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=("stream", "memory"), help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.child:
        Path(args.out).write_text(json.dumps(child_train(args)))
        return 0
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stores = build_stores(args, workdir)
    small, big = stores["small"]["name"], stores["big"]["name"]
    tries: dict[str, list[dict[str, Any]]] = {"memory, small store": [], "streaming, small store": []}
    for _ in range(args.repeats):  # alternated, as the machine's load drifts; the median run of each is kept
        tries["memory, small store"].append(spawn(args, workdir, small, "memory"))
        tries["streaming, small store"].append(spawn(args, workdir, small, "stream"))
    runs = {k: _median(v) for k, v in tries.items()}
    runs["streaming, big store"] = spawn(args, workdir, big, "stream")
    runs["memory, big store"] = spawn(args, workdir, big, "memory")
    mem, s_small, s_big = (runs[k] for k in ("memory, small store", "streaming, small store", "streaming, big store"))
    ratios = {}
    if all("samples_per_s" in r for r in (mem, s_small, s_big)):
        ratios = {"samples/s streaming/memory, small store": s_small["samples_per_s"] / mem["samples_per_s"],
                  "samples/s streaming big/memory small": s_big["samples_per_s"] / mem["samples_per_s"],
                  "peak RSS streaming big/memory small": s_big["peak_rss_mib"] / mem["peak_rss_mib"],
                  "peak RSS streaming big/limit": s_big["peak_rss_mib"] / (args.limit_gib * 1024)}  # fmt: skip
    res = {"date": time.strftime("%Y-%m-%d"), "limit_gib": args.limit_gib, "quick": args.quick, "stores": stores,
           "runs": runs, "tries": tries, "ratios": ratios, "wall_s": time.perf_counter() - t0,
           "cpus": os.cpu_count(), "load_avg": os.getloadavg()}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(report(res))
    print(f"results: {RESULTS}; wall {res['wall_s']:.0f} s")
    under = all(r.get("peak_rss_mib", float("inf")) < args.limit_gib * 1024 for r in (s_small, s_big))
    return 0 if under else 1


if __name__ == "__main__":
    sys.exit(main())
