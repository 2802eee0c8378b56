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


def _eclipsing_binary(period=2.0, n=300, seed=0):
    """Two equal eclipses a period apart (phases 0 and 0.5), so the periodogram finds half the period."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 400, n))
    ph = (t / period) % 1.0
    d = np.minimum.reduce([np.abs(ph), np.abs(ph - 0.5), np.abs(ph - 1.0)])
    return t, 15.0 + 0.5 * np.exp(-0.5 * (d / 0.03) ** 2) + rng.normal(0, 0.005, n)


def test_phase_at_twice_best_period_is_periodic_at_the_true_period_of_an_eclipsing_binary():
    from stellar.data.preprocess.lightcurve_inputs import LightCurvePreprocessing
    from stellar.models.components.lightcurve import phase_features

    true_p = 2.0
    t, mag = _eclipsing_binary(true_p)
    best = float(LightCurvePreprocessing(n_points=300)(t, mag, np.full_like(t, 0.005))["best_period"][0])
    assert best == pytest.approx(true_p / 2, rel=1e-3)  # the periodogram picks the harmonic
    # an eclipse at t, the other eclipse at t + best (≈ P/2), and the first again at t + 2 best (≈ P) and t + 14 best
    time = torch.tensor([[0.3, 0.3 + best, 0.3 + 2 * best, 0.3 + 14 * best]], dtype=torch.float64)
    p = torch.tensor([best], dtype=torch.float64)
    one = phase_features(time, p, 3, (1,))
    both = phase_features(time, p, 3, (1, 2))
    assert both.shape == (1, 4, 12) and torch.equal(both[..., :6], one)  # multiple 1 first, same layout
    # at best_period, the two eclipses have the same phase: indistinguishable
    assert torch.allclose(one[0, 0], one[0, 1], atol=1e-9)
    two = both[..., 6:]
    # at 2 × best_period they differ (odd harmonics change sign) and the encoding repeats at the true period
    assert torch.allclose(two[0, 1, 0], -two[0, 0, 0], atol=1e-9) and abs(float(two[0, 0, 0])) > 0.1
    assert torch.allclose(two[0, 2], two[0, 0], atol=1e-9) and torch.allclose(two[0, 3], two[0, 0], atol=1e-9)
    # known answer: sin(2π t / (2 best)) for k = 1
    assert float(two[0, 0, 0]) == pytest.approx(np.sin(2 * np.pi * 0.3 / (2 * best)), abs=1e-9)


def test_default_phase_encoding_is_the_single_period_one():
    """phase_multiples defaults to [1]: same parameter shapes (saved models load) and the same outputs."""
    torch.manual_seed(3)
    default = LightCurveTransformer(bands=2, d_model=32, n_layers=1).eval()
    torch.manual_seed(3)
    explicit = LightCurveTransformer(bands=2, d_model=32, n_layers=1, phase_multiples=[1]).eval()
    assert default.phase is not None and default.phase.in_features == 6 and default.phase_multiples == (1.0,)
    batch = _batch()
    assert torch.equal(default(*batch), explicit(*batch))
    # the features are sin(2π k t / P), k = 1..3, then the cosines
    time, period = batch[0], batch[-1]
    k = torch.arange(1, 4, dtype=time.dtype)
    ph = 2 * torch.pi * (time / period[:, None])[..., None] * k
    from stellar.models.components.lightcurve import phase_features

    assert torch.allclose(phase_features(time, period, 3), torch.cat([torch.sin(ph), torch.cos(ph)], -1), atol=1e-5)
    two = LightCurveTransformer(bands=2, d_model=32, n_layers=1, phase_multiples=[1, 2])
    assert two.phase is not None and two.phase.in_features == 12


def test_phase_multiples_respect_the_mask_and_change_the_output():
    enc = LightCurveTransformer(bands=["g", "r"], d_model=32, n_layers=1, phase_multiples=[1, 2]).eval()
    time, flux, err, band, mask, period = _batch()
    h = enc(time, flux, err, band, mask, period)
    junk = [x.clone() for x in (time, flux, err, band)]
    for x in junk:
        x[:, 40:] = 7
    assert torch.allclose(enc(*junk, mask, period), h, atol=1e-5)
    # shifting every time by best_period leaves the phase at best_period but not at 2 × best_period: the output moves
    # only through the second multiple (the time encoding is switched off by zeroing its map)
    with torch.no_grad():
        enc.time.weight.zero_()
        enc.time.bias.zero_()
    base = enc(time, flux, err, band, mask, period)
    shifted = enc(time + period[:, None], flux, err, band, mask, period)
    assert not torch.allclose(base, shifted, atol=1e-4)
    assert torch.allclose(enc(time + 2 * period[:, None], flux, err, band, mask, period), base, atol=1e-3)


@pytest.mark.parametrize("bad", [[], [0], [1, -2], [float("nan")]])
def test_phase_multiples_are_checked(bad):
    with pytest.raises(StellarValueError, match="phase_multiples"):
        LightCurveTransformer(phase_multiples=bad)
