"""LitServe APIs: one per modality, each serving one registered model through the training preprocessing.

The flow of a request: pydantic validates the body in the HTTP process (:mod:`stellar.serving.schemas`); in the
inference worker :meth:`StellarAPI.decode_request` turns it into per-object rows (checks that need the model,
such as its name and wavelength coverage, happen here); :meth:`StellarAPI.predict` takes the rows of every
request of a batch, runs the modality's preprocessing on groups of compatible rows at once (the very object the
datamodule used, rebuilt from the registry version), one forward pass, calibration, and splits the results back
per request. A request that fails is answered on its own with a 4xx; the other requests of its batch are not
affected (LitServe fails a whole batch when a method raises, so failures travel as values, never as exceptions).
"""

# no ``from __future__ import annotations``: LitServe reads the request and response classes of decode_request and
# encode_response from their annotations, which must therefore be classes, not strings

import dataclasses
import logging
import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import litserve as ls
import numpy as np
from fastapi.responses import JSONResponse

from stellar.errors import StellarError, StellarValueError
from stellar.registry import DEFAULT_ROOT, LATEST, ModelRegistry
from stellar.serving.schemas import LightCurveRequest, PredictionResponse, SEDRequest, SpectralRequest

log = logging.getLogger(__name__)

#: rows per forward pass (bounds memory for large batches)
CHUNK_ROWS = 256


@dataclass
class Failure:
    """A request that cannot be answered: the HTTP status and what was wrong."""

    status: int
    detail: str


@dataclass
class Job:
    """One decoded request: an input row per object, and what was assumed about them."""

    rows: list[dict[str, Any]]
    assumed: list[str] = field(default_factory=list)


class StellarAPI(ls.LitAPI):
    """A registered model behind one endpoint (subclasses: one per modality).

    Parameters
    ----------
    model : str
        Registered model name.
    ref : str or int
        Version (``3``, ``"v3"``), alias (``"production"``) or ``"latest"``.
    registry_root : str
        Registry root (path or fsspec URL).
    api_path : str
        Route, e.g. ``/predict/spectral``.
    max_batch_size : int
        Most requests the worker takes into one batch.
    batch_timeout : float, s
        How long the worker waits to fill a batch.
    num_threads : int, optional
        torch threads of the worker (``None``: torch's default).
    """

    modality = "generic"

    def __init__(
        self,
        model: str,
        ref: str | int = LATEST,
        registry_root: str = DEFAULT_ROOT,
        api_path: str = "/predict",
        max_batch_size: int = 16,
        batch_timeout: float = 0.01,
        num_threads: int | None = 1,
    ):
        super().__init__(max_batch_size=int(max_batch_size), batch_timeout=float(batch_timeout), api_path=api_path)
        self.model_name = model
        self.ref = ref
        self.registry_root = str(registry_root)
        self.num_threads = num_threads
        self.load_error: str | None = None
        self.version_number = 0
        self.class_names: list[str] = []
        self.targets: list[str] = []

    # ---- setup -------------------------------------------------------------------------------------------
    def setup(self, device: str = "cpu") -> None:
        """Load the model, its calibrator and its preprocessing from the registry.

        A model that is not registered (yet) does not stop the server: this endpoint answers 404 saying so.
        """
        import torch

        from stellar.evaluation.calibration import calibrated_probs  # imported here, not on the first request

        self._calibrated_probs = calibrated_probs
        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        self.device = device
        try:
            version = ModelRegistry(self.registry_root).get(self.model_name, self.ref)
            self.net = version.load_model()
            self.calibrator = version.calibrator()
            self.prep = version.preprocessing()
            self.check_preprocessing(self.prep)
        except StellarError as err:
            self.load_error = f"model {self.model_name!r} ({self.ref}) is not available at {self.api_path}: {err}"
            log.error("%s", self.load_error)
            return
        self.version_number = version.version
        self.class_names = version.class_names
        self.targets = version.targets
        self.inputs = tuple(getattr(self.net, "inputs", ()))
        if hasattr(self.net, "to"):
            self.net = self.net.to(device)
        log.info("%s serves %s at %s", type(self).__name__, version.tag, self.api_path)

    def check_preprocessing(self, prep: Any) -> None:
        """Refuse a model whose stored preprocessing this endpoint cannot apply."""

    # ---- per request -------------------------------------------------------------------------------------
    def _decode(self, request: Any) -> Job | Failure:
        if self.load_error:
            return Failure(404, self.load_error)
        if request.model is not None and request.model != self.model_name:
            return Failure(
                404,
                f"unknown model {request.model!r}: {self.api_path} serves {self.model_name!r} (v{self.version_number})",
            )
        try:
            return self.to_job(request)
        except StellarError as err:
            return Failure(422, str(err))
        except (ValueError, TypeError, IndexError, ArithmeticError) as err:  # input the schema let through
            log.warning("request refused by %s: %r", type(self).__name__, err)
            return Failure(422, f"invalid input: {err}")

    def to_job(self, request: Any) -> Job:
        """Per-object input rows of a validated request (modality-specific)."""
        raise NotImplementedError

    def group_key(self, row: dict[str, Any]) -> Hashable:
        """Rows with the same key are preprocessed together in one call."""
        raise NotImplementedError

    def preprocess(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Model inputs (arrays with a first axis of ``len(rows)``) of a group of compatible rows."""
        raise NotImplementedError

    def valid_fraction(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        mask = inputs.get("mask")
        n = len(next(iter(inputs.values())))
        if mask is None:
            return np.ones(n)
        return 1.0 - mask.reshape(n, -1).mean(axis=1)

    # ---- LitAPI ------------------------------------------------------------------------------------------
    def batch(self, inputs: list[Job | Failure]) -> list[Job | Failure]:
        return list(inputs)

    def unbatch(self, output: list[Any]) -> list[Any]:
        return list(output)

    def predict(self, x: Any) -> Any:
        """Predictions of one decoded request, or of a list of them (a batch)."""
        jobs = x if isinstance(x, list) else [x]
        results: list[Any] = list(jobs)
        todo = [i for i, j in enumerate(jobs) if isinstance(j, Job)]
        inputs = self._preprocess_jobs(jobs, todo, results)
        todo = [i for i in todo if isinstance(results[i], Job)]
        if todo:
            arrays = {k: np.concatenate([inputs[i][k] for i in todo]) for k in inputs[todo[0]]}
            preds = self._predictions(arrays)
            start = 0
            for i in todo:
                n = len(jobs[i].rows)
                mine = preds[start : start + n]
                start += n
                broken = [r for r, p in enumerate(mine) if p.get("not_finite")]
                if broken:
                    why = "the model's output is not finite (values far outside the training range?)"
                    results[i] = Failure(422, f"object(s) {broken}: {why}")
                else:
                    results[i] = (jobs[i], mine)
        return results if isinstance(x, list) else results[0]

    def _preprocess_jobs(
        self, jobs: list[Any], todo: list[int], results: list[Any]
    ) -> dict[int, dict[str, np.ndarray]]:
        """Preprocess the rows of every job, grouped by :meth:`group_key`; a job with a bad row becomes a 422."""
        groups: dict[Hashable, list[tuple[int, int]]] = {}
        for i in todo:
            for r, row in enumerate(jobs[i].rows):
                groups.setdefault(self.group_key(row), []).append((i, r))
        per_row: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for members in groups.values():
            rows = [jobs[i].rows[r] for i, r in members]
            try:
                out = self.preprocess(rows)
                for k, (i, r) in enumerate(members):
                    per_row[i, r] = {key: v[k : k + 1] for key, v in out.items()}
            except (StellarError, ValueError, ArithmeticError):  # isolate the offending request(s): row by row
                for (i, r), row in zip(members, rows, strict=True):
                    try:
                        per_row[i, r] = self.preprocess([row])
                    except (StellarError, ValueError, ArithmeticError) as err:
                        results[i] = Failure(422, f"row {r}: {err}")
        inputs = {}
        for i in todo:
            if isinstance(results[i], Job):
                rows_out = [per_row[i, r] for r in range(len(jobs[i].rows))]
                inputs[i] = {k: np.concatenate([o[k] for o in rows_out]) for k in rows_out[0]}
                empty = np.flatnonzero(self.valid_fraction(inputs[i]) == 0)
                if len(empty):  # e.g. zero or negative flux: nothing survives the training preprocessing
                    why = "no valid sample after preprocessing (masked: non-finite, non-positive or off the grid)"
                    results[i] = Failure(422, f"object(s) {empty.tolist()} have {why}")
        return inputs

    def _outputs(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model-output contract (physical units) of model inputs, in chunks of :data:`CHUNK_ROWS`."""
        if hasattr(self.net, "predict_outputs"):  # estimators (XGBoost) follow the same contract on numpy arrays
            return dict(self.net.predict_outputs(arrays))
        import torch

        n = len(next(iter(arrays.values())))
        parts: list[dict[str, np.ndarray]] = []
        with torch.inference_mode():
            for s in range(0, n, CHUNK_ROWS):
                tensors = [torch.as_tensor(arrays[k][s : s + CHUNK_ROWS]).to(self.device) for k in self.inputs]
                out = self.net.to_physical(self.net(*tensors))
                parts.append({k: v.float().cpu().numpy() for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _predictions(self, arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        out = self._outputs(arrays)
        valid = self.valid_fraction(arrays)
        n = len(valid)
        # values far outside the training range can overflow the network: those rows are refused, not calibrated
        bad = np.zeros(n, bool)
        if "logits" in out:
            bad |= ~np.isfinite(out["logits"]).all(axis=1)
        for t in self.targets:
            bad |= ~np.isfinite(out[f"{t}_mean"])
        probs = None
        if "logits" in out and self.class_names:
            probs = np.full(out["logits"].shape, np.nan)
            if (~bad).any():
                probs[~bad] = self._calibrated_probs(self.calibrator, out["logits"][~bad])
        preds = []
        for k in range(n):
            p: dict[str, Any] = {"valid_fraction": float(valid[k]), "probabilities": {}, "targets": {}}
            if bad[k]:
                preds.append({**p, "not_finite": True})
                continue
            if probs is not None:
                p["probabilities"] = {c: _finite(probs[k, j]) or 0.0 for j, c in enumerate(self.class_names)}
                p["predicted_class"] = self.class_names[int(np.argmax(probs[k]))]
            for t in self.targets:
                logvar = float(out[f"{t}_logvar"][k])
                std = math.exp(0.5 * logvar) if math.isfinite(logvar) and logvar < 1400 else None
                p["targets"][t] = {"mean": _finite(out[f"{t}_mean"][k]), "std": std}
            preds.append(p)
        return preds

    def encode_response(self, output: Any) -> PredictionResponse:
        if isinstance(output, Failure):
            return JSONResponse(status_code=output.status, content={"detail": output.detail})  # type: ignore[return-value]
        job, preds = output
        return {  # type: ignore[return-value]  # FastAPI validates it against PredictionResponse
            "model": self.model_name,
            "version": self.version_number,
            "modality": self.modality,
            "calibrated": self.calibrator is not None,
            "predictions": preds,
            "assumed": job.assumed,
        }


def _finite(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def _matrix(rows: list[list[float]]) -> list[np.ndarray]:
    return [np.asarray(r, dtype=np.float64) for r in rows]


class SpectralAPI(StellarAPI):
    """``/predict/spectral``: spectra through :class:`~stellar.data.preprocess.spectra.SpectrumPreprocessing`.

    Flux without ``wavelengths`` is placed on the model's grid by one rule: the M samples are taken to cover the
    grid's range evenly in log λ (rest frame, vacuum), i.e. sample j is centred at
    ``log10 λ_j = e0 + (j + ½)(e1 − e0)/M`` with ``e0``, ``e1`` the grid's outer pixel edges. A spectrum of the
    grid's own length is therefore taken as on the grid, and a shorter one is spread over the whole range.
    """

    modality = "spectral"

    def check_preprocessing(self, prep: Any) -> None:
        if prep is None or not hasattr(prep, "grid"):
            raise StellarValueError(f"model {self.model_name!r} stores no spectrum preprocessing (with a grid)")

    def decode_request(self, request: SpectralRequest) -> Job | Failure:
        return self._decode(request)

    def _grid_edges(self) -> tuple[float, float]:
        g = np.asarray(self.prep.grid)
        step = float(g[1] - g[0])
        return float(g[0] - step / 2), float(g[-1] + step / 2)

    def to_job(self, request: SpectralRequest) -> Job:
        flux = _matrix(request.spectra)
        e0, e1 = self._grid_edges()
        assumed = []
        if request.wavelengths is None:
            lengths = sorted({len(f) for f in flux})
            assumed.append(
                f"no wavelengths: the {'/'.join(map(str, lengths))} samples per spectrum are taken to span the model "
                f"grid {10**e0:.1f}-{10**e1:.1f} Å (rest frame, vacuum) evenly in log wavelength"
            )
            waves = [10 ** (e0 + (np.arange(len(f)) + 0.5) * (e1 - e0) / len(f)) for f in flux]
        elif isinstance(request.wavelengths[0], list):
            waves = _matrix(request.wavelengths)
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
        out = prep(wave, flux, ivar, None, redshift=z)
        return {"flux": out["flux"], "ivar": out["ivar"], "mask": out["mask"]}


class LightCurveAPI(StellarAPI):
    """``/predict/lightcurve``: light curves through the datamodule's ``LightCurvePreprocessing``.

    Defaults for what a request leaves out: times one day apart (0, 1, 2… d), every point in the model's first
    band, values in the unit the model was trained on. Errors, when absent, are the preprocessing's own rule (each
    band's robust scatter).
    """

    modality = "lightcurve"

    def check_preprocessing(self, prep: Any) -> None:
        if prep is None or not hasattr(prep, "bands"):
            raise StellarValueError(f"model {self.model_name!r} stores no light-curve preprocessing (with bands)")

    def decode_request(self, request: LightCurveRequest) -> Job | Failure:
        return self._decode(request)

    def to_job(self, request: LightCurveRequest) -> Job:
        from stellar.data.preprocess.lightcurve_inputs import band_indices

        values = _matrix(request.lightcurves)
        bands = list(self.prep.bands)
        unit = request.unit or self.prep.values
        assumed = []
        if request.times is None:
            assumed.append("no times: points are taken to be 1 day apart (t = 0, 1, 2… d)")
            times = [np.arange(len(v), dtype=np.float64) for v in values]
        elif isinstance(request.times[0], list):
            times = _matrix(request.times)
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


class _Photometry:
    """The read view of a stored SED dataset that ``SEDDataModule.load_arrays`` needs, over request arrays."""

    name = "request"

    def __init__(self, bands: list[str], mag: np.ndarray, err: np.ndarray):
        self.attrs = {"bands": bands}
        self._arrays = {"mag": mag, "mag_err": err}

    def load(self, name: str) -> np.ndarray:
        return self._arrays[name]


class SEDAPI(StellarAPI):
    """``/predict/sed``: photometry through the training datamodule's own feature table
    (``SEDDataModule.load_arrays``: dereddening, colours, absolute magnitude, metadata features), rebuilt from the
    registry version's config; columns are put in the model's band order (bands it lacks: 422, bands a request
    lacks: NaN, as missing photometry in training).
    """

    modality = "sed"

    def setup(self, device: str = "cpu") -> None:
        super().setup(device)
        if self.load_error:
            return
        from hydra.utils import instantiate

        try:
            version = ModelRegistry(self.registry_root).get(self.model_name, self.version_number)
            self.bands = [str(b) for b in version.manifest.get("bands") or []]
            self.feature_names = [str(f) for f in version.manifest.get("feature_names") or []]
            if not self.bands or not self.feature_names:
                raise StellarValueError(f"{version.tag} stores no bands/feature_names: register it again")
            dm_cfg = version.training_config().datamodule
            self.dm = instantiate(dm_cfg, source=None, store_root="memory://stellar-serving", split=None)
        except StellarError as err:
            self.load_error = f"model {self.model_name!r} cannot serve SEDs: {err}"
            log.error("%s", self.load_error)

    def check_preprocessing(self, prep: Any) -> None:
        """SED features are built by the datamodule itself (no separate preprocessing object)."""

    def decode_request(self, request: SEDRequest) -> Job | Failure:
        return self._decode(request)

    def to_job(self, request: SEDRequest) -> Job:
        mags = np.asarray(request.magnitudes, dtype=np.float64)
        errs = np.full_like(mags, np.nan) if request.errors is None else np.asarray(request.errors, np.float64)
        assumed = []
        if request.bands is None:
            if mags.shape[1] != len(self.bands):
                raise StellarValueError(
                    f"without bands, magnitudes need one column per model band {self.bands}; got {mags.shape[1]}"
                )
            assumed.append(f"no bands: the columns are taken to be {self.bands}")
            cols = list(range(len(self.bands)))
        else:
            unknown = sorted(set(request.bands) - set(self.bands))
            if unknown:
                raise StellarValueError(f"unknown band(s) {unknown}; the model's bands are {self.bands}")
            cols = [request.bands.index(b) if b in request.bands else -1 for b in self.bands]
            missing = [b for b, c in zip(self.bands, cols, strict=True) if c < 0]
            if missing:
                assumed.append(f"bands {missing} not sent: missing (NaN), as missing photometry in training")
        mag = np.where(np.asarray(cols) >= 0, mags[:, cols], np.nan)
        err = np.where(np.asarray(cols) >= 0, errs[:, cols], np.nan)
        meta_cols = {"ebv": request.ebv, "parallax": request.parallax, "parallax_err": request.parallax_err}
        for name, col in meta_cols.items():
            if col is None:
                assumed.append(f"no {name}: " + ("not dereddened" if name == "ebv" else "missing (NaN)"))
        rows = []
        for i in range(len(mag)):
            meta = {k: float(v[i]) for k, v in meta_cols.items() if v is not None}
            rows.append({"mag": mag[i], "err": err[i], "meta": meta})
        return Job(rows, assumed)

    def group_key(self, row: dict[str, Any]) -> Hashable:
        return tuple(sorted(row["meta"]))

    def preprocess(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        import pandas as pd

        meta = pd.DataFrame([r["meta"] for r in rows], index=range(len(rows)))
        for col in ("parallax", *getattr(self.dm, "extra_features", [])):
            if col not in meta.columns:
                meta[col] = np.nan
        ds = _Photometry(self.bands, np.stack([r["mag"] for r in rows]), np.stack([r["err"] for r in rows]))
        arrays = self.dm.load_arrays(ds, meta)
        if list(self.dm.feature_names) != self.feature_names:
            raise StellarValueError(f"features {self.dm.feature_names} differ from the model's {self.feature_names}")
        return arrays

    def valid_fraction(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.isfinite(inputs["features"]).mean(axis=1)
