"""Request and response bodies of the ``/predict/*`` endpoints (pydantic): what the OpenAPI schema publishes.

Validation that needs no model happens here, in the HTTP process, and answers 422 with the location of the
problem: wrong types (numbers must be JSON numbers, not strings or booleans), empty or oversized arrays, ragged
arrays, rows with fewer than the minimum number of finite values, wavelengths or times that are not finite and
increasing, companion arrays (errors, bands…) whose shape does not match, negative 1σ errors (``errors``,
``parallax_err``), and an ``ebv`` that is negative or not finite. ``NaN``/``Infinity`` values inside a row are
allowed (they are masked, as in training); rows made only of them are refused.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from stellar.serving.arrays import (
    ArrayRows,
    FloatRows,
    Number,
    RowsLike,
    axis_problem,
    finite_counts,
    negative_rows,
    row_lengths,
)

#: most objects in one request (catalogue clients send many per request: the normal path)
MAX_ROWS = 10_000
#: most samples of one spectrum or light curve
MAX_POINTS = 20_000
#: most samples of one request in all (10,000 SDSS-like spectra of ~3,100 samples; the body limit applies too)
MAX_TOTAL = 40_000_000

ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")]
BandName = Annotated[str, StringConstraints(min_length=1, max_length=32)]


def _rows(name: str, min_finite: int, min_rows: int = 1) -> Any:
    """Rows of numbers, one per object, held as float64 arrays once validated (:mod:`stellar.serving.arrays`)."""
    rows = ArrayRows(name, min_finite, MAX_POINTS, min_rows, MAX_ROWS)
    return Annotated[FloatRows, rows, Field(description=f"{name}: one row per object")]


def _shape(value: Any) -> str:
    """``'3×5129'`` for rows of values, ``'5129'`` for one axis."""
    if isinstance(value, np.ndarray):
        return "×".join(map(str, value.shape))
    if len(value) and isinstance(value[0], list | np.ndarray):
        lengths = sorted({len(r) for r in value})
        return f"{len(value)}×{lengths[0] if len(lengths) == 1 else f'{lengths[0]}-{lengths[-1]}'}"
    return str(len(value))


def _check_values(name: str, rows: RowsLike, min_finite: int) -> None:
    total = int(row_lengths(rows).sum())
    if total > MAX_TOTAL:
        raise ValueError(f"{name} holds {total} values; at most {MAX_TOTAL} per request")
    counts = finite_counts(rows)
    few = np.flatnonzero(counts < min_finite)
    if len(few):
        i = few[0]
        raise ValueError(
            f"{name}[{i}] has {counts[i]} finite values (NaN/inf are masked); at least {min_finite} needed"
        )


def _check_axis(name: str, axis: RowsLike | None, rows: RowsLike, what: str) -> None:
    """A shared (M,) or per-row axis, finite and strictly increasing, matching the rows' lengths."""
    if axis is None:
        return
    lengths = row_lengths(rows)
    if len(axis) and isinstance(axis[0], list | np.ndarray):
        if len(axis) != len(rows):
            raise ValueError(f"{name} has {len(axis)} rows but there are {len(rows)} {what}")
        per_row = list(axis)
    else:
        if len(set(lengths.tolist())) > 1:
            raise ValueError(
                f"{name} is one shared axis, so every row of {what} must have its length; got {set(lengths.tolist())}"
            )
        per_row = [axis]  # one axis: checked once, against the first row (all rows have its length)
    for i, a in enumerate(per_row):
        if len(a) != lengths[i]:
            raise ValueError(f"{name}[{i}] has {len(a)} values but {what}[{i}] has {lengths[i]}")
        problem = axis_problem(a)
        if problem:
            raise ValueError(f"{name}[{i}] {problem}")


def _check_same_shape(name: str, other: RowsLike | None, rows: RowsLike, what: str) -> None:
    if other is None:
        return
    if len(other) != len(rows):
        raise ValueError(f"{name} has {len(other)} rows but there are {len(rows)} {what}")
    mine, theirs = row_lengths(other), row_lengths(rows)
    differ = np.flatnonzero(mine != theirs)
    if len(differ):
        i = differ[0]
        raise ValueError(f"{name}[{i}] has {mine[i]} values but {what}[{i}] has {theirs[i]}")


def _check_ebv(ebv: list[float] | None) -> None:
    """E(B−V) is a finite, non-negative colour excess: a NaN cannot be dereddened with (leave ``ebv`` out to skip
    dereddening) and a negative one is a sign error upstream."""
    if ebv is None:
        return
    bad = [i for i, v in enumerate(ebv) if not (math.isfinite(v) and v >= 0)]
    if bad:
        values = ", ".join(str(ebv[i]) for i in bad[:3])
        raise ValueError(
            f"ebv must be finite and >= 0 mag (leave it out to skip dereddening); objects {bad} have {values}"
        )


def _check_non_negative(name: str, rows: RowsLike | None) -> None:
    """1σ errors are ≥ 0 where finite (NaN/inf: unknown); a negative one is a sign error upstream, not a value."""
    if rows is None:
        return
    bad = negative_rows(rows)
    if len(bad):
        row = np.asarray(rows[bad[0]], dtype=np.float64)
        neg = row[(row < 0) & np.isfinite(row)]
        raise ValueError(f"{name}[{bad[0]}] has {len(neg)} negative value(s) (e.g. {neg[0]}); 1σ errors must be >= 0")


def _non_empty(req: BaseModel, *names: str) -> None:
    for name in names:
        value = getattr(req, name)
        if value is not None and not isinstance(value, str) and len(value) == 0:
            raise ValueError(f"{name} is empty: leave it out or send one value per sample/object")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def __repr_args__(self) -> Any:
        """Array fields as their shape: LitServe formats every request into a log line, and printing 10,000 floats
        cost a fifth of the HTTP process's time per request."""
        for name, value in super().__repr_args__():
            yield name, (_shape(value) if isinstance(value, list | np.ndarray) else value)

    def __eq__(self, other: object) -> bool:
        """Equal fields, the arrays compared by value (pydantic's own ``==`` cannot compare numpy arrays)."""
        return type(other) is type(self) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]  # mutable, as pydantic models are

    model: ModelName | None = Field(
        None, description="Registered model name; must be the one this endpoint serves (omit for that one)."
    )


class SpectralRequest(_Request):
    """Spectra to classify: flux density per unit wavelength, one row per object (any flux unit).

    Without ``wavelengths`` the samples are taken to span the model's wavelength grid evenly in log λ (rest frame,
    vacuum) — a spectrum already on the model's grid is used as is; the response's ``assumed`` says so.
    """

    spectra: _rows("spectra", 2) = Field(..., examples=[[[0.1, 0.2, 0.3, 0.4, 0.5]]])  # type: ignore[valid-type]
    wavelengths: list[Number] | list[list[Number]] | None = Field(
        None, description="Å: one axis shared by every row, or one per row (then rows may differ in length)."
    )
    errors: _rows("errors", 0, 0) | None = Field(None, description="1σ flux errors, same shape as spectra.")  # type: ignore[valid-type]
    redshift: list[Number] | None = Field(None, description="Redshift per spectrum, removed before resampling.")
    medium: Literal["vacuum", "air"] = Field("vacuum", description="Whether the wavelengths are in vacuum or air.")

    @model_validator(mode="after")
    def _consistent(self) -> SpectralRequest:
        _non_empty(self, "wavelengths", "errors", "redshift")
        _check_values("spectra", self.spectra, 2)
        if self.wavelengths is None or not isinstance(self.wavelengths[0], list):
            lengths = sorted({len(r) for r in self.spectra})
            if len(lengths) > 1:
                raise ValueError(f"spectra is ragged (row lengths {lengths}): send wavelengths per row, or equal rows")
        _check_axis("wavelengths", self.wavelengths, self.spectra, "spectra")
        if self.wavelengths is not None:
            flat = self.wavelengths[0] if isinstance(self.wavelengths[0], list) else self.wavelengths
            if min(flat) <= 0:
                raise ValueError("wavelengths must be positive (Å)")
        _check_same_shape("errors", self.errors, self.spectra, "spectra")
        _check_non_negative("errors", self.errors)
        if self.redshift is not None:
            if len(self.redshift) != len(self.spectra):
                raise ValueError(f"redshift has {len(self.redshift)} values for {len(self.spectra)} spectra")
            if not all(math.isfinite(z) and z > -1 for z in self.redshift):
                raise ValueError("redshift must be finite and > -1")
        return self


class LightCurveRequest(_Request):
    """Light curves to classify: one row per object (rows may differ in length), magnitudes or fluxes.

    Without ``times`` the points are taken to be one day apart (0, 1, 2… d); without ``bands`` every point is in
    the model's first band; without ``unit`` the values are in the unit the model was trained on. The response's
    ``assumed`` lists what was taken.
    """

    lightcurves: _rows("lightcurves", 3) = Field(..., examples=[[[1, 1.01, 0.99, 1.02, 0.98, 1.0]]])  # type: ignore[valid-type]
    times: list[Number] | list[list[Number]] | None = Field(
        None, description="Days: one axis shared by every row (equal lengths), or one per row."
    )
    errors: _rows("errors", 0, 0) | None = Field(None, description="1σ errors, same shape and unit as the values.")  # type: ignore[valid-type]
    bands: BandName | list[list[BandName]] | None = Field(
        None, description="One band name for every point, or a band name per point (same shape as lightcurves)."
    )
    unit: Literal["mag", "flux"] | None = Field(None, description="Values are magnitudes or fluxes.")

    @model_validator(mode="after")
    def _consistent(self) -> LightCurveRequest:
        _non_empty(self, "times", "errors", "bands")
        _check_values("lightcurves", self.lightcurves, 3)
        _check_axis("times", self.times, self.lightcurves, "lightcurves")
        _check_same_shape("errors", self.errors, self.lightcurves, "lightcurves")
        _check_non_negative("errors", self.errors)
        if not isinstance(self.bands, str):
            _check_same_shape("bands", self.bands, self.lightcurves, "lightcurves")
        return self


class SEDRequest(_Request):
    """Photometry to classify: one row of magnitudes per object, one column per band (NaN or null-free: use NaN
    for a missing band).

    Without ``bands`` the columns are taken to be the model's bands in its order; without ``ebv`` the magnitudes
    are taken as extinction-free; metadata features the model uses (``parallax``…) that are not sent are missing
    (NaN), which the models handle as in training. The response's ``assumed`` lists what was taken.
    """

    magnitudes: _rows("magnitudes", 1) = Field(..., examples=[[[15.2, 14.1, 13.6, 13.4, 13.3]]])  # type: ignore[valid-type]
    bands: list[BandName] | None = Field(None, description="Band name of every column (e.g. sdss_g, gaia_bp).")
    errors: _rows("errors", 0, 0) | None = Field(None, description="1σ magnitude errors, same shape as magnitudes.")  # type: ignore[valid-type]
    ebv: list[Number] | None = Field(None, description="E(B-V) per object, mag (dereddening as in training).")
    parallax: list[Number] | None = Field(None, description="Parallax per object, mas.")
    parallax_err: list[Number] | None = Field(None, description="Parallax error per object, mas.")

    @model_validator(mode="after")
    def _consistent(self) -> SEDRequest:
        _non_empty(self, "bands", "errors", "ebv", "parallax", "parallax_err")
        _check_values("magnitudes", self.magnitudes, 1)
        lengths = sorted({len(r) for r in self.magnitudes})
        if len(lengths) > 1:
            raise ValueError(f"magnitudes is ragged (row lengths {lengths}): one column per band, NaN where missing")
        if self.bands is not None:
            if len(self.bands) != lengths[0]:
                raise ValueError(f"bands names {len(self.bands)} columns but magnitudes rows have {lengths[0]}")
            if len(set(self.bands)) != len(self.bands):
                raise ValueError("bands must be unique")
        _check_same_shape("errors", self.errors, self.magnitudes, "magnitudes")
        _check_non_negative("errors", self.errors)
        for name in ("ebv", "parallax", "parallax_err"):
            col = getattr(self, name)
            if col is not None and len(col) != len(self.magnitudes):
                raise ValueError(f"{name} has {len(col)} values for {len(self.magnitudes)} objects")
        _check_ebv(self.ebv)
        if self.parallax_err is not None:
            bad = [i for i, v in enumerate(self.parallax_err) if math.isfinite(v) and v < 0]
            if bad:
                raise ValueError(
                    f"parallax_err is negative for objects {bad}; a 1σ error must be >= 0 mas (NaN: unknown)"
                )
        return self


def _row(name: str, min_finite: int) -> Any:
    return Annotated[list[Number], Field(min_length=min_finite, max_length=MAX_POINTS, description=name)]


class _Part(BaseModel):
    """One modality of one object in a multi-modal request (the single-modality request's fields for one row)."""

    model_config = ConfigDict(extra="forbid")

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (_shape(value) if isinstance(value, list | np.ndarray) else value)


class SpectrumPart(_Part):
    """A spectrum: as one row of :class:`SpectralRequest` (flux per unit wavelength, any unit)."""

    flux: _row("flux density per unit wavelength", 2)  # type: ignore[valid-type]
    wavelengths: list[Number] | None = Field(None, description="Å, one per flux value, increasing.")
    errors: list[Number] | None = Field(None, description="1σ flux errors, one per flux value.")
    redshift: Number | None = Field(None, description="Removed before resampling.")
    medium: Literal["vacuum", "air"] = Field("vacuum", description="Whether the wavelengths are in vacuum or air.")

    @model_validator(mode="after")
    def _consistent(self) -> SpectrumPart:
        _non_empty(self, "wavelengths", "errors")
        _check_values("flux", [self.flux], 2)
        _check_axis("wavelengths", self.wavelengths, [self.flux], "flux")
        if self.wavelengths is not None and min(self.wavelengths) <= 0:
            raise ValueError("wavelengths must be positive (Å)")
        _check_same_shape("errors", None if self.errors is None else [self.errors], [self.flux], "flux")
        _check_non_negative("errors", None if self.errors is None else [self.errors])
        if self.redshift is not None and not (math.isfinite(self.redshift) and self.redshift > -1):
            raise ValueError("redshift must be finite and > -1")
        return self


class PhotometryPart(_Part):
    """Photometry and astrometry: as one row of :class:`SEDRequest` (magnitudes, their bands, parallax)."""

    magnitudes: _row("magnitudes, one per band (NaN: missing)", 1)  # type: ignore[valid-type]
    bands: list[BandName] | None = Field(None, description="Band of every magnitude; default the model's bands.")
    errors: list[Number] | None = Field(None, description="1σ magnitude errors, one per magnitude.")
    ebv: Number | None = Field(None, description="E(B-V), mag (dereddening as in training).")
    parallax: Number | None = Field(None, description="Parallax, mas.")
    parallax_err: Number | None = Field(None, description="Parallax error, mas.")

    @model_validator(mode="after")
    def _consistent(self) -> PhotometryPart:
        _non_empty(self, "bands", "errors")
        _check_values("magnitudes", [self.magnitudes], 1)
        if self.bands is not None:
            if len(self.bands) != len(self.magnitudes):
                raise ValueError(f"bands names {len(self.bands)} columns but magnitudes has {len(self.magnitudes)}")
            if len(set(self.bands)) != len(self.bands):
                raise ValueError("bands must be unique")
        _check_same_shape("errors", None if self.errors is None else [self.errors], [self.magnitudes], "magnitudes")
        _check_non_negative("errors", None if self.errors is None else [self.errors])
        _check_ebv(None if self.ebv is None else [self.ebv])
        if self.parallax_err is not None and math.isfinite(self.parallax_err) and self.parallax_err < 0:
            raise ValueError(f"parallax_err is {self.parallax_err}; a 1σ error must be >= 0 mas (NaN: unknown)")
        return self


class LightCurvePart(_Part):
    """A light curve: as one row of :class:`LightCurveRequest` (magnitudes or fluxes)."""

    values: _row("magnitudes or fluxes", 3)  # type: ignore[valid-type]
    times: list[Number] | None = Field(None, description="Days, one per value, increasing.")
    errors: list[Number] | None = Field(None, description="1σ errors, one per value.")
    bands: BandName | list[BandName] | None = Field(None, description="One band for every point, or one per point.")
    unit: Literal["mag", "flux"] | None = Field(None, description="Values are magnitudes or fluxes.")

    @model_validator(mode="after")
    def _consistent(self) -> LightCurvePart:
        _non_empty(self, "times", "errors", "bands")
        _check_values("values", [self.values], 3)
        _check_axis("times", self.times, [self.values], "values")
        _check_same_shape("errors", None if self.errors is None else [self.errors], [self.values], "values")
        _check_non_negative("errors", None if self.errors is None else [self.errors])
        if isinstance(self.bands, list):
            _check_same_shape("bands", [self.bands], [self.values], "values")
        return self


class ObjectInput(BaseModel):
    """One object: any non-empty subset of its spectrum, photometry (+ parallax) and light curve."""

    model_config = ConfigDict(extra="forbid")

    spectrum: SpectrumPart | None = None
    photometry: PhotometryPart | None = None
    lightcurve: LightCurvePart | None = None

    @model_validator(mode="after")
    def _some(self) -> ObjectInput:
        if self.spectrum is None and self.photometry is None and self.lightcurve is None:
            raise ValueError("an object needs at least one of spectrum, photometry, lightcurve")
        return self


class MultiModalRequest(_Request):
    """Objects to classify from any subset of their modalities, one entry per object.

    Each part follows the single-modality request of its kind (what is assumed when a field is left out is the
    same, and the response's ``assumed`` lists it); a modality the model has no encoder for is refused (422).
    """

    objects: Annotated[list[ObjectInput], Field(min_length=1, max_length=MAX_ROWS)] = Field(
        ...,
        examples=[[{"photometry": {"magnitudes": [4.27, 4.16, 3.61], "parallax": 91.5, "parallax_err": 0.22}}]],
    )

    @model_validator(mode="after")
    def _size(self) -> MultiModalRequest:
        total = 0
        for o in self.objects:
            for part, name in ((o.spectrum, "flux"), (o.photometry, "magnitudes"), (o.lightcurve, "values")):
                total += len(getattr(part, name)) if part is not None else 0
        if total > MAX_TOTAL:
            raise ValueError(f"objects hold {total} values; at most {MAX_TOTAL} per request")
        return self


class TargetEstimate(BaseModel):
    """A regression target: mean and standard deviation (physical units: K for teff, dex for logg/[Fe/H]…).

    With an interval calibrator (``intervals_calibrated``), ``mean ± std`` is the calibrated 68% interval and
    ``interval_95`` the calibrated 95% one (not always ``mean ± 1.96 std``: conformal intervals follow the error
    distribution's tails).
    """

    mean: float | None
    std: float | None
    interval_95: tuple[float, float] | None = Field(
        None, description="Calibrated 95% interval [low, high], physical units; null without an interval calibrator."
    )


class Prediction(BaseModel):
    """One object's prediction."""

    predicted_class: str | None = Field(None, description="Class of highest calibrated probability.")
    probabilities: dict[str, float] = Field(default_factory=dict, description="Calibrated, keyed by class name.")
    targets: dict[str, TargetEstimate] = Field(default_factory=dict)
    valid_fraction: float = Field(..., description="Fraction of the model's input samples that held valid data.")
    ood_score: float | None = Field(
        None,
        description="Out-of-distribution score against the model's training reference: above 1 the object is "
        "outside what the model was trained on (1% of in-distribution objects are); null for models without one.",
    )
    ood: bool | None = Field(None, description="Whether ood_score is above 1.")


class PredictionResponse(BaseModel):
    """Predictions of one request, in the order of its rows."""

    model: str
    version: int
    modality: str
    calibrated: bool = Field(..., description="Whether a calibrator fitted on validation data was applied.")
    intervals_calibrated: bool = Field(
        False, description="Whether the regression std and interval_95 come from an interval calibrator."
    )
    predictions: list[Prediction]
    assumed: list[str] = Field(default_factory=list, description="What was assumed about the input, if anything.")


class MultiModalPrediction(Prediction):
    """One object's prediction from the modalities it was sent."""

    modalities_used: list[str] = Field(..., description="The parts of the object the model read.")


class MultiModalResponse(PredictionResponse):
    """Predictions of one multi-modal request, in the order of its objects."""

    predictions: list[MultiModalPrediction]  # type: ignore[assignment]


class ErrorResponse(BaseModel):
    """A 4xx answer: what was wrong with the request."""

    detail: str | list[dict[str, Any]]
