"""A LightningModule as an estimator: ``fit(train, val)`` on numpy arrays, so it can be a member of an ensemble.

The estimator path of ``train.py`` (and :class:`~stellar.models.ensemble.EnsembleClassifier`) hands models the
datamodule's parts as numpy arrays. This wrapper builds the configured module (e.g. ``model=lightcurve_transformer``
as a ``_partial_: true`` config), trains it with a plain Lightning ``Trainer`` on those arrays and keeps the weights
of the epoch with the lowest ``val/loss`` (as the pipeline's checkpoint callback does). Its outputs follow the
model-output contract (``to_physical``: ``logits``, ``<t>_mean``, ``<t>_logvar``).

Weights are saved with ``torch.save`` as a plain state dict (``<prefix>module.pt``, loaded with
``weights_only=True``) beside ``<prefix>estimator.json``; nothing is pickled.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch.utils.data import DataLoader

from stellar.data.datamodules.base import TensorDictDataset, _batched
from stellar.errors import StellarConfigError, StellarDataError
from stellar.models.estimators import PIPELINE_KEYS, Estimator, read_meta, write_meta

log = logging.getLogger(__name__)

#: every (sub)module built so far, to refuse two estimators sharing (and co-training) one encoder
_BUILT: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


class _KeepBest(L.Callback):
    """Keeps a copy of the weights at the epoch with the lowest ``val/loss`` (in memory)."""

    def __init__(self) -> None:
        self.best_loss = float("inf")
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if loss is not None and float(loss) < self.best_loss:
            self.best_loss, self.best_epoch = float(loss), int(trainer.current_epoch)
            self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


class LightningEstimator(Estimator):
    """Train and run a LightningModule (a :class:`~stellar.models.module.StellarModule`) on numpy arrays.

    Parameters
    ----------
    module : callable
        Module factory (``_partial_: true`` model config), called as ``module(class_names=..., target_stats=...)``.
    name : str
        Model name.
    class_names : sequence of str, optional
        The classes (the datamodule's).
    target_stats : mapping of str to (mean, std), optional
        Standardisation of the module's regression targets (from the training part).
    seed : int
        Seed of the batch order, dropout and the weights' initialisation in :meth:`fit` (the global torch RNG is
        left as it was).
    max_epochs : int
        Passes over the training part.
    batch_size : int
        Rows per step (and per prediction chunk).
    gradient_clip_val : float, optional
        Gradient norm clipping.
    accelerator : str
        Lightning accelerator (``cpu``, ``gpu``, ``auto``).
    fast_dev_run : bool
        One batch of each part (a smoke test, as ``trainer.fast_dev_run``).
    patience : int, optional
        Stop when ``val/loss`` has not improved for this many epochs (early stopping; the best epoch is kept either
        way); ``None`` trains all ``max_epochs``.
    augment : callable, optional
        Maps each training batch (e.g. :class:`~stellar.data.augment.LightCurveAugmentation`); validation and
        prediction batches are never augmented.
    """

    hparam_keys = (*PIPELINE_KEYS, "log_targets", "best_epoch")

    def __init__(
        self,
        module: Callable[..., L.LightningModule],
        name: str = "lightning",
        class_names: Sequence[str] | None = None,
        target_stats: Mapping[str, Sequence[float]] | None = None,
        seed: int = 0,
        max_epochs: int = 10,
        batch_size: int = 64,
        gradient_clip_val: float | None = 1.0,
        accelerator: str = "cpu",
        fast_dev_run: bool = False,
        patience: int | None = None,
        augment: Callable[[Any], Any] | None = None,
    ):
        if not callable(module):
            raise StellarConfigError("module must be a LightningModule factory (a _partial_: true model config)")
        if int(max_epochs) < 1 or int(batch_size) < 1:
            raise StellarConfigError(f"max_epochs and batch_size must be >= 1; got {max_epochs}, {batch_size}")
        self.name, self.seed = str(name), int(seed)
        self.max_epochs, self.batch_size = int(max_epochs), int(batch_size)
        self.gradient_clip_val = gradient_clip_val
        self.accelerator = str(accelerator)
        self.fast_dev_run = bool(fast_dev_run)
        if patience is not None and int(patience) < 1:
            raise StellarConfigError(f"patience must be >= 1 or None; got {patience}")
        self.patience = None if patience is None else int(patience)
        if augment is not None and not callable(augment):
            raise StellarConfigError(f"augment must be a callable on batches; got {augment!r}")
        self.augment = augment
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            self.net = module(class_names=list(class_names or []), target_stats=target_stats)
        if not isinstance(self.net, L.LightningModule):
            raise StellarConfigError(f"module must build a LightningModule; got {type(self.net).__name__}")
        if any(m in _BUILT for m in self.net.modules()):
            # a Hydra partial builds its nested objects (the encoder) once and hands the same one to every call
            raise StellarConfigError(
                "module built weights another LightningEstimator already holds (a _partial_ model config shares its "
                "encoder between calls): make the encoder config a factory too (encoder: {_partial_: true}, as in "
                "conf/model/spectral_starnet_ensemble.yaml), or give each neural member its own config, with copies: 1"
            )
        _BUILT.update(self.net.modules())
        self.class_names = [str(c) for c in getattr(self.net, "class_names", class_names or [])]
        self.targets = [str(t) for t in getattr(self.net, "targets", ())]
        self.log_targets = sorted(str(t) for t in getattr(self.net, "log_targets", ()))
        self.target_stats = {t: tuple(float(v) for v in s) for t, s in getattr(self.net, "target_stats", {}).items()}
        self.inputs = [str(k) for k in getattr(self.net, "inputs", ())]
        self.best_epoch = -1

    def _dataset(self, arrays: Mapping[str, np.ndarray]) -> TensorDictDataset:
        keys = [*self.inputs, "label", *self.targets]
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise StellarConfigError(f"the module needs fields {missing}; the data has {sorted(arrays)}")
        return TensorDictDataset({k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in keys})

    def _loader(self, arrays: Mapping[str, np.ndarray], train: bool) -> DataLoader:
        collate = (self.augment or _batched) if train else _batched
        return DataLoader(self._dataset(arrays), batch_size=self.batch_size, shuffle=train, collate_fn=collate)

    def fit(self, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        """Train for ``max_epochs``; with a validation part, keep the epoch with the lowest ``val/loss``.

        Returns the last epoch's training loss (``train/loss``), the epochs run (``train/epochs``) and, with a
        validation part, the best ``val/loss`` and its epoch (``val/best_epoch``).
        """
        if not len(train.get("label", ())):
            raise StellarDataError("the training part is empty")
        keep = _KeepBest()
        use_val = val is not None and len(val.get("label", ())) > 0
        callbacks: list[L.Callback] = [keep]
        if use_val and self.patience is not None:
            callbacks.append(EarlyStopping(monitor="val/loss", mode="min", patience=self.patience))
        trainer = L.Trainer(
            max_epochs=self.max_epochs,
            accelerator=self.accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            gradient_clip_val=self.gradient_clip_val,
            callbacks=callbacks,
            fast_dev_run=self.fast_dev_run,
        )
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            val_loader = self._loader(val, False) if use_val and val is not None else None
            trainer.fit(self.net, train_dataloaders=self._loader(train, True), val_dataloaders=val_loader)
        self.net.eval()
        last = {
            "train/loss": float(trainer.callback_metrics.get("train/loss_epoch", float("nan"))),
            "train/epochs": float(trainer.current_epoch),
        }
        if keep.state is None:
            self.best_epoch = self.max_epochs - 1
            return last
        self.net.load_state_dict(keep.state)
        self.best_epoch = keep.best_epoch
        log.info(
            "%s: best val/loss %.4f at epoch %d (stopped after %d of %d)",
            self.name, keep.best_loss, keep.best_epoch, trainer.current_epoch, self.max_epochs,
        )  # fmt: skip
        return {**last, "val/loss": keep.best_loss, "val/best_epoch": float(keep.best_epoch)}

    def predict_outputs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The module's outputs in physical units (``to_physical``), as float32 numpy arrays."""
        missing = [k for k in self.inputs if k not in arrays]
        if missing:
            raise StellarConfigError(f"the module needs fields {missing}; the data has {sorted(arrays)}")
        n = len(arrays[self.inputs[0]])
        self.net.eval()
        parts: list[dict[str, np.ndarray]] = []
        with torch.inference_mode():
            for s in range(0, n, self.batch_size * 4):
                tensors = [torch.as_tensor(np.asarray(arrays[k][s : s + self.batch_size * 4])) for k in self.inputs]
                out = self.net.to_physical(self.net(*tensors))  # type: ignore[operator]
                parts.append({k: v.float().cpu().numpy() for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    def save(self, directory: str | Path, prefix: str = "") -> Path:
        """``<prefix>module.pt`` (the state dict) and ``<prefix>estimator.json`` in ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        weights = f"{prefix}module.pt"
        torch.save(self.net.state_dict(), d / weights)
        return write_meta(d, prefix, {**self.hparams, "type": type(self).__name__, "files": {"module": weights}})

    def load(self, path: str | Path) -> LightningEstimator:
        """Load what :meth:`save` wrote (``path``: its JSON file or the folder); class names must match."""
        meta_path, meta = read_meta(path)
        if list(meta.get("class_names", [])) != self.class_names:
            raise StellarConfigError(f"saved class_names {meta.get('class_names')} differ from {self.class_names}")
        state = torch.load(meta_path.parent / meta["files"]["module"], map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval()
        self.best_epoch = int(meta.get("best_epoch", -1))
        return self
