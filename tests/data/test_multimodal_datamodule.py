"""The multi-modal datamodule: per-object batches with presence masks, splits by object, the real MILES paired set."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from stellar.data.datamodules.multimodal import MultiModalDataModule
from stellar.errors import StellarConfigError
from tests.conftest import DATA, REPO

# a small, fast paired simulation: short light-curve baselines keep the periodograms cheap
FAST = [
    "datamodule.source.n=90",
    "datamodule.source.seed=3",
    "datamodule.source.progress=false",
    "datamodule.source.simulator.lightcurve.n_points=40",
    "datamodule.modalities.lightcurve.preprocessing.n_points=32",
    "datamodule.modalities.lightcurve.preprocessing.min_period=1.0",
    "datamodule.batch_size=16",
]


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def _datamodule(store: Path, *overrides: str, split: str = "group") -> MultiModalDataModule:
    cfg = _compose(["datamodule=multimodal", f"split={split}", *FAST, f"datamodule.store_root={store}", *overrides])
    return instantiate(cfg.datamodule, split=instantiate(cfg.split))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One store for the module: the paired datasets are built once and reused by every datamodule."""
    return tmp_path_factory.mktemp("paired_store")


@pytest.fixture(scope="module")
def dm(store) -> MultiModalDataModule:
    dm = _datamodule(store)
    dm.setup()
    return dm


def test_store_holds_one_dataset_per_modality_and_the_object_table(dm, store):
    names = dm.store.list()
    assert dm.dataset_name in names and all(ds.name in names for ds in dm.datasets.values())
    assert sorted(dm.datasets) == ["lightcurve", "sed", "spectrum"]
    objects = dm.store.open(dm.dataset_name)
    assert objects.attrs["modality"] == "objects" and objects.attrs["provenance"]["steps"][0]["n"] == 90
    for m, ds in dm.datasets.items():
        assert ds.attrs["provenance"]["objects"] == dm.dataset_name and ds.attrs["provenance"]["modality"] == m
        # each modality's rows are exactly the objects the table says have it
        has = objects.meta.loc[objects.meta[f"has_{m}"], "object_id"]
        assert sorted(ds.meta["object_id"]) == sorted(has)


def test_batch_shapes_presence_masks_and_padding(dm):
    batch = dm.part("train").__getitems__(list(range(len(dm.part("train")))))
    n = len(dm.part("train"))
    idx = batch["index"].numpy()
    for m in ("spectrum", "sed", "lightcurve"):
        present = batch["present"][m]
        assert present.shape == (n,) and present.dtype == torch.bool
        assert np.array_equal(present.numpy(), dm.meta[f"has_{m}"].to_numpy()[idx])
        assert 0 < present.sum() < n  # both cases occur at these rates
        for field, x in batch[m].items():
            assert x.shape[0] == n, (m, field)
            absent = x[~present]
            assert absent.all() if x.dtype == torch.bool else (absent == 0).all(), (m, field)
    spec = batch["spectrum"]
    assert spec["flux"].shape == spec["ivar"].shape == spec["mask"].shape == spec["continuum"].shape
    assert spec["flux"].shape[1] == len(dm.modules["spectrum"].log_wave)
    assert batch["lightcurve"]["time"].shape == (n, 32) and batch["lightcurve"]["best_period"].shape == (n,)
    assert batch["sed"]["features"].shape == (n, len(dm.modules["sed"].feature_names))
    present = batch["present"]["spectrum"]
    assert (batch["spectrum"]["ivar"][present].sum(dim=1) > 0).all()
    # labels and targets are the object table's
    assert np.allclose(batch["teff"].numpy(), dm.meta["teff"].to_numpy()[idx])
    assert set(batch) >= {"label", "teff", "logg", "feh", "index", "present"}


def test_rows_served_are_the_objects_own(dm):
    """Each object's modality row is its own: the stored per-modality labels match the object's."""
    ds = dm.part("test")
    for m, stored in dm.datasets.items():
        r = ds.rows[m].numpy()
        objects = dm.meta["object_id"].to_numpy()[ds.common["index"].numpy()]
        have = r >= 0
        assert (stored.meta["object_id"].to_numpy()[r[have]] == objects[have]).all()
        assert np.allclose(
            stored.meta["teff"].to_numpy()[r[have]], dm.meta["teff"].to_numpy()[ds.common["index"].numpy()][have]
        )


def test_collate_of_items_equals_the_batched_fetch_and_the_dataloader_yields_dicts(dm):
    ds = dm.part("train")
    idx = list(range(12))
    items = [ds[i] for i in idx]
    assert any(it["spectrum"] is None for it in items) and any(it["spectrum"] is not None for it in items)
    a, b = ds.collate(items), ds.__getitems__(idx)
    for m in dm.modalities:
        assert torch.equal(a["present"][m], b["present"][m])
        for k in b[m]:
            assert torch.equal(a[m][k].isnan(), b[m][k].isnan()) if b[m][k].is_floating_point() else True
            assert torch.equal(a[m][k].nan_to_num(), b[m][k].nan_to_num()), (m, k)
    batch = next(iter(dm.train_dataloader()))
    assert batch["spectrum"]["flux"].shape[0] == 16 and batch["present"]["sed"].shape == (16,)


@pytest.mark.parametrize("split", ["random", "group", "sky", "group_kfold"])
def test_no_object_straddles_parts_under_any_split_strategy(store, split):
    dm = _datamodule(store, split=split)
    dm.setup()
    audit = dm.split_result.audit["modalities"]
    per_part: dict[str, set[str]] = {}
    for part, ds in dm._parts.items():
        ids = set()
        for m, stored in dm.datasets.items():
            r = ds.rows[m].numpy()
            ids |= set(stored.meta["object_id"].to_numpy()[r[r >= 0]])
        per_part[part] = ids
        assert audit["spectrum"]["rows"][part] == int((ds.rows["spectrum"] >= 0).sum())
    parts = list(per_part)
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            assert not per_part[a] & per_part[b], (split, a, b)
    assert all(audit[m]["objects_in_several_parts"] == 0 for m in dm.modalities)
    assert sum(len(s) for s in per_part.values()) == len(dm.meta)  # every served object in exactly one part


def test_min_modalities_leaves_out_objects_with_fewer(store):
    one = _datamodule(store)
    two = _datamodule(store, "datamodule.min_modalities=2")
    one.setup()
    two.setup()
    count = one.meta[[f"has_{m}" for m in one.modalities]].sum(axis=1)
    assert len(two.meta) == int((count >= 2).sum()) < len(one.meta)


def test_same_seed_same_objects(store, tmp_path):
    a = _datamodule(store)
    b = _datamodule(tmp_path)  # a fresh store: rebuilt from the seed
    a.setup()
    b.setup()
    assert a.dataset_name == b.dataset_name
    assert a.store.open(a.dataset_name).attrs["content_hash"] == b.store.open(b.dataset_name).attrs["content_hash"]
    for m in a.modalities:
        assert a.datasets[m].attrs["content_hash"] == b.datasets[m].attrs["content_hash"]


def test_bad_configuration_is_a_clear_error(store):
    radio = ["+datamodule.modalities.radio._target_=stellar.data.datamodules.sed.SEDDataModule",
             "+datamodule.modalities.radio._partial_=true"]  # fmt: skip
    for overrides, match in (
        (radio, r"modalities \['radio'\] are not in"),
        (["datamodule.min_modalities=4"], "min_modalities"),
    ):
        with pytest.raises(InstantiationException) as err:
            _datamodule(store, *overrides)
        assert isinstance(err.value.__cause__, StellarConfigError) and re.search(match, str(err.value.__cause__))
    dm = _datamodule(store, "datamodule.targets=[teff,radial_thing]")
    with pytest.raises(StellarConfigError, match="radial_thing"):
        dm.setup()


def test_miles_paired_set_from_a_miles_folder_bsc5_and_hipparcos(tmp_path):
    """The real paired set on 43 MILES stars: BSC5 photometry by HD number, Hipparcos parallaxes by position."""
    cfg = _compose(
        [
            "datamodule=miles_paired",
            f"datamodule.data_dir={DATA / 'miles_subset'}",
            f"datamodule.source.bsc5={DATA / 'paired' / 'bsc5_miles_subset.dat'}",
            f"datamodule.source.hipparcos={DATA / 'paired' / 'hip2_miles_subset.dat'}",
            f"datamodule.store_root={tmp_path}",
            "split=group",
        ]
    )
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    assert dm.modalities == ["spectrum", "sed"]
    dm.setup()
    sed = dm.datasets["sed"]
    assert sed.attrs["bands"] == ["johnson_u", "johnson_b", "johnson_v", "cousins_i"]
    # 23 of the subset's HD stars are in BSC5; the Hipparcos lines hold 22 of their counterparts
    assert sed.n_rows == 23 and int(np.isfinite(sed.meta["parallax"].to_numpy(float)).sum()) == 22
    # B - V and U - B are BSC5's: B = V + (B-V)
    from stellar.data.catalogs import read_bsc5

    bsc5 = read_bsc5(DATA / "paired" / "bsc5_miles_subset.dat").set_index("hr")
    mag = sed.load("mag")
    hr = sed.meta["hr"].astype(int).to_numpy()
    assert np.allclose(mag[:, 1] - mag[:, 2], bsc5.loc[hr, "b_v"].to_numpy(), atol=1e-5, equal_nan=True)
    # Cousins I is BSC5's V minus the Hipparcos V - I of the matched star; NaN without a Hipparcos match
    from stellar.data.catalogs import read_hipparcos

    hip = read_hipparcos(DATA / "paired" / "hip2_miles_subset.dat").set_index("hip")
    has = sed.meta["hip"].astype(str).to_numpy() != ""
    v_i = hip.loc[sed.meta["hip"][has].astype(int).to_numpy(), "v_i"].to_numpy()
    assert np.isfinite(v_i).all() and np.ptp(v_i) > 0.5  # real colours, A to K stars
    assert np.allclose(mag[has, 2] - mag[has, 3], v_i, atol=1e-5)
    assert np.isnan(mag[~has, 3]).all() and (~has).sum() == 1
    # the default reads every stored band: I and V - I are features, and the parallax is column 8 (the cascade's)
    names = dm.modules["sed"].feature_names
    assert names == [
        "mag_johnson_u",
        "mag_johnson_b",
        "mag_johnson_v",
        "mag_cousins_i",
        "johnson_u-johnson_b",
        "johnson_b-johnson_v",
        "johnson_v-cousins_i",
        "absmag_johnson_v",
        "parallax",
        "parallax_err",
    ]
    # the model configs that read SED columns by position name the right ones for this layout
    for model in ("late_fusion_cascade", "late_fusion_cascade_kr"):
        spec = _compose([f"model={model}"]).model.cascade
        assert (names[spec.v_column], names[spec.parallax_column]) == ("mag_johnson_v", "parallax"), model
    parts = _compose(["model=late_fusion_joint"]).model.members.joint.representation.parts
    assert [names[c] for c in parts[1].columns] == [
        "johnson_u-johnson_b", "johnson_b-johnson_v", "absmag_johnson_v", "parallax_err"]  # fmt: skip
    columns = _compose(["model=late_fusion_sed_kernel_ridge"]).model.members.sed.representation.parts[0].columns
    assert [names[c] for c in columns] == ["johnson_u-johnson_b", "johnson_b-johnson_v", "absmag_johnson_v"]
    objects = dm.meta
    assert int(objects["has_sed"].sum()) == 23
    assert "has_lightcurve" not in objects and "lightcurve" not in dm.part("test").rows
    batch = dm.part("train").__getitems__(list(range(len(dm.part("train")))))
    assert set(batch["present"]) == {"spectrum", "sed"}
    assert batch["sed"]["features"].shape[1] == len(dm.modules["sed"].feature_names)
    assert "johnson_v_abs" in " ".join(dm.modules["sed"].feature_names) or any(
        "abs" in f for f in dm.modules["sed"].feature_names
    )
    assert dm.split_result.audit["modalities"]["sed"]["objects_in_several_parts"] == 0
    assert os.path.basename(dm.store.root) == tmp_path.name


def test_restricted_part_keeps_objects_with_the_subset_and_masks_the_rest(dm):
    full = dm.part("train")
    sub = full.restricted(["spectrum", "sed"])
    batch = sub.__getitems__(list(range(len(sub))))
    want = (full.rows["spectrum"] >= 0) & (full.rows["sed"] >= 0)
    assert len(sub) == int(want.sum()) and torch.equal(batch["index"], full.common["index"][want])
    assert batch["present"]["spectrum"].all() and batch["present"]["sed"].all()
    assert not batch["present"]["lightcurve"].any() and batch["lightcurve"]["mask"].all()
    assert (batch["lightcurve"]["flux"] == 0).all()
    with pytest.raises(StellarConfigError, match="non-empty subset"):
        full.restricted(["radio"])
    assert len(dm.subset_loader("test", ["lightcurve"]).dataset) == int((dm.part("test").rows["lightcurve"] >= 0).sum())
