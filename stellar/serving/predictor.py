"""One Python predictor behind every door: :func:`load` in a session, the ``/predict/*`` endpoints and catalogue
scoring all answer through the same set-up endpoint object, so the three cannot disagree.

A :class:`Predictor` holds the modality's :class:`~stellar.serving.base.StellarAPI`, set up from a registry version
(model, calibrators, training preprocessing, training reference). :meth:`Predictor.answer` is the model work of
request bodies: the pydantic schema the server validates with, then the endpoint's decode → preprocess → predict →
calibrate → OOD path; catalogue scoring calls it for its table rows. :meth:`Predictor.predict` takes what
astronomers hold (see :mod:`stellar.serving.inputs`), answers one body per object and returns an astropy ``Table``.

Examples
--------
>>> import stellar  # doctest: +SKIP
>>> stellar.load("spectral_cnn@production", registry="registry").predict(flux, wavelength=wave)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Column, Table

from stellar.errors import StellarDataError, StellarValueError
from stellar.registry import DEFAULT_ROOT, LATEST, ModelRegistry, ModelVersion
from stellar.serving.base import Failure, Job, StellarAPI
from stellar.serving.files import is_path, read_survey_files
from stellar.utils.units import TARGET_UNITS

__all__ = ["Predictor", "load"]

#: objects per decode → predict call (bounds memory)
ANSWER_ROWS = 4096


def load(model: str, registry: str | None = None) -> Predictor:
    """The :class:`Predictor` of a registered model.

    Parameters
    ----------
    model : str
        ``<name>[@<version or alias>]``, e.g. ``"spectral_cnn@production"``, ``"spectral_cnn@3"``; latest without.
    registry : str, optional
        Registry root, a path or an fsspec URL (default ``$STELLAR_REGISTRY``, else ``registry``, as the server).
    """
    name, _, ref = str(model).partition("@")
    root = registry or os.environ.get("STELLAR_REGISTRY") or DEFAULT_ROOT
    return Predictor.from_version(ModelRegistry(root).get(name, ref or LATEST))


class Predictor:
    """A registered model answering in Python what its endpoint answers over HTTP.

    Parameters
    ----------
    api : StellarAPI
        The modality's endpoint, already set up (:meth:`from_version` builds one).
    """

    def __init__(self, api: StellarAPI):
        self.api = api

    @classmethod
    def from_version(
        cls, version: ModelVersion, api_path: str = "/predict", num_threads: int | None = None
    ) -> Predictor:
        """The predictor of ``version``: its modality's endpoint, set up on the CPU.

        ``num_threads`` ``None`` leaves torch's thread count as it is (a Python session's own setting).
        """
        from stellar.serving import api as api_module
        from stellar.serving.table_requests import modality_of

        # a fused model answers one dict of modalities per object (/predict/multimodal); it has no table scoring
        fused = version.manifest.get("modality") == api_module.MultiModalAPI.modality
        api_cls = api_module.MultiModalAPI if fused else getattr(api_module, modality_of(version).api)
        api = api_cls(version.name, version.version, version.registry.root, api_path=api_path, num_threads=num_threads)
        api.setup("cpu")
        if api.load_error:
            raise StellarDataError(api.load_error)
        return cls(api)

    @property
    def name(self) -> str:
        """Registered model name."""
        return self.api.model_name

    @property
    def version(self) -> int:
        """Registry version number."""
        return self.api.version_number

    def answer(self, bodies: Sequence[dict[str, Any]]) -> list[Failure | tuple[Job, list[dict[str, Any]]]]:
        """The endpoint's answer to each request body: validated by its schema, decoded, predicted together.

        A body that fails is a :class:`~stellar.serving.base.Failure` (status and detail) and affects no other.
        """
        from pydantic import ValidationError

        request_model = type(self.api).decode_request.__annotations__["request"]
        decoded: list[Any] = []
        for body in bodies:
            try:
                decoded.append(self.api.decode_request(request_model.model_validate(body)))
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(map(str, first["loc"]))  # empty for a check of the whole body
                decoded.append(Failure(422, f"{where}: {first['msg']}" if where else first["msg"]))
        return list(self.api.predict(decoded)) if decoded else []

    def predict(self, data: Any, **kwargs: Any) -> Table:
        """Calibrated predictions of every object of ``data``, one row each, in order.

        Parameters
        ----------
        data : array-like, Quantity, Table, DataFrame, LightCurve, LightCurveCollection, list of dict, or path
            What the modality takes, see :func:`~stellar.serving.inputs.spectra_bodies` (spectra),
            :func:`~stellar.serving.inputs.lightcurve_bodies` (light curves),
            :func:`~stellar.serving.inputs.sed_bodies` (photometry) and
            :func:`~stellar.serving.inputs.multimodal_bodies` (a fused model: one dict of modalities per object);
            or a survey file or folder of them (path or fsspec URL; spectra and light curves, read by the ingest
            readers, see :mod:`stellar.serving.files`: the answer then starts with ``object_id`` and ``source``).
        **kwargs
            The modality's other arguments (``wavelength``, ``flux_err``, ``time``, ``bands``…).

        Returns
        -------
        Table
            ``predicted_class``, ``p_<class>`` (calibrated), per regression target ``<t>_mean`` and ``<t>_std``
            (1σ, calibrated when the model has an interval calibrator, then also ``<t>_lo95``/``<t>_hi95``) with
            their units, ``valid_fraction``, ``ood_score``/``ood`` (models with a training reference) and
            ``warnings`` (what was assumed or masked); ``meta`` names the model, version and calibration.

        Raises
        ------
        StellarValueError
            Input of a wrong type, shape or unit, or objects the endpoint refuses (each named with its reason).
        """
        if is_path(data):
            return self._predict_files(data, **kwargs)
        try:
            bodies, notes = self.api.bodies(data, **kwargs)
        except TypeError as err:
            raise StellarValueError(f"{self.name} ({self.api.modality}): {err}") from err
        return self._answer_table(bodies, notes)

    def _predict_files(self, path: str | os.PathLike[str], **kwargs: Any) -> Table:
        """Predictions of every object of a folder of survey files (:mod:`stellar.serving.files`), with its
        ``object_id`` and ``source`` file first."""
        if self.api.record_kind is None:
            raise StellarValueError(
                f"data={str(path)!r}: {self.name} ({self.api.modality}) reads no survey files; pass "
                "arrays, a Table or a DataFrame"
            )
        if kwargs:
            raise StellarValueError(f"data={str(path)!r} (survey files) takes no other argument; got {sorted(kwargs)}")
        found = read_survey_files(path, self.api.record_kind)
        bodies: list[dict[str, Any]] = []
        notes: list[list[str]] = []
        for record in found.records:
            args, done = self.api.record_arguments(record)
            b, n = self.api.bodies(**args)
            bodies += b
            notes += [[*done, *x] for x in n]
        table = self._answer_table(bodies, notes)
        table.add_column(found.sources, name="source", index=0)
        table.add_column(found.object_ids, name="object_id", index=0)
        return table

    def _answer_table(self, bodies: list[dict[str, Any]], notes: list[list[str]]) -> Table:
        outputs: list[Any] = []
        for s in range(0, len(bodies), ANSWER_ROWS):
            outputs += self.answer(bodies[s : s + ANSWER_ROWS])
        failed = [f"data[{i}]: {o.detail}" for i, o in enumerate(outputs) if isinstance(o, Failure)]
        if failed:
            more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
            raise StellarValueError(f"{len(failed)} object(s) refused: " + "; ".join(failed[:5]) + more)
        return self._table(outputs, notes)

    def _table(self, outputs: list[Any], notes: list[list[str]]) -> Table:
        api = self.api
        preds = [out[1][0] for out in outputs]
        table = Table(meta=self.meta())
        if api.class_names:
            table["predicted_class"] = [p.get("predicted_class") or "" for p in preds]
            for c in api.class_names:
                table[f"p_{c}"] = [p["probabilities"].get(c, np.nan) for p in preds]
        for t in api.targets:
            unit = TARGET_UNITS.get(t)
            est = [p["targets"][t] for p in preds]
            table[f"{t}_mean"] = Column(_floats([e["mean"] for e in est]), unit=unit)
            table[f"{t}_std"] = Column(_floats([e["std"] for e in est]), unit=unit)
            if api.interval_calibrator is not None:
                bounds = [e.get("interval_95") or (None, None) for e in est]
                table[f"{t}_lo95"] = Column(_floats([b[0] for b in bounds]), unit=unit)
                table[f"{t}_hi95"] = Column(_floats([b[1] for b in bounds]), unit=unit)
        table["valid_fraction"] = [p["valid_fraction"] for p in preds]
        if api.reference is not None:
            table["ood_score"] = _floats([p.get("ood_score") for p in preds])
            table["ood"] = [bool(p.get("ood")) for p in preds]
        table["warnings"] = ["; ".join([*out[0].assumed, *n]) for out, n in zip(outputs, notes, strict=True)]
        return table

    def meta(self) -> dict[str, Any]:
        """What every answer's ``Table.meta`` carries: model, version, modality and calibration."""
        return {
            "model": self.name,
            "version": self.version,
            "modality": self.api.modality,
            "calibrated": self.api.calibrator is not None,
            "intervals_calibrated": self.api.interval_calibrator is not None,
        }

    def __repr__(self) -> str:
        return f"Predictor({self.name!r} v{self.version}, {self.api.modality})"


def _floats(values: list[float | None]) -> np.ndarray:
    """``None`` (a value the endpoint could not give) as NaN."""
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
