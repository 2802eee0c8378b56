"""A small MLP classifier on tabular features as an estimator: ``fit(train, val)`` on numpy arrays, no Trainer.

It is the network of ``model=sed_mlp`` (:class:`~stellar.models.components.mlp.FeatureMLP` and a
:class:`~stellar.models.components.heads.ClassificationHead`) with a plain PyTorch loop, so that it can sit in
the estimator path beside XGBoost, e.g. as a member of :class:`~stellar.models.ensemble.EnsembleClassifier`, and
be fitted many times in one run without a Lightning Trainer's per-fit overhead. Training is AdamW with a per-step
cosine learning rate, gradients clipped at norm 1; the weights kept are those of the epoch with the lowest
validation loss (as ``sed_mlp``'s checkpoint callback does).

Weights are saved with ``torch.save`` as a plain state dict (``<prefix>mlp.pt``, loaded with
``weights_only=True``) beside ``<prefix>estimator.json``; nothing is pickled.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch import nn

from stellar.errors import StellarConfigError, StellarDataError
from stellar.models.components.heads import ClassificationHead
from stellar.models.components.mlp import FeatureMLP
from stellar.models.estimators import PIPELINE_KEYS, Estimator, feature_matrix, read_meta, write_meta

log = logging.getLogger(__name__)


class MLPClassifier(Estimator):
    """Class probabilities from a feature matrix (NaN = missing) with a FeatureMLP and a class head.

    Parameters
    ----------
    name : str
        Model name.
    class_names : sequence of str
        The classes (the datamodule's).
    inputs : sequence of str
        Data fields that make up the feature matrix, in order.
    hidden, dropout, out_dim : see :class:`~stellar.models.components.mlp.FeatureMLP`
    head_hidden : int
        Hidden width of the class head.
    lr, weight_decay : float
        AdamW's peak learning rate (cosine-annealed to 0 over all steps) and weight decay.
    epochs, batch_size : int
        Passes over the training part and rows per step.
    seed : int
        Seed of the initial weights, the batch order and dropout (the global torch RNG is left as it was).
    target_stats : mapping, optional
        Ignored (the pipeline passes it to every model; this one has no regression targets).
    """

    hparam_keys = (*PIPELINE_KEYS, "n_features", "hidden", "out_dim", "head_hidden", "best_epoch")
    targets: tuple[str, ...] = ()
    target_stats: Mapping[str, Sequence[float]] = MappingProxyType({})  # no regression targets

    def __init__(
        self,
        name: str = "mlp",
        class_names: Sequence[str] | None = None,
        inputs: Sequence[str] = ("features",),
        hidden: Sequence[int] = (256, 256, 128),
        dropout: float = 0.1,
        out_dim: int = 64,
        head_hidden: int = 64,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        epochs: int = 30,
        batch_size: int = 256,
        seed: int = 0,
        target_stats: Mapping[str, Sequence[float]] | None = None,
    ):
        self.class_names = [str(c) for c in class_names or []]
        if len(self.class_names) < 2:
            raise StellarConfigError(f"MLPClassifier needs at least 2 class_names; got {self.class_names}")
        self.inputs = [str(k) for k in inputs]
        if not self.inputs:
            raise StellarConfigError("inputs must name at least one data field, e.g. [features]")
        if int(epochs) < 1 or int(batch_size) < 1 or float(lr) <= 0:
            raise StellarConfigError(f"epochs, batch_size and lr must be positive; got {epochs}, {batch_size}, {lr}")
        self.name = str(name)
        self.hidden = [int(w) for w in hidden]
        self.dropout = float(dropout)
        self.out_dim = int(out_dim)
        self.head_hidden = int(head_hidden)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.n_features: int | None = None
        self.best_epoch = -1
        self.net: nn.Module | None = None
        #: per epoch, the training loss and the validation loss and accuracy (for TensorBoard)
        self.history: dict[str, dict[str, dict[str, list[float]]]] = {}

    def _build(self, n_features: int) -> nn.Module:
        net = nn.Sequential(
            FeatureMLP(self.hidden, self.dropout, self.out_dim),
            ClassificationHead(self.out_dim, len(self.class_names), self.head_hidden, self.dropout),
        )
        net.eval()
        with torch.no_grad():  # materialise the lazy first layers
            net(torch.zeros(2, n_features))
        self.n_features = n_features
        return net

    def _matrix(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        x = feature_matrix(arrays, self.inputs)
        if self.n_features is not None and x.shape[1] != self.n_features:
            raise StellarDataError(
                f"inputs {self.inputs} give {x.shape[1]} feature columns; this model was fitted on {self.n_features}"
            )
        return x

    def fit(self, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        """Train on the labelled rows of ``train``; keep the epoch with the lowest loss on ``val`` (the last without).

        Returns the training and validation loss (and validation accuracy) of the kept epoch, e.g. ``val/loss``.
        """
        self.n_features = None
        x_tr = self._matrix(train)
        y_tr = np.asarray(train["label"])
        ok = y_tr >= 0
        if ok.sum() < 2:
            raise StellarDataError(f"the training part has {int(ok.sum())} labelled rows; need at least 2")
        xt, yt = torch.from_numpy(x_tr[ok]), torch.from_numpy(y_tr[ok].astype(np.int64))
        xv = yv = None
        if val is not None and len(val.get("label", ())):
            yva = np.asarray(val["label"])
            okv = yva >= 0
            if okv.any():
                xv, yv = (
                    torch.from_numpy(feature_matrix(val, self.inputs)[okv]),
                    torch.from_numpy(yva[okv].astype(np.int64)),
                )
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            net = self._build(x_tr.shape[1])
            metrics = self._train(net, xt, yt, xv, yv)
        self.net = net.eval()
        return metrics

    def _train(
        self, net: nn.Module, xt: torch.Tensor, yt: torch.Tensor, xv: torch.Tensor | None, yv: torch.Tensor | None
    ) -> dict[str, float]:
        steps_per_epoch = math.ceil(len(xt) / self.batch_size)
        total = self.epochs * steps_per_epoch
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total))
        )
        loss_fn = nn.CrossEntropyLoss()
        hist: dict[str, dict[str, list[float]]] = {"train": {"loss": []}, "val": {"loss": [], "acc": []}}
        best_loss, best_state = math.inf, None
        for epoch in range(self.epochs):
            net.train()
            perm = torch.randperm(len(xt))
            total_loss = 0.0
            for i in range(0, len(xt), self.batch_size):
                idx = perm[i : i + self.batch_size]
                if len(idx) < 2:  # batch norm needs two rows
                    continue
                loss = loss_fn(net(xt[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                sched.step()
                total_loss += float(loss.detach()) * len(idx)
            hist["train"]["loss"].append(total_loss / len(xt))
            if xv is None or yv is None:
                continue
            net.eval()
            with torch.no_grad():
                logits = torch.cat([net(xv[i : i + 8192]) for i in range(0, len(xv), 8192)])
            vloss = float(loss_fn(logits, yv))
            hist["val"]["loss"].append(vloss)
            hist["val"]["acc"].append(float((logits.argmax(1) == yv).float().mean()))
            if vloss < best_loss:
                best_loss, self.best_epoch = vloss, epoch
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if best_state is not None:
            net.load_state_dict(best_state)
        else:
            self.best_epoch = self.epochs - 1
            hist.pop("val")
        self.history = {"class": hist}
        log.info("%s: %d epochs, kept epoch %d", self.name, self.epochs, self.best_epoch)
        return {
            f"{part}/class_{m}": values[min(self.best_epoch, len(values) - 1)]
            for part, ms in hist.items()
            for m, values in ms.items()
        }

    def predict_outputs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``logits`` (N, C): the log of the class probabilities (the model-output contract)."""
        if self.net is None:
            raise StellarConfigError(f"{self.name} is not fitted or loaded (fit() or load() first)")
        x = torch.from_numpy(self._matrix(arrays))
        with torch.no_grad():
            logits = torch.cat([self.net(x[i : i + 8192]) for i in range(0, len(x), 8192)]) if len(x) else None
        if logits is None:
            return {"logits": np.empty((0, len(self.class_names)), np.float32)}
        return {"logits": torch.log_softmax(logits, dim=1).numpy().astype(np.float32)}

    def save(self, directory: str | Path, prefix: str = "") -> Path:
        """Write ``<prefix>mlp.pt`` (state dict) and ``<prefix>estimator.json`` into ``directory``."""
        if self.net is None:
            raise StellarConfigError(f"{self.name} is not fitted; nothing to save")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        weights = f"{prefix}mlp.pt"
        torch.save(self.net.state_dict(), d / weights)
        return write_meta(d, prefix, {**self.hparams, "type": type(self).__name__, "files": {"net": weights}})

    def load(self, path: str | Path) -> MLPClassifier:
        """Load what :meth:`save` wrote (``path``: its JSON file, or the folder of an unprefixed one)."""
        meta_path, meta = read_meta(path)
        for key in ("class_names", "inputs", "hidden", "out_dim", "head_hidden"):
            if list(np.atleast_1d(meta.get(key, []))) != list(np.atleast_1d(getattr(self, key))):
                raise StellarConfigError(f"saved {key} {meta.get(key)} differ from this model's {getattr(self, key)}")
        net = self._build(int(meta["n_features"]))
        net.load_state_dict(torch.load(meta_path.parent / meta["files"]["net"], map_location="cpu", weights_only=True))
        self.net, self.best_epoch = net.eval(), int(meta.get("best_epoch", -1))
        return self
