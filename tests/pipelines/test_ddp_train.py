"""trainer=ddp: the ranks of a run and what they write (in-process), and the issue's sweep through train.py with two
CPU processes (slow): two complete run folders, and test metrics equal to one process on the same checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
from hydra.utils import instantiate
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler

from stellar.errors import StellarConfigError
from stellar.evaluation.calibration import calibrated_probs
from stellar.pipelines.common import fit_calibrator, labels_of, load_calibrator, load_weights, predict, score_outputs
from stellar.pipelines.distributed import merge_shards, starts_own_ranks
from stellar.pipelines.train import run
from tests.conftest import REPO

RUN_FILES = {"config.yaml", "config_resolved.yaml", "split_audit.json", "metrics.json", "calibrator.json"}


@pytest.mark.parametrize("sampler", [DistributedSampler, UnrepeatedDistributedSampler])
@pytest.mark.parametrize("n,world", [(7, 3), (8, 2), (2, 2), (5, 4)])
def test_merge_shards_gives_one_process_order_each_row_once(sampler, n, world):
    part = np.arange(100, 100 + n)  # store rows of a part, in the part's order
    shards = []
    for rank in range(world):  # what each rank predicts with Lightning's samplers, unshuffled
        rows = list(sampler(range(n), num_replicas=world, rank=rank, shuffle=False))
        shards.append({"index": part[rows], "logits": np.stack([part[rows], -part[rows]], 1).astype(float)})
    if sampler is DistributedSampler and n % world:
        assert sum(len(s["index"]) for s in shards) > n  # padded: the first rows come again
    out = merge_shards(shards)
    assert out["index"].tolist() == part.tolist()
    np.testing.assert_array_equal(out["logits"][:, 0], part)  # every field follows its row
    assert merge_shards([None, {}]) == {}


def test_a_ddp_trainer_is_given_its_ranks_once_per_run(monkeypatch):
    kw = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    for flag in (rank_zero_only, utils_rank_zero_only):  # a DDP trainer sets the process's rank: restored after
        monkeypatch.setattr(flag, "rank", getattr(flag, "rank", 0))
    assert starts_own_ranks(L.Trainer(strategy="ddp", devices=2, **kw))
    assert not starts_own_ranks(L.Trainer(devices=1, **kw))
    monkeypatch.setenv("LOCAL_RANK", "1")  # a rank started outside Lightning (ours, torchrun's, SLURM's)
    assert not starts_own_ranks(L.Trainer(strategy="ddp", devices=2, **kw))


def test_a_rank_above_zero_trains_and_scores_but_writes_no_run_file(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    registry = tmp_path / "registry"
    metrics, _ = run(make_cfg("debug=limit", "logger=none", "register=true", f"registry.root={registry}"))
    assert metrics["test_summary"]["classification"]["n"] > 0 and "registered" not in metrics
    out = tmp_path / "run"
    written = {p.name for p in out.iterdir()} if out.exists() else set()
    assert not written & (RUN_FILES | {"reference.npz"}), written
    assert not registry.exists()  # registration is rank 0's


def test_an_evaluation_part_smaller_than_the_ranks_is_refused_not_left_to_hang(make_cfg, monkeypatch):
    import torch.distributed as dist

    cfg = make_cfg()
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    dm.setup("fit")
    n_val = len(dm.part("val"))
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda *a, **k: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    loader = dm.val_dataloader()  # every rank has rows: each its own share, no row twice
    assert isinstance(loader.sampler, UnrepeatedDistributedSampler) and len(loader.sampler) == n_val // 2
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: n_val + 1)  # one rank would have no row at all
    with pytest.raises(StellarConfigError, match=rf"the val part has {n_val} rows, fewer than the {n_val + 1} DDP"):
        dm.val_dataloader()


def _single_process_test(job: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Test metrics of the run's best checkpoint scored by one process: ``trainer.test``'s and the summary's; checks
    that the run's calibrator is the one fitted by one process on the whole validation part."""
    cfg = OmegaConf.load(job / "config_resolved.yaml")
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    dm.setup("fit")
    model = instantiate(cfg.model, class_names=dm.class_names, target_stats=dm.target_stats)
    load_weights(model, Path(json.loads((job / "metrics.json").read_text())["best_checkpoint"]))
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.test(model, datamodule=dm, verbose=False)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    val = predict(trainer, model, dm, "val")
    alone = fit_calibrator(instantiate(cfg.calibrator), val, labels_of(val, dm))
    np.testing.assert_allclose(
        calibrated_probs(alone, val["logits"]), calibrated_probs(load_calibrator(job), val["logits"]), atol=1e-6
    )
    summary = score_outputs(predict(trainer, model, dm, "test"), dm, model.class_names, [], load_calibrator(job))
    return logged, summary["classification"]


@pytest.mark.slow
def test_ddp_sweep_leaves_two_complete_runs_equal_to_one_process(tmp_path, store_dir):
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "model=spectral_cnn,spectral_transformer",
        "trainer.max_epochs=1",
        "datamodule.source.n=128",
        "datamodule.batch_size=16",
        f"paths.store_dir={store_dir}",
        f"paths.log_dir={tmp_path / 'logs'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((tmp_path / "logs" / "train").iterdir())
    assert [p.name for p in sweeps] == ["multiruns"]  # no single-run folder made by a child rank
    (sweep,) = (sweeps[0]).iterdir()  # one sweep: not re-launched by a child rank
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0_spectral_cnn", "1_spectral_transformer"]
    for job in jobs:
        assert {p.name for p in job.iterdir()} >= RUN_FILES
        assert not list(job.rglob("*ddp_process*")) and [p.name for p in job.glob(".*")] == [".hydra"]
        # the checkpoints and the record of whose they are (resume=auto checks it)
        assert sorted(p.name for p in (job / "checkpoints").iterdir()) == [
            "epoch_000.ckpt",
            "last.ckpt",
            "run_identity.json",
        ]
        metrics = json.loads((job / "metrics.json").read_text())
        logged, summary = _single_process_test(job)
        ddp = metrics["test_summary"]["classification"]
        n_test = sum(json.loads((job / "split_audit.json").read_text())["class_counts"]["test"].values())
        assert ddp["n"] == summary["n"] == n_test  # every test object once
        for key in ("accuracy", "macro_f1", "ece_before", "ece_after"):
            assert ddp[key] == pytest.approx(summary[key], abs=1e-6), key
        for key in ("test/loss", "test/acc"):  # trainer.test on two ranks: each test row once
            assert metrics[key] == pytest.approx(logged[key], abs=1e-5), key
