"""An MLP encoder for tabular features (SED magnitudes, colours…), with missing values."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FeatureMLP(nn.Module):
    """Features (B, F) with NaN where missing → (B, ``out_dim``).

    Missing entries are set to 0 after input standardisation and flagged by a 0/1 mask that is concatenated to the
    input, so the network can tell "missing" from "average". Standardisation is a non-affine batch norm whose running
    statistics come from the training batches. The first layers are lazy: the number of features is taken from the
    first batch (and from the checkpoint when one is loaded), so the same config serves any feature set.

    Parameters
    ----------
    hidden : sequence of int
        Widths of the hidden layers.
    dropout : float
        Dropout after each hidden layer.
    out_dim : int
        Feature width handed to the heads.
    """

    inputs: tuple[str, ...] = ("features",)

    def __init__(self, hidden: Sequence[int] = (128, 128), dropout: float = 0.1, out_dim: int = 64):
        super().__init__()
        self.norm = nn.LazyBatchNorm1d(affine=False, momentum=None)  # cumulative: exact training-set statistics
        layers: list[nn.Module] = []
        for i, width in enumerate(hidden):
            layers += [
                nn.LazyLinear(width) if i == 0 else nn.Linear(hidden[i - 1], width),
                nn.GELU(),
                nn.Dropout(dropout),
            ]
        layers.append(nn.LazyLinear(out_dim) if not hidden else nn.Linear(hidden[-1], out_dim))
        self.net = nn.Sequential(*layers)
        self.out_dim = int(out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        ok = torch.isfinite(features)
        x = torch.where(ok, features, torch.zeros_like(features))
        x = torch.where(ok, self.norm(x), torch.zeros_like(x))
        return self.net(torch.cat([x, ok.to(x.dtype)], dim=1))
