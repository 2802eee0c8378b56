"""LightCurveTransformer: shapes, padding and token order do not matter, band checks, and it fits a toy task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stellar.errors import StellarValueError
from stellar.models.components.lightcurve import LightCurveTransformer
from stellar.models.module import StellarModule


def _batch(b=4, n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    time = torch.sort(torch.rand(b, n, generator=g) * 100, dim=1).values
    flux = 0.3 * torch.sin(2 * torch.pi * time / 0.6) + 0.01 * torch.randn(b, n, generator=g)
    err = torch.full((b, n), 0.01)
    band = torch.randint(0, 2, (b, n), generator=g)
    mask = torch.zeros(b, n, dtype=torch.bool)
    mask[:, 40:] = True
    period = torch.full((b,), 0.6)
    return time, flux, err, band, mask, period


def test_padding_values_and_token_order_do_not_matter():
    enc = LightCurveTransformer(bands=["g", "r"], d_model=32, n_layers=1).eval()
    time, flux, err, band, mask, period = _batch()
    h = enc(time, flux, err, band, mask, period)
    assert h.shape == (4, enc.out_dim) and torch.isfinite(h).all()
    # garbage in padded slots changes nothing
    junk = [x.clone() for x in (time, flux, err, band)]
    for x in junk:
        x[:, 40:] = 7
    assert torch.allclose(enc(*junk, mask, period), h, atol=1e-5)
    # tokens carry their own time: permuting the observations changes nothing (irregular sampling needs no order)
    perm = torch.cat([torch.randperm(40), torch.arange(40, 50)])
    assert torch.allclose(enc(time[:, perm], flux[:, perm], err[:, perm], band[:, perm], mask, period), h, atol=1e-5)
    # an unknown period (NaN) is allowed and is not the same as a known one
    h_nan = enc(time, flux, err, band, mask, torch.full((4,), float("nan")))
    assert torch.isfinite(h_nan).all() and not torch.allclose(h_nan, h)


def test_band_indices_are_checked():
    enc = LightCurveTransformer(bands=1)
    time, flux, err, band, mask, period = _batch()
    with pytest.raises(StellarValueError, match="band indices"):
        enc(time, flux, err, band, mask, period)
    with pytest.raises(StellarValueError, match="at least one band"):
        LightCurveTransformer(bands=[])


def test_module_learns_period_class_from_light_curves():
    """Two classes that differ only by period (0.3 d vs 3 d): the module separates them within a few steps."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n, t_len = 32, 40
    time = np.sort(rng.uniform(0, 50, (n, t_len)), axis=1)
    label = np.arange(n) % 2
    period = np.where(label == 0, 0.3, 3.0)
    flux = 0.2 * np.sin(2 * np.pi * time / period[:, None]) + rng.normal(0, 0.02, time.shape)
    batch = {
        "time": torch.tensor(time, dtype=torch.float32),
        "flux": torch.tensor(flux, dtype=torch.float32),
        "flux_err": torch.full((n, t_len), 0.02),
        "band": torch.zeros(n, t_len, dtype=torch.long),
        "mask": torch.zeros(n, t_len, dtype=torch.bool),
        "best_period": torch.tensor(period, dtype=torch.float32),
        "label": torch.tensor(label),
    }
    model = StellarModule(LightCurveTransformer(d_model=32, n_layers=1), class_names=["short", "long"])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(25):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(*model._inputs_of(batch))["logits"], batch["label"])
        loss.backward()
        opt.step()
    acc = (model.eval()(*model._inputs_of(batch))["logits"].argmax(1) == batch["label"]).float().mean()
    assert acc == 1.0
