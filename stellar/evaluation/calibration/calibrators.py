"""The calibrators: identity (:class:`NoCalibration`), :class:`TemperatureScaler`, :class:`IsotonicCalibrator`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from scipy.special import softmax as _scipy_softmax
from sklearn.isotonic import IsotonicRegression

from stellar.errors import StellarValueError
from stellar.evaluation.calibration.base import BaseProbCalibrator
from stellar.evaluation.calibration.scores import INPUT_KINDS, InputKind

log = logging.getLogger(__name__)


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
