"""Light-curve encoder: a transformer over irregularly sampled, multi-band points.

Each observation is a token. Its embedding sums

- a value embedding of the relative magnitude (raw, in mag, and scaled by the light curve's robust amplitude, so
  both shape and amplitude are seen) and of its log error;
- a band embedding (one learned vector per band);
- a continuous-time encoding: sines and cosines of ``2π t / P_k`` over fixed, log-spaced periods ``P_k`` from
  ``min_period`` to ``max_period`` days, mixed by a learned linear map (irregular sampling needs no resampling);
- a phase encoding: the first harmonics of the phase at the periodogram period (the ``best_period`` batch field), so
  folded shape is visible to attention even with ~100 points spread over years; optionally also at multiples of it
  (``phase_multiples``), since the periodogram often picks a harmonic of the true period (half of it for many
  eclipsing binaries): the encoding at ``2 × best_period`` is periodic at the true period then.

A learned summary token carries log10 of the periodogram period and of the amplitude; padding is masked out of
attention (``src_key_padding_mask``) and out of the mean pooling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from stellar.errors import StellarValueError
from stellar.models.components.encoders import pre_norm_transformer


class LightCurveTransformer(nn.Module):
    """Transformer encoder for padded light curves ``(time, flux, flux_err, band, mask, best_period)`` → (B, out_dim).

    Parameters
    ----------
    bands : int or sequence of str
        The bands (or their number); ``band`` indices must lie in ``0..len(bands)-1``.
    d_model, n_heads, n_layers, dim_feedforward : int
        Transformer size.
    dropout : float
        Dropout before the output projection (none inside attention: on CPU its mask costs as much as the
        attention itself, and the small models here do not need it).
    n_time_freqs : int
        Number of log-spaced periods of the time encoding.
    min_period, max_period : float, d
        Range of those periods.
    n_harmonics : int
        Harmonics of the phase encoding at the periodogram period (0 turns it off).
    phase_multiples : sequence of float
        Multiples ``m`` of the periodogram period at which the phase is encoded (each gives ``n_harmonics`` sines and
        cosines of ``2π k t / (m P)``); the default ``(1,)`` is the phase at the periodogram period alone.
    out_dim : int
        Size of the feature vector.
    """

    #: batch fields passed to ``forward``, in order
    inputs = ("time", "flux", "flux_err", "band", "mask", "best_period")

    def __init__(
        self,
        bands: int | Sequence[str] = 1,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        n_time_freqs: int = 16,
        min_period: float = 0.05,
        max_period: float = 5000.0,
        n_harmonics: int = 3,
        out_dim: int = 128,
        phase_multiples: Sequence[float] = (1.0,),
    ):
        super().__init__()
        self.n_bands = int(bands) if isinstance(bands, int) else len(list(bands))
        if self.n_bands < 1:
            raise StellarValueError(f"bands must name at least one band; got {bands!r}")
        self.n_harmonics = int(n_harmonics)
        multiples = [float(m) for m in phase_multiples]
        if not multiples or not all(math.isfinite(m) and m > 0 for m in multiples):
            raise StellarValueError(
                f"phase_multiples must be a non-empty list of positive numbers; got {phase_multiples!r}"
            )
        self.phase_multiples = tuple(multiples)
        periods = torch.logspace(math.log10(min_period), math.log10(max_period), int(n_time_freqs))
        self.register_buffer("omega", 2.0 * math.pi / periods, persistent=False)
        self.value = nn.Linear(3, d_model)
        self.band = nn.Embedding(self.n_bands, d_model)
        self.time = nn.Linear(2 * int(n_time_freqs), d_model)
        n_phase = 2 * self.n_harmonics * len(multiples)
        self.phase = nn.Linear(n_phase, d_model) if self.n_harmonics > 0 else None
        self.summary = nn.Linear(3, d_model)
        self.encoder = pre_norm_transformer(d_model, n_heads, n_layers, dim_feedforward, 0.0)
        self.norm = nn.LayerNorm(d_model)
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * d_model, out_dim), nn.GELU())
        self.out_dim = out_dim

    def forward(
        self,
        time: torch.Tensor,
        flux: torch.Tensor,
        flux_err: torch.Tensor,
        band: torch.Tensor,
        mask: torch.Tensor,
        best_period: torch.Tensor,
    ) -> torch.Tensor:
        period = best_period
        good = (~mask).to(flux.dtype)
        n = good.sum(dim=1).clamp(min=1.0)
        x = flux * good
        # robust-ish amplitude: RMS of the relative magnitudes (medians were subtracted per band)
        scale = torch.sqrt((x**2).sum(dim=1) / n).clamp(min=1e-3)
        err = torch.where(mask, torch.ones_like(flux_err), flux_err.clamp(min=1e-4))
        value = torch.stack([x, x / scale[:, None], torch.log10(err) * good], dim=-1)
        band = torch.where(mask, torch.zeros_like(band), band)
        if bool(((band < 0) | (band >= self.n_bands)).any()):
            raise StellarValueError(f"band indices must lie in 0..{self.n_bands - 1}; got {band.min()}..{band.max()}")
        tok = self.value(value) + self.band(band)
        omega: torch.Tensor = self.omega  # type: ignore[assignment]  # a registered buffer
        wt = time[..., None] * omega
        tok = tok + self.time(torch.cat([torch.sin(wt), torch.cos(wt)], dim=-1))
        p_ok = torch.isfinite(period) & (period > 0)
        p = torch.where(p_ok, period, torch.ones_like(period))
        if self.phase is not None:
            feats = phase_features(time, p, self.n_harmonics, self.phase_multiples)
            tok = tok + p_ok[:, None, None] * self.phase(feats)
        tok = tok * good[..., None]
        summ = torch.stack([torch.log10(p) * p_ok, p_ok.to(flux.dtype), torch.log10(scale)], dim=-1)
        seq = torch.cat([self.summary(summ)[:, None, :], tok], dim=1)
        pad = torch.cat([torch.zeros_like(mask[:, :1]), mask], dim=1)
        h = self.norm(self.encoder(seq, src_key_padding_mask=pad))
        pooled = (h[:, 1:] * good[..., None]).sum(dim=1) / n[:, None]
        return self.project(torch.cat([h[:, 0], pooled], dim=-1))


def phase_features(
    time: torch.Tensor, period: torch.Tensor, n_harmonics: int, multiples: Sequence[float] = (1.0,)
) -> torch.Tensor:
    """Sines and cosines of the phase at multiples of a period, per observation.

    Parameters
    ----------
    time : torch.Tensor
        (B, N) observation times, d.
    period : torch.Tensor
        (B,) period, d (finite and positive: the caller replaces unknown ones).
    n_harmonics : int
        Harmonics ``k = 1..n_harmonics`` of each phase.
    multiples : sequence of float
        Multiples ``m`` of ``period``; the phase for ``m`` is ``t / (m P)``.

    Returns
    -------
    torch.Tensor
        (B, N, 2 · n_harmonics · len(multiples)): for each multiple in order, ``sin(2π k t / (m P))`` for each ``k``
        then ``cos`` for each ``k`` (for ``multiples=(1,)`` the layout of the original single-period encoding).
    """
    k = torch.arange(1, int(n_harmonics) + 1, device=time.device, dtype=time.dtype)
    out = []
    for m in multiples:
        ph = 2.0 * math.pi * (time / (float(m) * period[:, None]))[..., None] * k
        out += [torch.sin(ph), torch.cos(ph)]
    return torch.cat(out, dim=-1)
