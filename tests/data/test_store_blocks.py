"""DatasetStore.write_blocks: the dataset DatasetStore.write stores, from row blocks; nothing left on failure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stellar.data.store import DatasetStore
from stellar.errors import StellarDataError, StellarValueError


def _rows(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    rng = np.random.default_rng(seed)
    arrays = {"flux": rng.normal(size=(n, 7)).astype("f4"), "mask": rng.random((n, 7)) < 0.1}
    meta = pd.DataFrame({"object_id": [f"o{i}" for i in range(n)], "survey": "sim", "ra": rng.uniform(0, 360, n),
                         "dec": rng.uniform(-90, 90, n), "teff": rng.uniform(3000, 9000, n)})  # fmt: skip
    return arrays, meta


def _blocks(arrays, meta, size):
    for s in range(0, len(meta), size):
        yield {k: v[s : s + size] for k, v in arrays.items()}, meta.iloc[s : s + size]


@pytest.mark.parametrize("root", ["local", "memory://chunked-write"])
def test_blocks_store_the_same_dataset_as_a_whole_write(tmp_path, root):
    store = DatasetStore(tmp_path if root == "local" else root)
    arrays, meta = _rows(50)
    grid = {"log_wave": np.linspace(3.6, 3.9, 7)}
    whole = store.write("whole", arrays, meta, modality="spectra", grid=grid, units={"flux": "1"}, chunk_rows=8)
    got = store.write_blocks("blocks", _blocks(arrays, meta, 13), n_rows=50, modality="spectra", grid=grid,
                          units={"flux": "1"}, chunk_rows=8)  # fmt: skip
    assert got.attrs["content_hash"] == whole.attrs["content_hash"] and got.chunk_rows == 8
    for f in arrays:
        np.testing.assert_array_equal(got.load(f), arrays[f])
    pd.testing.assert_frame_equal(got.meta, whole.meta)
    np.testing.assert_array_equal(got.grid("log_wave"), grid["log_wave"])
    assert sorted(store.list()) == ["blocks", "whole"]
    with pytest.raises(StellarDataError, match="immutable"):
        store.write_blocks("blocks", _blocks(arrays, meta, 13), n_rows=50, modality="spectra")


def test_short_or_ragged_blocks_leave_nothing(tmp_path):
    store = DatasetStore(tmp_path)
    arrays, meta = _rows(20)
    with pytest.raises(StellarValueError, match="n_rows is 30"):
        store.write_blocks("short", _blocks(arrays, meta, 8), n_rows=30, modality="spectra")
    ragged = iter([({"flux": arrays["flux"][:5]}, meta.iloc[:4])])
    with pytest.raises(StellarValueError, match="block at row 0"):
        store.write_blocks("ragged", ragged, n_rows=20, modality="spectra")
    assert store.list() == [] and list(tmp_path.iterdir()) == []
