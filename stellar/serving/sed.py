"""``/predict/sed``: photometry through the training datamodule's feature table."""

# no ``from __future__ import annotations``: LitServe reads the request class of decode_request from its annotation

import logging
from collections.abc import Hashable
from typing import Any

import numpy as np

from stellar.errors import StellarError, StellarValueError
from stellar.registry import ModelRegistry
from stellar.serving.base import Failure, Job, StellarAPI
from stellar.serving.schemas import SEDRequest

log = logging.getLogger(__name__)


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
