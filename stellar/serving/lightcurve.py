"""``/predict/lightcurve``: light curves through the training ``LightCurvePreprocessing``."""

# no ``from __future__ import annotations``: LitServe reads the request class of decode_request from its annotation

import dataclasses
from collections.abc import Hashable
from typing import Any

import numpy as np

from stellar.errors import StellarValueError
from stellar.serving.base import Failure, Job, StellarAPI, float_rows
from stellar.serving.files import lightcurve_arguments
from stellar.serving.inputs import lightcurve_bodies
from stellar.serving.schemas import LightCurveRequest


class LightCurveAPI(StellarAPI):
    """``/predict/lightcurve``: light curves through the datamodule's ``LightCurvePreprocessing``.

    Defaults for what a request leaves out: times one day apart (0, 1, 2… d), every point in the model's first
    band, values in the unit the model was trained on. Errors, when absent, are the preprocessing's own rule (each
    band's robust scatter).
    """

    modality = "lightcurve"
    record_kind = "lightcurve"

    def check_preprocessing(self, prep: Any) -> None:
        if prep is None or not hasattr(prep, "bands"):
            raise StellarValueError(f"model {self.model_name!r} stores no light-curve preprocessing (with bands)")

    def bodies(self, data: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], list[list[str]]]:
        """Bodies of light curves held in Python: :func:`~stellar.serving.inputs.lightcurve_bodies`."""
        return lightcurve_bodies(data, **kwargs)

    def record_arguments(self, record: Any) -> tuple[dict[str, Any], list[str]]:
        """Arguments of :meth:`bodies` for a survey file's record: see
        :func:`~stellar.serving.files.lightcurve_arguments`."""
        return lightcurve_arguments(record)

    def decode_request(self, request: LightCurveRequest) -> Job | Failure:
        return self._decode(request)

    def to_job(self, request: LightCurveRequest) -> Job:
        from stellar.data.preprocess.lightcurve_inputs import band_indices

        values = float_rows(request.lightcurves)
        bands = list(self.prep.bands)
        unit = request.unit or self.prep.values
        assumed = []
        if request.times is None:
            assumed.append("no times: points are taken to be 1 day apart (t = 0, 1, 2… d)")
            times = [np.arange(len(v), dtype=np.float64) for v in values]
        elif isinstance(request.times[0], list):
            times = float_rows(request.times)
        else:
            times = [np.asarray(request.times, dtype=np.float64)] * len(values)
        if request.bands is None:
            assumed.append(f"no bands: every point is taken to be in band {bands[0]!r} (the model's bands: {bands})")
            band_idx = [np.zeros(len(v), np.int64) for v in values]
        elif isinstance(request.bands, str):
            band_idx = [np.full(len(v), band_indices([request.bands], bands)[0]) for v in values]
        else:
            band_idx = [band_indices(b, bands) for b in request.bands]
        if request.unit is None:
            assumed.append(f"no unit: values are taken to be in {unit!r}, as in training")
        rows = []
        for i, (t, v, b) in enumerate(zip(times, values, band_idx, strict=True)):
            err = None if request.errors is None else np.asarray(request.errors[i], dtype=np.float64)
            rows.append({"time": t, "values": v, "err": err, "band": b, "unit": unit})
        return Job(rows, assumed)

    def group_key(self, row: dict[str, Any]) -> Hashable:
        return (row["unit"], row["err"] is None)

    def preprocess(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        prep = (
            self.prep if rows[0]["unit"] == self.prep.values else dataclasses.replace(self.prep, values=rows[0]["unit"])
        )
        n, t_max = len(rows), max(len(r["values"]) for r in rows)
        time = np.zeros((n, t_max))
        vals = np.full((n, t_max), np.nan)
        band = np.zeros((n, t_max), np.int64)
        mask = np.ones((n, t_max), bool)
        err = None if rows[0]["err"] is None else np.ones((n, t_max))
        for k, r in enumerate(rows):
            m = len(r["values"])
            time[k, :m], vals[k, :m], band[k, :m], mask[k, :m] = r["time"], r["values"], r["band"], False
            if err is not None:
                err[k, :m] = r["err"]
        return dict(prep(time, vals, err, band, mask))
