"""Fusion of per-modality encoders: one token per present modality, attention over the tokens, modality dropout.

:class:`FusionEncoder` is an encoder like any other (``inputs``, ``out_dim``), so the one
:class:`~stellar.models.module.StellarModule` trains it with its class and heteroscedastic regression heads. Its
``inputs`` are ``present`` and the modality names: the multi-modal datamodule's batch fields, each a dict of that
modality's own fields (``{"flux", "mask"}`` for a spectrum…), which are handed to that modality's encoder in the
order of *its* ``inputs``.

Why attention rather than a gated sum: a star's modalities inform each other (a parallax turns an apparent magnitude
into a luminosity only together with the temperature the spectrum knows), which a gated sum of independently
encoded tokens can only model through the heads; a small transformer over at most four tokens (three modalities and
a CLS token) lets each token condition on the others at negligible cost, and absent modalities are excluded
exactly by the key-padding mask. The CLS token is never masked, so an object with one modality (or none) is well
defined.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from stellar.errors import StellarConfigError, StellarValueError
from stellar.models.components.encoders import pre_norm_transformer


def modality_dropout(present: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Drop whole modalities at ``rate``, never every present one of an object.

    Parameters
    ----------
    present : Tensor of bool, (B, M)
        Which modalities each object has.
    rate : float
        Probability that each present modality is dropped, in [0, 1).
    generator : torch.Generator, optional
        Random source (the global one by default).

    Returns
    -------
    Tensor of bool, (B, M)
        The modalities kept: a subset of ``present``; an object that had at least one keeps at least one (when all
        were drawn for dropping, one of them, chosen uniformly, is kept).
    """
    if not 0.0 <= rate < 1.0:
        raise StellarValueError(f"modality dropout rate must be in [0, 1); got {rate}")
    if rate == 0.0:
        return present
    u = torch.rand(present.shape, generator=generator, device=present.device)
    keep = present & (u >= rate)
    lost = present.any(dim=1) & ~keep.any(dim=1)
    if lost.any():
        # one of the present modalities, uniformly: the largest of random scores over the present ones
        score = torch.rand(present.shape, generator=generator, device=present.device).masked_fill(~present, -1.0)
        rescue = nn.functional.one_hot(score.argmax(dim=1), present.shape[1]).bool()
        keep = keep | (rescue & lost[:, None])
    return keep


class FusionEncoder(nn.Module):
    """Per-modality encoders projected to one embedding space, fused by a transformer over the present tokens.

    Parameters
    ----------
    encoders : mapping of str to nn.Module
        One encoder per modality (``spectrum``, ``sed``, ``lightcurve``…), each with ``inputs`` (its batch fields)
        and ``out_dim``; ``None`` entries are left out (a datamodule without that modality).
    d_model : int
        Width of the shared embedding space (the tokens, and the features handed to the heads).
    n_heads, n_layers, dim_feedforward : int
        Size of the fusion transformer.
    dropout : float
        Dropout inside the fusion transformer.
    modality_dropout : float
        In training, probability that each present modality of an object is dropped (never all of them), so that
        the model learns to answer from any subset.

    Notes
    -----
    Each encoder runs only on the objects that have its modality (gathered rows), so absent modalities never reach
    an encoder (nor its batch-norm statistics) and their padded values cannot change the output; their tokens are
    also masked out of attention.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module | None],
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 1,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        modality_dropout: float = 0.25,
    ):
        super().__init__()
        kept = {str(m): e for m, e in dict(encoders or {}).items() if e is not None}
        if not kept:
            raise StellarConfigError("encoders must hold at least one modality's encoder")
        if not 0.0 <= float(modality_dropout) < 1.0:
            raise StellarConfigError(f"modality_dropout must be in [0, 1); got {modality_dropout}")
        if int(d_model) < 1 or int(d_model) % int(n_heads):
            raise StellarConfigError(f"d_model must be a positive multiple of n_heads; got {d_model}, {n_heads}")
        self.modalities: list[str] = list(kept)
        self.encoders = nn.ModuleDict(kept)
        self.project = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(int(e.out_dim), d_model), nn.LayerNorm(d_model)) for m, e in kept.items()}  # type: ignore[arg-type]
        )
        #: learned modality-type embedding: which modality a token came from
        self.type_embed = nn.Parameter(torch.zeros(len(kept), d_model))
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        nn.init.normal_(self.type_embed, std=0.02)
        nn.init.normal_(self.cls, std=0.02)
        self.fusion = pre_norm_transformer(d_model, n_heads, n_layers, dim_feedforward, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.d_model = int(d_model)
        self.out_dim = int(d_model)
        self.modality_dropout = float(modality_dropout)
        #: batch fields passed to ``forward``, in order: the presence masks, then one dict per modality
        self.inputs: tuple[str, ...] = ("present", *self.modalities)

    def _present(self, present: Mapping[str, torch.Tensor], batch_size: int, device: torch.device) -> torch.Tensor:
        missing = [m for m in self.modalities if m not in present]
        if missing:
            raise StellarValueError(f"present has no mask for modalities {missing}; it has {sorted(present)}")
        mask = torch.stack([present[m].to(device=device, dtype=torch.bool) for m in self.modalities], dim=1)
        if mask.shape != (batch_size, len(self.modalities)):
            raise StellarValueError(f"present masks must be ({batch_size},) each; got {tuple(mask.shape)} stacked")
        return mask

    def embed(self, modality: str, fields: Mapping[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """The tokens (len(rows), d_model) of ``modality`` for the objects at ``rows``."""
        encoder = self.encoders[modality]
        names: Sequence[str] = tuple(getattr(encoder, "inputs", ("flux", "mask")))
        missing = [k for k in names if k not in fields]
        if missing:
            raise StellarValueError(f"{modality} needs batch fields {missing}; it has {sorted(fields)}")
        return self.project[modality](encoder(*(fields[k][rows] for k in names)))

    def tokens(
        self, present: Mapping[str, torch.Tensor], *modal: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Modality tokens (B, M, d_model), zero where not used, and the mask of the used ones (B, M) (after
        modality dropout in training)."""
        if len(modal) != len(self.modalities):
            raise StellarValueError(f"expected one field dict per modality {self.modalities}; got {len(modal)}")
        first = next(iter(modal[0].values()))
        b, device = first.shape[0], first.device
        used = self._present(present, b, device)
        if self.training:
            used = modality_dropout(used, self.modality_dropout)
        tokens = torch.zeros(b, len(self.modalities), self.d_model, device=device, dtype=self.cls.dtype)
        for j, (m, fields) in enumerate(zip(self.modalities, modal, strict=True)):
            rows = torch.nonzero(used[:, j]).squeeze(1)
            if len(rows):
                tokens[rows, j] = self.embed(m, fields, rows).to(tokens.dtype) + self.type_embed[j]
        return tokens, used

    def forward(self, present: Mapping[str, torch.Tensor], *modal: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Features (B, d_model): the CLS token after attention over it and the objects' present modality tokens."""
        tokens, used = self.tokens(present, *modal)
        b = tokens.shape[0]
        x = torch.cat([self.cls.expand(b, -1, -1), tokens], dim=1)
        key_padding = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=used.device), ~used], dim=1)
        h = self.fusion(x, src_key_padding_mask=key_padding)
        return self.norm(h[:, 0])
