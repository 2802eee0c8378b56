"""StarNet encoder (flatten → dense head), encoder factories for seed copies, and early stopping of a
LightningEstimator: known answers on small synthetic inputs."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from stellar.errors import StellarConfigError
from stellar.models.components.encoders import SpectralStarNet
from stellar.models.components.mlp import FeatureMLP
from stellar.models.ensemble import Ensemble
from stellar.models.lightning_estimator import LightningEstimator
from stellar.models.module import StellarModule
from tests.models.test_estimators import _part

CLASSES = ["a", "b", "c"]


@pytest.mark.parametrize("continuum", [False, True])
def test_starnet_sees_4px_bins_flattens_and_masks(continuum):
    torch.manual_seed(0)
    net = SpectralStarNet(positions=48, continuum_channel=continuum).eval()
    with torch.no_grad():  # 4 filters at random: all may start below the ReLU (dead); keep them alive for the test
        net.net[0].bias.fill_(1.0)
    assert net.inputs == (("flux", "mask", "continuum") if continuum else ("flux", "mask"))
    # the dense layer reads 16 channels × 48 pooled positions: a flattened map, not a global pool
    dense = next(m for m in net.net if isinstance(m, torch.nn.Linear))
    assert net.net[0].in_channels == (3 if continuum else 2) and dense.in_features == 16 * 48
    flux = 1 + 0.1 * torch.randn(3, 800)
    mask = torch.zeros(3, 800, dtype=torch.bool)
    extra = [torch.zeros(3, 800)] if continuum else []
    out = net(flux, mask, *extra)
    assert out.shape == (3, 128) and torch.isfinite(out).all()
    # only the 4-px means matter: reordering pixels inside each bin changes nothing; reordering the bins does
    inside = flux.reshape(3, -1, 4).flip(-1).reshape(3, 800)
    torch.testing.assert_close(net(inside, mask, *extra), out)
    assert (net(flux.flip(-1), mask, *extra) - out).abs().max() > 1e-4
    masked = mask.clone()
    masked[0, 100:200] = True
    spiked = flux.clone()
    spiked[0, 100:200] = 1e6
    torch.testing.assert_close(net(spiked, masked, *extra), net(flux, masked, *extra))


def test_starnet_refuses_short_spectra_and_bad_sizes():
    net = SpectralStarNet(positions=48)  # needs 4 × (2 × 7 + 48) = 248 pixels
    assert net.min_length == 248
    with pytest.raises(StellarConfigError, match=r"247 pixels.*at least 248"):
        net(torch.ones(1, 247), torch.zeros(1, 247, dtype=torch.bool))
    with pytest.raises(StellarConfigError, match="bin_pixels"):
        SpectralStarNet(bin_pixels=0)
    with pytest.raises(StellarConfigError, match="filters"):
        SpectralStarNet(filters=())
    with pytest.raises(StellarConfigError, match="encoder"):
        StellarModule(encoder=3, class_names=CLASSES)  # type: ignore[arg-type]


def _data() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    train, val = _part(300, 0), _part(100, 1)
    for part in (train, val):
        part["features"] = np.nan_to_num(part["features"])
    return train, val


def test_seed_copies_of_a_module_with_an_encoder_factory_get_their_own_weights():
    # what `encoder: {_partial_: true}` makes of a Hydra _partial_ model config: one factory, called per module
    module = partial(StellarModule, encoder=partial(FeatureMLP, hidden=[8], out_dim=8), head_hidden=8,
                     optimizer=partial(torch.optim.Adam, lr=0.02))  # fmt: skip
    member = partial(LightningEstimator, module, max_epochs=8, batch_size=64)
    ens = Ensemble({"net": member}, copies={"net": 3}, class_names=CLASSES, seed=5)
    nets = [ens.models[f"net_{i}"].net for i in range(3)]
    assert len({id(n.encoder) for n in nets}) == 3  # one encoder each: before, the copies shared (and co-trained) one
    train, val = _data()
    ens.fit(train, val)
    first = [next(n.encoder.parameters()).detach() for n in nets]  # (lazy layers: initialised by the fit's seed)
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])  # seeds 5, 6, 7
    again = Ensemble({"net": member}, copies={"net": 1}, class_names=CLASSES, seed=6)
    again.fit(train, val)
    torch.testing.assert_close(next(again.models["net_0"].net.encoder.parameters()), first[1])  # copy i: seed + i
    assert np.mean(ens.predict_outputs(val)["logits"].argmax(1) == val["label"]) > 0.6


def test_lightning_estimator_stops_after_patience_epochs_without_improvement():
    train, val = _data()
    frozen = partial(StellarModule, encoder=partial(FeatureMLP, hidden=[8], out_dim=8),
                     optimizer=partial(torch.optim.SGD, lr=0.0))  # fmt: skip
    # lr 0: the validation loss never improves after epoch 0, so training stops after 1 + patience epochs
    metrics = LightningEstimator(frozen, class_names=CLASSES, max_epochs=20, patience=3).fit(train, val)
    assert metrics["train/epochs"] == 4 and metrics["val/best_epoch"] == 0
    assert LightningEstimator(frozen, class_names=CLASSES, max_epochs=6).fit(train, val)["train/epochs"] == 6
    with pytest.raises(StellarConfigError, match="patience"):
        LightningEstimator(frozen, class_names=CLASSES, patience=0)
