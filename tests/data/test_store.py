import numpy as np
import pandas as pd
import pytest
import zarr

from stellar.data.store import DatasetStore
from stellar.errors import StellarDataError, StellarValueError


def _table(n=5):
    rng = np.random.default_rng(0)
    meta = pd.DataFrame(
        {
            "object_id": [f"star{i}" for i in range(n)],
            "survey": "sim",
            "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-90, 90, n),
            "teff": np.r_[rng.uniform(3000, 9000, n - 1), np.nan],
            "mk_class": ["G", "K", "", "M", "A"][:n],
        }
    )
    arrays = {
        "flux": rng.normal(1, 0.1, (n, 7)).astype("f4"),
        "mask": rng.random((n, 7)) < 0.2,
    }
    return arrays, meta


@pytest.mark.parametrize("root", ["local", "memory://store-roundtrip"])
def test_round_trip(tmp_path, root):
    store = DatasetStore(tmp_path / "store" if root == "local" else root)
    arrays, meta = _table()
    grid = {"log_wave": np.linspace(3.5, 3.9, 7)}
    ds = store.write(
        "sims",
        arrays,
        meta,
        modality="spectra",
        grid=grid,
        units={"log_wave": "dex(Angstrom)"},
        provenance={"source": "test"},
        chunk_rows=2,
    )
    again = DatasetStore(store.root).open("sims")
    for k, a in arrays.items():
        np.testing.assert_array_equal(again.load(k), a)
        assert again.load(k).dtype == a.dtype
    np.testing.assert_array_equal(again.load("flux", np.array([1, 3])), arrays["flux"][[1, 3]])
    pd.testing.assert_frame_equal(again.meta, meta, check_dtype=False)
    assert list(again.meta.columns) == list(meta.columns)
    np.testing.assert_allclose(again.grid("log_wave"), grid["log_wave"])
    assert again.attrs["provenance"] == {"source": "test"}
    assert again.attrs["units"]["log_wave"] == "dex(Angstrom)"
    assert again.attrs["content_hash"] == ds.attrs["content_hash"]
    assert store.list() == ["sims"]


def test_hash_depends_on_content(tmp_path):
    store = DatasetStore(tmp_path)
    arrays, meta = _table()
    a = store.write("a", arrays, meta, modality="spectra")
    arrays2 = {k: v.copy() for k, v in arrays.items()}
    arrays2["flux"][0, 0] += 1
    b = store.write("b", arrays2, meta, modality="spectra")
    assert a.attrs["content_hash"] != b.attrs["content_hash"]
    c = store.write("c", arrays, meta, modality="spectra")
    assert c.attrs["content_hash"] == a.attrs["content_hash"]


def test_immutable_and_validated(tmp_path):
    store = DatasetStore(tmp_path)
    arrays, meta = _table()
    store.write("x", arrays, meta, modality="spectra")
    with pytest.raises(StellarDataError, match="immutable"):
        store.write("x", arrays, meta, modality="spectra")
    for bad in ["../evil", "a/b", "", ".hidden"]:
        with pytest.raises(StellarValueError, match="not allowed"):
            store.write(bad, arrays, meta, modality="spectra")
    with pytest.raises(StellarValueError, match="required column"):
        store.write("y", arrays, meta.drop(columns=["ra"]), modality="spectra")
    with pytest.raises(StellarValueError, match="rows"):
        store.write("y", {"flux": arrays["flux"][:2]}, meta, modality="spectra")
    with pytest.raises(StellarDataError, match="no complete dataset"):
        store.open("nope")
    with pytest.raises(StellarDataError, match="no field"):
        store.open("x").array("ivar")


def test_get_or_create_uses_what_another_writer_stored_while_it_built(tmp_path):
    """Jobs of a sweep launched together (submitit) each find no dataset, build it, and one stores it first: the
    others open that one when it has their content, and refuse it when it does not."""
    arrays, meta = _table()

    def build_while_another_stores(root, flux_shift: float):
        def build():
            DatasetStore(root).write("sims", arrays, meta, modality="spectra")  # finished while this one built
            return {"arrays": {**arrays, "flux": arrays["flux"] + flux_shift}, "meta": meta, "modality": "spectra"}

        return build

    store = DatasetStore(tmp_path / "same")
    ds = store.get_or_create("sims", build_while_another_stores(tmp_path / "same", 0.0))
    assert ds.attrs["content_hash"] == store.open("sims").attrs["content_hash"]
    np.testing.assert_array_equal(ds.load("flux"), arrays["flux"])
    with pytest.raises(StellarDataError, match="different content"):
        DatasetStore(tmp_path / "other").get_or_create("sims", build_while_another_stores(tmp_path / "other", 1.0))
    with pytest.raises(StellarDataError, match="immutable"):  # a plain write still refuses any stored name
        store.write("sims", arrays, meta, modality="spectra")


def test_crash_during_write_leaves_nothing(tmp_path, monkeypatch):
    store = DatasetStore(tmp_path)
    arrays, meta = _table()
    store.write("kept", arrays, meta, modality="spectra")
    calls = {"n": 0}
    real = zarr.Group.create_array

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(self, *a, **k)

    monkeypatch.setattr(zarr.Group, "create_array", failing)
    with pytest.raises(OSError, match="disk full"):
        store.write("broken", arrays, meta, modality="spectra")
    monkeypatch.undo()
    assert store.list() == ["kept"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    np.testing.assert_array_equal(store.open("kept").load("flux"), arrays["flux"])
    store.write("broken", arrays, meta, modality="spectra")  # the name is free again
    assert store.list() == ["broken", "kept"]
