"""Light-curve model inputs, sources and datamodule, on real EROS-2 and Stripe 82 files (tests/data/lightcurves)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from stellar.data.datamodules import LightCurveDataModule
from stellar.data.preprocess.lightcurve_inputs import LightCurvePreprocessing, band_indices
from stellar.data.sources.lightcurve import ErosSource, SesarRRLyraeSource, pad_rows
from stellar.errors import StellarConfigError, StellarDataError, StellarValueError
from stellar.evaluation.splits import GroupSplit
from tests.conftest import DATA

LC = DATA / "lightcurves"


def _sine(n_rows=3, n=300, period=0.7, amp=0.3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 200, (n_rows, n)), axis=1)
    mag = 15.0 + amp * np.sin(2 * np.pi * t / period) + rng.normal(0, 0.01, t.shape)
    return t, mag, np.full_like(t, 0.01)


def test_relative_magnitudes_packing_and_period():
    t, mag, err = _sine()
    prep = LightCurvePreprocessing(bands=("r",), n_points=128)
    out = prep(t, mag, err)
    assert out["flux"].shape == (3, 128) and out["flux"].dtype == np.float32
    assert not out["mask"].any()  # 300 points thinned evenly to 128
    # thinning keeps the baseline: first point at 0 d, last near the last observation
    np.testing.assert_allclose(out["time"][:, -1], t[:, -1] - t[:, 0], rtol=1e-5)
    assert (np.diff(out["time"], axis=1) >= 0).all()
    assert abs(np.median(out["flux"])) < 0.05  # band median removed
    np.testing.assert_allclose(out["best_period"], 0.7, rtol=1e-3)
    names = prep.feature_names()
    assert out["features"].shape == (3, len(names))
    amp = out["features"][:, names.index("r_amplitude")]
    np.testing.assert_allclose(amp, 0.3 * np.sin(0.45 * np.pi), rtol=0.05)  # half the 5–95 % range of a sine
    np.testing.assert_allclose(out["features"][:, names.index("r_median")], 15.0, atol=0.02)


def test_flux_inputs_become_relative_magnitudes_and_bad_points_are_masked(caplog):
    t, mag, err = _sine(n_rows=1, n=60)
    flux = 10 ** (-0.4 * (mag - 15.0))
    flux[0, 5] = -1.0  # non-physical flux
    flux[0, 7] = np.nan
    with caplog.at_level(logging.INFO):
        out = LightCurvePreprocessing(n_points=64, values="flux", clip_sigma=None)(t, flux, err * flux / 1.0857)
    assert "masked 2 points" in caplog.text
    assert out["mask"].sum() == 64 - 58
    ref = LightCurvePreprocessing(n_points=64, values="mag", clip_sigma=None)(
        np.delete(t, [5, 7], axis=1), np.delete(mag, [5, 7], axis=1), np.delete(err, [5, 7], axis=1)
    )
    np.testing.assert_allclose(out["flux"], ref["flux"], atol=1e-5)
    np.testing.assert_allclose(out["flux_err"][~out["mask"]], 0.01, rtol=1e-3)


def test_two_bands_get_their_own_medians_and_a_colour():
    t, mag, err = _sine(n_rows=2, n=200, amp=0.0)  # constant stars: the colour is exact up to noise
    band = np.tile(np.arange(200) % 2, (2, 1))
    mag = mag + np.where(band == 0, 0.8, 0.0)  # b is 0.8 mag fainter than r
    prep = LightCurvePreprocessing(bands=("b", "r"), n_points=256)
    out = prep(t, mag, err, band)
    names = prep.feature_names()
    np.testing.assert_allclose(out["features"][:, names.index("b-r")], 0.8, atol=0.02)
    assert set(np.unique(out["band"][~out["mask"]])) == {0, 1}
    assert abs(out["flux"][~out["mask"]].mean()) < 0.05


def test_bad_arguments_are_named():
    with pytest.raises(StellarValueError, match="bands"):
        LightCurvePreprocessing(bands=("r", "r"))
    with pytest.raises(StellarValueError, match="values"):
        LightCurvePreprocessing(values="counts")  # type: ignore[arg-type]
    with pytest.raises(StellarValueError, match="band indices"):
        LightCurvePreprocessing(bands=("r",))(np.arange(10.0), np.ones(10), None, np.full(10, 1))
    with pytest.raises(StellarValueError, match="unknown band"):
        band_indices(["g", "y"], ("u", "g", "r"))
    with pytest.raises(StellarValueError, match="unknown LightCurvePreprocessing keys"):
        LightCurvePreprocessing.from_dict({"n_points": 32, "window": 3})
    prep = LightCurvePreprocessing(bands=("g", "r"), n_points=32)
    assert LightCurvePreprocessing.from_dict(prep.to_dict()) == prep


def test_eros_source_reads_real_pairs_and_keeps_annotations_out_of_inputs(tmp_path):
    src = ErosSource(str(LC / "eros_subset"))
    prep = LightCurvePreprocessing(bands=("b", "r"), n_points=256)
    kw = src.build(prep)
    meta, arrays = kw["meta"], kw["arrays"]
    raw = pd.read_csv(LC / "eros_subset" / "train.csv")
    assert len(meta) == len(raw) == 60
    assert meta["var_class"].value_counts().to_dict() == {
        "eclipsing_binary": 15,
        "cepheid": 15,
        "rr_lyrae": 15,
        "lpv": 15,
    }
    # the label period is the catalogue period divided by the human-found factor; the annotations stay in meta
    np.testing.assert_allclose(meta["period"], raw["period"] / raw["div_period"])
    assert {"quality", "div_period"} <= set(meta.columns)
    assert set(arrays) == {"time", "flux", "flux_err", "band", "mask", "best_period", "features"}
    # LMC: every star within a few degrees of (80.9, -69.8)
    assert meta["ra"].between(70, 90).all() and meta["dec"].between(-73, -65).all()
    # each star keeps about 2 x 120 epochs (minus clipped points and 25.0 sentinels)
    n_valid = (~arrays["mask"]).sum(axis=1)
    n_raw = raw["num_points_good_b"] + raw["num_points_good_r"]
    assert (n_valid <= 256).all() and np.median(n_valid / n_raw) > 0.95


def test_eros_folder_without_a_pair_is_refused(tmp_path):
    (tmp_path / "test_varlength_features.csv.gz").write_bytes(b"")
    with pytest.raises(StellarDataError, match=r"no matching test\.csv"):
        ErosSource(str(tmp_path)).dataset_name({})
    with pytest.raises(StellarDataError, match="is not a folder"):
        ErosSource(str(tmp_path / "missing")).dataset_name({})


def test_sesar_source_and_datamodule_batches(tmp_path):
    prep = LightCurvePreprocessing(bands=("u", "g", "r", "i", "z"), n_points=384, min_period=0.2)
    dm = LightCurveDataModule(
        SesarRRLyraeSource(str(LC / "sesar_subset")),
        str(tmp_path),
        preprocessing=prep,
        split=GroupSplit(fractions=(0.5, 0.25, 0.25), seed=0),
        batch_size=4,
        class_names=["rr_lyrae_ab", "rr_lyrae_c"],
        class_key="var_class",
        targets=["period", "amplitude"],
        log_targets=["period", "amplitude"],
    )
    dm.setup("fit")
    assert sorted(dm.meta["var_class"].value_counts().tolist()) == [4, 4]
    batch = next(iter(dm.loader("train")))
    assert batch["time"].shape == (4, 384) and batch["band"].dtype == torch.int64
    assert batch["features"].shape == (4, len(prep.feature_names()))
    periods = pd.read_csv(LC / "sesar_subset" / "periods.csv").set_index("Num")["Per"]
    truth = periods.loc[[int(o.split("-")[1]) for o in dm.meta["object_id"]]].to_numpy()
    np.testing.assert_allclose(dm.meta["period"], truth)
    # the model's period input is the periodogram's, never the label (the ``period`` target is its own field)
    part = dm.arrays("train")
    np.testing.assert_array_equal(part["best_period"], dm.dataset.load("best_period")[part["index"]])
    np.testing.assert_allclose(part["period"], truth[part["index"]].astype(np.float32))
    assert not np.array_equal(part["best_period"], part["period"])
    # the r-band amplitude label is that of the stored features; RR Lyrae vary by 0.1-0.7 mag (half range)
    assert dm.meta["amplitude"].between(0.05, 0.8).all()
    # one stored dataset reused
    assert len(list(tmp_path.iterdir())) == 1


def test_a_target_never_replaces_an_input_and_old_stores_still_load(tmp_path, monkeypatch):
    prep = LightCurvePreprocessing(bands=("u", "g", "r", "i", "z"), n_points=64, min_period=0.2)

    def datamodule() -> LightCurveDataModule:
        return LightCurveDataModule(
            SesarRRLyraeSource(str(LC / "sesar_subset")), str(tmp_path), preprocessing=prep,
            split=GroupSplit(fractions=(0.5, 0.25, 0.25), seed=0), batch_size=4,
            class_names=["rr_lyrae_ab", "rr_lyrae_c"], class_key="var_class", targets=["period"],
        )  # fmt: skip

    dm = datamodule()
    dm.setup("fit")
    periodogram = dm.dataset.load("best_period")
    # a store written before the rename holds the periodogram period as the array "period": it is read as best_period
    monkeypatch.setattr(type(dm.dataset), "fields", property(lambda self: ["time", "flux", "flux_err", "band",
                                                                           "mask", "period", "features"]))  # fmt: skip
    monkeypatch.setattr(type(dm.dataset), "load", lambda self, name, rows=None: {"period": periodogram}.get(name,
                        np.zeros((len(periodogram), 64), dtype=np.float32)))  # fmt: skip
    old = datamodule()
    old.setup("fit")
    assert set(old.arrays("train")) >= {"best_period", "period"}
    np.testing.assert_array_equal(old.arrays("train")["best_period"], periodogram[old.arrays("train")["index"]])
    # a datamodule whose input fields include a target's name is refused: the label would replace the input
    monkeypatch.setattr(LightCurveDataModule, "fields", ("time", "flux", "flux_err", "band", "mask", "period"))
    with pytest.raises(StellarConfigError, match=r"targets \['period'\] have the names of input fields"):
        datamodule().setup("fit")


def test_pad_rows_refuses_nothing():
    with pytest.raises(StellarDataError, match="no light curves"):
        pad_rows([])
