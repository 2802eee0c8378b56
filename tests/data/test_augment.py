"""Training-time light-curve augmentation: what each step changes, what it keeps, seeding, and where it applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stellar.data.augment import LightCurveAugmentation
from stellar.data.datamodules import LightCurveDataModule
from stellar.data.preprocess.lightcurve_inputs import LightCurvePreprocessing
from stellar.data.sources.lightcurve import ErosSource
from stellar.errors import StellarConfigError, StellarValueError
from stellar.evaluation.splits import GroupSplit
from tests.conftest import DATA


def _batch(b: int = 64, n: int = 100, seed: int = 0) -> dict[str, torch.Tensor]:
    """Packed rows as the datamodule makes them: valid points first in time order from t = 0, zero padding after."""
    rng = np.random.default_rng(seed)
    n_valid = rng.integers(20, n + 1, b)
    mask = np.arange(n)[None, :] >= n_valid[:, None]
    t = np.sort(rng.uniform(0, 2000, (b, n)), axis=1)
    t -= t[:, :1]
    flux = np.sin(2 * np.pi * t / 1.7) * 0.3
    err = rng.uniform(0.01, 0.1, (b, n))
    band = rng.integers(0, 2, (b, n))
    for a in (t, flux, err, band):
        a[mask] = 0
    as_t = {"time": t, "flux": flux, "flux_err": err}
    out = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in as_t.items()}
    out.update(band=torch.as_tensor(band), mask=torch.as_tensor(mask), label=torch.arange(b))
    out["best_period"] = torch.full((b,), 1.7)
    return out


def test_noise_is_at_the_stated_errors_on_valid_points_only():
    batch = _batch()
    before = {k: v.clone() for k, v in batch.items()}
    out = LightCurveAugmentation(seed=1, noise=2.0)(batch)
    good = ~batch["mask"]
    z = (out["flux"] - batch["flux"])[good] / batch["flux_err"][good]
    assert float(z.std()) == pytest.approx(2.0, rel=0.05) and abs(float(z.mean())) < 0.05
    assert (out["flux"][batch["mask"]] == 0).all()
    for k in ("time", "flux_err", "band", "mask", "label", "best_period"):
        assert torch.equal(out[k], batch[k])
    assert all(torch.equal(batch[k], before[k]) for k in batch)  # the input batch is not modified


def test_dropped_epochs_keep_order_packing_and_a_minimum():
    batch = _batch(b=200)
    out = LightCurveAugmentation(seed=2, drop_fraction=0.3, min_points=25)(batch)
    n_in, n_out = (~batch["mask"]).sum(1), (~out["mask"]).sum(1)
    assert (n_out <= n_in).all() and (n_out >= n_in.clamp(max=25)).all()
    assert float(1 - n_out.sum() / n_in.sum()) == pytest.approx(0.3, abs=0.03)
    assert (n_out == n_in).any()  # short rows that would fall under min_points keep everything
    # valid points first, padding after (zeros), times again from the first kept point
    m = out["mask"]
    assert (m[:, 1:] >= m[:, :-1]).all()
    assert (out["flux"][m] == 0).all() and (out["time"][m] == 0).all() and (out["band"][m] == 0).all()
    assert (out["time"][:, 0] == 0).all() and (out["time"][:, 1:][~m[:, 1:]] >= 0).all()
    # each kept point is one of the row's points, in the original order, with its own flux, error and band
    for i in range(0, 200, 37):
        k = int(n_out[i])
        src = torch.stack([batch[f][i][~batch["mask"][i]].float() for f in ("flux", "flux_err", "band")], 1)
        kept = torch.stack([out[f][i][:k].float() for f in ("flux", "flux_err", "band")], 1)
        pos = [int(torch.nonzero((src == row).all(1))[0]) for row in kept]
        assert pos == sorted(pos)
        t_src = batch["time"][i][pos]
        torch.testing.assert_close(out["time"][i][:k], t_src - t_src[0])


def test_time_shift_moves_whole_rows_and_amplitude_jitter_scales_them():
    batch = _batch()
    out = LightCurveAugmentation(seed=3, time_shift=100.0, amplitude_jitter=0.2)(batch)
    good = ~batch["mask"]
    shift = out["time"][:, 0]
    assert (shift >= 0).all() and (shift < 100).all() and shift.std() > 10
    torch.testing.assert_close(out["time"][good], (batch["time"] + shift[:, None])[good])
    assert (out["time"][batch["mask"]] == 0).all()
    ratio = out["flux"][:, 1] / batch["flux"][:, 1]
    torch.testing.assert_close(out["flux"], batch["flux"] * ratio[:, None])
    assert float(torch.log(ratio).std()) == pytest.approx(0.2, rel=0.3)


def test_probability_seed_and_workers():
    batch = _batch()
    kw = {"time_shift": 50.0, "drop_fraction": 0.2, "noise": 1.0}
    a, b = LightCurveAugmentation(seed=7, **kw), LightCurveAugmentation(seed=7, **kw)
    first_a, first_b = a(batch), b(batch)
    assert all(torch.equal(first_a[k], first_b[k]) for k in batch)  # same seed, same batch
    assert not torch.equal(a(batch)["flux"], first_a["flux"])  # the next batch draws anew
    assert not torch.equal(LightCurveAugmentation(seed=8, **kw)(batch)["flux"], first_a["flux"])
    untouched = LightCurveAugmentation(seed=7, p=0.0, **kw)(batch)
    assert all(torch.equal(untouched[k], batch[k]) for k in batch)
    half = LightCurveAugmentation(seed=7, p=0.5, noise=1.0)(batch)
    changed = (half["flux"] != batch["flux"]).any(1)
    assert 0.3 < float(changed.float().mean()) < 0.7


def test_bad_settings_name_the_argument():
    for kw, name in (({"p": 1.5}, "p"), ({"drop_fraction": 1.0}, "drop_fraction"), ({"noise": -1}, "noise"),
                     ({"time_shift": float("nan")}, "time_shift"), ({"min_points": 0}, "min_points")):  # fmt: skip
        with pytest.raises(StellarValueError, match=name):
            LightCurveAugmentation(**kw)
    with pytest.raises(StellarConfigError, match="flux_err"):
        LightCurveAugmentation()({k: v for k, v in _batch().items() if k != "flux_err"})


def test_datamodule_augments_the_training_loader_only(tmp_path):
    def dm(augment):
        d = LightCurveDataModule(
            ErosSource(str(DATA / "lightcurves" / "eros_subset")), str(tmp_path),
            preprocessing=LightCurvePreprocessing(bands=("b", "r"), n_points=256, min_period=0.1),
            split=GroupSplit(fractions=(0.5, 0.25, 0.25), seed=0, group_key="patch_id"), batch_size=8,
            class_names=["eclipsing_binary", "cepheid", "rr_lyrae", "lpv"], class_key="var_class", targets=[],
            augment=augment,
        )  # fmt: skip
        d.setup("fit")
        return d

    plain, aug = dm(None), dm(LightCurveAugmentation(seed=0, noise=1.0, drop_fraction=0.2, time_shift=10.0))
    torch.manual_seed(0)
    b_plain = next(iter(plain.train_dataloader()))
    torch.manual_seed(0)
    b_aug = next(iter(aug.train_dataloader()))
    assert torch.equal(b_plain["index"], b_aug["index"])  # the same rows, augmented
    assert not torch.equal(b_plain["flux"], b_aug["flux"]) and (~b_aug["mask"]).sum() < (~b_plain["mask"]).sum()
    assert b_aug["flux"].shape == b_plain["flux"].shape and torch.equal(b_aug["features"], b_plain["features"])
    for loader in ("val_dataloader", "test_dataloader", "predict_dataloader"):
        for x, y in zip(getattr(plain, loader)(), getattr(aug, loader)(), strict=True):
            assert all(torch.equal(x[k], y[k]) for k in x)


def test_lightning_estimator_augments_its_training_batches_only():
    from functools import partial

    from stellar.models.components.lightcurve import LightCurveTransformer
    from stellar.models.lightning_estimator import LightningEstimator
    from stellar.models.module import StellarModule

    seen: list[int] = []
    aug = LightCurveAugmentation(seed=0, noise=1.0)

    def spy(batch):
        seen.append(len(batch["label"]))
        return aug(batch)

    arrays = {k: v.numpy() for k, v in _batch(b=40, n=30).items()}
    arrays["label"] = np.arange(40) % 2
    module = partial(StellarModule, LightCurveTransformer(bands=2, d_model=16, n_layers=1, out_dim=16))
    est = LightningEstimator(module, class_names=["a", "b"], max_epochs=2, batch_size=16, augment=spy)
    est.fit(arrays, arrays)
    assert sorted(seen) == sorted([16, 16, 8] * 2)  # every training batch of both epochs, no validation batch
    n = len(seen)
    est.predict_outputs(arrays)
    assert len(seen) == n
