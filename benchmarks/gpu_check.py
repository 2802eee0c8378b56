"""Training throughput on GPUs beside the CPU, from one run: ``trainer=cpu``, ``trainer=gpu`` and ``trainer=ddp``.

    python -m benchmarks.gpu_check                    # 4,096 simulated spectra, spectral_cnn, 2 epochs each
    python -m benchmarks.gpu_check --n 16384 --batch-size 256 --model spectral_transformer
    python -m benchmarks.gpu_check --cpu-ddp 2        # and trainer=ddp on 2 CPU processes (gloo), no GPU needed

Run as a module from the repository root (the DDP ranks import the epoch timer from ``benchmarks.gpu_check``).
Each row trains the same config through ``stellar.pipelines.train.run`` on the built-in simulated spectra (stored
once, in a temporary store) and times the last training epoch (the first pays for start-up: CUDA context, cuDNN
autotuning, DDP's process group); samples/s is training rows of all ranks over that epoch's seconds.
``trainer=ddp`` uses every visible GPU. Without a GPU the GPU rows print ``no GPU: skipped``.
Writes benchmarks/results/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf, open_dict

REPO = Path(__file__).resolve().parents[1]


class EpochTimer(Callback):
    """Seconds and training rows (all ranks) of the last training epoch, written by rank 0 to ``path`` (JSON)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.rows, self.start = 0, 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.rows, self.start = 0, time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *_: Any):
        self.rows += int(batch["label"].shape[0]) * trainer.world_size  # DistributedSampler: equal shards

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - self.start
        if trainer.is_global_zero:
            self.path.write_text(json.dumps({"rows": self.rows, "seconds": seconds, "world_size": trainer.world_size}))


def one_row(name: str, trainer: list[str], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from stellar.pipelines.train import run

    out = tmp / re.sub(r"\W+", "_", name).strip("_")  # a folder name Hydra's override grammar accepts
    overrides = [
        *trainer,
        f"model={args.model}",
        f"datamodule.source.n={args.n}",
        f"datamodule.batch_size={args.batch_size}",
        f"trainer.max_epochs={args.epochs}",
        "+trainer.enable_progress_bar=false",
        "test=false",
        "monitor_reference=null",
        "calibrator=none",
        "interval_calibrator=none",
        "logger=none",
        "callbacks=none",
        f"paths.output_dir={out}",
        f"paths.store_dir={tmp / 'store'}",
        f"paths.log_dir={tmp}",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=overrides)
    timing = out / "epoch_timer.json"
    with open_dict(cfg):
        cfg.callbacks = OmegaConf.create(
            {"timer": {"_target_": "benchmarks.gpu_check.EpochTimer", "path": str(timing)}}
        )
    run(cfg)
    result = json.loads(timing.read_text())
    return {"row": name, **result, "samples_per_s": result["rows"] / result["seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096, help="simulated spectra (train, val and test parts together)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2, help="epochs per row; the last one is timed")
    p.add_argument("--model", default="spectral_cnn")
    p.add_argument("--cpu-ddp", type=int, default=0, help="also trainer=ddp on this many CPU processes (gloo)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n_gpus = torch.cuda.device_count()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(one_row("cpu", ["trainer=cpu"], args, Path(tmp)))
        if args.cpu_ddp:
            cpu_ddp = ["trainer=ddp", "trainer.accelerator=cpu", f"trainer.devices={args.cpu_ddp}"]
            rows.append(one_row(f"ddp ({args.cpu_ddp} CPU)", cpu_ddp, args, Path(tmp)))
        if n_gpus:
            rows.append(one_row("gpu", ["trainer=gpu"], args, Path(tmp)))
            ddp = [
                "trainer=ddp",
                "trainer.accelerator=gpu",
                f"trainer.devices={n_gpus}",
                "trainer.precision=bf16-mixed",
            ]
            rows.append(one_row(f"ddp ({n_gpus} GPUs)", ddp, args, Path(tmp)))
    cpu = rows[0]["samples_per_s"]
    gpu_name = torch.cuda.get_device_name(0) if n_gpus else "none"
    print(f"\nmodel={args.model} n={args.n} batch_size={args.batch_size}; GPUs visible: {n_gpus} ({gpu_name})")
    print(f"{'trainer':<16} {'ranks':>5} {'rows':>7} {'seconds':>8} {'samples/s':>10} {'vs cpu':>7}")
    for r in rows:
        ratio = r["samples_per_s"] / cpu
        line = f"{r['world_size']:>5} {r['rows']:>7} {r['seconds']:>8.2f} {r['samples_per_s']:>10.1f} {ratio:>6.1f}x"
        print(f"{r['row']:<16} {line}")
    if not n_gpus:
        print(f"{'gpu':<16} no GPU: skipped")
        print(f"{'ddp (all GPUs)':<16} no GPU: skipped")
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    report = {"args": vars(args), "gpus": n_gpus, "gpu_name": gpu_name, "rows": rows}
    (results / "gpu_check.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
