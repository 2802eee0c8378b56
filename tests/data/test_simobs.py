"""Sim/obs pairs on MILES: each star's observed spectrum and the simulated one at its catalogue labels, the simulated
spectra made for training objects only (the parts are those of datamodule=miles with the same split)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from stellar.data.datamodules.multimodal import MultiModalDataModule
from stellar.data.simulate.spectra import SpectrumSimulator
from stellar.data.sources.simobs import MilesSimObsSource
from stellar.errors import StellarConfigError, StellarDataError
from tests.conftest import DATA, REPO

MILES = DATA / "miles_subset"
FOLD = ["split=group_kfold", "split.fold=1", "split.base.seed=7"]


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"datamodule.data_dir={MILES}", *overrides])


def _dm(store: Path, *overrides: str):
    cfg = _cfg(f"paths.store_dir={store}", *overrides)
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("simobs_store")


@pytest.fixture(scope="module")
def simobs(store) -> MultiModalDataModule:
    return _dm(store, "datamodule=miles_simobs", *FOLD)


def test_the_simulated_spectrum_is_the_simulator_at_the_stars_catalogue_labels_on_the_same_grid(simobs):
    params = pd.read_csv(MILES / "miles_params.csv").set_index("name")
    sim, obs = simobs.datasets["spectrum_sim"], simobs.datasets["spectrum"]
    np.testing.assert_array_equal(sim.grid("log_wave"), obs.grid("log_wave"))  # one grid, one preprocessing
    assert sim.attrs["preprocessing"]["continuum_channel"] == obs.attrs["preprocessing"]["continuum_channel"]
    ids = sim.meta["object_id"].astype(str).to_numpy()
    assert len(ids) > 10
    for c in ("teff", "logg", "feh"):  # the catalogue labels of the same star
        np.testing.assert_allclose(sim.meta[c].to_numpy(float), params.loc[ids, c].to_numpy(float))
    # the stored spectrum is the simulator rendered at those labels (rest frame, snr 100, seed 0), preprocessed
    pre = instantiate(_cfg("datamodule=miles_simobs").datamodule.modalities.spectrum_sim.preprocessing)
    # the render's noise is drawn for the whole batch: render every row as the source does
    rendered = SpectrumSimulator().render(
        *(params.loc[ids, c].to_numpy(float) for c in ("teff", "logg", "feh")), rv=0.0, snr=100.0, seed=0
    )
    zero_rv = np.zeros(len(ids))
    expected = pre(10.0**rendered.log_wave, rendered.flux, ivar=rendered.ivar, mask=rendered.mask, rv=zero_rv)
    np.testing.assert_allclose(sim.load("flux"), expected["flux"], rtol=1e-5, atol=1e-6)
    # each object is served with its own two spectra: the observed one is the MILES row of the same star
    train = simobs.arrays("train")
    both = train["present"]["spectrum"] & train["present"]["spectrum_sim"]
    assert both.sum() == len(ids)
    obs_row = {o: i for i, o in enumerate(obs.meta["object_id"].astype(str))}
    served_ids = simobs.meta["object_id"].to_numpy()[train["index"][both]]
    np.testing.assert_array_equal(train["spectrum"]["flux"][both], obs.load("flux")[[obs_row[o] for o in served_ids]])


def test_simulated_spectra_exist_for_training_objects_of_the_miles_split_only(simobs, store):
    miles = _dm(store, "datamodule=miles", *FOLD)  # the fine-tuning datamodule, same split
    ids = miles.meta["object_id"].astype(str).to_numpy()
    parts = {p: set(ids[idx]) for p, idx in miles.split_result.parts().items()}
    sim_ids = set(simobs.datasets["spectrum_sim"].meta["object_id"].astype(str))
    assert sim_ids and sim_ids <= parts["train"]  # built for training objects only: nothing else exists in the store
    assert not sim_ids & (parts["val"] | parts["test"])
    own = simobs.meta["object_id"].to_numpy()
    for p in ("train", "val", "test"):  # the same parts as datamodule=miles
        assert set(own[simobs.split_result.parts()[p]]) == parts[p]
    for p in ("val", "test"):
        arr = simobs.arrays(p)
        assert arr["present"]["spectrum"].all() and not arr["present"]["spectrum_sim"].any()
    assert simobs.split_result.audit["modalities"]["spectrum_sim"]["rows"]["val"] == 0


def test_a_datamodule_split_that_differs_from_the_sources_is_refused(store):
    # the source renders for the training objects of fold 1; a datamodule on fold 2 would serve some as val/test
    cfg = _cfg(f"paths.store_dir={store}", "datamodule=miles_simobs", *FOLD)
    other = _cfg("datamodule=miles", "split=group_kfold", "split.fold=2", "split.base.seed=7")
    dm = instantiate(cfg.datamodule, split=instantiate(other.split))
    with pytest.raises(StellarDataError, match=r"train_only modality 'spectrum_sim' is present for .* object"):
        dm.setup()


def test_the_source_needs_a_split_and_train_only_must_name_a_modality(store):
    with pytest.raises(StellarConfigError, match="needs the split"):
        MilesSimObsSource(str(MILES))
    with pytest.raises(InstantiationException, match="train_only modalities \\['sed'\\] are not among"):
        _dm(store, "datamodule=miles_simobs", *FOLD, "datamodule.train_only=[sed]")
    source = MilesSimObsSource(str(MILES), split=instantiate(_cfg("datamodule=miles", *FOLD).split))
    moved = dataclasses.replace(
        source, split=instantiate(_cfg("datamodule=miles", "split=group_kfold", "split.fold=2").split)
    )
    assert source.objects_name() != moved.objects_name()  # each fold's sim spectra are their own dataset
