"""One LightningModule for (encoder, heads): a classification head and heteroscedastic regression heads.

Batches are dicts: the fields the encoder names in its ``inputs`` attribute (``("flux", "mask")`` for spectra,
``("time", "flux", "flux_err", "band", "mask")`` for light curves…), passed to it in that order; ``label`` (B,)
int with -1 where unknown; and one float column per regression target in physical units (NaN where unknown).
Targets listed in ``log_targets`` are learned as log10 (Teff), and every target is standardised with the
training part's statistics.

``forward`` returns the raw outputs (standardised space) used by the losses; :meth:`to_physical` turns them into the
model-output contract of DESIGN.md in physical units: ``logits`` (N, C) and ``<t>_mean``, ``<t>_logvar`` with the
log-variance of the physical quantity (e.g. K² for Teff).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import lightning as L
import torch
import torchmetrics
from torch import nn

from stellar.errors import StellarConfigError
from stellar.models.components.heads import ClassificationHead, GaussianHead, gaussian_nll

Batch = dict[str, torch.Tensor]


class StellarModule(L.LightningModule):
    """Encoder + optional class head + one Gaussian head per regression target.

    Parameters
    ----------
    encoder : nn.Module or callable
        Maps the batch fields named by its ``inputs`` attribute (default ``("flux", "mask")``) to features
        (B, ``out_dim``); or a factory of one (a ``_partial_: true`` encoder config), called here, so that every
        module a ``_partial_`` model config builds (e.g. the seed copies of an ensemble) gets its own weights.
    name : str
        Model name (used by the registry and reports).
    class_names : sequence of str, optional
        Class list of the classification head; ``None`` or empty for a regression-only model.
    targets : sequence of str
        Regression targets, e.g. ``["teff", "logg", "feh"]``.
    log_targets : sequence of str
        Targets learned as log10 of their value (Teff).
    target_stats : mapping of str to (mean, std), optional
        Standardisation of each target in learned space, from the training part; filled in by the pipeline.
    optimizer, scheduler : callables, optional
        Partials that take the parameters (and the optimizer).
    scheduler_interval : {"epoch", "step"}
        When the scheduler steps: once per epoch (its horizon, e.g. ``T_max``, in epochs) or once per optimizer step
        (horizon in steps; for a run bounded by ``trainer.max_steps``, whose epochs have no fixed count).
    class_weight, regression_weight : float
        Loss weights of the two kinds of head.
    label_smoothing : float
        Cross-entropy label smoothing.
    head_hidden : int
        Hidden width of every head.
    pretrained : str, optional
        Folder of a contrastive pretraining run (``experiment=*_pretrain``): its encoders are loaded into
        ``encoder`` before training (:func:`stellar.models.contrastive.load_pretrained`).
    freeze_encoders : bool
        Keep the parts of ``encoder`` that pretraining fills in
        (:func:`stellar.models.contrastive.pretrained_parts`: every modality encoder and its projection of a fusion
        encoder, or a whole single-modality encoder) fixed: no gradient, left out of the optimizer, and always in
        eval mode (batch-norm statistics and dropout frozen too). With ``pretrained`` this is a probe of the
        pretrained representation: only the heads (and a fusion encoder's fusion transformer, which pretraining
        does not train) learn. Without it the randomly initialised encoders stay fixed.
    pretrained_modality : str, optional
        The modality of ``pretrained`` whose encoder a single-modality model gets (``spectrum`` of a sim/obs run,
        whose ``spectrum`` and ``spectrum_sim`` encoders have the same shapes); default: the one saved encoder that
        fits by parameter names and shapes.
    """

    def __init__(
        self,
        encoder: nn.Module | Callable[[], nn.Module],
        name: str = "model",
        class_names: Sequence[str] | None = None,
        targets: Sequence[str] = (),
        log_targets: Sequence[str] = ("teff",),
        target_stats: Mapping[str, Sequence[float]] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        class_weight: float = 1.0,
        regression_weight: float = 1.0,
        label_smoothing: float = 0.0,
        head_hidden: int = 64,
        pretrained: str | None = None,
        scheduler_interval: str = "epoch",
        freeze_encoders: bool = False,
        pretrained_modality: str | None = None,
    ):
        super().__init__()
        class_names = [str(c) for c in class_names or []]
        targets = [str(t) for t in targets]
        log_targets = [str(t) for t in log_targets]  # plain lists: checkpoints must load with weights_only=True
        if not class_names and not targets:
            raise StellarConfigError("model needs class_names, targets or both; got neither")
        stats = {t: tuple(float(v) for v in (target_stats or {}).get(t, (0.0, 1.0))) for t in targets}
        # callables stay out of hparams: checkpoints hold only plain data (loadable with weights_only=True)
        self.save_hyperparameters(ignore=["encoder", "optimizer", "scheduler"], logger=False)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.class_weight = float(class_weight)
        self.regression_weight = float(regression_weight)
        self.label_smoothing = float(label_smoothing)
        if scheduler_interval not in ("epoch", "step"):
            raise StellarConfigError(f"scheduler_interval must be 'epoch' or 'step'; got {scheduler_interval!r}")
        self.scheduler_interval = str(scheduler_interval)
        self.hparams["class_names"] = class_names
        self.hparams["target_stats"] = stats
        if not isinstance(encoder, nn.Module):
            if not callable(encoder):
                raise StellarConfigError(f"encoder must be an nn.Module or a factory of one; got {type(encoder)}")
            encoder = encoder()
        if pretrained:
            from stellar.models.contrastive import load_pretrained  # it imports the fusion encoder, not this module

            load_pretrained(encoder, pretrained, modality=pretrained_modality)
        elif pretrained_modality:
            raise StellarConfigError(f"pretrained_modality={pretrained_modality!r} needs pretrained=<pretraining run>")
        self.encoder = encoder
        #: the encoder parts kept fixed (``freeze_encoders``); empty when everything trains
        self.frozen: list[nn.Module] = []
        if freeze_encoders:
            from stellar.models.contrastive import pretrained_parts

            self.frozen = list(pretrained_parts(encoder).values())
            for part in self.frozen:
                part.requires_grad_(False)
                part.eval()
        self.inputs: tuple[str, ...] = tuple(getattr(encoder, "inputs", ("flux", "mask")))
        self.class_names = class_names
        self.targets = targets
        self.log_targets = set(log_targets)
        self.target_stats = stats
        dim = int(encoder.out_dim)  # type: ignore[arg-type]
        self.class_head = ClassificationHead(dim, len(class_names), head_hidden) if class_names else None
        self.reg_heads = nn.ModuleDict({t: GaussianHead(dim, head_hidden) for t in targets})
        # one metric set per stage, cloned from one definition ("train" is a Module attribute, hence the suffix)
        self.metrics = nn.ModuleDict({f"{stage}_metrics": self._make_metrics() for stage in ("train", "val", "test")})

    def _make_metrics(self) -> nn.ModuleDict:
        # the losses are means weighted by batch size: a metric, not a logged tensor, so that under DDP the epoch
        # value is the mean over every rank's rows (Lightning's sync_dist mean truncates an odd total row count)
        m: dict[str, nn.Module] = {"loss": torchmetrics.MeanMetric()}
        if self.class_names:
            m["loss_class"] = torchmetrics.MeanMetric()
        m.update({f"loss_{t}": torchmetrics.MeanMetric() for t in self.targets})
        if self.class_names:
            m["acc"] = torchmetrics.classification.MulticlassAccuracy(
                num_classes=len(self.class_names), average="micro", ignore_index=-1
            )
        for t in self.targets:
            m[f"{t}_mae"] = torchmetrics.MeanAbsoluteError()
        return nn.ModuleDict(m)

    # ---- target transforms -------------------------------------------------------------------------------
    def _to_learned(self, name: str, value: torch.Tensor) -> torch.Tensor:
        mean, std = self.target_stats[name]
        v = torch.log10(value) if name in self.log_targets else value
        return (v - mean) / std

    def _to_physical(
        self, name: str, mean_z: torch.Tensor, logvar_z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, sd = self.target_stats[name]
        y = mu + sd * mean_z
        logvar_y = logvar_z + 2.0 * math.log(sd)
        if name in self.log_targets:
            value = torch.pow(10.0, y)
            # delta method: σ_x = x ln10 σ_log10x
            return value, logvar_y + 2.0 * torch.log(value * math.log(10.0))
        return y, logvar_y

    # ---- forward -----------------------------------------------------------------------------------------
    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs from the encoder's inputs, given in the order of ``self.inputs``."""
        h = self.encoder(*inputs)
        out: dict[str, torch.Tensor] = {}
        if self.class_head is not None:
            out["logits"] = self.class_head(h)
        for t, head in self.reg_heads.items():
            out[f"{t}_mean"], out[f"{t}_logvar"] = cast(GaussianHead, head)(h)
        return out

    def to_physical(self, raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw (standardised) outputs → the model-output contract in physical units."""
        out: dict[str, torch.Tensor] = {}
        if "logits" in raw:
            out["logits"] = raw["logits"]
        for t in self.targets:
            out[f"{t}_mean"], out[f"{t}_logvar"] = self._to_physical(t, raw[f"{t}_mean"], raw[f"{t}_logvar"])
        return out

    # ---- steps -------------------------------------------------------------------------------------------
    def _inputs_of(self, batch: Batch) -> list[torch.Tensor]:
        missing = [k for k in self.inputs if k not in batch]
        if missing:
            raise StellarConfigError(f"the encoder needs batch fields {missing}; the batch has {sorted(batch)}")
        return [batch[k] for k in self.inputs]

    def _shared_step(self, batch: Batch, stage: str) -> torch.Tensor:
        raw = self(*self._inputs_of(batch))
        losses: dict[str, torch.Tensor] = {}
        stage_metrics = cast(nn.ModuleDict, self.metrics[f"{stage}_metrics"])
        metrics = {k: cast(torchmetrics.Metric, m) for k, m in stage_metrics.items()}
        if self.class_head is not None:
            labels = batch["label"]
            if (labels >= 0).any():
                losses["class"] = self.class_weight * nn.functional.cross_entropy(
                    raw["logits"], labels, ignore_index=-1, label_smoothing=self.label_smoothing
                )
            metrics["acc"].update(raw["logits"], labels)
        phys = self.to_physical(raw) if self.targets else {}
        for t in self.targets:
            truth = batch[t]
            losses[t] = self.regression_weight * gaussian_nll(
                raw[f"{t}_mean"], raw[f"{t}_logvar"], self._to_learned(t, truth)
            )
            ok = torch.isfinite(truth)
            if ok.any():
                metrics[f"{t}_mae"].update(phys[f"{t}_mean"][ok], truth[ok])
        loss = torch.stack(list(losses.values())).sum() if losses else raw[next(iter(raw))].sum() * 0.0
        bs = batch["label"].shape[0]
        metrics["loss"](loss.detach(), weight=bs)  # forward: the step's value, and the epoch's running mean
        self.log(f"{stage}/loss", metrics.pop("loss"), prog_bar=True, on_step=stage == "train", on_epoch=True)
        for k, v in losses.items():
            metrics[f"loss_{k}"].update(v.detach(), weight=bs)
        for k, metric in metrics.items():
            if not k.startswith("loss_") or k[len("loss_") :] in losses:  # a loss term of no row in the batch: none
                self.log(f"{stage}/{k}", metric, prog_bar=k == "acc", on_step=False, on_epoch=True)
        return loss

    def train(self, mode: bool = True) -> StellarModule:
        """Set training mode, keeping the frozen encoder parts (``freeze_encoders``) in eval mode."""
        super().train(mode)
        for part in getattr(self, "frozen", []):  # nn.Module may call train() before __init__ has set it
            part.eval()
        return self

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        out = self.to_physical(self(*self._inputs_of(batch)))
        if "index" in batch:
            out["index"] = batch["index"]
        return out

    def configure_optimizers(self) -> Any:
        opt_factory = self.optimizer_factory or (lambda params: torch.optim.AdamW(params, lr=1e-3))
        optimizer = opt_factory([p for p in self.parameters() if p.requires_grad])  # frozen parts stay out
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}
