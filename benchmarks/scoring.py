"""Catalogue scoring of SDSS17-format rows: in-process (the scorer before Dask) vs Dask with 1 and 2 workers, and a
resume after a SIGKILL.

    python benchmarks/scoring.py            # 1,000,000 rows in 20 Parquet partitions
    python benchmarks/scoring.py --quick    # 50,000 rows in 10 partitions

Trains and registers an SDSS17 SED model (``train.py experiment=sdss17_sed register=true``, 60 boosting rounds),
builds ``--rows`` rows resampled with replacement (seeded) from ``shared/data/sdss17`` as ``--partitions`` Parquet
files, then in this one run scores them three ways (``cluster=none``, ``cluster.n_workers=1``,
``cluster.n_workers=2``), printing rows/s of each, the ratios to the in-process anchor and whether the outputs are
identical. Then the 2-worker scoring runs as ``python -m stellar.serving.scoring`` in a subprocess, is killed
(SIGKILL to its process group) once about half the output partitions are written, and is rerun: it must compute
only the others, and its output must equal the uninterrupted one. Writes benchmarks/results/scoring.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from stellar.registry import ModelRegistry
from stellar.serving import catalogue, scoring
from stellar.serving.executors import DaskCluster, Synchronous

REPO = Path(__file__).resolve().parents[1]
SDSS17 = REPO.parent / "shared" / "data" / "sdss17"


def register_model(work: Path, data_dir: Path) -> tuple[str, int]:
    """Train and register the sdss17_sed experiment's XGBoost model (short: 60 rounds) in ``work/registry``."""
    cmd = [sys.executable, str(REPO / "train.py"), "experiment=sdss17_sed", "register=true", "logger=none"]
    cmd += [f"registry.root={work / 'registry'}", f"datamodule.data_dir={data_dir}", f"paths.root_dir={work}"]
    cmd += ["model.n_jobs=1", "model.num_boost_round=60"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    v = ModelRegistry(work / "registry").get("sed_xgboost")
    return v.name, v.version


def build_catalogue(data_dir: Path, out: Path, n_rows: int, n_parts: int, seed: int) -> int:
    """``n_rows`` SDSS17 rows drawn with replacement (seeded) as ``n_parts`` Parquet files; rows per partition."""
    with gzip.open(data_dir / "sdss17_photometry.csv.gz", "rt") as f:
        rows = pd.read_csv(f)
    pick = np.random.default_rng(seed).integers(0, len(rows), n_rows)
    table = rows.iloc[pick].reset_index(drop=True)
    table.insert(0, "object_id", [f"obj{i:07d}" for i in range(n_rows)])
    per = -(-n_rows // n_parts)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(n_parts):
        table.iloc[k * per : (k + 1) * per].to_parquet(out / f"part-{k:03d}.parquet", index=False)
    return per


def read_folder(out: Path) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in sorted(out.rglob("*.parquet"))]
    return pd.concat(frames, ignore_index=True).sort_values("object_id", kind="stable").reset_index(drop=True)


def kill_halfway(cmd: list[str], out: Path, n_parts: int) -> tuple[int, float]:
    """Run ``cmd`` in its own process group; SIGKILL the group once half the partitions are written."""
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.perf_counter()
    while proc.poll() is None and len(catalogue.finished(str(out))) < n_parts // 2:
        time.sleep(0.05)
    if proc.poll() is not None:
        raise RuntimeError(f"the scoring ended before it was killed: {proc.stderr.read().decode()[-2000:]}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(catalogue.finished(str(out))), time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="50,000 rows in 10 partitions")
    p.add_argument("--data-dir", type=Path, default=SDSS17)
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.quick:
        args.rows, args.partitions = 50_000, 10
    work = args.work or Path(tempfile.mkdtemp(prefix="stellar-scoring-"))
    t0 = time.perf_counter()
    name, version = register_model(work, args.data_dir)
    print(f"registered {name}:v{version} in {time.perf_counter() - t0:.1f} s")
    per = build_catalogue(args.data_dir, work / "catalogue", args.rows, args.partitions, args.seed)
    print(f"{args.rows:,} rows in {args.partitions} Parquet partitions of {per:,} rows: {work / 'catalogue'}")
    common = {"registry_root": str(work / "registry"), "partition_rows": per, "progress": False}
    modes = {
        "in-process (cluster=none)": Synchronous(),
        "Dask, 1 worker": DaskCluster(n_workers=1),
        "Dask, 2 workers": DaskCluster(n_workers=2),
    }
    results: dict[str, dict[str, float]] = {}
    outputs = {}
    for label, executor in modes.items():
        out = work / f"out-{len(results)}"
        r = scoring.score(work / "catalogue", out, name, version, executor=executor, **common)
        results[label] = {"seconds": r.seconds, "rows_per_s": r.objects_per_second}
        outputs[label] = read_folder(out)
    anchor = results["in-process (cluster=none)"]["rows_per_s"]
    print(f"\n{'mode':<28}{'seconds':>10}{'rows/s':>12}{'vs in-process':>16}")
    for label, r in results.items():
        print(f"{label:<28}{r['seconds']:>10.1f}{r['rows_per_s']:>12,.0f}{r['rows_per_s'] / anchor:>15.2f}x")
    base = outputs["in-process (cluster=none)"]
    identical = all(base.equals(o) for o in outputs.values())
    n_err = int((base["error"] != "").sum())
    print(f"outputs identical (exact, all columns, sorted by object_id): {identical}; objects with an error: {n_err}")

    out = work / "out-resume"
    cmd = [sys.executable, "-m", "stellar.serving.scoring", f"model={name}@{version}", f"input={work / 'catalogue'}"]
    cmd += [f"output={out}", f"registry.root={work / 'registry'}", f"partition_rows={per}", "cluster.n_workers=2"]
    cmd += ["progress=false", f"hydra.run.dir={work / 'hydra'}"]
    done, t_kill = kill_halfway(cmd, out, args.partitions)
    resumed = scoring.score(work / "catalogue", out, name, version, executor=DaskCluster(n_workers=2), **common)
    same = read_folder(out).equals(outputs["Dask, 2 workers"])
    print(
        f"\nresume: killed (SIGKILL) after {t_kill:.1f} s with {done}/{args.partitions} partitions written; the rerun "
        f"computed {len(resumed.computed)} ({resumed.n_computed:,} rows, {resumed.seconds:.1f} s); "
        f"output equals the uninterrupted one: {same}"
    )
    report = {
        "rows": args.rows,
        "partitions": args.partitions,
        "modes": results,
        "identical": identical,
        "resume": {"written_before_kill": done, "computed_after": len(resumed.computed), "equal": same},
    }
    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    (REPO / "benchmarks" / "results" / "scoring.json").write_text(json.dumps(report, indent=2))
    if not (identical and same and done + len(resumed.computed) == args.partitions):
        sys.exit(1)


if __name__ == "__main__":
    main()
