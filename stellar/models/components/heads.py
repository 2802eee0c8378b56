"""Output heads: class logits, and heteroscedastic Gaussian regression (mean and log-variance)."""

from __future__ import annotations

import torch
from torch import nn


class ClassificationHead(nn.Module):
    """Features (B, D) → logits (B, C)."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 64, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class GaussianHead(nn.Module):
    """Features (B, D) → mean (B,) and log-variance (B,) of a Gaussian, in the target's standardised units.

    The log-variance is soft-clamped to [``min_logvar``, ``max_logvar``] so that the NLL stays finite.
    """

    def __init__(self, in_dim: int, hidden: int = 64, min_logvar: float = -10.0, max_logvar: float = 4.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 2))
        self.min_logvar = min_logvar
        self.max_logvar = max_logvar

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.net(h).unbind(dim=-1)
        span = self.max_logvar - self.min_logvar
        logvar = self.min_logvar + span * torch.sigmoid(raw)
        return mean, logvar


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood (without the constant) over the finite targets; 0 if none are."""
    ok = torch.isfinite(target)
    if not ok.any():
        return mean.sum() * 0.0
    m, lv, t = mean[ok], logvar[ok], target[ok]
    return 0.5 * (lv + (t - m) ** 2 * torch.exp(-lv)).mean()
