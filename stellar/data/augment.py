"""Seeded training-time augmentations of packed light-curve batches.

:class:`LightCurveAugmentation` is a collate function for the *training* loader only (the light-curve datamodule's
``augment`` option, and :class:`~stellar.models.lightning_estimator.LightningEstimator`'s): it takes a batch as
the datamodule packs it (``time``, ``flux``, ``flux_err``, ``band``, ``mask`` (B, n), ``True`` on padding, valid
points first in time order) and returns a new batch of the same shapes and conventions. Validation, test and
serving inputs are never augmented.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils.data import get_worker_info

from stellar.errors import StellarConfigError, StellarValueError

_POINT_FIELDS = ("time", "flux", "flux_err", "band", "mask")


@dataclasses.dataclass
class LightCurveAugmentation:
    """Random time shift, dropped epochs, noise at the stated errors and amplitude jitter of packed light curves.

    Each light curve of a batch is augmented with probability ``p`` (the others pass unchanged), then, in order:

    1. every valid point is dropped with probability ``drop_fraction`` (a row keeps all its points where fewer than
       ``min_points`` would remain); the kept points are moved to the front in time order, the padding after
       (zeros, ``mask`` ``True``), and times are counted again from the first kept point;
    2. the flux gets Gaussian noise of standard deviation ``noise · flux_err`` (the stated per-point error, mag);
    3. the flux (relative magnitudes) is scaled by ``exp(amplitude_jitter · N(0, 1))``, one factor per row;
    4. the times are shifted by one uniform draw in ``[0, time_shift)`` days per row.

    The ``best_period`` and ``features`` fields are left as they are (the periodogram is not recomputed): the
    augmentation perturbs the sampling and the noise of a star, not the star.

    Parameters
    ----------
    seed : int
        Seed of the draws: the same seed and the same sequence of batches give the same augmented batches (a
        DataLoader worker ``w`` draws from ``seed + 7919 w``).
    p : float
        Probability that a light curve is augmented at all, in ``[0, 1]``.
    time_shift : float, d
        Upper bound of the random time shift (0 turns it off).
    drop_fraction : float
        Probability of dropping each valid point, in ``[0, 1)`` (0 turns it off).
    min_points : int
        Rows keep at least this many valid points.
    noise : float
        Noise standard deviation in units of the stated error ``flux_err`` (0 turns it off).
    amplitude_jitter : float
        Standard deviation of the log amplitude factor (0 turns it off).

    Examples
    --------
    >>> import torch
    >>> aug = LightCurveAugmentation(seed=0, noise=1.0)
    >>> batch = {"time": torch.arange(8.0)[None], "flux": torch.zeros(1, 8), "flux_err": torch.full((1, 8), 0.1),
    ...          "band": torch.zeros(1, 8, dtype=torch.long), "mask": torch.zeros(1, 8, dtype=torch.bool)}
    >>> out = aug(batch)
    >>> out["flux"].shape, bool(out["flux"].abs().sum() > 0), bool(batch["flux"].abs().sum() == 0)
    (torch.Size([1, 8]), True, True)
    """

    seed: int = 0
    p: float = 1.0
    time_shift: float = 0.0
    drop_fraction: float = 0.0
    min_points: int = 8
    noise: float = 0.0
    amplitude_jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise StellarValueError(f"p must lie in [0, 1]; got {self.p}")
        if not 0.0 <= self.drop_fraction < 1.0:
            raise StellarValueError(f"drop_fraction must lie in [0, 1); got {self.drop_fraction}")
        for name in ("time_shift", "noise", "amplitude_jitter"):
            if not float(getattr(self, name)) >= 0.0:
                raise StellarValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if int(self.min_points) < 1:
            raise StellarValueError(f"min_points must be >= 1; got {self.min_points}")
        self._generator: torch.Generator | None = None

    def _rng(self) -> torch.Generator:
        if self._generator is None:
            info = get_worker_info()
            self._generator = torch.Generator().manual_seed(int(self.seed) + 7919 * (info.id if info else 0))
        return self._generator

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A new batch with the light curves augmented (the input batch is not modified)."""
        missing = [k for k in _POINT_FIELDS if k not in batch]
        if missing:
            raise StellarConfigError(f"light-curve augmentation needs batch fields {missing}; got {sorted(batch)}")
        out = dict(batch)
        mask = batch["mask"].bool()
        b, n = mask.shape
        g = self._rng()
        pick = torch.rand(b, generator=g) < self.p
        if self.drop_fraction > 0:
            drop = (torch.rand(b, n, generator=g) < self.drop_fraction) & ~mask & pick[:, None]
            enough = ((~mask).sum(1) - drop.sum(1)) >= int(self.min_points)
            out.update(_repack({k: batch[k] for k in _POINT_FIELDS}, mask | (drop & enough[:, None])))
            mask = out["mask"]
        flux, good = out["flux"], (~mask).to(out["flux"].dtype)
        if self.noise > 0:
            eps = torch.randn(b, n, generator=g, dtype=flux.dtype)
            flux = flux + (self.noise * out["flux_err"] * eps) * good * pick[:, None]
        if self.amplitude_jitter > 0:
            factor = torch.exp(self.amplitude_jitter * torch.randn(b, generator=g, dtype=flux.dtype))
            flux = flux * torch.where(pick, factor, torch.ones_like(factor))[:, None]
        out["flux"] = flux
        if self.time_shift > 0:
            shift = self.time_shift * torch.rand(b, generator=g, dtype=out["time"].dtype) * pick
            out["time"] = out["time"] + shift[:, None] * (~mask).to(out["time"].dtype)
        return out


def _repack(fields: dict[str, torch.Tensor], drop: torch.Tensor) -> dict[str, torch.Tensor]:
    """The points where ``drop`` is False moved to the front (order kept), padding zeroed, times from the first."""
    order = torch.argsort(drop.to(torch.int8), dim=1, stable=True)
    mask = torch.gather(drop, 1, order)
    keep = ~mask
    out = {"mask": mask}
    for k in ("time", "flux", "flux_err", "band"):
        v = torch.gather(fields[k], 1, order)
        out[k] = torch.where(keep, v, torch.zeros_like(v))
    first = out["time"][:, :1]
    out["time"] = torch.where(keep, out["time"] - first, torch.zeros_like(out["time"]))
    return out
