"""Sources of SED datasets: the photometry simulator, SDSS17-format and Hipparcos-format folders.

Every SED dataset stores ``mag`` and ``mag_err`` (N, B) in native magnitudes (NaN where masked) for the bands
named in its ``bands`` attribute, a ``wave_eff`` grid (Å) and a metadata table; see
:mod:`stellar.data.sources.base` for dataset names.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.preprocess.sed import BAND_INFO, merge_bands
from stellar.data.simulate.sed import SEDSimulator
from stellar.data.sources.base import digest, simulated_meta
from stellar.errors import StellarDataError
from stellar.utils import urls

log = logging.getLogger(__name__)

SED_UNITS = {"mag": "mag", "mag_err": "mag", "wave_eff": "Angstrom"}


def sed_write_kwargs(
    bands: Sequence[str], mag: np.ndarray, mag_err: np.ndarray, meta: pd.DataFrame, provenance: dict[str, Any]
) -> dict[str, Any]:
    """Keyword arguments of :meth:`DatasetStore.write` for an SED dataset over ``bands``."""
    return {
        "arrays": {"mag": mag.astype(np.float32), "mag_err": mag_err.astype(np.float32)},
        "meta": meta.reset_index(drop=True),
        "modality": "sed",
        "grid": {"wave_eff": np.array([BAND_INFO[b].wave_eff for b in bands])},
        "units": SED_UNITS,
        "provenance": provenance,
        "attrs": {"bands": list(bands), "systems": [BAND_INFO[b].system for b in bands]},
    }


@dataclasses.dataclass
class SimulatedSEDSource:
    """``n`` stars from :class:`SEDSimulator`, seeded; sky positions uniform on the sphere."""

    n: int = 20000
    seed: int = 0
    simulator: SEDSimulator = dataclasses.field(default_factory=SEDSimulator)

    def _params(self) -> dict[str, Any]:
        return {"n": self.n, "seed": self.seed, "simulator": self.simulator.to_dict()}

    def dataset_name(self, preprocessing: dict[str, Any] | None = None) -> str:
        return f"sim_sed-{digest(self._params())}"

    def build(self, preprocessing: Any = None) -> dict[str, Any]:
        sim = self.simulator.simulate(self.n, seed=self.seed)
        meta = simulated_meta("simsed", self.n, self.seed)
        meta = pd.concat([meta, sim.labels.reset_index(drop=True)], axis=1)
        return sed_write_kwargs(sim.bands, sim.mag, sim.mag_err, meta, {"source": "simulator", **self._params()})


def _require(data_dir: str, file_name: str, what: str) -> str:
    """The path or URL of ``file_name`` in ``data_dir``, checked to be a file."""
    path = urls.join(data_dir, file_name)
    if not urls.is_file(path):
        raise StellarDataError(f"data_dir={data_dir!r} lacks {file_name} ({what})")
    return path


@dataclasses.dataclass
class SDSS17Source:
    """An SDSS17-format folder: ``sdss17_photometry.csv.gz`` with ``class, alpha, delta, u, g, r, i, z, redshift,
    date`` (the public SDSS DR17 stellar classification table).

    ugriz are SDSS magnitudes without errors (``mag_err`` is NaN); sentinels (-9999…) are masked by
    :func:`merge_bands` and counted. The table carries no object ids, so each row is its own object
    (``sdss17-<row>``); ``alpha``/``delta`` become ``ra``/``dec`` for sky splits. No E(B-V) is given, so the
    magnitudes are not dereddened.
    """

    data_dir: str
    file_name: str = "sdss17_photometry.csv.gz"

    def _file(self) -> str:
        return _require(self.data_dir, self.file_name, "the SDSS17 photometry table")

    def dataset_name(self, preprocessing: dict[str, Any] | None = None) -> str:
        return f"sdss17-{digest(urls.read_bytes(self._file()))}"

    def read(self) -> pd.DataFrame:
        path = self._file()
        with urls.open_url(path, compression="infer") as f:
            table = pd.read_csv(f)
        missing = [c for c in ("class", "alpha", "delta", "u", "g", "r", "i", "z") if c not in table.columns]
        if missing:
            raise StellarDataError(f"{path} lacks column(s) {missing}; it has {list(table.columns)}")
        return table

    def build(self, preprocessing: Any = None) -> dict[str, Any]:
        table = self.read()
        bands = tuple(f"sdss_{b}" for b in "ugriz")
        mag, err, _mask = merge_bands({"sdss": table}, {f"sdss_{b}": ("sdss", b) for b in "ugriz"}, bands=bands)
        ids = [f"sdss17-{i:06d}" for i in range(len(table))]
        meta = pd.DataFrame(
            {
                "object_id": ids,
                "obs_id": ids,
                "survey": "sdss17",
                "ra": table["alpha"].to_numpy(float),
                "dec": table["delta"].to_numpy(float),
                "class": table["class"].astype(str).str.strip().to_numpy(),
                "redshift": table["redshift"].to_numpy(float) if "redshift" in table else np.nan,
                "date": table["date"].astype(str).to_numpy() if "date" in table else "",
            }
        )
        prov = {"source": "sdss17", "data_dir": urls.display(self.data_dir), "files": [self.file_name]}
        return sed_write_kwargs(bands, mag, err, meta, prov)


@dataclasses.dataclass
class HipparcosSource:
    """A Hipparcos giants/dwarfs folder: ``hipparcos_giant_dwarf.csv`` with ``Vmag, Plx, e_Plx, B-V, SpType, Amag,
    TargetClass`` (1 = dwarf IV/V, 0 = giant I–III).

    Bands are Johnson B (= V + (B−V)) and V, without errors. ``parallax``/``parallax_err`` (mas) go to the metadata,
    ``SpType`` too (for reference only: the class was derived from it, so it is never an input), and ``Amag`` is
    dropped (it was computed from |Plx|). The table has no coordinates or ids: each row is its own object
    (``hip-<row>``) and ``ra``/``dec`` are NaN, so use a random or group split, not ``sky``.
    """

    data_dir: str
    file_name: str = "hipparcos_giant_dwarf.csv"

    def _file(self) -> str:
        return _require(self.data_dir, self.file_name, "the Hipparcos giants/dwarfs table")

    def dataset_name(self, preprocessing: dict[str, Any] | None = None) -> str:
        return f"hipparcos-{digest(urls.read_bytes(self._file()))}"

    def build(self, preprocessing: Any = None) -> dict[str, Any]:
        path = self._file()
        with urls.open_url(path, compression="infer") as f:
            table = pd.read_csv(f)
        missing = [c for c in ("Vmag", "Plx", "e_Plx", "B-V", "TargetClass") if c not in table.columns]
        if missing:
            raise StellarDataError(f"{path} lacks column(s) {missing}; it has {list(table.columns)}")
        v = pd.to_numeric(table["Vmag"], errors="coerce").to_numpy(float)
        bv = pd.to_numeric(table["B-V"], errors="coerce").to_numpy(float)
        mag, err, _mask = merge_bands(
            {"hip": {"v": v, "b": v + bv}}, {"johnson_v": ("hip", "v"), "johnson_b": ("hip", "b")}, bands=BANDS_HIP
        )
        target = pd.to_numeric(table["TargetClass"], errors="coerce")
        lum_class = np.where(target == 1, "dwarf", np.where(target == 0, "giant", ""))
        n_bad = int((lum_class == "").sum())
        if n_bad:
            log.warning("Hipparcos: %d row(s) with a TargetClass other than 0/1 are unlabelled", n_bad)
        ids = [f"hip-{i:06d}" for i in range(len(table))]
        meta = pd.DataFrame(
            {
                "object_id": ids,
                "obs_id": ids,
                "survey": "hipparcos",
                "ra": np.nan,
                "dec": np.nan,
                "lum_class": lum_class,
                "sptype": table["SpType"].fillna("").astype(str).to_numpy() if "SpType" in table else "",
                "parallax": pd.to_numeric(table["Plx"], errors="coerce").to_numpy(float),
                "parallax_err": pd.to_numeric(table["e_Plx"], errors="coerce").to_numpy(float),
            }
        )
        prov = {"source": "hipparcos", "data_dir": urls.display(self.data_dir), "files": [self.file_name]}
        return sed_write_kwargs(BANDS_HIP, mag, err, meta, prov)


#: the band order of Hipparcos datasets
BANDS_HIP: tuple[str, ...] = ("johnson_b", "johnson_v")
