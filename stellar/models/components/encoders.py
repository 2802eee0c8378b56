"""Spectrum encoders: plain ``nn.Module``s mapping (flux, mask) of shape (B, L) to features (B, out_dim).

With ``continuum_channel=True`` they also take ``continuum`` (B, L), the log shape of the fitted continuum that
:class:`~stellar.data.preprocess.spectra.SpectrumPreprocessing` keeps for flux-calibrated spectra, as a third
input channel: per pixel, so that the convolutions and patches see line depth and continuum slope together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from stellar.errors import StellarConfigError


def _masked_input(flux: torch.Tensor, mask: torch.Tensor, continuum: torch.Tensor | None = None) -> torch.Tensor:
    """Channels: continuum-normalised flux with bad pixels set to the continuum (1), a good-pixel flag, and the
    continuum's log shape when given (smooth and defined on bad pixels too, so kept as is)."""
    good = (~mask).to(flux.dtype)
    channels = [flux * good + (1.0 - good), good]
    if continuum is not None:
        channels.append(continuum.to(flux.dtype))
    return torch.stack(channels, dim=1)


def _spectral_inputs(continuum_channel: bool) -> tuple[str, ...]:
    return ("flux", "mask", "continuum") if continuum_channel else ("flux", "mask")


def _check_continuum(inputs: tuple[str, ...], continuum: torch.Tensor | None) -> None:
    if ("continuum" in inputs) != (continuum is not None):
        raise StellarConfigError(
            f"this encoder was built with continuum_channel={'continuum' in inputs}, but was "
            f"{'given' if continuum is not None else 'not given'} a continuum"
        )


def pre_norm_transformer(
    d_model: int, n_heads: int, n_layers: int, dim_feedforward: int, dropout: float
) -> nn.TransformerEncoder:
    """The transformer stack every encoder here uses: batch-first, pre-norm, GELU layers."""
    layer = nn.TransformerEncoderLayer(
        d_model, n_heads, dim_feedforward, dropout, batch_first=True, norm_first=True, activation="gelu"
    )
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


class SpectralCNN(nn.Module):
    """1-D convolutional encoder: strided residual-free conv blocks, then masked global average pooling.

    Parameters
    ----------
    channels : sequence of int
        Output channels of each block; each block halves the length (stride 2).
    kernel_size : int
        Convolution width in pixels (at 1e-4 dex/pixel, 5 px ≈ 350 km/s in the first block).
    dropout : float
        Dropout before the output projection.
    out_dim : int
        Size of the feature vector.
    continuum_channel : bool
        Also take the batch field ``continuum`` as an input channel.
    """

    def __init__(
        self,
        channels: Sequence[int] = (8, 16, 32, 48, 64),
        kernel_size: int = 5,
        dropout: float = 0.1,
        out_dim: int = 128,
        continuum_channel: bool = False,
    ):
        super().__init__()
        #: batch fields passed to ``forward``, in order
        self.inputs = _spectral_inputs(continuum_channel)
        layers: list[nn.Module] = []
        c_in = len(self.inputs)  # flux, good-pixel flag[, continuum]
        for c in channels:
            layers += [
                nn.Conv1d(c_in, c, kernel_size, stride=2, padding=kernel_size // 2),
                nn.BatchNorm1d(c),
                nn.GELU(),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, out_dim), nn.GELU())
        self.out_dim = out_dim

    def forward(self, flux: torch.Tensor, mask: torch.Tensor, continuum: torch.Tensor | None = None) -> torch.Tensor:
        _check_continuum(self.inputs, continuum)
        h = self.features(_masked_input(flux, mask, continuum))
        pooled = torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)
        return self.project(pooled)


class SpectralStarNet(nn.Module):
    """StarNet (Fabbro et al. 2018, MNRAS 475, 2978): two unpadded convolutions, max-pooling, then dense layers on
    the *flattened* feature map, so that each output sees where a line is, not only that it is somewhere.

    The spectrum is first averaged over ``bin_pixels`` pixels (StarNet's small-sample use on 4-px-binned spectra;
    the good-pixel flag is averaged too, so it becomes the good fraction of each bin). The pooling is adaptive:
    the feature map is max-pooled into ``positions`` windows, which is StarNet's max-pool of 4 on the MILES grid
    (3130 px → 782 binned → 768 after the two convolutions → 192) and keeps the dense layer's size fixed on any grid.

    Parameters
    ----------
    filters : sequence of int
        Output channels of each convolution (StarNet: 4, 16).
    kernel_size : int
        Convolution width in binned pixels (StarNet: 8; 8 binned px ≈ 32 × 1e-4 dex ≈ 2200 km/s).
    bin_pixels : int
        Pixels averaged into one before the convolutions (1: none).
    positions : int
        Windows of the adaptive max-pooling, i.e. the length of the flattened feature map per channel.
    hidden : sequence of int
        Widths of the dense layers before the output (StarNet: 256, then the 128 of ``out_dim``).
    dropout : float
        Dropout before each dense layer (StarNet: none).
    out_dim : int
        Size of the feature vector (StarNet's last dense layer).
    continuum_channel : bool
        Also take the batch field ``continuum`` as an input channel.
    """

    def __init__(
        self,
        filters: Sequence[int] = (4, 16),
        kernel_size: int = 8,
        bin_pixels: int = 4,
        positions: int = 192,
        hidden: Sequence[int] = (256,),
        dropout: float = 0.0,
        out_dim: int = 128,
        continuum_channel: bool = False,
    ):
        super().__init__()
        for arg, v in (("kernel_size", kernel_size), ("bin_pixels", bin_pixels), ("positions", positions)):
            if int(v) < 1:
                raise StellarConfigError(f"{arg} must be at least 1; got {v}")
        if not filters:
            raise StellarConfigError("filters must list at least one convolution, e.g. [4, 16]")
        #: batch fields passed to ``forward``, in order
        self.inputs = _spectral_inputs(continuum_channel)
        self.bin_pixels = int(bin_pixels)
        self.min_length = self.bin_pixels * (len(filters) * (int(kernel_size) - 1) + int(positions))
        layers: list[nn.Module] = []
        c_in = len(self.inputs)
        for c in filters:
            layers += [nn.Conv1d(c_in, int(c), int(kernel_size)), nn.ReLU()]
            c_in = int(c)
        layers += [nn.AdaptiveMaxPool1d(int(positions)), nn.Flatten()]
        width = c_in * int(positions)
        for h in (*hidden, out_dim):
            layers += [nn.Dropout(dropout), nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        self.net = nn.Sequential(*layers)
        self.out_dim = int(out_dim)

    def forward(self, flux: torch.Tensor, mask: torch.Tensor, continuum: torch.Tensor | None = None) -> torch.Tensor:
        _check_continuum(self.inputs, continuum)
        if flux.shape[-1] < self.min_length:
            raise StellarConfigError(
                f"flux has {flux.shape[-1]} pixels; this StarNet needs at least {self.min_length} "
                "(bin_pixels × (convolution reach + positions))"
            )
        x = _masked_input(flux, mask, continuum)
        if self.bin_pixels > 1:
            x = nn.functional.avg_pool1d(x, self.bin_pixels)  # drops the last length % bin_pixels pixels
        x = torch.cat([x[:, :1] - 1.0, x[:, 1:]], dim=1)  # normalised flux around 0, as the other channels
        return self.net(x)


class SpectralTransformer(nn.Module):
    """Patch transformer: non-overlapping pixel patches → tokens with sinusoidal position, CLS pooling.

    Patches whose pixels are all masked are excluded from attention.

    Parameters
    ----------
    patch_size : int
        Pixels per token.
    d_model, n_heads, n_layers, dim_feedforward : int
        Transformer sizes.
    dropout : float
        Dropout inside the encoder layers.
    out_dim : int
        Size of the feature vector.
    continuum_channel : bool
        Also take the batch field ``continuum`` as an input channel.
    """

    def __init__(
        self,
        patch_size: int = 32,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        out_dim: int = 128,
        continuum_channel: bool = False,
    ):
        super().__init__()
        #: batch fields passed to ``forward``, in order
        self.inputs = _spectral_inputs(continuum_channel)
        self.patch_size = patch_size
        self.embed = nn.Conv1d(len(self.inputs), d_model, kernel_size=patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.encoder = pre_norm_transformer(d_model, n_heads, n_layers, dim_feedforward, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.project = nn.Sequential(nn.Linear(d_model, out_dim), nn.GELU())
        self.d_model = d_model
        self.out_dim = out_dim

    def _positions(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        pos = torch.arange(n, device=device, dtype=dtype)[:, None]
        div = torch.exp(
            torch.arange(0, self.d_model, 2, device=device, dtype=dtype) * (-math.log(10_000.0) / self.d_model)
        )
        pe = torch.zeros(n, self.d_model, device=device, dtype=dtype)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        return pe

    def forward(self, flux: torch.Tensor, mask: torch.Tensor, continuum: torch.Tensor | None = None) -> torch.Tensor:
        b, length = flux.shape
        pad = (-length) % self.patch_size
        _check_continuum(self.inputs, continuum)
        x = _masked_input(flux, mask, continuum)
        if pad:
            x = nn.functional.pad(x, (0, pad))  # padded pixels carry good-flag 0, i.e. masked
        tokens = self.embed(x).transpose(1, 2)  # (B, P, D)
        tokens = tokens + self._positions(tokens.shape[1], tokens.device, tokens.dtype)
        good = x[:, 1].reshape(b, -1, self.patch_size).amax(dim=-1) > 0  # patch has any good pixel
        tokens = torch.cat([self.cls.expand(b, -1, -1), tokens], dim=1)
        key_padding = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=flux.device), ~good], dim=1)
        h = self.encoder(tokens, src_key_padding_mask=key_padding)
        return self.project(self.norm(h[:, 0]))
