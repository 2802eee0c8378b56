"""Probability calibration: maps from model scores to calibrated class probabilities, and calibration metrics.

Every calibrator follows one contract (:class:`BaseProbCalibrator`): ``fit(scores, y_true)`` on held-out data,
``transform(scores)`` → probabilities of shape (N, C) whose rows sum to 1, and a JSON round trip
(``to_dict()`` / ``BaseProbCalibrator.from_dict(payload)``) so the fitted map travels with a registry version.
``input_kind`` says whether a calibrator reads raw ``"logits"`` or softmaxed ``"probs"``, so a pipeline knows
what to feed it. Labels must be known here (integers in ``[0, C)``); drop unlabelled rows (label < 0) first.

This module imports nothing from ``stellar.evaluation.metrics`` (which builds its report on these functions).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar, overload

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from scipy.special import softmax as _scipy_softmax
from sklearn.isotonic import IsotonicRegression

from stellar.errors import StellarConfigError, StellarValueError

log = logging.getLogger(__name__)

InputKind = Literal["logits", "probs"]
INPUT_KINDS: tuple[str, ...] = ("logits", "probs")
#: how far a row of probabilities may sum away from 1 and still be accepted
PROB_SUM_TOL = 1e-3
# float noise from a softmax or a renormalisation, not a real excursion outside [0, 1]
_PROB_RANGE_TOL = 1e-6
# floor on the probability of the true class in the NLL, so a confident miss costs ~34.5 nats instead of inf
_NLL_FLOOR = 1e-15

_C = TypeVar("_C", bound="BaseProbCalibrator")


# --------------------------------------------------------------------------------------------------- validation


@overload
def validate_scores(
    scores: Any, y_true: None = None, *, kind: InputKind, name: str = "scores"
) -> tuple[np.ndarray, None]: ...


@overload
def validate_scores(
    scores: Any, y_true: Any, *, kind: InputKind, name: str = "scores"
) -> tuple[np.ndarray, np.ndarray]: ...


def validate_scores(
    scores: Any, y_true: Any = None, *, kind: InputKind, name: str = "scores"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Check and convert a score matrix (and optionally its labels); the one validation helper of this module.

    Parameters
    ----------
    scores : array-like, shape (N, C)
        Logits or probabilities, one row per object, one column per class.
    y_true : array-like of int, shape (N,), optional
        True class indices in ``[0, C)``.
    kind : {"logits", "probs"}
        ``"probs"`` additionally requires values in [0, 1] with rows summing to 1 within ``PROB_SUM_TOL``.
    name : str
        Argument name used in error messages.

    Returns
    -------
    scores : numpy.ndarray of float64, shape (N, C)
        A new array; the input is never modified.
    y_true : numpy.ndarray of int64, shape (N,), or None
    """
    if kind not in INPUT_KINDS:
        raise StellarValueError(f"kind must be one of {INPUT_KINDS}, found {kind!r}")
    arr = np.array(scores, copy=True)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise StellarValueError(f"{name} must be a real numeric array of {kind}, found dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise StellarValueError(f"{name} must be 2-D of shape (N, C) holding {kind}, found shape {arr.shape}")
    n, c = arr.shape
    if n < 1 or c < 2:
        raise StellarValueError(f"{name} must have at least 1 row and 2 class columns, found shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise StellarValueError(
            f"{name} must be finite, found {int(np.isnan(arr).sum())} NaN and {int(np.isinf(arr).sum())} inf values"
        )
    if kind == "probs":
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -_PROB_RANGE_TOL or hi > 1.0 + _PROB_RANGE_TOL:
            raise StellarValueError(
                f"{name} must hold probabilities in [0, 1] (pass softmaxed probabilities, not logits), "
                f"found values in [{lo:.6g}, {hi:.6g}]"
            )
        sums = arr.sum(axis=1)
        off = np.abs(sums - 1.0) > PROB_SUM_TOL
        if off.any():
            worst = int(np.argmax(np.abs(sums - 1.0)))
            raise StellarValueError(
                f"{name} rows must sum to 1 within {PROB_SUM_TOL:g} (pass softmaxed probabilities, not logits); "
                f"found {int(off.sum())} of {n} rows off, e.g. row {worst} sums to {sums[worst]:.6g}"
            )
        arr = np.clip(arr, 0.0, 1.0)
    if y_true is None:
        return arr, None
    return arr, _validate_labels(y_true, n, c, name)


def _validate_labels(y_true: Any, n: int, c: int, name: str) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise StellarValueError(f"y_true must be 1-D of shape (N,), found shape {y.shape}")
    if len(y) != n:
        raise StellarValueError(f"y_true must have one label per row of {name} ({n}), found {len(y)} labels")
    if np.issubdtype(y.dtype, np.floating):
        # whole-number floats (e.g. from a pandas column with NaN dropped) are accepted; anything else is not
        if not (np.isfinite(y).all() and np.all(y == np.round(y))):
            raise StellarValueError("y_true must hold integer class indices, found non-integer or non-finite floats")
    elif y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise StellarValueError(f"y_true must hold integer class indices, found dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= c:
        raise StellarValueError(
            f"y_true must hold class indices in [0, {c}) (drop unlabelled rows first), "
            f"found values in [{int(y.min())}, {int(y.max())}]"
        )
    return y


def _check_n_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise StellarValueError(f"n_bins must be a positive integer, found {n_bins!r}")
    return int(n_bins)


# ------------------------------------------------------------------------------------------------------ metrics


def _bin_sums(probs: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin count, number correct and summed confidence of the top label; bins are (k/B, (k+1)/B], 0 in the first."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    return counts, np.bincount(idx, weights=correct, minlength=n_bins), np.bincount(idx, weights=conf, minlength=n_bins)


def reliability_curve(
    probs: Any, y_true: Any, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-label reliability diagram data on equal-width confidence bins.

    Parameters
    ----------
    probs : array-like, shape (N, C)
        Class probabilities (rows sum to 1).
    y_true : array-like of int, shape (N,)
        True class indices.
    n_bins : int
        Number of equal-width bins on [0, 1].

    Returns
    -------
    centers : numpy.ndarray, shape (n_bins,)
        Bin midpoints.
    acc, conf : numpy.ndarray, shape (n_bins,)
        Accuracy and mean top-label confidence per bin; NaN where a bin is empty.
    counts : numpy.ndarray of int, shape (n_bins,)
        Rows per bin (sums to N).
    """
    p, y = validate_scores(probs, y_true, kind="probs", name="probs")
    n_bins = _check_n_bins(n_bins)
    counts, n_correct, sum_conf = _bin_sums(p, y, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(counts > 0, n_correct / counts, np.nan)
        conf = np.where(counts > 0, sum_conf / counts, np.nan)
    centers = (np.arange(n_bins) + 0.5) / n_bins
    return centers, acc, conf, counts


def expected_calibration_error(probs: Any, y_true: Any, n_bins: int = 15) -> float:
    """Top-label expected calibration error: ``sum_b (n_b / N) |acc_b - conf_b|`` over equal-width bins.

    Examples
    --------
    >>> import numpy as np
    >>> ece = expected_calibration_error(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 1]), n_bins=10)
    >>> round(ece, 6)  # (|1 - 0.9| + |0 - 0.8|) / 2
    0.45
    """
    p, y = validate_scores(probs, y_true, kind="probs", name="probs")
    _, n_correct, sum_conf = _bin_sums(p, y, _check_n_bins(n_bins))
    return float(np.abs(n_correct - sum_conf).sum() / len(y))


def brier_score(probs: Any, y_true: Any) -> float:
    """Multi-class Brier score: mean over rows of ``sum_k (p_k - [y == k])**2`` (0 is perfect, 2 is worst)."""
    p, y = validate_scores(probs, y_true, kind="probs", name="probs")
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def negative_log_likelihood(probs: Any, y_true: Any) -> float:
    """Mean ``-log p[y]`` in nats; the true-class probability is floored at 1e-15 so a confident miss stays finite."""
    p, y = validate_scores(probs, y_true, kind="probs", name="probs")
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], _NLL_FLOOR))))


# -------------------------------------------------------------------------------------------------- calibrators


class BaseProbCalibrator(ABC):
    """Contract of every calibrator: fit on held-out scores, transform to probabilities, JSON round trip.

    Subclasses set ``type_name`` (the ``"type"`` key of :meth:`to_dict`) and are registered automatically, so
    :meth:`from_dict` rebuilds the right subclass. They implement ``_fit``, ``_transform``, ``_state`` and
    ``_from_state``; validation, the fitted check and the class-count check live here.
    """

    type_name: ClassVar[str]
    _registry: ClassVar[dict[str, type[BaseProbCalibrator]]] = {}
    input_kind: InputKind
    #: whether ``transform`` needs ``fit`` first (the identity calibrator does not)
    requires_fit: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("type_name")
        if name is None:
            return  # an intermediate class without a type of its own is not registered
        known = BaseProbCalibrator._registry.get(name)
        # the same class defined again (a module reload) may replace itself; a different class may not
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise StellarConfigError(f"calibrator type {name!r} is already registered by {known.__qualname__}")
        BaseProbCalibrator._registry[name] = cls

    def __init__(self) -> None:
        self.n_classes_: int | None = None

    @classmethod
    def registered_types(cls) -> list[str]:
        """Names accepted in the ``"type"`` key of :meth:`from_dict`."""
        return sorted(BaseProbCalibrator._registry)

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
        if not isinstance(payload, Mapping):
            raise StellarValueError(f"payload must be a mapping produced by to_dict(), found {type(payload).__name__}")
        name = payload.get("type")
        sub = BaseProbCalibrator._registry.get(name) if isinstance(name, str) else None
        if sub is None:
            raise StellarValueError(f"payload['type'] must be one of {cls.registered_types()}, found {name!r}")
        if not issubclass(sub, cls):
            raise StellarValueError(f"payload['type'] {name!r} builds a {sub.__name__}, not a {cls.__name__}")
        try:
            obj = sub._from_state(payload)
            n_classes = payload.get("n_classes")
            obj.n_classes_ = None if n_classes is None else int(n_classes)
        except StellarValueError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise StellarValueError(f"payload for calibrator type {name!r} is malformed: {err!r}") from err
        if obj.requires_fit and not obj.is_fitted:
            raise StellarValueError(f"payload for calibrator type {name!r} must include 'n_classes' (a fitted state)")
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


class NoCalibration(BaseProbCalibrator):
    """Identity calibrator, so that "no calibration" goes through the same pipeline path as the others.

    Parameters
    ----------
    input_kind : {"logits", "probs"}
        With ``"logits"`` the transform is a softmax; with ``"probs"`` it returns the probabilities (rows
        renormalised to sum exactly to 1). ``fit`` is optional.
    """

    type_name = "none"
    requires_fit = False

    def __init__(self, input_kind: InputKind = "probs") -> None:
        super().__init__()
        if input_kind not in INPUT_KINDS:
            raise StellarValueError(f"input_kind must be one of {INPUT_KINDS}, found {input_kind!r}")
        self.input_kind = input_kind

    def _fit(self, scores: np.ndarray, y: np.ndarray) -> None:
        return None

    def _transform(self, scores: np.ndarray) -> np.ndarray:
        if self.input_kind == "logits":
            return _scipy_softmax(scores, axis=1)
        return scores / scores.sum(axis=1, keepdims=True)

    def _state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _from_state(cls, payload: Mapping[str, Any]) -> NoCalibration:
        return cls(input_kind=payload.get("input_kind", "probs"))


class TemperatureScaler(BaseProbCalibrator):
    """Temperature scaling (Guo et al. 2017): ``softmax(logits / T)`` with one scalar ``T > 0``.

    ``T`` minimises the mean negative log-likelihood on the fitting data, found by bounded Brent search over
    ``log T`` (the NLL is convex in ``1/T``, so the search is unimodal). Dividing by ``T > 0`` never changes the
    argmax, so accuracy is untouched; ``T > 1`` softens an overconfident model.

    Parameters
    ----------
    log_t_bounds : (float, float)
        Search interval for ``log T``; the default allows ``T`` in [e^-5, e^5] ≈ [0.0067, 148].

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> signal = rng.normal(size=(2000, 3))
    >>> y = (signal + rng.gumbel(size=signal.shape)).argmax(axis=1)  # y ~ softmax(signal)
    >>> scaler = TemperatureScaler().fit(3.0 * signal, y)
    >>> bool(2.5 < scaler.temperature < 3.5)
    True
    """

    type_name = "temperature"
    input_kind: InputKind = "logits"

    def __init__(self, log_t_bounds: Sequence[float] = (-5.0, 5.0)) -> None:
        super().__init__()
        try:
            lo, hi = (float(b) for b in log_t_bounds)
        except (TypeError, ValueError) as err:
            raise StellarValueError(f"log_t_bounds must be two numbers (low, high), found {log_t_bounds!r}") from err
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise StellarValueError(f"log_t_bounds must be finite with low < high, found ({lo}, {hi})")
        self.log_t_bounds = (lo, hi)
        self._log_t: float | None = None

    @property
    def temperature(self) -> float:
        """The fitted temperature ``T`` (> 0)."""
        if self._log_t is None:
            raise StellarValueError("TemperatureScaler is not fitted: call fit(logits, y_true) before temperature")
        return float(np.exp(self._log_t))

    def _fit(self, scores: np.ndarray, y: np.ndarray) -> None:
        rows = np.arange(len(y))

        def nll(log_t: float) -> float:
            return float(-np.mean(log_softmax(scores * np.exp(-log_t), axis=1)[rows, y]))

        lo, hi = self.log_t_bounds
        res = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-7})
        log_t = float(res.x)
        if min(log_t - lo, hi - log_t) < 1e-3:
            log.warning("temperature search stopped at the edge of log_t_bounds %s: log T = %.4f", (lo, hi), log_t)
        self._log_t = log_t
        log.info("temperature scaling: T = %.4f (NLL %.4f → %.4f on %d rows)", np.exp(log_t), nll(0.0), res.fun, len(y))

    def _transform(self, scores: np.ndarray) -> np.ndarray:
        return _scipy_softmax(scores / self.temperature, axis=1)

    def _state(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "log_t_bounds": list(self.log_t_bounds)}

    @classmethod
    def _from_state(cls, payload: Mapping[str, Any]) -> TemperatureScaler:
        obj = cls(log_t_bounds=payload.get("log_t_bounds", (-5.0, 5.0)))
        t = float(payload["temperature"])
        if not (np.isfinite(t) and t > 0):
            raise StellarValueError(f"payload['temperature'] must be a finite number > 0, found {t}")
        obj._log_t = float(np.log(t))
        return obj


class IsotonicCalibrator(BaseProbCalibrator):
    """Isotonic-regression calibration of probabilities (Zadrozny & Elkan 2002).

    Parameters
    ----------
    per_class : bool
        ``True``: one-vs-rest, one monotone map per class on that class's probability, then rows are
        renormalised (a row mapped to all zeros keeps its uncalibrated probabilities). ``False``: one monotone
        map of the top-class confidence onto accuracy, applied to the top class; the remaining mass is shared
        by the other classes in proportion to their input probabilities.

    Notes
    -----
    Maps are stored as their thresholds and applied with ``np.interp`` (clipped outside the fitted range, as
    sklearn's ``out_of_bounds="clip"``), so :meth:`from_dict` reproduces outputs exactly without refitting.
    Unlike temperature scaling, isotonic maps may change the argmax.
    """

    type_name = "isotonic"
    input_kind: InputKind = "probs"

    def __init__(self, per_class: bool = True) -> None:
        super().__init__()
        if not isinstance(per_class, bool | np.bool_):
            raise StellarValueError(f"per_class must be True or False, found {per_class!r}")
        self.per_class = bool(per_class)
        self.thresholds_: list[tuple[np.ndarray, np.ndarray]] = []

    @staticmethod
    def _fit_map(x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(x, target)
        return np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64)

    def _fit(self, scores: np.ndarray, y: np.ndarray) -> None:
        if self.per_class:
            absent = [k for k in range(scores.shape[1]) if not np.any(y == k)]
            if absent:
                log.warning("isotonic calibration: classes %s have no fitting rows and are mapped to 0", absent)
            self.thresholds_ = [
                self._fit_map(scores[:, k], (y == k).astype(np.float64)) for k in range(scores.shape[1])
            ]
        else:
            correct = (scores.argmax(axis=1) == y).astype(np.float64)
            self.thresholds_ = [self._fit_map(scores.max(axis=1), correct)]

    def _transform(self, scores: np.ndarray) -> np.ndarray:
        if self.per_class:
            out = np.column_stack([np.interp(scores[:, k], x, t) for k, (x, t) in enumerate(self.thresholds_)])
            sums = out.sum(axis=1, keepdims=True)
            empty = sums[:, 0] <= 0.0
            if empty.any():
                log.info("isotonic calibration: %d of %d all-zero rows keep their input", empty.sum(), len(out))
                out[empty] = scores[empty]
                sums[empty] = scores[empty].sum(axis=1, keepdims=True)
            return out / sums
        rows = np.arange(len(scores))
        top = scores.argmax(axis=1)
        conf = scores[rows, top]
        x, t = self.thresholds_[0]
        new_conf = np.interp(conf, x, t)
        rest = scores.sum(axis=1) - conf
        scale = np.divide(1.0 - new_conf, rest, out=np.zeros_like(rest), where=rest > 0.0)
        out = scores * scale[:, None]
        # the top class held all the mass: nothing to be proportional to, so the remainder is shared evenly
        flat = rest <= 0.0
        out[flat] = ((1.0 - new_conf[flat]) / (scores.shape[1] - 1))[:, None]
        out[rows, top] = new_conf
        return out

    def _state(self) -> dict[str, Any]:
        return {
            "per_class": self.per_class,
            "thresholds": [{"X_thresholds_": x.tolist(), "y_thresholds_": t.tolist()} for x, t in self.thresholds_],
        }

    @classmethod
    def _from_state(cls, payload: Mapping[str, Any]) -> IsotonicCalibrator:
        obj = cls(per_class=payload["per_class"])
        maps = []
        for i, m in enumerate(payload["thresholds"]):
            x = np.asarray(m["X_thresholds_"], dtype=np.float64)
            t = np.asarray(m["y_thresholds_"], dtype=np.float64)
            if x.ndim != 1 or x.shape != t.shape or len(x) < 1 or not np.isfinite(x).all() or np.any(np.diff(x) < 0):
                raise StellarValueError(
                    f"payload['thresholds'][{i}] must hold equal-length finite 1-D arrays with increasing X_thresholds_"
                )
            maps.append((x, t))
        expected = payload["n_classes"] if obj.per_class else 1
        if len(maps) != expected:
            raise StellarValueError(f"payload['thresholds'] must hold {expected} maps, found {len(maps)}")
        obj.thresholds_ = maps
        return obj


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def calibrated_probs(calibrator: BaseProbCalibrator | None, logits: np.ndarray) -> np.ndarray:
    """Probabilities after the calibrator (plain softmax without one); it is fed logits or probabilities as it asks."""
    if calibrator is None:
        return softmax(logits)
    return calibrator.transform(logits if calibrator.input_kind == "logits" else softmax(logits))
