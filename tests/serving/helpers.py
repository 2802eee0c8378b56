"""Helpers of the serving tests: untrained models registered in a few seconds, a batch-recording API, and
``serve.py`` run as a process in its own group."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from stellar.registry import ModelRegistry, ModelVersion, _modality
from stellar.serving.api import SpectralAPI
from tests.conftest import REPO


def register_untrained(
    root: str | Path, model: str = "spectral_cnn", datamodule: str = "spectra", *overrides: str
) -> ModelVersion:
    """Register a randomly initialised model of the given configs, as ``train.py register=true`` would store it.

    The checkpoint holds ``state_dict`` and ``hyper_parameters`` like a Lightning one; the preprocessing is the
    datamodule config's own (nothing is trained and no dataset is built).
    """
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=[f"model={model}", f"datamodule={datamodule}", *overrides])
    torch.manual_seed(0)
    class_names = list(cfg.datamodule.get("class_names") or _mk_classes())
    targets = list(cfg.model.targets)
    stats = {t: (3.7, 0.1) if t == "teff" else (0.0, 1.0) for t in targets}
    net = instantiate(cfg.model, class_names=class_names, target_stats=stats)
    buf = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "hyper_parameters": dict(net.hparams)}, buf)
    prep = instantiate(cfg.datamodule.preprocessing)
    params = {"_target_": f"{type(prep).__module__}.{type(prep).__qualname__}", **prep.to_dict()}
    cfg_yaml = OmegaConf.to_yaml(cfg, resolve=False).replace("${hydra:runtime.output_dir}", "/tmp")
    resolved = OmegaConf.create(cfg_yaml)
    files = {
        "checkpoints/epoch_000.ckpt": buf.getvalue(),
        "config_resolved.yaml": OmegaConf.to_yaml(resolved, resolve=True).encode(),
    }
    manifest = {
        "modality": _modality(cfg),
        "class_names": class_names,
        "targets": targets,
        "inputs": list(net.inputs),
        "preprocessing": params,
    }
    return ModelRegistry(root).register(str(cfg.model.name), files, manifest)


def train_registered(tmp: Path, *overrides: str) -> Path:
    """Run ``train.py`` with ``overrides`` and ``register=true``, everything under ``tmp`` (no logger); returns the
    registry root ``tmp/registry``."""
    from stellar.pipelines.train import run

    where = [f"paths.output_dir={tmp / 'run'}", f"paths.store_dir={tmp / 'store'}", f"paths.log_dir={tmp}"]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        run(
            compose(
                "train",
                overrides=[*overrides, "logger=none", *where, f"registry.root={tmp / 'registry'}", "register=true"],
            )
        )
    return tmp / "registry"


def _mk_classes() -> list[str]:
    from stellar.data.labels import MK_CLASSES

    return list(MK_CLASSES)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str) -> Any:
    """``text`` parsed as strict JSON: the NaN/Infinity/-Infinity tokens raise."""
    return json.loads(text, parse_constant=_refuse_constant)


def wait_ready(client: Any, timeout: float = 180.0) -> None:
    """Wait until every inference worker has loaded its model (``/health`` answers 200)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health").status_code == 200:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the server was not ready within {timeout} s")


class RecordingSpectralAPI(SpectralAPI):
    """Appends the number of requests of every ``predict`` call to ``$STELLAR_TEST_BATCH_LOG``."""

    def predict(self, x: Any) -> Any:
        with open(os.environ["STELLAR_TEST_BATCH_LOG"], "a") as f:
            f.write(f"{len(x) if isinstance(x, list) else 1}\n")
        return super().predict(x)


def serve_cfg(registry_root: Any, model: str, *overrides: str) -> Any:
    """``conf/serve.yaml`` with its spectral endpoint on ``model`` of the registry at ``registry_root``."""
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose(
            "serve", overrides=[f"registry.root={registry_root}", f"endpoints.spectral.model={model}", *overrides]
        )


@contextmanager
def in_process_server(cfg: Any) -> Iterator[Any]:
    """A test client of :func:`~stellar.serving.server.build_server` ``(cfg)`` run in-process (its inference workers
    are processes), once every worker has loaded its model; the workers stop on exit."""
    from fastapi.testclient import TestClient
    from litserve.utils import wrap_litserve_start

    from stellar.serving.server import build_server

    with wrap_litserve_start(build_server(cfg)) as srv, TestClient(srv.app) as client:
        wait_ready(client)
        yield client


@contextmanager
def recording_server(registry_root: Any, model: str, batch_log: Path, *overrides: str) -> Iterator[Any]:
    """:func:`in_process_server` with :class:`RecordingSpectralAPI` on ``model`` (its batch sizes appended to
    ``batch_log``), ``max_batch_size=8`` and ``batch_timeout=0.2`` so that concurrent requests are batched."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STELLAR_TEST_BATCH_LOG", str(batch_log))  # inherited by the inference workers
        cfg = serve_cfg(
            registry_root,
            model,
            "endpoints.spectral._target_=tests.serving.helpers.RecordingSpectralAPI",
            "max_batch_size=8",
            "batch_timeout=0.2",
            *overrides,
        )
        with in_process_server(cfg) as client:
            yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d.name))
    return out


def stop_group(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM to the whole process group, SIGKILL to what is left after ``timeout``."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group_members(pgid):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=timeout)


@contextmanager
def serve_py(
    tmp_path: Path, *overrides: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python serve.py port=<free> <overrides>`` in its own process group; yields ``(url, process)`` once
    ``/health`` answers 200, and stops the whole group on exit (the caller checks that nothing is left)."""
    port = free_port()
    cmd = [sys.executable, "serve.py", f"port={port}", *overrides, f"hydra.run.dir={tmp_path / 'hydra'}"]
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.5)
        yield url, proc
    finally:
        stop_group(proc)
        log.close()
