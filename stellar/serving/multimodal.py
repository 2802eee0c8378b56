"""``/predict/multimodal``: any subset of an object's spectrum, photometry (+ parallax) and light curve, fused.

Each part goes through its own modality's endpoint logic (:class:`~stellar.serving.spectral.SpectralAPI`,
:class:`~stellar.serving.sed.SEDAPI`, :class:`~stellar.serving.lightcurve.LightCurveAPI`) with the preprocessing
that training applied to that modality (the registry version's
:class:`~stellar.data.preprocess.multimodal.MultiModalPreprocessing`); absent parts are padded and masked as in the
multi-modal datamodule, and the fused model reads only the parts an object has.
"""

# no ``from __future__ import annotations``: LitServe reads the request and response classes of decode_request and
# encode_response from their annotations, which must therefore be classes, not strings

from collections.abc import Hashable
from typing import Any

import numpy as np

from stellar.data.preprocess.multimodal import MultiModalPreprocessing
from stellar.errors import StellarValueError
from stellar.serving.base import Failure, Job, StellarAPI
from stellar.serving.inputs import multimodal_bodies
from stellar.serving.lightcurve import LightCurveAPI
from stellar.serving.schemas import (
    LightCurveRequest,
    MultiModalRequest,
    MultiModalResponse,
    SEDRequest,
    SpectralRequest,
)
from stellar.serving.sed import SEDAPI
from stellar.serving.spectral import SpectralAPI

#: request part → the model's modality, its single-modality endpoint and request
PARTS: dict[str, tuple[str, type[StellarAPI], type[Any]]] = {
    "spectrum": ("spectrum", SpectralAPI, SpectralRequest),
    "photometry": ("sed", SEDAPI, SEDRequest),
    "lightcurve": ("lightcurve", LightCurveAPI, LightCurveRequest),
}
_SEP = "/"


def _one_row(part: str, p: Any) -> dict[str, Any]:
    """The single-modality request fields of one object's part (one row)."""
    if part == "spectrum":
        return {
            "spectra": [p.flux], "wavelengths": p.wavelengths, "errors": None if p.errors is None else [p.errors],
            "redshift": None if p.redshift is None else [p.redshift], "medium": p.medium,
        }  # fmt: skip
    if part == "photometry":
        one = {k: None if getattr(p, k) is None else [getattr(p, k)] for k in ("ebv", "parallax", "parallax_err")}
        return {
            "magnitudes": [p.magnitudes],
            "bands": p.bands,
            "errors": None if p.errors is None else [p.errors],
            **one,
        }
    bands = [p.bands] if isinstance(p.bands, list) else p.bands
    return {"lightcurves": [p.values], "times": p.times, "errors": None if p.errors is None else [p.errors],
            "bands": bands, "unit": p.unit}  # fmt: skip


def _pad(a: np.ndarray, n: int, present: np.ndarray) -> np.ndarray:
    """(n, …) with ``a`` in the present rows and the absent value elsewhere (masks True, values 0)."""
    out = np.full((n, *a.shape[1:]), True if a.dtype == bool else 0, dtype=a.dtype)
    out[present] = a
    return out


class MultiModalAPI(StellarAPI):
    """``/predict/multimodal``: a registered fused model on any subset of each object's parts: the neural fusion
    (``model=fusion``) or late fusion of per-modality estimators (``model=late_fusion``).

    Request parts are ``spectrum``, ``photometry`` (with ``parallax``) and ``lightcurve``; the model's modalities
    are ``spectrum``, ``sed`` and ``lightcurve``. Each prediction says which parts were used
    (``modalities_used``); probabilities are calibrated and intervals come from the run's interval calibrator, as on
    every endpoint.
    """

    modality = "multimodal"

    def check_preprocessing(self, prep: Any) -> None:
        if not isinstance(prep, MultiModalPreprocessing):
            raise StellarValueError(f"model {self.model_name!r} stores no multi-modal preprocessing")

    def use_preprocessing(self, prep: Any) -> None:
        super().use_preprocessing(prep)
        #: request part → the single-modality endpoint that decodes and preprocesses it (never set up: no model)
        self.parts: dict[str, StellarAPI] = {}
        for part, (modality, api, _) in PARTS.items():
            if prep.modalities.get(modality) is not None:
                helper = api(self.model_name, self.ref, self.registry_root, f"{self.api_path}#{part}")
                helper.use_preprocessing(prep.modalities[modality])
                self.parts[part] = helper

    def setup(self, device: str = "cpu") -> None:
        super().setup(device)
        if not self.load_error:
            modalities = [m for m in self.inputs if m != "present"]
            #: request part → model modality, for the parts the model reads
            self.used = {p: m for p, (m, _, _) in PARTS.items() if m in modalities and p in self.parts}

    def bodies(self, data: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], list[list[str]]]:
        """Bodies of objects held in Python, one dict of modalities each:
        :func:`~stellar.serving.inputs.multimodal_bodies`."""
        if kwargs:
            raise StellarValueError(f"arguments {sorted(kwargs)} go inside each object's dict of modalities")
        return multimodal_bodies(data, self.parts.get("photometry"))

    def decode_request(self, request: MultiModalRequest) -> Job | Failure:
        return self._decode(request)

    def to_job(self, request: MultiModalRequest) -> Job:
        rows: list[dict[str, Any]] = []
        assumed: dict[str, list[int]] = {}
        for i, obj in enumerate(request.objects):
            row: dict[str, Any] = {}
            for part in PARTS:
                value = getattr(obj, part)
                if value is None:
                    continue
                if part not in self.used:
                    raise StellarValueError(
                        f"objects[{i}].{part}: model {self.model_name!r} reads no {part}; it reads {sorted(self.used)}"
                    )
                single = PARTS[part][2].model_construct(**_one_row(part, value))
                try:
                    job = self.parts[part].to_job(single)
                except StellarValueError as err:
                    raise StellarValueError(f"objects[{i}].{part}: {err}") from err
                row[part] = job.rows[0]
                for a in job.assumed:
                    assumed.setdefault(f"{part}: {a}", []).append(i)
            rows.append(row)
        return Job(rows, [f"{a} (objects {idx})" for a, idx in assumed.items()])

    def group_key(self, row: dict[str, Any]) -> Hashable:
        return 0  # every row in one call: preprocess groups each part by its own endpoint's key

    def preprocess(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        n = len(rows)
        out: dict[str, np.ndarray] = {}
        for part, modality in self.used.items():
            present = np.array([part in r for r in rows])
            out[f"present{_SEP}{modality}"] = present
            if not present.any():
                continue
            helper = self.parts[part]
            groups: dict[Hashable, list[int]] = {}
            for k in np.flatnonzero(present):
                groups.setdefault(helper.group_key(rows[k][part]), []).append(int(k))
            fields: dict[str, np.ndarray] = {}
            for members in groups.values():
                got = helper.preprocess([rows[k][part] for k in members])
                for name, a in got.items():
                    a = np.asarray(a)
                    if name not in fields:
                        fields[name] = np.full((n, *a.shape[1:]), True if a.dtype == bool else 0, dtype=a.dtype)
                    fields[name][members] = a
            for name, a in fields.items():
                out[f"{modality}{_SEP}{name}"] = a
        return out

    def merge_inputs(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Stacked inputs of groups that may lack a modality: its fields are padded as absent there."""
        shapes: dict[str, np.ndarray] = {}
        for p in parts:
            for k, a in p.items():
                shapes.setdefault(k, a)
        merged = {}
        for k, like in shapes.items():
            pieces = []
            for p in parts:
                n = len(next(iter(p.values())))
                pieces.append(p[k] if k in p else _pad(like[:0], n, np.zeros(n, bool)))
            merged[k] = np.concatenate(pieces)
        return merged

    def _modal(self, arrays: dict[str, Any], modality: str) -> dict[str, Any]:
        prefix = f"{modality}{_SEP}"
        return {k[len(prefix) :]: a for k, a in arrays.items() if k.startswith(prefix)}

    def summary_inputs(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """The inputs nested per modality with their presence flags, as
        :func:`~stellar.monitoring.summaries.summarize` reads several modalities."""
        present = {m: arrays[f"present{_SEP}{m}"] for m in self.used.values() if f"present{_SEP}{m}" in arrays}
        fields = {m: self._modal(arrays, m) for m in present}  # none for a modality absent from the whole batch
        return {"present": present, **{m: f for m, f in fields.items() if f}}

    def valid_fraction(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Per object: the mean over its parts of each part's valid fraction (as its own endpoint counts it)."""
        n = len(next(iter(inputs.values())))
        total, count = np.zeros(n), np.zeros(n)
        for part, modality in self.used.items():
            present = inputs[f"present{_SEP}{modality}"]
            fields = self._modal(inputs, modality)
            if present.any() and fields:
                total[present] += self.parts[part].valid_fraction(fields)[present]
                count += present
        return np.divide(total, count, out=np.zeros(n), where=count > 0)

    def _outputs(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if hasattr(self.net, "predict_outputs"):  # late fusion (an estimator): the per-object arrays, nested
            return dict(self.net.predict_outputs({name: self._modal(arrays, name) for name in self.inputs}))
        import torch

        from stellar.serving.base import CHUNK_ROWS

        n = len(next(iter(arrays.values())))
        parts: list[dict[str, np.ndarray]] = []
        with torch.inference_mode():
            for s in range(0, n, CHUNK_ROWS):
                chunk = {k: torch.as_tensor(a[s : s + CHUNK_ROWS]).to(self.device) for k, a in arrays.items()}
                b = len(next(iter(chunk.values())))
                inputs: list[dict[str, torch.Tensor]] = []
                for name in self.inputs:
                    fields = self._modal(chunk, name)
                    # a modality no object of the batch has: a placeholder the encoder never reads (none present)
                    inputs.append(fields or {"absent": torch.zeros(b, 1, device=self.device)})
                out = self.net.to_physical(self.net(*inputs))
                parts.append({k: v.float().cpu().numpy() for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def subset_groups(self, arrays: dict[str, np.ndarray]) -> list[str] | None:
        """Each object's modality subset from its presence masks (model modality names, e.g. ``spectrum+sed``)."""
        from stellar.evaluation.calibration import subset_names

        masks = {m: arrays[f"present{_SEP}{m}"] for m in self.used.values() if f"present{_SEP}{m}" in arrays}
        return [str(g) for g in subset_names(masks)] if masks else None

    def _predictions(self, arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        preds = super()._predictions(arrays)
        for k, p in enumerate(preds):
            p["modalities_used"] = [part for part, m in self.used.items() if arrays[f"present{_SEP}{m}"][k]]
        return preds

    def encode_response(self, output: Any) -> MultiModalResponse:
        return super().encode_response(output)  # type: ignore[return-value]
