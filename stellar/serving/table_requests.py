"""Requests of a modality's API built from the rows of a catalogue table: the columns each modality reads are
listed in :mod:`stellar.serving.scoring`. A request is one object, so a bad object fails alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from stellar.errors import StellarConfigError, StellarDataError


def _array_column(df: pd.DataFrame, name: str, required: bool) -> list[np.ndarray] | None:
    """Per-row arrays from an array column ``name`` or numeric columns ``name_0, name_1…``."""
    if name in df.columns:
        return [np.asarray(v, dtype=np.float64).ravel() for v in df[name]]
    wide = [c for c in df.columns if str(c).startswith(f"{name}_") and str(c)[len(name) + 1 :].isdigit()]
    if wide:
        wide.sort(key=lambda c: int(str(c)[len(name) + 1 :]))
        return list(df[wide].to_numpy(dtype=np.float64))
    if required:
        raise StellarDataError(f"the table has no {name!r} array column nor {name}_0… columns: {list(df.columns)}")
    return None


def _json_list(a: np.ndarray) -> list[float]:
    return [float(v) for v in a]  # NaN stays NaN: the request schema masks it


def spectral_requests(df: pd.DataFrame, id_column: str, api: Any = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """One spectral request per row (see the module docstring for the columns)."""
    flux = _array_column(df, "flux", True)
    wave = _array_column(df, "wavelength", False)
    err = _array_column(df, "flux_err", False)
    z = df["redshift"].to_numpy(float) if "redshift" in df.columns else None
    for i, oid in enumerate(df[id_column].astype(str)):
        body: dict[str, Any] = {"spectra": [_json_list(flux[i])]}  # type: ignore[index]
        if wave is not None:
            body["wavelengths"] = _json_list(wave[i])
        if err is not None:
            body["errors"] = [_json_list(err[i])]
        if z is not None and np.isfinite(z[i]):
            body["redshift"] = [float(z[i])]
        yield oid, body


def lightcurve_requests(df: pd.DataFrame, id_column: str, api: Any = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """One light-curve request per id of a long-format table (one point per row)."""
    unit = "mag" if "mag" in df.columns else "flux" if "flux" in df.columns else None
    if unit is None or "time" not in df.columns:
        raise StellarDataError(f"a light-curve table needs 'time' and 'mag' or 'flux' columns: {list(df.columns)}")
    err_col = f"{unit}_err" if f"{unit}_err" in df.columns else None
    for oid, g in df.groupby(df[id_column].astype(str), sort=False):
        g = g.sort_values("time", kind="stable")
        body: dict[str, Any] = {"lightcurves": [_json_list(g[unit].to_numpy(float))], "unit": unit}
        body["times"] = _json_list(g["time"].to_numpy(float))
        if err_col:
            body["errors"] = [_json_list(g[err_col].to_numpy(float))]
        if "band" in g.columns:
            body["bands"] = [[str(b) for b in g["band"]]]
        yield str(oid), body


def _band_column(df: pd.DataFrame, band: str) -> str | None:
    """The column holding ``band``: its own name (``sdss_g``), else its last part (``g``)."""
    for name in (band, band.rsplit("_", 1)[-1]):
        if name in df.columns:
            return name
    return None


def sed_requests(df: pd.DataFrame, id_column: str, api: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """One SED request per row: a magnitude column per model band (``api.bands``) that the table has, their
    ``<column>_err`` errors, and ``ebv``, ``parallax`` (mas), ``parallax_err`` (mas) when present."""
    cols = {b: c for b in api.bands if (c := _band_column(df, b)) is not None}
    if not cols:
        raise StellarDataError(
            f"the table has no magnitude column of the model's bands {api.bands} (nor their last parts, e.g. "
            f"{api.bands[0].rsplit('_', 1)[-1]!r}): {list(df.columns)}"
        )
    bands = list(cols)
    mags = df[list(cols.values())].to_numpy(np.float64)
    err_cols = [f"{c}_err" for c in cols.values()]
    errs = df[err_cols].to_numpy(np.float64) if all(c in df.columns for c in err_cols) else None
    meta = {k: df[k].to_numpy(np.float64) for k in ("ebv", "parallax", "parallax_err") if k in df.columns}
    for i, oid in enumerate(df[id_column].astype(str)):
        body: dict[str, Any] = {"magnitudes": [_json_list(mags[i])], "bands": bands}
        if errs is not None:
            body["errors"] = [_json_list(errs[i])]
        body.update({k: [float(v[i])] for k, v in meta.items()})
        yield oid, body


@dataclasses.dataclass(frozen=True)
class Modality:
    """How a modality's objects are scored from a table."""

    api: str  # class name in stellar.serving.api
    requests: Callable[[pd.DataFrame, str, Any], Iterator[tuple[str, dict[str, Any]]]]
    per_row: bool  # one object per row (else: long format, objects grouped by id)


#: what a registered version's ``modality`` is scored with
MODALITIES = {
    "spectra": Modality("SpectralAPI", spectral_requests, True),
    "lightcurve": Modality("LightCurveAPI", lightcurve_requests, False),
    "sed": Modality("SEDAPI", sed_requests, True),
}


def modality_of(version: Any) -> Modality:
    """The :class:`Modality` of a registry version (by its manifest's ``modality``)."""
    found = MODALITIES.get(str(version.manifest.get("modality")))
    if found is None:
        raise StellarConfigError(
            f"{version.tag} has modality {version.manifest.get('modality')!r}; scorable: {sorted(MODALITIES)}"
        )
    return found
