"""Sim/obs pairs: each MILES star's observed spectrum and the simulator's spectrum at its catalogue labels.

:class:`MilesSimObsSource` is a paired source (:mod:`stellar.data.sources.paired`) with two modalities of one
object: ``spectrum``, the observed MILES spectrum (built exactly as
:class:`~stellar.data.sources.spectra.MilesSource` builds it), and ``spectrum_sim``, the
:class:`~stellar.data.simulate.spectra.SpectrumSimulator` spectrum rendered at the star's catalogue Teff, log g and
[Fe/H]. Both go through the same preprocessing (the datamodule of each modality), so they share the wavelength grid.
``model=contrastive`` then pulls an observed spectrum toward the simulated one of the same labels
(``experiment=miles_simobs_pretrain``).

The simulated spectrum is made *from the labels*, so it exists only for the training objects of the split: the source
is given the split (the same configuration as the datamodule's, ``${split}``), applies it to its object table, whose
rows and ``object_id`` are those of the ``datamodule=miles`` dataset (so the parts are those of fine-tuning on
``datamodule=miles`` with the same split), and renders ``spectrum_sim`` for the training objects only; validation and
test stars never get one, in any run. ``MultiModalDataModule(train_only=["spectrum_sim"])`` checks it again after
its own split.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.objects import ObjectTable
from stellar.data.preprocess.spectra import SpectrumPreprocessing
from stellar.data.simulate.spectra import SpectrumSimulator
from stellar.data.sources.base import digest
from stellar.data.sources.paired import _Paired
from stellar.data.sources.spectra import MilesSource, simulated_spectra_kwargs
from stellar.errors import StellarConfigError, StellarDataError
from stellar.utils import urls

log = logging.getLogger(__name__)

#: the labels a simulated spectrum is rendered at
SIM_LABELS: tuple[str, ...] = ("teff", "logg", "feh")


@dataclasses.dataclass
class MilesSimObsSource(_Paired):
    """A MILES-format folder as sim/obs pairs: the observed spectrum and the simulated one at the same labels.

    Objects are the rows of the MILES spectra dataset (``object_id`` the star's name, as
    :class:`~stellar.data.sources.spectra.MilesSource` gives it), with their labels (``teff``, ``logg``, ``feh``,
    ``mk_class``). ``has_spectrum_sim`` is true for the training objects of ``split`` whose three labels are finite;
    only those are rendered (noise-free apart from ``snr``, at rest, ``rv = 0`` as MILES is rest-frame).

    Parameters
    ----------
    data_dir : str
        The MILES folder (``miles_spectra.npz``, ``miles_params.csv``).
    split : callable
        The split (a :class:`~stellar.evaluation.splits.GroupSplit`, ``KFold``…: called on the object table, it
        returns a result with ``train`` row indices); the same configuration as the fine-tuning datamodule's.
    simulator : SpectrumSimulator
        The spectrum simulator.
    snr : float
        Signal-to-noise ratio per pixel of the simulated spectra (MILES spectra have a median S/N of about 100).
    seed : int
        Seed of the simulated noise.
    """

    data_dir: str
    split: Callable[[pd.DataFrame], Any] | None = None
    simulator: SpectrumSimulator = dataclasses.field(default_factory=SpectrumSimulator)
    snr: float = 100.0
    seed: int = 0

    prefix = "miles_simobs"
    modalities = ("spectrum", "spectrum_sim")

    def __post_init__(self) -> None:
        if self.split is None:
            raise StellarConfigError(
                "split: MilesSimObsSource needs the split (split=${split}): the simulated spectra are built from "
                "labels and only for the training objects"
            )
        if not float(self.snr) > 0:
            raise StellarConfigError(f"snr must be > 0; got {self.snr}")

    @functools.cached_property
    def _miles(self) -> MilesSource:
        return MilesSource(self.data_dir)

    @functools.cached_property
    def _meta(self) -> pd.DataFrame:
        """The MILES spectra's metadata (rows and ``object_id`` of the ``datamodule=miles`` dataset) and labels."""
        _, _, table = self._miles.read()
        return MilesSource.stars(table).drop(columns=["sptype"]).assign(epoch=np.nan)

    @functools.cached_property
    def training_objects(self) -> list[str]:
        """Object ids of the split's training part (sorted): the only objects that can have ``spectrum_sim``."""
        result = self.split(self._meta)  # type: ignore[misc]
        return sorted(self._meta["object_id"].iloc[np.asarray(result.train, dtype=int)].astype(str))

    def _sim_rows(self) -> pd.DataFrame:
        """The training objects with finite labels, in table order: the rows of ``spectrum_sim``."""
        meta = self._meta
        finite = np.isfinite(meta[list(SIM_LABELS)].to_numpy(float)).all(axis=1)
        return meta[meta["object_id"].isin(self.training_objects).to_numpy() & finite].reset_index(drop=True)

    def fingerprint(self) -> dict[str, Any]:
        files = self._miles._files()
        return {
            "files": [digest(urls.read_bytes(f)) for f in files],
            "simulator": self.simulator.to_dict(),
            "snr": float(self.snr),
            "seed": int(self.seed),
            # the split decides which objects get a simulated spectrum: each fold is its own dataset
            "training_objects": digest(self.training_objects),
        }

    def objects(self) -> ObjectTable:
        t = self._meta.drop(columns=["obs_id"]).copy()
        t["has_spectrum"] = True
        t["has_spectrum_sim"] = t["object_id"].isin(set(self._sim_rows()["object_id"])).to_numpy()
        return ObjectTable(table=t, provenance=[{"step": "miles_simobs", **self.fingerprint()}])

    def build_spectrum(self, preprocessing: SpectrumPreprocessing) -> dict[str, Any]:
        return self._miles.build(preprocessing)

    def build_spectrum_sim(self, preprocessing: SpectrumPreprocessing) -> dict[str, Any]:
        rows = self._sim_rows()
        outside = set(rows["object_id"]) - set(self.training_objects)
        if outside:  # by construction never; a guard against a future edit leaking labels
            raise StellarDataError(f"spectrum_sim would be built for non-training objects {sorted(outside)[:10]}")
        teff, logg, feh = (rows[c].to_numpy(float) for c in SIM_LABELS)
        sim = self.simulator.render(teff, logg, feh, rv=0.0, snr=float(self.snr), seed=int(self.seed))
        meta = rows.assign(obs_id=rows["object_id"] + ":sim", survey="simulated")
        log.info("sim/obs: %d simulated spectra for the %d training objects", len(rows), len(self.training_objects))
        prov = {"source": "miles_simobs", **self.fingerprint(), "n_sim": len(rows)}
        return simulated_spectra_kwargs(sim, meta, preprocessing, prov)
