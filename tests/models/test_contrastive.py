"""Contrastive pretraining: the InfoNCE loss against hand-computed values, pairs with a missing modality left out,
and the saved encoders loading into a fusion model or a single-modality model (or refusing to, clearly)."""

from __future__ import annotations

import math

import pytest
import torch

from stellar.errors import StellarConfigError, StellarDataError, StellarValueError
from stellar.models.components.encoders import SpectralCNN
from stellar.models.contrastive import (
    PRETRAINED_FILE,
    ContrastiveModule,
    info_nce,
    load_pretrained,
    pairwise_info_nce,
)
from stellar.models.module import StellarModule
from tests.models.test_fusion import _batch, _module


def test_info_nce_matches_hand_computed_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # aligned pairs, scale 1: each row's CE is log(1 + e^-1), in both directions
    assert info_nce(a, a, 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # b = both objects on the first axis (norms do not matter: 3x is normalised away): logits [[1, 1], [0, 0]]
    b = torch.tensor([[3.0, 0.0], [1.0, 0.0]])
    rows = (math.log(2) + math.log(2)) / 2  # a→b: both rows tie
    cols = (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2  # b→a: logits [[1, 0], [1, 0]]
    assert info_nce(a, b, 1.0).item() == pytest.approx((rows + cols) / 2, abs=1e-6)
    # the temperature scales the logits: at scale 10 aligned pairs cost log(1 + e^-10)
    assert info_nce(a, a, 10.0).item() == pytest.approx(math.log(1 + math.exp(-10)), abs=1e-7)
    with pytest.raises(StellarValueError, match="at least 2"):
        info_nce(a[:1], a[:1], 1.0)
    with pytest.raises(StellarValueError, match="same shape"):
        info_nce(a, a[:, :1], 1.0)


def test_objects_missing_a_modality_are_left_out_of_that_pair_only():
    g = torch.Generator().manual_seed(0)
    emb = {m: torch.randn(6, 4, generator=g) for m in ("spectrum", "sed", "lightcurve")}
    present = {
        "spectrum": torch.tensor([1, 1, 1, 0, 1, 1]).bool(),
        "sed": torch.tensor([1, 1, 0, 1, 1, 0]).bool(),
        "lightcurve": torch.tensor([0, 0, 0, 1, 1, 0]).bool(),  # one object with the spectrum too, two with the sed
    }
    total, pairs = pairwise_info_nce(emb, present, 2.0)
    both = torch.tensor([0, 1, 4])  # spectrum and sed
    assert set(pairs) == {"spectrum+sed", "sed+lightcurve"}  # spectrum+lightcurve has one object: no loss
    assert pairs["spectrum+sed"].item() == pytest.approx(info_nce(emb["spectrum"][both], emb["sed"][both], 2.0).item())
    assert total.item() == pytest.approx((pairs["spectrum+sed"] + pairs["sed+lightcurve"]).item() / 2)
    # what an object holds in a modality it lacks changes nothing
    noisy = {m: e.clone() for m, e in emb.items()}
    noisy["sed"][2] = 100.0
    noisy["spectrum"][3] = -100.0
    total2, _ = pairwise_info_nce(noisy, present, 2.0)
    assert total2.item() == pytest.approx(total.item())
    # while a present object's embedding does (the test can fail)
    noisy["sed"][0] = 100.0
    assert pairwise_info_nce(noisy, present, 2.0)[0].item() != pytest.approx(total.item())
    nothing = {m: torch.zeros(6, dtype=torch.bool) for m in present}
    assert pairwise_info_nce(emb, nothing, 2.0) == (None, {})


def _pretrained(tmp_path, steps: int = 3) -> tuple[ContrastiveModule, object]:
    """A contrastive module on the tiny fusion encoder of the fusion tests, a few steps trained and saved."""
    encoder = _module(modality_dropout=0.0, seed=1).encoder
    module = ContrastiveModule(encoder, temperature=0.1)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-2)
    module.train()
    losses = []
    for _ in range(steps):
        emb, present = module.embeddings(_batch())
        loss, _ = pairwise_info_nce(emb, present, module.logit_scale)
        assert loss is not None
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]  # it learns to match the same object's modalities
    assert module.log_logit_scale.grad is not None  # the temperature is learned
    return module, module.save_pretrained(tmp_path / "pre")


def test_pretrained_encoders_load_into_a_fusion_model_and_change_its_outputs(tmp_path):
    module, path = _pretrained(tmp_path)
    assert path.name == PRETRAINED_FILE
    fresh = _module(seed=2)  # same architecture, other weights
    loaded = _module(seed=2)
    assert load_pretrained(loaded.encoder, tmp_path / "pre") == ["spectrum", "sed", "lightcurve"]
    for m in ("spectrum", "sed", "lightcurve"):
        for k, v in module.encoder.encoders[m].state_dict().items():
            torch.testing.assert_close(loaded.encoder.encoders[m].state_dict()[k], v)
        for k, v in module.encoder.project[m].state_dict().items():
            torch.testing.assert_close(loaded.encoder.project[m].state_dict()[k], v)
    batch = _batch()
    with torch.no_grad():
        before = fresh(*fresh._inputs_of(batch))["logits"]
        after = loaded(*loaded._inputs_of(batch))["logits"]
    assert (before - after).abs().max() > 1e-4
    # through StellarModule(pretrained=...), the route of model.pretrained=<run_dir>
    torch.manual_seed(0)
    via_module = StellarModule(_module(seed=2).encoder, class_names=["A", "B", "C"], pretrained=str(tmp_path / "pre"))
    w = via_module.encoder.encoders["spectrum"].state_dict()
    for k, v in module.encoder.encoders["spectrum"].state_dict().items():
        torch.testing.assert_close(w[k], v)


def test_a_single_modality_encoder_gets_its_modality_and_mismatches_are_refused(tmp_path):
    module, _ = _pretrained(tmp_path, steps=2)
    cnn = SpectralCNN(channels=(4, 8), out_dim=16)
    assert load_pretrained(cnn, tmp_path / "pre") == ["spectrum"]
    for k, v in module.encoder.encoders["spectrum"].state_dict().items():
        torch.testing.assert_close(cnn.state_dict()[k], v)
    with pytest.raises(StellarConfigError, match="matches none"):
        load_pretrained(SpectralCNN(channels=(4, 16), out_dim=16), tmp_path / "pre")
    # a fusion model with other widths, or with a modality the run did not have
    from stellar.models.components.mlp import FeatureMLP
    from stellar.models.fusion import FusionEncoder

    wide = FusionEncoder({"spectrum": SpectralCNN(channels=(4, 8), out_dim=32)}, d_model=16, n_heads=2)
    with pytest.raises(StellarConfigError, match="spectrum encoder does not fit"):
        load_pretrained(wide, tmp_path / "pre")
    other = FusionEncoder({"spectrum": SpectralCNN(channels=(4, 8), out_dim=16), "gaia": FeatureMLP()}, d_model=16,
                          n_heads=2)  # fmt: skip
    with pytest.raises(StellarConfigError, match=r"\['gaia'\]"):
        load_pretrained(other, tmp_path / "pre")
    with pytest.raises(StellarDataError, match=PRETRAINED_FILE):
        load_pretrained(cnn, tmp_path / "nowhere")


def test_contrastive_module_refuses_what_it_cannot_train():
    with pytest.raises(StellarConfigError, match="FusionEncoder"):
        ContrastiveModule(SpectralCNN(channels=(4, 8), out_dim=16))
    from stellar.models.fusion import FusionEncoder

    with pytest.raises(StellarConfigError, match=">= 2 modalities"):
        ContrastiveModule(FusionEncoder({"spectrum": SpectralCNN(channels=(4, 8), out_dim=16)}, d_model=16, n_heads=2))
    with pytest.raises(StellarConfigError, match="max_logit_scale"):
        ContrastiveModule(_module().encoder, temperature=0.001)


def test_frozen_encoders_stay_fixed_in_training_while_the_heads_and_the_fusion_learn(tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader

    from stellar.models.contrastive import pretrained_parts

    module, _ = _pretrained(tmp_path, steps=2)
    probe = StellarModule(_module(seed=2).encoder, class_names=["A", "B", "C"], targets=["teff"],
                          target_stats={"teff": (3.7, 0.1)}, pretrained=str(tmp_path / "pre"),
                          freeze_encoders=True)  # fmt: skip
    parts = pretrained_parts(probe.encoder)
    assert sorted(parts) == sorted(f"{m} {p}" for m in ("spectrum", "sed", "lightcurve")
                                   for p in ("encoder", "projection"))  # fmt: skip
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    trainable = {id(p) for p in probe.parameters() if p.requires_grad}
    opt = probe.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    assert {id(p) for g in opt.param_groups for p in g["params"]} == trainable  # frozen parts stay out
    loader = DataLoader(range(4), batch_size=1, collate_fn=lambda _: _batch())
    trainer = L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    probe.train()  # as a freshly built model is (the encoder above was left in eval mode)
    trainer.fit(probe, train_dataloaders=loader)
    assert trainer.global_step == 4
    after = probe.state_dict()
    frozen = [k for k in after if k.startswith(("encoder.encoders.", "encoder.project."))]
    assert any("running_mean" in k for k in frozen)  # batch-norm statistics are among them, and stay too
    for k in frozen:
        torch.testing.assert_close(after[k], before[k], msg=k)
    # they are the pretrained weights
    for k, v in module.encoder.encoders["spectrum"].state_dict().items():
        torch.testing.assert_close(after[f"encoder.encoders.spectrum.{k}"], v)

    def changed(prefix: str) -> bool:
        return any(not torch.equal(after[k], before[k]) for k in after if k.startswith(prefix))

    assert changed("class_head.") and changed("reg_heads.teff.") and changed("encoder.fusion.")
    probe.train()  # training mode leaves the frozen parts in eval mode (no batch-norm update, no dropout)
    assert probe.training and not any(p.training for part in parts.values() for p in part.modules())
    # without freezing, the same start trains the encoders too
    tuned = StellarModule(_module(seed=2).encoder, class_names=["A", "B", "C"], targets=["teff"],
                          target_stats={"teff": (3.7, 0.1)}, pretrained=str(tmp_path / "pre"))  # fmt: skip
    tuned.train()
    start = {k: v.clone() for k, v in tuned.state_dict().items()}
    L.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(tuned, train_dataloaders=loader)  # fmt: skip
    assert any(not torch.equal(tuned.state_dict()[k], start[k]) for k in frozen)


def test_scheduler_interval_is_epoch_or_step():
    sched = lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)  # noqa: E731
    per_step = StellarModule(_module().encoder, class_names=["A", "B", "C"], scheduler=sched,
                             scheduler_interval="step")  # fmt: skip
    assert per_step.configure_optimizers()["lr_scheduler"]["interval"] == "step"
    per_epoch = StellarModule(_module().encoder, class_names=["A", "B"], scheduler=sched)  # the default
    assert per_epoch.configure_optimizers()["lr_scheduler"]["interval"] == "epoch"
    with pytest.raises(StellarConfigError, match="scheduler_interval must be 'epoch' or 'step'; got 'batch'"):
        StellarModule(_module().encoder, class_names=["A", "B"], scheduler_interval="batch")
