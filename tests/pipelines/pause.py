"""A test-only callback that holds training at a known optimizer step until the job is signalled (pre-emption tests
start ``train.py`` with ``+callbacks.pause._target_=tests.pipelines.pause.PauseAtStep``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class PauseAtStep(Callback):
    """After optimizer step ``step`` write ``marker`` and wait (up to ``wait_s`` seconds) for ``SIGTERM``: the signal
    then lands mid-epoch at that step, whatever the machine's speed. Does nothing once ``marker`` exists (the rerun)."""

    def __init__(self, marker: str, step: int, wait_s: float = 120.0) -> None:
        self.marker, self.step, self.wait_s = Path(marker), int(step), float(wait_s)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step != self.step or self.marker.exists():
            return
        self.marker.write_text(str(trainer.global_step))
        deadline = time.monotonic() + self.wait_s
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.05)
