"""The contract every calibrator follows (:class:`BaseProbCalibrator`): fit, transform, a JSON round trip.

Subclasses register themselves by ``type_name``, so :meth:`BaseProbCalibrator.from_dict` rebuilds the right one from
a registry version's ``calibrator.json``. :func:`calibrated_probs` applies a calibrator (or none) to model logits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np

from stellar.errors import StellarValueError
from stellar.evaluation.calibration.registry import TypeRegistered
from stellar.evaluation.calibration.scores import InputKind, softmax, validate_scores

_C = TypeVar("_C", bound="BaseProbCalibrator")


class BaseProbCalibrator(TypeRegistered, ABC):
    """Contract of every calibrator: fit on held-out scores, transform to probabilities, JSON round trip.

    Subclasses set ``type_name`` (the ``"type"`` key of :meth:`to_dict`) and are registered automatically, so
    :meth:`from_dict` rebuilds the right subclass. They implement ``_fit``, ``_transform``, ``_state`` and
    ``_from_state``; validation, the fitted check and the class-count check live here.
    """

    _registry: ClassVar[dict[str, type[Any]]] = {}
    input_kind: InputKind
    #: whether ``transform`` needs ``fit`` first (the identity calibrator does not)
    requires_fit: ClassVar[bool] = True

    def __init__(self) -> None:
        self.n_classes_: int | None = None

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` (or ``from_dict``) has set the fitted state."""
        return self.n_classes_ is not None

    def fit(self: _C, scores: Any, y_true: Any) -> _C:
        """Fit on held-out ``scores`` (of kind ``input_kind``), shape (N, C), and labels ``y_true`` (N,)."""
        s, y = validate_scores(scores, y_true, kind=self.input_kind, name="scores")
        self._fit(s, y)
        self.n_classes_ = s.shape[1]
        return self

    def transform(self, scores: Any) -> np.ndarray:
        """Calibrated probabilities, shape (N, C), rows summing to 1; ``scores`` are of kind ``input_kind``."""
        if self.requires_fit and not self.is_fitted:
            raise StellarValueError(f"{type(self).__name__} is not fitted: call fit(scores, y_true) before transform")
        s, _ = validate_scores(scores, kind=self.input_kind, name="scores")
        if self.n_classes_ is not None and s.shape[1] != self.n_classes_:
            raise StellarValueError(f"scores must have {self.n_classes_} class columns (as in fit), found {s.shape[1]}")
        return self._transform(s)

    def fit_transform(self, scores: Any, y_true: Any) -> np.ndarray:
        """``fit(scores, y_true)`` then ``transform(scores)`` (in-sample: use held-out data to judge calibration)."""
        return self.fit(scores, y_true).transform(scores)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: ``type``, ``input_kind``, ``n_classes`` and the fitted parameters."""
        if self.requires_fit and not self.is_fitted:
            raise StellarValueError(f"{type(self).__name__} is not fitted: call fit(scores, y_true) before to_dict")
        return {"type": self.type_name, "input_kind": self.input_kind, "n_classes": self.n_classes_, **self._state()}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> BaseProbCalibrator:
        """Rebuild a calibrator from :meth:`to_dict` output (e.g. after ``json.loads``), as the right subclass."""
        obj: BaseProbCalibrator = cls._rebuild(payload, "calibrator")
        if obj.requires_fit and not obj.is_fitted:
            name = payload["type"]
            raise StellarValueError(f"payload for calibrator type {name!r} must include 'n_classes' (a fitted state)")
        return obj

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any]) -> BaseProbCalibrator:
        obj = cls._from_state(payload)
        n_classes = payload.get("n_classes")
        obj.n_classes_ = None if n_classes is None else int(n_classes)
        return obj

    @abstractmethod
    def _fit(self, scores: np.ndarray, y: np.ndarray) -> None: ...

    @abstractmethod
    def _transform(self, scores: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _state(self) -> dict[str, Any]: ...

    @classmethod
    @abstractmethod
    def _from_state(cls, payload: Mapping[str, Any]) -> BaseProbCalibrator: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fitted={self.is_fitted})"


def calibrated_probs(calibrator: BaseProbCalibrator | None, logits: np.ndarray) -> np.ndarray:
    """Probabilities after the calibrator (plain softmax without one); it is fed logits or probabilities as it asks."""
    if calibrator is None:
        return softmax(logits)
    return calibrator.transform(logits if calibrator.input_kind == "logits" else softmax(logits))
