"""A folder of survey files (or one file) as the input of :meth:`stellar.serving.predictor.Predictor.predict`.

Every file is read by the ingest readers, :func:`stellar.data.ingest.formats.parse_file` (the very code that
``python ingest.py input_dir=…`` runs: SDSS spec files, LAMOST, 1-D WCS FITS spectra such as MILES, Kepler/K2/TESS
light-curve FITS…); the records of the predictor's kind (``spectra`` or ``lightcurve``) become the arguments of
its adapter in :mod:`stellar.serving.inputs`, one object per record, in the order of the files' names. Files the
readers do not recognise, and records of another kind, are counted and logged, never silently dropped.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np

from stellar.data.ingest.formats import parse_file
from stellar.data.ingest.records import Record
from stellar.errors import StellarDataError, StellarValueError
from stellar.utils import urls

log = logging.getLogger(__name__)

__all__ = ["SurveyFiles", "is_path", "lightcurve_arguments", "read_survey_files", "spectrum_arguments"]


def is_path(data: Any) -> bool:
    """Whether ``data`` names a file or folder (a path or an fsspec URL) rather than holding values."""
    return isinstance(data, str | os.PathLike)


@dataclass
class SurveyFiles:
    """The records of one kind read from a folder of survey files."""

    records: list[Record]
    #: what was left out: files no reader recognised, records of another kind
    skipped: list[str]

    @property
    def object_ids(self) -> list[str]:
        return [r.object_id for r in self.records]

    @property
    def sources(self) -> list[str]:
        return [urls.basename(r.source) for r in self.records]


def read_survey_files(path: str | os.PathLike[str], kind: str) -> SurveyFiles:
    """The records of kind ``kind`` in the file or folder ``path`` (a path or an fsspec URL, searched at any depth).

    Parameters
    ----------
    path : str or PathLike
        A survey file, or a folder of them.
    kind : {"spectra", "lightcurve"}
        The records kept (the predictor's modality).

    Raises
    ------
    StellarValueError
        ``path`` does not exist, or holds no file with a record of ``kind``; or a recognised file is broken.
    """
    if urls.is_file(path):
        files = [str(path)]
    elif urls.is_dir(path):
        files = [urls.join(path, rel) for rel in urls.find(path)]
    else:
        raise StellarValueError(f"data={str(path)!r} is neither a file nor a folder")
    records: list[Record] = []
    skipped: list[str] = []
    for f in files:
        try:
            found = parse_file(f)
        except StellarDataError as err:
            if not str(err).startswith("unsupported"):
                raise StellarValueError(f"data: {f} could not be read: {err}") from err
            skipped.append(f"{urls.basename(f)} (not a survey file the ingest readers know)")
            continue
        records += [r for r in found if r.modality == kind]
        skipped += [f"{r.object_id} in {urls.basename(f)} ({r.modality})" for r in found if r.modality != kind]
    if skipped:
        log.info("data=%s: %d left out: %s", path, len(skipped), "; ".join(skipped[:10]))
    if not records:
        left_out = f"; left out: {'; '.join(skipped[:5])}" if skipped else ""
        raise StellarValueError(f"data={str(path)!r}: no {kind} record in its {len(files)} file(s){left_out}")
    return SurveyFiles(records, skipped)


def spectrum_arguments(record: Record) -> tuple[dict[str, Any], list[str]]:
    """The arguments of :func:`~stellar.serving.inputs.spectra_bodies` for one spectrum record: flux (a Quantity
    when the file gives its unit), the wavelengths in Å from ``loglam``, the medium the reader found; pixels with
    ``ivar`` 0 (no data, as the survey flags them) become NaN, which the preprocessing masks."""
    flux = np.asarray(record.arrays["flux"], dtype=np.float64)
    notes = []
    if "ivar" in record.arrays:
        bad = ~(np.asarray(record.arrays["ivar"]) > 0)
        if bad.any():
            flux = np.where(bad, np.nan, flux)
            notes.append(f"{int(bad.sum())} of {len(flux)} pixels with ivar 0 masked")
    unit = record.units.get("flux") or ""
    wave = 10 ** np.asarray(record.arrays["loglam"], dtype=np.float64) * u.AA
    data: Any = flux * u.Unit(unit) if unit else flux
    return {"data": data, "wavelength": wave, "medium": record.meta.get("medium", "vacuum")}, notes


def lightcurve_arguments(record: Record) -> tuple[dict[str, Any], list[str]]:
    """The arguments of :func:`~stellar.serving.inputs.lightcurve_bodies` for one light-curve record: times in
    days, flux and its error (``flux``: the file's unit is a flux), points with a non-zero ``quality`` flag or no
    finite time dropped (as for a ``lightkurve.LightCurve``)."""
    t = np.asarray(record.arrays["time"], dtype=np.float64)
    keep = np.isfinite(t)
    if "quality" in record.arrays:
        keep &= np.asarray(record.arrays["quality"]) == 0
    notes = [] if keep.all() else [f"{int((~keep).sum())} of {len(t)} points dropped (quality flag or no time)"]
    flux = np.asarray(record.arrays["flux"], dtype=np.float64)[keep]
    err = record.arrays.get("flux_err")
    args: dict[str, Any] = {"data": flux, "time": t[keep] * u.day, "unit": "flux"}
    if err is not None:
        args["flux_err"] = np.asarray(err, dtype=np.float64)[keep]
    return args, notes
