"""``/predict/spectral``: spectra through the training ``SpectrumPreprocessing``."""

# no ``from __future__ import annotations``: LitServe reads the request class of decode_request from its annotation

import dataclasses
from collections.abc import Hashable
from typing import Any

import numpy as np

from stellar.errors import StellarValueError
from stellar.serving.base import Failure, Job, StellarAPI, float_rows
from stellar.serving.files import spectrum_arguments
from stellar.serving.inputs import spectra_bodies
from stellar.serving.schemas import SpectralRequest


class SpectralAPI(StellarAPI):
    """``/predict/spectral``: spectra through :class:`~stellar.data.preprocess.spectra.SpectrumPreprocessing`.

    Flux without ``wavelengths`` is placed on the model's grid by one rule: the M samples are taken to cover the
    grid's range evenly in log λ (rest frame, vacuum), i.e. sample j is centred at
    ``log10 λ_j = e0 + (j + ½)(e1 − e0)/M`` with ``e0``, ``e1`` the grid's outer pixel edges. A spectrum of the
    grid's own length is therefore taken as on the grid, and a shorter one is spread over the whole range.
    """

    modality = "spectral"
    record_kind = "spectra"

    def check_preprocessing(self, prep: Any) -> None:
        if prep is None or not hasattr(prep, "grid"):
            raise StellarValueError(f"model {self.model_name!r} stores no spectrum preprocessing (with a grid)")

    def bodies(self, data: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], list[list[str]]]:
        """Bodies of spectra held in Python: :func:`~stellar.serving.inputs.spectra_bodies`."""
        return spectra_bodies(data, **kwargs)

    def record_arguments(self, record: Any) -> tuple[dict[str, Any], list[str]]:
        """Arguments of :meth:`bodies` for a survey file's record: :func:`~stellar.serving.files.spectrum_arguments`."""
        return spectrum_arguments(record)

    def decode_request(self, request: SpectralRequest) -> Job | Failure:
        return self._decode(request)

    def use_preprocessing(self, prep: Any) -> None:
        super().use_preprocessing(prep)
        g = np.asarray(prep.grid)  # computed once here: the grid property builds it anew on every access
        step = float(g[1] - g[0])
        #: log10 λ of the outer pixel edges of the model's grid
        self.grid_edges = float(g[0] - step / 2), float(g[-1] + step / 2)

    def to_job(self, request: SpectralRequest) -> Job:
        flux = float_rows(request.spectra)
        e0, e1 = self.grid_edges
        assumed = []
        if request.wavelengths is None:
            lengths = sorted({len(f) for f in flux})
            assumed.append(
                f"no wavelengths: the {'/'.join(map(str, lengths))} samples per spectrum are taken to span the model "
                f"grid {10**e0:.1f}-{10**e1:.1f} Å (rest frame, vacuum) evenly in log wavelength"
            )
            waves = [10 ** (e0 + (np.arange(len(f)) + 0.5) * (e1 - e0) / len(f)) for f in flux]
        elif isinstance(request.wavelengths[0], list):
            waves = float_rows(request.wavelengths)
        else:
            waves = [np.asarray(request.wavelengths, dtype=np.float64)] * len(flux)
        rows = []
        for i, (w, f) in enumerate(zip(waves, flux, strict=True)):
            lo, hi = np.log10(w[0]), np.log10(w[-1])
            if hi <= e0 or lo >= e1:
                raise StellarValueError(
                    f"wavelengths of spectrum {i} ({w[0]:.1f}-{w[-1]:.1f} Å) do not overlap the model grid "
                    f"({10**e0:.1f}-{10**e1:.1f} Å)"
                )
            err = None if request.errors is None else np.asarray(request.errors[i], dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                ivar = None if err is None else np.where(np.isfinite(err) & (err > 0), 1.0 / err**2, 0.0)
            z = None if request.redshift is None else float(request.redshift[i])
            rows.append({"wave": w, "flux": f, "ivar": ivar, "redshift": z, "air": request.medium == "air"})
        if request.redshift is None:
            assumed.append("no redshift: the wavelengths are taken to be in the rest frame")
        return Job(rows, assumed)

    def group_key(self, row: dict[str, Any]) -> Hashable:
        return (len(row["flux"]), row["ivar"] is None, row["redshift"] is None, row["air"])

    def preprocess(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        prep = dataclasses.replace(self.prep, air=True) if rows[0]["air"] else self.prep
        first = rows[0]["wave"]
        shared = all(r["wave"] is first or np.array_equal(r["wave"], first) for r in rows)
        wave = first if shared else np.stack([r["wave"] for r in rows])
        flux = np.stack([r["flux"] for r in rows])
        ivar = None if rows[0]["ivar"] is None else np.stack([r["ivar"] for r in rows])
        z = None if rows[0]["redshift"] is None else np.asarray([r["redshift"] for r in rows])
        return prep(wave, flux, ivar, None, redshift=z)  # with ``continuum`` when the model was trained on it
