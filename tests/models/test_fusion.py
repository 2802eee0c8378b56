"""The fusion encoder: modality dropout never drops every modality, absent modalities are truly ignored, and any
subset of modalities gives an answer."""

from __future__ import annotations

import pytest
import torch

from stellar.errors import StellarConfigError, StellarValueError
from stellar.models.components.encoders import SpectralCNN
from stellar.models.components.lightcurve import LightCurveTransformer
from stellar.models.components.mlp import FeatureMLP
from stellar.models.fusion import FusionEncoder, modality_dropout
from stellar.models.module import StellarModule

B, L_SPEC, N_FEAT, N_PTS = 12, 64, 5, 20


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    present = {
        "spectrum": torch.tensor([True, False, True, False, True, True, False, True, False, True, True, False]),
        "sed": torch.tensor([False, True, True, False, True, False, True, True, True, False, True, True]),
        "lightcurve": torch.tensor([True, True, False, True, False, False, True, True, False, True, True, False]),
    }
    time = torch.sort(torch.rand(B, N_PTS, generator=g) * 100, dim=1).values
    return {
        "present": present,
        "spectrum": {"flux": 1 + 0.1 * torch.randn(B, L_SPEC, generator=g), "mask": torch.zeros(B, L_SPEC).bool()},
        "sed": {"features": torch.randn(B, N_FEAT, generator=g)},
        "lightcurve": {
            "time": time,
            "flux": 0.1 * torch.randn(B, N_PTS, generator=g),
            "flux_err": torch.full((B, N_PTS), 0.01),
            "band": torch.zeros(B, N_PTS, dtype=torch.long),
            "mask": torch.zeros(B, N_PTS).bool(),
            "best_period": torch.full((B,), 1.5),
        },
        "label": torch.randint(0, 3, (B,), generator=g),
        "teff": 4000 + 3000 * torch.rand(B, generator=g),
    }


def _module(modality_dropout: float = 0.25, seed: int = 0) -> StellarModule:
    torch.manual_seed(seed)
    encoders = {
        "spectrum": SpectralCNN(channels=(4, 8), out_dim=16),
        "sed": FeatureMLP(hidden=(16,), out_dim=8),
        "lightcurve": LightCurveTransformer(bands=1, d_model=16, n_heads=2, n_layers=1, dim_feedforward=32, out_dim=16),
    }
    fusion = FusionEncoder(encoders, d_model=16, n_heads=2, dim_feedforward=32, modality_dropout=modality_dropout)
    module = StellarModule(fusion, name="fusion", class_names=["A", "B", "C"], targets=["teff"],
                           target_stats={"teff": (3.7, 0.1)})  # fmt: skip
    module.train()
    module(*module._inputs_of(_batch()))  # materialise the lazy SED layers and the batch-norm statistics
    return module.eval()


def _scrambled_absent(batch: dict, seed: int) -> dict:
    """The same batch with every absent modality's padded values replaced by noise (and unmasked)."""
    g = torch.Generator().manual_seed(seed)
    out = {**batch, "present": batch["present"]}
    for m, fields in batch.items():
        if m not in batch["present"]:
            continue
        absent = ~batch["present"][m]
        new = {}
        for k, x in fields.items():
            y = x.clone()
            if x.dtype == torch.bool:
                y[absent] = False
            elif x.dtype.is_floating_point:
                y[absent] = 1e3 * torch.randn(y[absent].shape, generator=g)
            new[k] = y
        out[m] = new
    return out


def test_modality_dropout_never_drops_every_modality_and_keeps_only_present_ones():
    g = torch.Generator().manual_seed(1)
    present = torch.rand(20_000, 3, generator=g) < 0.6
    for rate in (0.0, 0.25, 0.9):
        keep = modality_dropout(present, rate, generator=g)
        assert not (keep & ~present).any()  # never adds a modality
        has_any = present.any(dim=1)
        assert keep[has_any].any(dim=1).all()  # an object that had one keeps one
        assert not keep[~has_any].any()
    # objects with a single modality always keep it; with three, each is dropped at about the rate (less the rescues)
    keep = modality_dropout(present, 0.25, generator=g)
    single = present.sum(dim=1) == 1
    assert torch.equal(keep[single], present[single])
    full = present.all(dim=1)
    dropped = 1 - keep[full].float().mean().item()
    assert 0.23 < dropped < 0.26  # 0.25 minus the 0.25**3 / 3 rescued
    with pytest.raises(StellarValueError, match="rate"):
        modality_dropout(present, 1.0)


def test_output_is_invariant_to_the_content_of_absent_modalities():
    module = _module()
    batch = _batch()
    with torch.no_grad():
        ref = module(*module._inputs_of(batch))
        other = module(*module._inputs_of(_scrambled_absent(batch, seed=5)))
    for k in ref:
        torch.testing.assert_close(ref[k], other[k], rtol=0, atol=0)
    # whereas a present modality's content does change the output (the test can fail)
    changed = {**batch, "sed": {"features": batch["sed"]["features"] + 1.0}}
    with torch.no_grad():
        moved = module(*module._inputs_of(changed))
    has_sed = batch["present"]["sed"]
    assert (moved["logits"][has_sed] - ref["logits"][has_sed]).abs().amax(dim=1).min() > 0
    torch.testing.assert_close(moved["logits"][~has_sed], ref["logits"][~has_sed], rtol=0, atol=0)


def test_an_object_answers_the_same_alone_or_in_a_batch_and_masking_equals_absence():
    module = _module()
    batch = _batch()
    with torch.no_grad():
        ref = module(*module._inputs_of(batch))["logits"]
        # masking the light curve of every object = scoring the same objects without it
        no_lc = {**batch, "present": {**batch["present"], "lightcurve": torch.zeros(B, dtype=torch.bool)}}
        masked = module(*module._inputs_of(no_lc))["logits"]
        one = {k: ({f: x[3:4] for f, x in v.items()} if isinstance(v, dict) else v[3:4]) for k, v in no_lc.items()}
        alone = module(*module._inputs_of(one))["logits"]
    torch.testing.assert_close(alone[0], masked[3], rtol=1e-5, atol=1e-6)
    lc_used = batch["present"]["lightcurve"]
    assert not torch.allclose(masked[lc_used], ref[lc_used])
    torch.testing.assert_close(masked[~lc_used], ref[~lc_used], rtol=0, atol=0)


def test_training_step_uses_modality_dropout_and_every_subset_gives_finite_outputs():
    module = _module(modality_dropout=0.5)
    module.train()
    batch = _batch()
    torch.manual_seed(0)
    a = module(*module._inputs_of(batch))["logits"]
    b = module(*module._inputs_of(batch))["logits"]
    assert not torch.allclose(a, b)  # different modalities dropped (and dropout)
    module.eval()
    none = {**batch, "present": {m: torch.zeros(B, dtype=torch.bool) for m in batch["present"]}}
    with torch.no_grad():
        out = module(*module._inputs_of(none))
    # no modality at all: the CLS token alone, the same answer for every object
    assert torch.isfinite(out["logits"]).all() and torch.allclose(out["logits"], out["logits"][:1].expand(B, -1))


def test_bad_configuration_and_input_name_the_argument():
    with pytest.raises(StellarConfigError, match="encoders"):
        FusionEncoder({"spectrum": None})
    with pytest.raises(StellarConfigError, match="modality_dropout"):
        FusionEncoder({"sed": FeatureMLP(out_dim=8)}, modality_dropout=1.0)
    with pytest.raises(StellarConfigError, match="d_model"):
        FusionEncoder({"sed": FeatureMLP(out_dim=8)}, d_model=10, n_heads=4)
    module = _module()
    batch = _batch()
    with pytest.raises(StellarValueError, match="present has no mask for modalities \\['sed'\\]"):
        module(*module._inputs_of({**batch, "present": {"spectrum": batch["present"]["spectrum"],
                                                        "lightcurve": batch["present"]["lightcurve"]}}))  # fmt: skip
    with pytest.raises(StellarValueError, match="sed needs batch fields \\['features'\\]"):
        module(*module._inputs_of({**batch, "sed": {"mag": batch["sed"]["features"]}}))


def test_a_training_batch_with_exactly_one_sed_trains_and_uses_the_running_statistics():
    # regression: the SED MLP's batch norm raised "Expected more than 1 value per channel when training" when a
    # training batch held one object with an SED (the encoder sees only the objects that have its modality)
    module = _module(modality_dropout=0.0)
    norm = module.encoder.encoders["sed"].norm
    mean, var, seen = norm.running_mean.clone(), norm.running_var.clone(), int(norm.num_batches_tracked)
    one_sed = torch.zeros(B, dtype=torch.bool)
    one_sed[4] = True
    batch = _batch(seed=3)
    batch = {**batch, "present": {**batch["present"], "sed": one_sed}}
    module.train()
    out = module(*module._inputs_of(batch))
    out["logits"].sum().backward()
    assert torch.isfinite(out["logits"]).all()
    assert module.encoder.encoders["sed"].net[0].weight.grad.abs().sum() > 0  # the one SED row trains the MLP
    # the row was standardised with the running (training-set) statistics, which it left unchanged
    torch.testing.assert_close(norm.running_mean, mean, rtol=0, atol=0)
    torch.testing.assert_close(norm.running_var, var, rtol=0, atol=0)
    assert int(norm.num_batches_tracked) == seen
    row = batch["sed"]["features"][4:5]
    torch.testing.assert_close(norm(row), (row - mean) / torch.sqrt(var + norm.eps))
    # two rows or more: batch statistics and an update, as before
    norm(batch["sed"]["features"][:2])
    assert int(norm.num_batches_tracked) == seen + 1 and not torch.equal(norm.running_mean, mean)


def test_a_fresh_feature_mlp_trains_on_a_first_batch_of_one_row():
    mlp = FeatureMLP(hidden=(8,), out_dim=4).train()
    out = mlp(torch.tensor([[1.0, float("nan"), 3.0]]))  # lazy layers materialised by a one-row batch
    assert out.shape == (1, 4) and torch.isfinite(out).all()
    assert type(mlp.norm).__name__ == "RunningStandardize"  # not turned into a plain BatchNorm1d
    torch.testing.assert_close(mlp.norm.running_mean, torch.zeros(3))
    mlp(torch.randn(6, 3))
    assert int(mlp.norm.num_batches_tracked) == 1
