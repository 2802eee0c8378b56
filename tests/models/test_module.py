import math

import numpy as np
import pytest
import torch

from stellar.errors import StellarConfigError
from stellar.models.components.encoders import SpectralCNN, SpectralTransformer
from stellar.models.components.heads import GaussianHead, gaussian_nll
from stellar.models.module import StellarModule


@pytest.mark.parametrize("encoder", [SpectralCNN(out_dim=32), SpectralTransformer(patch_size=16, out_dim=32)])
def test_encoders_shapes_and_masking(encoder):
    torch.manual_seed(0)
    encoder.eval()
    flux = torch.randn(4, 1000) * 0.1 + 1
    mask = torch.zeros(4, 1000, dtype=torch.bool)
    mask[1, 100:400] = True
    mask[2] = True  # a spectrum with nothing good must still give finite features
    out = encoder(flux, mask)
    assert out.shape == (4, 32) and torch.isfinite(out).all()
    # values under the mask do not matter
    flux2 = flux.clone()
    flux2[1, 100:400] = 1e6
    torch.testing.assert_close(encoder(flux2, mask), out)


def _module(targets=("teff", "logg"), classes=("A", "F", "G")):
    stats = {"teff": (math.log10(6000.0), 0.1), "logg": (4.0, 0.5)}
    return StellarModule(
        SpectralCNN(channels=(8, 16), out_dim=16),
        class_names=list(classes),
        targets=list(targets),
        target_stats={t: stats[t] for t in targets},
    )


def test_output_contract_and_physical_units():
    m = _module().eval()
    flux, mask = torch.ones(3, 256), torch.zeros(3, 256, dtype=torch.bool)
    raw = m(flux, mask)
    assert set(raw) == {"logits", "teff_mean", "teff_logvar", "logg_mean", "logg_logvar"}
    assert raw["logits"].shape == (3, 3)
    phys = m.to_physical({**raw, "teff_mean": torch.zeros(3), "teff_logvar": torch.zeros(3)})
    # z = 0 is the training mean: 10**log10(6000) K, with σ = 6000 ln10 · 0.1 K
    torch.testing.assert_close(phys["teff_mean"], torch.full((3,), 6000.0))
    torch.testing.assert_close(torch.exp(0.5 * phys["teff_logvar"]), torch.full((3,), 6000 * math.log(10) * 0.1))


def test_gaussian_nll_ignores_missing_and_is_minimal_at_truth():
    mean, target = torch.zeros(4), torch.tensor([0.0, float("nan"), 0.0, float("nan")])
    assert gaussian_nll(mean, torch.zeros(4), target) == 0.0
    lv = torch.linspace(-3, 3, 61)
    nll = torch.stack([gaussian_nll(torch.zeros(1), v.reshape(1), torch.tensor([1.0])) for v in lv])
    assert abs(lv[nll.argmin()].item()) < 0.11  # best log-variance = log(err²) = 0
    assert gaussian_nll(mean, mean, torch.full((4,), float("nan"))) == 0.0
    head = GaussianHead(8)
    _, logvar = head(torch.randn(5, 8) * 100)
    assert (logvar >= head.min_logvar).all() and (logvar <= head.max_logvar).all()


def test_overfits_a_tiny_batch():
    torch.manual_seed(0)
    m = _module()
    rng = np.random.default_rng(0)
    flux = torch.tensor(rng.normal(1, 0.05, (16, 256)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 3, 16))
    flux[:, :50] += labels[:, None] * 0.3  # make the class visible
    batch = {
        "flux": flux,
        "mask": torch.zeros(16, 256, dtype=torch.bool),
        "label": labels,
        "teff": torch.tensor(rng.uniform(5000, 7000, 16), dtype=torch.float32),
        "logg": torch.tensor(np.r_[rng.uniform(3, 5, 15), np.nan], dtype=torch.float32),
    }
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    m.log = lambda *a, **k: None  # outside a Trainer
    for _ in range(60):
        opt.zero_grad()
        loss = m._shared_step(batch, "train")
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0] - 1.0


def test_needs_a_head():
    with pytest.raises(StellarConfigError, match="neither"):
        StellarModule(SpectralCNN(), class_names=[], targets=[])
