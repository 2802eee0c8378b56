"""What astronomers hold (numpy arrays, astropy ``Quantity``/``Table``/``Time``, ``lightkurve`` light curves,
pandas frames) turned into request bodies of a modality's API, one body per object.

A body is exactly what a client would POST to ``/predict/<modality>`` for that object, so
:class:`~stellar.serving.predictor.Predictor` sends it through the server's own validation (the pydantic schema),
decoding, preprocessing and prediction. Units are checked and stripped here with the project's one helper,
:func:`stellar.utils.units.to_value`. Each adapter returns the bodies and, per object, the notes of what it did
(points masked, units assumed), which end in the answer's ``warnings`` column.
"""

from __future__ import annotations

from typing import Any

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.table import Table
from astropy.time import Time

from stellar.errors import StellarValueError
from stellar.serving.table_requests import sed_requests
from stellar.utils.units import to_value

Bodies = tuple[list[dict[str, Any]], list[list[str]]]

#: flux density per unit wavelength that spectra in a flux unit are converted to (the continuum fit reads its shape)
FLAM = u.erg / u.s / u.cm**2 / u.AA


def _rows(x: Any, name: str) -> list[np.ndarray]:
    """Per-object 1-D float rows of ``x`` (one row, a 2-D array, or a list of possibly ragged rows)."""
    try:
        if isinstance(x, list | tuple) and len(x) and np.ndim(x[0]) == 1:
            return [np.asarray(r, dtype=np.float64) for r in x]
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise StellarValueError(f"{name} must be numbers; got {type(x).__name__}: {err}") from err
    if a.ndim not in (1, 2) or a.size == 0:
        raise StellarValueError(f"{name} must be one row or a 2-D array (objects, samples); got shape {a.shape}")
    return list(np.atleast_2d(a))


def _per_object(x: Any, n: int, name: str) -> list[Any]:
    """``x`` given once for all ``n`` objects (a 1-D axis) or once per object."""
    if x is None:
        return [None] * n
    rows = _rows(x, name)
    if len(rows) == 1:
        return rows * n
    if len(rows) != n:
        raise StellarValueError(f"{name} has {len(rows)} rows for {n} objects: give one row, or one per object")
    return rows


def _per_value(x: Any, n: int, name: str, unit: u.UnitBase) -> np.ndarray:
    """One number per object (or one for all ``n``), in ``unit``."""
    v = np.atleast_1d(to_value(x, unit, name))
    if v.ndim != 1 or len(v) not in (1, n):
        raise StellarValueError(f"{name} needs one value, or one per object ({n}); got shape {v.shape}")
    return np.broadcast_to(v, (n,))


def _column(table: Table, name: str) -> Any:
    """A Table column as a Quantity when it has a unit, else as an array (``None`` when absent)."""
    if name not in table.colnames:
        return None
    col = table[name]
    return col.quantity if col.unit is not None else np.ma.filled(np.asarray(col, dtype=np.float64), np.nan)


def _list(a: np.ndarray) -> list[float]:
    return [float(v) for v in a]


# ---- spectra -------------------------------------------------------------------------------------------------------


def _flux_value(flux: Any, wave: list[Any], name: str) -> tuple[list[np.ndarray], str | None]:
    """Flux rows as plain numbers: a Quantity in a spectral flux density (per unit wavelength or frequency) is
    converted to erg s⁻¹ cm⁻² Å⁻¹ at its wavelengths; dimensionless values and bare arrays are relative flux."""
    if not isinstance(flux, u.Quantity) or flux.unit.is_equivalent(u.dimensionless_unscaled):
        return _rows(flux if not isinstance(flux, u.Quantity) else flux.to_value(u.one), name), None
    rows = list(np.atleast_2d(flux))
    if any(w is None for w in wave):
        raise StellarValueError(f"{name} has unit {flux.unit}: give wavelength too, or pass relative flux (no unit)")
    try:
        out = [
            to_value(f, FLAM, name, equivalencies=u.spectral_density(w * u.AA)) for f, w in zip(rows, wave, strict=True)
        ]
    except StellarValueError as err:
        raise StellarValueError(f"{err}; allowed: a spectral flux density or dimensionless (relative flux)") from err
    return out, f"{name} converted from {flux.unit} to {FLAM}"


def spectra_bodies(
    data: Any,
    wavelength: Any = None,
    flux_err: Any = None,
    redshift: Any = None,
    medium: str = "vacuum",
) -> Bodies:
    """Bodies of ``/predict/spectral``, one per spectrum.

    Parameters
    ----------
    data : array-like, Quantity or Table
        Flux, one spectrum (1-D) or one per row (2-D, or a list of rows); a ``Quantity`` in a spectral flux density
        (per Å, per Hz…: converted to erg s⁻¹ cm⁻² Å⁻¹) or dimensionless; bare numbers are relative flux. A
        ``Table`` has one spectrum per row in columns ``flux``, optional ``wavelength``, ``flux_err``, ``redshift``.
    wavelength : array-like or Quantity, Å
        One axis shared by every spectrum or one per spectrum; a ``Quantity`` in any length unit (or frequency,
        energy) is converted to Å. Without it the samples span the model's grid (the answer's warnings say so).
    flux_err : array-like or Quantity
        1σ flux errors, the shape and unit of ``data``.
    redshift : float or array-like
        Per spectrum (or one for all), removed before resampling.
    medium : {"vacuum", "air"}
        Whether the wavelengths are in vacuum or air.
    """
    if isinstance(data, Table):
        wavelength = _column(data, "wavelength") if wavelength is None else wavelength
        flux_err = _column(data, "flux_err") if flux_err is None else flux_err
        redshift = _column(data, "redshift") if redshift is None else redshift
        if "flux" not in data.colnames:
            raise StellarValueError(f"data (a Table) needs a 'flux' column; it has {data.colnames}")
        data = _column(data, "flux")
    if flux_err is not None and isinstance(data, u.Quantity) != isinstance(flux_err, u.Quantity):
        raise StellarValueError("flux_err must carry a unit when data does, and none when data has none")
    ragged = isinstance(data, list | tuple) and len(data) > 0 and np.ndim(data[0]) == 1  # a list of rows
    n = len(data) if ragged else len(np.atleast_2d(data))  # a flat list is one spectrum
    waves = _per_object(
        None if wavelength is None else to_value(wavelength, u.AA, "wavelength", equivalencies=u.spectral()),
        n,
        "wavelength",
    )
    flux, note = _flux_value(data, waves, "data")
    errs = [None] * n if flux_err is None else _flux_value(flux_err, waves, "flux_err")[0]
    z = [None] * n if redshift is None else _per_value(redshift, n, "redshift", u.one)
    if len(flux) != n or len(errs) != n:
        raise StellarValueError(f"flux_err has {len(errs)} rows for {n} spectra")
    bodies = []
    for f, w, e, zi in zip(flux, waves, errs, z, strict=True):
        body: dict[str, Any] = {"spectra": [_list(f)], "medium": medium}
        if w is not None:
            body["wavelengths"] = _list(w)
        if e is not None:
            body["errors"] = [_list(e)]
        if zi is not None and np.isfinite(zi):
            body["redshift"] = [float(zi)]
        bodies.append(body)
    return bodies, [[note] if note else [] for _ in bodies]


# ---- light curves --------------------------------------------------------------------------------------------------


def _days(time: Any) -> np.ndarray:
    """Times in days: a ``Time`` as MJD, a ``Quantity`` converted, bare numbers taken as days."""
    if isinstance(time, Time):
        return np.asarray(time.mjd, dtype=np.float64)
    return to_value(time, u.day, "time")


def _values_unit(values: Any, unit: str | None) -> tuple[np.ndarray, str | None]:
    """Light-curve values as numbers, and whether they are magnitudes or fluxes (a Quantity's unit says which)."""
    if isinstance(values, u.Quantity):
        is_mag = isinstance(values, u.Magnitude) or values.unit == u.mag  # mag, or AB/ST magnitudes
        return np.asarray(values.value, dtype=np.float64), "mag" if is_mag else "flux"
    return np.asarray(values, dtype=np.float64), unit


def _lightkurve_rows(lc: Any) -> tuple[dict[str, Any], list[str]]:
    """One light curve of lightkurve: points with a quality flag or without a finite time are dropped."""
    t = _days(lc.time)
    flux, unit = _values_unit(lc.flux, None)
    flux = np.ma.filled(flux, np.nan)
    err = None if "flux_err" not in lc.colnames else np.ma.filled(np.asarray(lc.flux_err.value, np.float64), np.nan)
    keep = np.isfinite(t)
    if "quality" in lc.colnames:
        keep &= np.asarray(lc["quality"]) == 0
    notes = [] if keep.all() else [f"{int((~keep).sum())} of {len(t)} points dropped (quality flag or no time)"]
    row = {"time": t[keep], "values": flux[keep], "err": None if err is None else err[keep], "unit": unit}
    return row, notes


def lightcurve_bodies(
    data: Any,
    time: Any = None,
    flux_err: Any = None,
    band: str | None = None,
    unit: str | None = None,
) -> Bodies:
    """Bodies of ``/predict/lightcurve``, one per light curve.

    Parameters
    ----------
    data : LightCurve, LightCurveCollection, array-like or Quantity
        A ``lightkurve.LightCurve`` (time, flux, flux_err; points with a non-zero ``quality`` dropped), a
        ``LightCurveCollection`` (one object per light curve: ``stitch()`` it first for one star's quarters), or
        values, one light curve (1-D) or one per row (2-D or a list of rows); a ``Quantity`` in ``mag`` is read as
        magnitudes, any other unit as flux.
    time : Time, Quantity or array-like, d
        Times of the values (a ``Time`` as MJD; bare numbers are days); without them points are 1 d apart.
    flux_err : array-like
        1σ errors, the shape and unit of the values.
    band : str, optional
        The band of every point (default: the model's first band).
    unit : {"mag", "flux"}, optional
        What bare values are (default: as the model was trained); a ``Quantity`` sets it.
    """
    # a LightCurveCollection (duck-typed: lightkurve is imported only by those who pass its objects) stitches
    curves = list(data) if hasattr(data, "stitch") else [data]
    if hasattr(curves[0], "flux") and hasattr(curves[0], "time"):
        rows, notes = zip(*(_lightkurve_rows(lc) for lc in curves), strict=True)
    else:
        values, unit = _values_unit(data, unit)
        vals = _rows(values, "data")
        times = _per_object(None if time is None else _days(time), len(vals), "time")
        errs = _per_object(flux_err, len(vals), "flux_err")
        rows = tuple(
            {"time": t, "values": v, "err": e, "unit": unit} for t, v, e in zip(times, vals, errs, strict=True)
        )
        notes = tuple([] for _ in rows)
    bodies = []
    for r in rows:
        body: dict[str, Any] = {"lightcurves": [_list(r["values"])]}
        if r["time"] is not None:
            body["times"] = _list(r["time"])
        if r["err"] is not None:
            body["errors"] = [_list(r["err"])]
        if r["unit"] is not None:
            body["unit"] = r["unit"]
        if band is not None:
            body["bands"] = band
        bodies.append(body)
    return bodies, list(notes)


# ---- photometry ----------------------------------------------------------------------------------------------------


def sed_bodies(data: Any, api: Any, bands: list[str] | None = None, **meta: Any) -> Bodies:
    """Bodies of ``/predict/sed``, one per object.

    Parameters
    ----------
    data : Table, DataFrame or array-like, mag
        A table with a magnitude column per model band (named as the band, ``sdss_g``, or its last part, ``g``;
        optional ``<column>_err``, ``ebv``, ``parallax`` and ``parallax_err`` in mas, as catalogue scoring reads
        them), or magnitudes (objects, bands) with ``bands`` naming the columns.
    api : SEDAPI
        The set-up endpoint (its bands).
    bands : list of str
        Band of every column of an array ``data``.
    **meta : array-like
        ``errors`` (mag), ``ebv`` (mag), ``parallax`` and ``parallax_err`` (mas) per object, for an array ``data``.
    """
    if isinstance(data, Table):
        data = Table(data, copy=True)
        for c in ("parallax", "parallax_err"):
            if c in data.colnames and data[c].unit is not None:
                data[c] = to_value(data[c].quantity, u.mas, c)
        data = data.to_pandas()
    if isinstance(data, pd.DataFrame):
        frame = data.assign(_row=np.arange(len(data)).astype(str))
        return [body for _, body in sed_requests(frame, "_row", api)], [[] for _ in range(len(frame))]
    mags = np.atleast_2d(to_value(data, u.mag, "data"))
    if bands is None or len(bands) != mags.shape[1]:
        raise StellarValueError(f"bands must name the {mags.shape[1]} magnitude columns of data; got {bands}")
    units = {"errors": u.mag, "ebv": u.mag, "parallax": u.mas, "parallax_err": u.mas}
    unknown = sorted(set(meta) - set(units))
    if unknown:
        raise StellarValueError(f"unknown argument(s) {unknown}; allowed: {sorted(units)}")
    n = len(mags)
    cols = {k: _per_value(v, n, k, units[k]) for k, v in meta.items() if v is not None and k != "errors"}
    if meta.get("errors") is not None:
        errors = to_value(meta["errors"], u.mag, "errors")
        if errors.shape != mags.shape:
            raise StellarValueError(f"errors must have the shape of data {mags.shape}; got {errors.shape}")
        cols["errors"] = errors
    bodies = []
    for i, row in enumerate(mags):
        body: dict[str, Any] = {"magnitudes": [_list(row)], "bands": list(bands)}
        body.update({k: [_list(np.atleast_1d(v[i]))] if k == "errors" else [float(v[i])] for k, v in cols.items()})
        bodies.append(body)
    return bodies, [[] for _ in bodies]


# ---- one object, several modalities --------------------------------------------------------------------------------

#: per-object values of a single-modality body that a multi-modal part holds once (its first and only row)
_ONE_ROW = {"spectra", "lightcurves", "magnitudes", "errors", "redshift", "ebv", "parallax", "parallax_err"}
#: single-modality field → multi-modal part field, where they differ
_PART_NAMES = {"spectra": "flux", "lightcurves": "values"}


def _part(name: str, value: Any, adapter: Any) -> tuple[dict[str, Any], list[str]]:
    """One modality of one object as a multi-modal part, through its single-modality adapter."""
    args = dict(value) if isinstance(value, dict) else {"data": value}
    if "data" not in args:
        raise StellarValueError(f"{name} needs 'data' (and the adapter's other arguments); got {sorted(args)}")
    try:
        bodies, notes = adapter(**args)
    except TypeError as err:
        raise StellarValueError(f"{name}: {err}") from err
    if len(bodies) != 1:
        raise StellarValueError(f"{name} holds {len(bodies)} objects; give one per object")
    part = {_PART_NAMES.get(k, k): v[0] if k in _ONE_ROW else v for k, v in bodies[0].items()}
    return part, [f"{name}: {n}" for n in notes[0]]


def multimodal_bodies(data: Any, sed_api: Any = None) -> Bodies:
    """Bodies of ``/predict/multimodal``, one per object.

    Parameters
    ----------
    data : dict or list of dict
        One object, or one per object: a dict with any non-empty subset of ``spectrum``, ``photometry`` and
        ``lightcurve``. Each value is what the single-modality adapter takes for one object — the ``data``
        alone (a flux row, a ``LightCurve``…) or a dict of its arguments: :func:`spectra_bodies`
        (``{"data": flux, "wavelength": wave}``), :func:`sed_bodies` (``{"data": mags, "bands": [...],
        "parallax": 91.5}``, parallax in mas) and :func:`lightcurve_bodies` (``{"data": lc}``).
    sed_api : SEDAPI, optional
        The fused model's photometry part (its bands, for photometry given as a table row).

    Raises
    ------
    StellarValueError
        An object that is not a dict, names an unknown modality, or holds more than one object per modality.
    """

    def sed(**args: Any) -> Bodies:
        return sed_bodies(api=sed_api, **args)

    adapters = {"spectrum": spectra_bodies, "photometry": sed, "lightcurve": lightcurve_bodies}
    objects = [data] if isinstance(data, dict) else list(data)
    bodies, notes = [], []
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict) or not obj:
            raise StellarValueError(f"data[{i}] must be a dict of modalities {sorted(adapters)}; got {obj!r:.80}")
        unknown = sorted(set(obj) - set(adapters))
        if unknown:
            raise StellarValueError(f"data[{i}] has unknown modalities {unknown}; allowed: {sorted(adapters)}")
        parts = {name: _part(f"data[{i}].{name}", value, adapters[name]) for name, value in obj.items()}
        bodies.append({"objects": [{name: p for name, (p, _) in parts.items()}]})
        notes.append([n for _, ns in parts.values() for n in ns])
    return bodies, notes
