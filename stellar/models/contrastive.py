"""Contrastive pretraining of the per-modality encoders (the AstroM3 recipe) and loading its weights for fine-tuning.

:class:`ContrastiveModule` trains the encoders and projections of a :class:`~stellar.models.fusion.FusionEncoder`
without labels: for every pair of modalities, the projected embeddings of the same object's two modalities are pulled
together and those of different objects pushed apart by a symmetric InfoNCE (CLIP) loss with a learnable
temperature. Objects that miss either modality of a pair are left out of that pair's loss. After fitting,
``train.py`` calls :meth:`ContrastiveModule.save_pretrained`, which writes :data:`PRETRAINED_FILE` in the run folder;
``model.pretrained=<run_dir>`` then loads those encoders into ``model=fusion`` (every modality it has) or into a
single-modality model (the modality whose encoder has the same parameters), through :func:`load_pretrained`.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from stellar.errors import StellarConfigError, StellarDataError, StellarValueError
from stellar.models.fusion import FusionEncoder

log = logging.getLogger(__name__)

#: the file a pretraining run leaves in its folder: per modality, the encoder's and the projection's state dicts
PRETRAINED_FILE = "pretrained_encoders.pt"


def info_nce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) loss between two views of the same objects.

    Parameters
    ----------
    a, b : Tensor, (N, D)
        Embeddings of the same N objects from two modalities (row i of ``a`` and of ``b`` is one object); they are
        L2-normalised here.
    logit_scale : Tensor or float
        Inverse temperature (dimensionless): the cosine similarities are multiplied by it.

    Returns
    -------
    Tensor, scalar
        ``(CE(s, I) + CE(sᵀ, I)) / 2`` with ``s = logit_scale · â bᵀ`` and ``I`` the matching rows (nats).
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise StellarValueError(f"a and b must be (N, D) of the same shape; got {tuple(a.shape)}, {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise StellarValueError(f"InfoNCE needs at least 2 objects (the others are its negatives); got {a.shape[0]}")
    logits = logit_scale * nn.functional.normalize(a, dim=1) @ nn.functional.normalize(b, dim=1).T
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))


def pairwise_info_nce(
    embeddings: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], logit_scale: torch.Tensor | float
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """Mean symmetric InfoNCE over every pair of modalities, each over the objects that have both.

    Parameters
    ----------
    embeddings : mapping of str to Tensor, (B, D)
        Per modality, the embedding of every object of the batch (rows of objects without it are ignored).
    present : mapping of str to Tensor of bool, (B,)
        Which objects have each modality.
    logit_scale : Tensor or float
        Inverse temperature.

    Returns
    -------
    (Tensor or None, dict of str to Tensor)
        The mean of the pair losses (``None`` when no pair has 2 objects with both modalities), and each pair's
        loss by name ``"<m1>+<m2>"``.
    """
    pairs: dict[str, torch.Tensor] = {}
    for m1, m2 in itertools.combinations(list(embeddings), 2):
        both = present[m1].bool() & present[m2].bool()
        if int(both.sum()) >= 2:
            pairs[f"{m1}+{m2}"] = info_nce(embeddings[m1][both], embeddings[m2][both], logit_scale)
    if not pairs:
        return None, pairs
    return torch.stack(list(pairs.values())).mean(), pairs


class ContrastiveModule(L.LightningModule):
    """Label-free pretraining of a fusion encoder's per-modality encoders and projections by pairwise InfoNCE.

    Parameters
    ----------
    encoder : FusionEncoder or callable
        The fusion encoder (or a factory of one, a ``_partial_`` config) whose ``encoders`` and ``project`` are
        trained; its fusion transformer is not used by the loss and is not saved.
    name : str
        Model name.
    temperature : float
        Initial temperature of the InfoNCE logits (learned, as log of the inverse; CLIP's 0.07).
    max_logit_scale : float
        Upper bound of the learned inverse temperature (CLIP's 100).
    optimizer : callable, optional
        Partial that takes the parameters (AdamW, lr 1e-3 by default).
    class_names, target_stats, **unused
        Accepted and ignored, so ``train.py`` builds it like any model: no label is used.
    """

    def __init__(
        self,
        encoder: FusionEncoder | Callable[[], FusionEncoder],
        name: str = "contrastive",
        temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        class_names: Sequence[str] | None = None,
        target_stats: Mapping[str, Sequence[float]] | None = None,
        **unused: Any,
    ):
        super().__init__()
        if not (float(temperature) > 0 and float(max_logit_scale) > 0):
            raise StellarConfigError(
                f"temperature and max_logit_scale must be > 0; got {temperature}, {max_logit_scale}"
            )
        if 1.0 / float(temperature) > float(max_logit_scale):
            raise StellarConfigError(f"1/temperature ({1 / temperature:.3g}) exceeds max_logit_scale {max_logit_scale}")
        if not isinstance(encoder, nn.Module):
            encoder = encoder()
        if not isinstance(encoder, FusionEncoder):
            raise StellarConfigError(f"encoder must be a FusionEncoder (per-modality encoders); got {type(encoder)}")
        if len(encoder.modalities) < 2:
            raise StellarConfigError(f"contrastive pretraining needs >= 2 modalities; got {encoder.modalities}")
        self.save_hyperparameters(ignore=["encoder", "optimizer", "class_names", "target_stats"], logger=False)
        self.encoder = encoder
        self.inputs: tuple[str, ...] = encoder.inputs
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / float(temperature))))
        self.max_log_scale = math.log(float(max_logit_scale))
        self.optimizer_factory = optimizer
        self.name = name
        # no heads: nothing to calibrate or score by class or target
        self.class_names: list[str] = []
        self.targets: list[str] = []

    @property
    def logit_scale(self) -> torch.Tensor:
        """The inverse temperature, clamped at ``max_logit_scale``."""
        return self.log_logit_scale.clamp(max=self.max_log_scale).exp()

    def embeddings(self, batch: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Projected embeddings (B, d_model) of every modality (zero rows where absent) and the presence masks."""
        present = {m: batch["present"][m].bool() for m in self.encoder.modalities}
        out: dict[str, torch.Tensor] = {}
        for m in self.encoder.modalities:
            rows = torch.nonzero(present[m]).squeeze(1)
            fields = batch[m]
            b = present[m].shape[0]
            emb = torch.zeros(b, self.encoder.d_model, device=present[m].device)
            if len(rows):
                emb = emb.index_put((rows,), self.encoder.embed(m, fields, rows).to(emb.dtype))
            out[m] = emb
        return out, present

    def _step(self, batch: Mapping[str, Any], stage: str) -> torch.Tensor:
        emb, present = self.embeddings(batch)
        loss, pairs = pairwise_info_nce(emb, present, self.logit_scale)
        if loss is None:  # no pair with two objects in this batch: nothing to learn from it
            loss = self.log_logit_scale * 0.0
        bs = next(iter(present.values())).shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=bs, on_step=stage == "train", on_epoch=True)
        for k, v in pairs.items():
            self.log(f"{stage}/loss_{k}", v, batch_size=bs, on_step=False, on_epoch=True)
        if stage == "train":
            self.log("train/logit_scale", self.logit_scale, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        factory = self.optimizer_factory or (lambda params: torch.optim.AdamW(params, lr=1e-3))
        return factory(self.parameters())

    def state_for_finetuning(self) -> dict[str, Any]:
        """Per modality, the encoder's and the projection's state dicts (CPU tensors) and ``d_model``."""

        def cpu(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu() for k, v in sd.items()}

        return {
            "d_model": self.encoder.d_model,
            "modalities": {
                m: {
                    "encoder": cpu(self.encoder.encoders[m].state_dict()),
                    "project": cpu(self.encoder.project[m].state_dict()),
                }
                for m in self.encoder.modalities
            },
        }

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write :data:`PRETRAINED_FILE` in ``folder`` (the run folder); returns its path."""
        path = Path(folder) / PRETRAINED_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_for_finetuning(), path)
        log.info("pretrained encoders of %s saved to %s", list(self.encoder.modalities), path)
        return path


def read_pretrained(path: str | Path) -> dict[str, Any]:
    """The saved encoders of a pretraining run: ``path`` is its run folder or the :data:`PRETRAINED_FILE` itself."""
    p = Path(path)
    if p.is_dir():
        p = p / PRETRAINED_FILE
    if not p.is_file():
        raise StellarDataError(f"pretrained: no {PRETRAINED_FILE} at {path} (a run folder of experiment=*_pretrain)")
    state = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "modalities" not in state:
        raise StellarDataError(f"pretrained: {p} is not a file written by ContrastiveModule.save_pretrained")
    return state


def _load(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:  # missing/unexpected keys or shape mismatch
        raise StellarConfigError(f"pretrained: the saved {what} does not fit this model's: {err}") from err


def _fits(module: nn.Module, state: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state`` has exactly ``module``'s parameter names and shapes (uninitialised lazy ones match any)."""
    own = module.state_dict()
    if set(own) != set(state):
        return False
    return all(
        isinstance(v, nn.parameter.UninitializedParameter) or tuple(v.shape) == tuple(state[k].shape)
        for k, v in own.items()
    )


def pretrained_parts(encoder: nn.Module) -> dict[str, nn.Module]:
    """The parts of ``encoder`` that a pretraining run's file fills in (what :func:`load_pretrained` loads).

    Parameters
    ----------
    encoder : nn.Module
        A :class:`FusionEncoder` or a single-modality encoder.

    Returns
    -------
    dict of str to nn.Module
        For a :class:`FusionEncoder`, each modality's encoder and its projection to the shared space
        (``"spectrum encoder"``, ``"spectrum projection"``…), not the fusion transformer, the CLS token or the
        modality-type embeddings, which pretraining does not train; for any other encoder, the whole encoder.
    """
    if isinstance(encoder, FusionEncoder):
        parts: dict[str, nn.Module] = {}
        for m in encoder.modalities:
            parts[f"{m} encoder"] = encoder.encoders[m]
            parts[f"{m} projection"] = encoder.project[m]
        return parts
    return {"encoder": encoder}


def load_pretrained(encoder: nn.Module, path: str | Path, modality: str | None = None) -> list[str]:
    """Load a pretraining run's encoders into ``encoder``; returns the modalities loaded.

    Parameters
    ----------
    encoder : nn.Module
        A :class:`FusionEncoder` (each of its modalities gets the saved encoder and projection; every one of them
        must be in the file) or a single-modality encoder (it gets the one saved modality encoder with the same
        parameter names and shapes).
    path : str or Path
        The pretraining run folder or its :data:`PRETRAINED_FILE`.
    modality : str, optional
        For a single-modality encoder: the saved modality to load (needed when several saved encoders fit, e.g.
        ``spectrum`` and ``spectrum_sim`` of a sim/obs pretraining); not allowed with a :class:`FusionEncoder`.

    Raises
    ------
    StellarConfigError
        When a modality is not in the file, or the saved shapes do not match this encoder's.
    """
    saved: dict[str, Any] = read_pretrained(path)["modalities"]
    if modality is not None:
        if isinstance(encoder, FusionEncoder):
            raise StellarConfigError(
                f"pretrained_modality={modality!r} is for a single-modality model; a fusion model loads each of its "
                f"modalities {encoder.modalities} by name"
            )
        if modality not in saved:
            raise StellarConfigError(
                f"pretrained_modality={modality!r} is not in {path}: it has the modalities {sorted(saved)}"
            )
        _load(encoder, saved[modality]["encoder"], f"{modality} encoder")
        return [modality]
    if isinstance(encoder, FusionEncoder):
        missing = [m for m in encoder.modalities if m not in saved]
        if missing:
            raise StellarConfigError(
                f"pretrained: modalities {missing} of the model are not in {path} (it has {sorted(saved)})"
            )
        for m in encoder.modalities:
            _load(encoder.encoders[m], saved[m]["encoder"], f"{m} encoder")
            _load(encoder.project[m], saved[m]["project"], f"{m} projection")
        return list(encoder.modalities)
    fitting = [m for m, s in saved.items() if _fits(encoder, s["encoder"])]
    if len(fitting) != 1:
        raise StellarConfigError(
            f"pretrained: {type(encoder).__name__} matches {len(fitting) or 'none'} of the saved modality encoders "
            f"{sorted(saved)} by parameter names and shapes (needs exactly one): {fitting}; name one with "
            "pretrained_modality"
        )
    _load(encoder, saved[fitting[0]]["encoder"], f"{fitting[0]} encoder")
    return fitting
