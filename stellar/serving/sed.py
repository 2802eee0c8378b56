"""``/predict/sed``: photometry through the training ``SEDPreprocessing``."""

# no ``from __future__ import annotations``: LitServe reads the request class of decode_request from its annotation

import dataclasses
from collections.abc import Hashable
from typing import Any

import numpy as np

from stellar.data.preprocess.sed_inputs import SEDPreprocessing
from stellar.errors import StellarValueError
from stellar.serving.base import Failure, Job, StellarAPI
from stellar.serving.inputs import sed_bodies
from stellar.serving.schemas import SEDRequest


class SEDAPI(StellarAPI):
    """``/predict/sed``: photometry through the registry version's
    :class:`~stellar.data.preprocess.sed_inputs.SEDPreprocessing` (dereddening, colours, absolute magnitude,
    metadata features: the very object the datamodule used); columns are put in the model's band order (bands it
    lacks: 422, bands a request lacks: NaN, as missing photometry in training). Metadata features that a request
    cannot carry or leaves out are NaN.
    """

    modality = "sed"

    def use_preprocessing(self, prep: Any) -> None:
        super().use_preprocessing(prep)
        self.bands = list(prep.bands)
        self.feature_names = prep.feature_names()

    def check_preprocessing(self, prep: Any) -> None:
        if not isinstance(prep, SEDPreprocessing) or not prep.bands:
            raise StellarValueError(f"model {self.model_name!r} stores no SED preprocessing (with bands)")

    def load_preprocessing(self, version: Any) -> Any:
        """The stored preprocessing (for a version registered before SEDs stored one: the same object rebuilt from
        its training config and its manifest's bands); its features must be those the model was fitted on."""
        prep = version.preprocessing()
        fitted = [str(f) for f in version.manifest.get("feature_names") or []]
        if prep is None:
            dm_cfg = version.training_config().get("datamodule") or {}
            keys = {f.name: dm_cfg[f.name] for f in dataclasses.fields(SEDPreprocessing) if f.name in dm_cfg}
            prep = SEDPreprocessing(**{**keys, "bands": version.manifest.get("bands") or None})
        if isinstance(prep, SEDPreprocessing) and prep.bands and fitted and prep.feature_names() != fitted:
            raise StellarValueError(f"{version.tag}: features {prep.feature_names()} differ from the fitted {fitted}")
        return prep

    def bodies(self, data: Any, **kwargs: Any) -> tuple[list[dict[str, Any]], list[list[str]]]:
        """Bodies of photometry held in Python: :func:`~stellar.serving.inputs.sed_bodies`."""
        return sed_bodies(data, self, **kwargs)

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
                continue
            bad = [i for i, v in enumerate(col) if not np.isfinite(v)]
            if bad:  # NaN/inf parallax sent: missing, as in training, and said so (ebv: refused by the schema)
                assumed.append(f"{name} not finite: missing (NaN)" + ("" if len(col) == 1 else f" (rows {bad})"))
        rows = []
        for i in range(len(mag)):
            meta = {k: float(v[i]) for k, v in meta_cols.items() if v is not None}
            rows.append({"mag": mag[i], "err": err[i], "meta": meta})
        return Job(rows, assumed)

    def group_key(self, row: dict[str, Any]) -> Hashable:
        return tuple(sorted(row["meta"]))

    def preprocess(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        n = len(rows)
        meta = {k: np.asarray([r["meta"][k] for r in rows], dtype=np.float64) for k in rows[0]["meta"]}
        for col in self.prep.required_columns():  # what a request cannot carry or left out: missing, as in training
            meta.setdefault(col, np.full(n, np.nan))
        return dict(self.prep(np.stack([r["mag"] for r in rows]), np.stack([r["err"] for r in rows]), meta))

    def valid_fraction(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.isfinite(inputs["features"]).mean(axis=1)
