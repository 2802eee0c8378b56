"""An MLP encoder for tabular features (SED magnitudes, colours…), with missing values."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class RunningStandardize(nn.LazyBatchNorm1d):
    """Non-affine batch norm (B, F) whose running statistics are cumulative (``momentum=None``), safe on one row.

    In training, a batch of two or more rows is standardised with its own statistics, which update the running
    ones, as by :class:`torch.nn.BatchNorm1d`. A batch of one row has no variance to standardise with (batch norm
    raises on it); that row is standardised with the running statistics instead, exactly as it will be at
    inference, and they are left unchanged. Such batches arise in multi-modal training, where an encoder sees only
    the objects that have its modality (a batch can hold one SED, or modality dropout can leave one).
    A layer norm would also work on one row, but it standardises across the features of a row (magnitudes,
    colours, parallax, in different units) instead of each feature over the training set, which is not the
    standardisation this encoder needs; the state dict is that of ``LazyBatchNorm1d``, so saved models load
    unchanged.
    """

    #: stay this class after the lazy parameters are materialised (``LazyBatchNorm1d`` becomes ``BatchNorm1d``)
    cls_to_become = None  # type: ignore[assignment]

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__(eps=eps, momentum=None, affine=False)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.training and input.shape[0] < 2:
            return nn.functional.batch_norm(input, self.running_mean, self.running_var, training=False, eps=self.eps)
        return super().forward(input)


class FeatureMLP(nn.Module):
    """Features (B, F) with NaN where missing → (B, ``out_dim``).

    Missing entries are set to 0 after input standardisation and flagged by a 0/1 mask that is concatenated to the
    input, so the network can tell "missing" from "average". Standardisation is a non-affine batch norm whose running
    statistics come from the training batches (:class:`RunningStandardize`: a training batch of one row is
    standardised with the running statistics). The first layers are lazy: the number of features is taken from the
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
        self.norm = RunningStandardize()  # cumulative: exact training-set statistics
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
