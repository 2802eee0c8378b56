import logging

import numpy as np
import pytest
import torch

from stellar.data.datamodules import SpectraDataModule
from stellar.data.labels import MK_CLASSES
from stellar.data.preprocess.spectra import SpectrumPreprocessing
from stellar.data.simulate.spectra import SpectrumSimulator
from stellar.data.sources import MilesSource, SimulatedSpectraSource, der_snr_noise
from stellar.errors import StellarConfigError, StellarDataError
from stellar.evaluation.splits import GroupSplit


def test_simulated_datamodule_shapes_labels_and_reuse(tmp_path):
    src = SimulatedSpectraSource(n=80, seed=5, simulator=SpectrumSimulator())
    dm = SpectraDataModule(src, str(tmp_path), split=GroupSplit(seed=0), batch_size=16)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    n_pix = len(SpectrumPreprocessing().grid)
    assert batch["flux"].shape == (16, n_pix) and batch["flux"].dtype == torch.float32
    assert batch["mask"].dtype == torch.bool and batch["ivar"].shape == (16, n_pix)
    assert torch.isfinite(batch["flux"]).all()
    assert (batch["ivar"][batch["mask"]] == 0).all()
    assert set(batch["label"].tolist()) <= set(range(len(MK_CLASSES)))
    assert sum(len(dm.part(p)) for p in ("train", "val", "test")) == 80
    # built once: a second datamodule on the same store and source reuses the stored dataset
    h = dm.dataset.attrs["content_hash"]
    dm2 = SpectraDataModule(src, str(tmp_path), split=GroupSplit(seed=0))
    dm2.setup()
    assert dm2.dataset.attrs["content_hash"] == h and len(list(tmp_path.iterdir())) == 1
    # labels and targets in a batch match the stored table for those rows
    idx = batch["index"].numpy()
    np.testing.assert_allclose(batch["teff"].numpy(), dm.meta["teff"].to_numpy()[idx], rtol=1e-6)
    teff_mean, teff_std = dm.target_stats["teff"]
    assert 3.4 < teff_mean < 4.6 and teff_std > 0


def test_miles_source_handles_known_defects(miles_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        dm = SpectraDataModule(MilesSource(str(miles_dir)), str(tmp_path), split=None)
        dm.setup()
    text = caplog.text
    assert "duplicated miles_id" in text and "'22'" in text  # the row of HD044691A duplicates star 22
    assert "no parameter row" in text and "221" in text
    assert "masking 4 zero/non-finite pixels" in text  # 1 + 3 zero pixels of two library spectra
    meta = dm.meta.set_index("obs_id")
    assert np.isnan(meta.loc["miles-221", "teff"]) and meta.loc["miles-221", "label"] == -1
    assert np.isnan(meta.loc["miles-22", "teff"])  # ambiguous: not guessed
    assert len(dm.part("test")) == 43  # split=None scores every row
    flux = dm.part("test").tensors["flux"]
    assert torch.isfinite(flux).all()
    good = ~dm.part("test").tensors["mask"]
    assert abs(float(flux[good].median()) - 1.0) < 0.05  # continuum-normalised


def test_miles_folder_errors(tmp_path):
    with pytest.raises(StellarDataError, match=r"lacks miles_spectra\.npz"):
        MilesSource(str(tmp_path)).read()


def test_unknown_target_is_a_config_error(tmp_path, miles_dir):
    dm = SpectraDataModule(MilesSource(str(miles_dir)), str(tmp_path), targets=["teff", "vsini"])
    with pytest.raises(StellarConfigError, match="vsini"):
        dm.setup()


def test_der_snr_on_white_noise():
    rng = np.random.default_rng(1)
    flux = 1.0 + rng.normal(0, 0.02, (3, 5000))
    np.testing.assert_allclose(der_snr_noise(flux), 0.02, rtol=0.05)
