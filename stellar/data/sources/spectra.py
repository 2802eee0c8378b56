"""Sources of spectra datasets: the simulator and MILES-format folders (see :mod:`stellar.data.sources.base`)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.labels import mk_letter_from_sptype
from stellar.data.preprocess.spectra import SpectrumPreprocessing
from stellar.data.simulate.spectra import SimulatedSpectra, SpectrumSimulator
from stellar.data.sources.base import digest, simulated_meta
from stellar.errors import StellarDataError
from stellar.utils import urls

log = logging.getLogger(__name__)

#: ``continuum`` (when the preprocessing keeps it) is ln of the continuum over its median: dimensionless
SPECTRA_UNITS = {"flux": "", "ivar": "", "mask": "", "continuum": "", "log_wave": "dex(Angstrom)"}


def _spectra_write_kwargs(
    processed: dict[str, np.ndarray], meta: pd.DataFrame, preprocessing: SpectrumPreprocessing, provenance: dict
) -> dict[str, Any]:
    fields = ("flux", "ivar", "mask", "continuum")
    return {
        "arrays": {k: processed[k] for k in fields if k in processed},
        "meta": meta,
        "modality": "spectra",
        "grid": {"log_wave": np.asarray(preprocessing.grid)},
        "units": SPECTRA_UNITS,
        "provenance": provenance,
        "attrs": {"preprocessing": preprocessing.to_dict()},
    }


@dataclasses.dataclass
class SimulatedSpectraSource:
    """``n`` spectra from :class:`SpectrumSimulator`, seeded, moved to the rest frame with their radial velocity;
    sky positions uniform on the sphere."""

    n: int = 6000
    seed: int = 0
    simulator: SpectrumSimulator = dataclasses.field(default_factory=SpectrumSimulator)

    def _params(self) -> dict[str, Any]:
        return {"n": self.n, "seed": self.seed, "simulator": dataclasses.asdict(self.simulator)}

    def dataset_name(self, preprocessing: dict[str, Any]) -> str:
        return f"sim_spectra-{digest(self._params(), preprocessing)}"

    def build(self, preprocessing: SpectrumPreprocessing) -> dict[str, Any]:
        sim = self.simulator.simulate(self.n, seed=self.seed)
        meta = simulated_meta("sim", self.n, self.seed)
        meta = pd.concat([meta, sim.labels.reset_index(drop=True)], axis=1)
        return simulated_spectra_kwargs(sim, meta, preprocessing, {"source": "simulator", **self._params()})


def simulated_spectra_kwargs(
    sim: SimulatedSpectra, meta: pd.DataFrame, preprocessing: SpectrumPreprocessing, provenance: dict[str, Any]
) -> dict[str, Any]:
    """Keyword arguments of :meth:`DatasetStore.write` for simulated spectra (rows aligned with ``meta``), moved
    to the rest frame with their radial velocity and put through ``preprocessing``."""
    # to the rest frame, as a survey pipeline does with its measured redshift (MILES is rest-frame too)
    processed = preprocessing(
        10.0**sim.log_wave, sim.flux, ivar=sim.ivar, mask=sim.mask, rv=sim.labels["rv"].to_numpy()
    )
    return _spectra_write_kwargs(processed, meta, preprocessing, provenance)


def der_snr_noise(flux: np.ndarray) -> np.ndarray:
    """Per-spectrum noise σ from the DER_SNR estimator (Stoehr et al. 2008), for spectra without errors.

    σ = 1.482602 / √6 · median(|2fᵢ − fᵢ₋₂ − fᵢ₊₂|) over the finite, non-zero pixels of each row.
    """
    f = np.where(np.isfinite(flux) & (flux != 0), flux, np.nan)
    d = np.abs(2.0 * f[:, 2:-2] - f[:, :-4] - f[:, 4:])
    return 1.482602 / np.sqrt(6.0) * np.nanmedian(d, axis=1)


@dataclasses.dataclass
class MilesSource:
    """A MILES-format folder: ``miles_spectra.npz`` (``wave_air_angstrom``, ``flux``, ``miles_id``) and
    ``miles_params.csv`` (``name, miles_id, sptype, teff, logg, feh`` …), joined on ``miles_id``.

    Wavelengths are in air and converted to vacuum. MILES carries no errors: the inverse variance comes from the
    DER_SNR noise of each spectrum. Exactly-zero pixels (a known defect at the red end of some spectra) and
    non-finite pixels are masked and counted; parameter rows whose id matches no spectrum, and spectra without a
    row, are reported and kept out of the labels (never guessed).
    """

    data_dir: str

    def _files(self) -> tuple[str, str]:
        """The paths or URLs of ``miles_spectra.npz`` and ``miles_params.csv`` (checked to exist)."""
        npz, csv = urls.join(self.data_dir, "miles_spectra.npz"), urls.join(self.data_dir, "miles_params.csv")
        for f in (npz, csv):
            if not urls.is_file(f):
                raise StellarDataError(
                    f"data_dir: MILES folder {self.data_dir!r} lacks {urls.basename(f)} (expected "
                    "miles_spectra.npz and miles_params.csv)"
                )
        return npz, csv

    def dataset_name(self, preprocessing: dict[str, Any]) -> str:
        npz, csv = self._files()
        return f"miles-{digest(urls.read_bytes(npz), urls.read_bytes(csv), preprocessing)}"

    def write_subset(self, names: Sequence[str], folder: str | Path) -> Path:
        """Write a MILES-format folder holding only the stars ``names`` of this one: their spectra (the same
        wavelength array) and their parameter rows, copied unchanged, and nothing else.

        Used to score stars the way a user would hand them over (a bare folder; BSC5 and Hipparcos are found by
        name) and to build test fixtures. A name that is not a star of this folder is an error, naming it, and so is
        a ``folder`` that already holds MILES files (nothing is overwritten).
        """
        npz, csv = self._files()
        with urls.open_url(csv) as f:
            params = pd.read_csv(f, dtype={"miles_id": str})
        wanted = {str(n).strip() for n in names}
        rows = params[params["name"].astype(str).str.strip().isin(wanted)]
        unknown = sorted(wanted - set(rows["name"].astype(str).str.strip()))
        if unknown:
            raise StellarDataError(f"MILES folder {self.data_dir!r} has no star named {unknown}")
        with urls.open_url(npz) as f, np.load(f) as z:
            arrays = dict(z)
        keep = np.isin(np.char.strip(arrays["miles_id"].astype(str)), rows["miles_id"].str.strip())
        out = Path(folder)
        there = [n for n in ("miles_spectra.npz", "miles_params.csv") if (out / n).exists()]
        if there:
            raise StellarDataError(f"{str(out)!r} already holds {there}; write the subset to a new folder")
        out.mkdir(parents=True, exist_ok=True)
        np.savez(
            out / "miles_spectra.npz",
            wave_air_angstrom=arrays["wave_air_angstrom"],
            flux=arrays["flux"][keep],
            miles_id=arrays["miles_id"][keep],
        )
        rows.to_csv(out / "miles_params.csv", index=False)
        return out

    def read(self) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """Air wavelengths (Å), flux (N, M) and the labels table aligned with the spectra."""
        npz, csv = self._files()
        with urls.open_url(npz) as f, np.load(f) as z:
            try:
                wave, flux, ids = z["wave_air_angstrom"], z["flux"], z["miles_id"]
            except KeyError as err:
                raise StellarDataError(f"{npz} lacks array {err}; needs wave_air_angstrom, flux, miles_id") from err
        if flux.ndim != 2 or flux.shape[1] != wave.shape[0] or flux.shape[0] != ids.shape[0]:
            raise StellarDataError(
                f"{npz}: flux {flux.shape} does not match wave {wave.shape} and miles_id {ids.shape}"
            )
        with urls.open_url(csv) as f:
            params = pd.read_csv(f, dtype={"miles_id": str})
        params["miles_id"] = params["miles_id"].str.strip()
        ids = np.asarray([str(i).strip() for i in ids])
        unmatched = sorted(set(params["miles_id"]) - set(ids))
        if unmatched:
            log.warning(
                "MILES: %d parameter row(s) match no spectrum and are ignored: ids %s", len(unmatched), unmatched
            )
        dup = params["miles_id"].duplicated(keep=False)
        if dup.any():
            log.warning("MILES: duplicated miles_id rows dropped: %s", params.loc[dup, "miles_id"].tolist())
            params = params[~dup]
        table = pd.DataFrame({"miles_id": ids}).merge(params, on="miles_id", how="left", validate="one_to_one")
        no_row = table["name"].isna().sum()
        if no_row:
            log.warning(
                "MILES: %d spectrum/spectra have no parameter row: ids %s",
                no_row,
                table.loc[table["name"].isna(), "miles_id"].tolist(),
            )
        return wave, flux, table

    @staticmethod
    def stars(table: pd.DataFrame) -> pd.DataFrame:
        """Identity and label columns of the spectra of :meth:`read`'s ``table``, one row per spectrum:
        ``object_id`` (the star's name, or ``miles_id:<id>`` without a parameter row), ``obs_id``, ``survey``,
        ``ra``/``dec`` (NaN: MILES gives no positions), ``sptype``, ``mk_class`` and ``teff``, ``logg``, ``feh``."""
        sptype = table["sptype"].fillna("")
        return pd.DataFrame(
            {
                "object_id": table["name"].fillna("miles_id:" + table["miles_id"]).to_numpy(),
                "obs_id": ("miles-" + table["miles_id"]).to_numpy(),
                "survey": "miles",
                "ra": np.nan,
                "dec": np.nan,
                "sptype": sptype.to_numpy(),
                "mk_class": [mk_letter_from_sptype(s) or "" for s in sptype],
                "teff": table["teff"].to_numpy(dtype=float),
                "logg": table["logg"].to_numpy(dtype=float),
                "feh": table["feh"].to_numpy(dtype=float),
            }
        )

    def build(self, preprocessing: SpectrumPreprocessing) -> dict[str, Any]:
        wave, flux, table = self.read()
        flux = flux.astype(np.float64)
        bad = ~np.isfinite(flux) | (flux == 0.0)
        log.info(
            "MILES: masking %d zero/non-finite pixels in %d spectra; %d negative pixels kept as measured",
            bad.sum(),
            bad.any(axis=1).sum(),
            (flux < 0).sum(),
        )
        sigma = der_snr_noise(flux)
        ivar = np.where(bad, 0.0, 1.0 / np.maximum(sigma, 1e-12)[:, None] ** 2)
        preprocessing = dataclasses.replace(preprocessing, air=True)  # MILES wavelengths are in air
        processed = preprocessing(wave, np.where(bad, 0.0, flux), ivar=ivar, mask=bad)
        meta = self.stars(table).assign(snr_der=np.nanmedian(np.where(bad, np.nan, flux), axis=1) / sigma)
        prov = {
            "source": "miles",
            "data_dir": urls.display(self.data_dir),
            "files": ["miles_spectra.npz", "miles_params.csv"],
        }
        return _spectra_write_kwargs(processed, meta, preprocessing, prov)
