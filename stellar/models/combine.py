"""Calibrated combination of classifiers: each member's probabilities calibrated on the validation part, then
averaged or stacked.

:class:`CalibratedEnsemble` is an :class:`~stellar.models.ensemble.EnsembleClassifier` (the same members, copies,
fitting, saving and mean) whose members are first calibrated one by one (e.g. temperature scaling, fitted on the
validation part only), so that a sharp member and a timid one weigh by what their probabilities are worth. The
combination is then either

- the mean of the calibrated probabilities (``stack: false``), or
- a stacked log-linear pool (``stack: true``): ``softmax(sum_m w_m log p_m + b)``, a multinomial logistic
  regression on the members' calibrated log-probabilities with one weight per member and one bias per class,
  fitted by maximum likelihood (small L2 penalty) on the same validation part; never on the test part.

Members may be any estimators, including a LightningModule through
:class:`~stellar.models.lightning_estimator.LightningEstimator`. The member calibrators (``to_dict()`` JSON) and
the stacking weights are saved in the ensemble's ``estimator.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from stellar.errors import StellarConfigError, StellarDataError
from stellar.evaluation.calibration import BaseProbCalibrator, softmax
from stellar.models.ensemble import EnsembleClassifier
from stellar.models.estimators import LOGIT_FLOOR, members_log_probs, read_meta

log = logging.getLogger(__name__)


class StackedPool:
    """``softmax(sum_m w_m log p_m + b)``: one weight per member, one bias per class, fitted by maximum likelihood.

    Parameters
    ----------
    l2 : float
        Penalty ``l2 * (sum (w - 1/M)^2 + sum b^2)`` added to the mean negative log-likelihood (pulls towards
        the geometric mean of the members).
    """

    def __init__(self, l2: float = 1e-3):
        if not l2 >= 0:
            raise StellarConfigError(f"l2 must be >= 0; got {l2}")
        self.l2 = float(l2)
        self.weights: np.ndarray | None = None
        self.bias: np.ndarray | None = None

    @staticmethod
    def _logits(log_p: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("mnc,m->nc", log_p, w) + b

    def fit(self, probs: Sequence[np.ndarray], y: np.ndarray) -> StackedPool:
        """Fit on the members' probabilities (each (N, C)) and labels ``y`` (N,) in ``[0, C)``."""
        log_p = members_log_probs(probs)
        m, n, c = log_p.shape
        y = np.asarray(y, dtype=np.int64)
        if n < 2 or len(y) != n or y.min() < 0 or y.max() >= c:
            raise StellarDataError(f"stacking needs >= 2 rows with labels in [0, {c}); got {n} rows, labels {y[:5]}…")
        onehot = np.eye(c)[y]
        prior = np.full(m, 1.0 / m)

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:m], theta[m:]
            z = self._logits(log_p, w, b)
            z -= z.max(axis=1, keepdims=True)
            lse = np.log(np.exp(z).sum(axis=1))
            nll = float(np.mean(lse - (z * onehot).sum(axis=1)))
            resid = softmax(z) - onehot  # d nll / d z, per row
            grad_w = np.einsum("mnc,nc->m", log_p, resid) / n + 2 * self.l2 * (w - prior)
            grad_b = resid.mean(axis=0) + 2 * self.l2 * b
            penalty = self.l2 * (float(np.sum((w - prior) ** 2)) + float(np.sum(b**2)))
            return nll + penalty, np.concatenate([grad_w, grad_b])

        res = minimize(loss, np.concatenate([prior, np.zeros(c)]), jac=True, method="L-BFGS-B")
        self.weights, self.bias = res.x[:m].copy(), res.x[m:].copy()
        log.info("stacked pool: member weights %s, NLL %.4f on %d rows", np.round(self.weights, 3).tolist(), res.fun, n)
        return self

    def transform(self, probs: Sequence[np.ndarray]) -> np.ndarray:
        """Combined probabilities (N, C) of the members' probabilities."""
        if self.weights is None or self.bias is None:
            raise StellarConfigError("the stacked pool is not fitted (fit() or from_dict() first)")
        log_p = members_log_probs(probs)
        if log_p.shape[0] != len(self.weights) or log_p.shape[2] != len(self.bias):
            raise StellarDataError(
                f"probs has {log_p.shape[0]} members x {log_p.shape[2]} classes; the pool was fitted on "
                f"{len(self.weights)} x {len(self.bias)}"
            )
        return softmax(self._logits(log_p, self.weights, self.bias))

    def to_dict(self) -> dict[str, Any]:
        return {
            "l2": self.l2,
            "weights": None if self.weights is None else self.weights.tolist(),
            "bias": None if self.bias is None else self.bias.tolist(),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> StackedPool:
        pool = cls(l2=float(payload.get("l2", 1e-3)))
        if payload.get("weights") is not None:
            pool.weights = np.asarray(payload["weights"], dtype=np.float64)
            pool.bias = np.asarray(payload["bias"], dtype=np.float64)
        return pool


class CalibratedEnsemble(EnsembleClassifier):
    """Members calibrated one by one on the validation part, then averaged or stacked.

    Parameters
    ----------
    members, copies, name, class_names, seed, target_stats
        As for :class:`~stellar.models.ensemble.EnsembleClassifier`.
    member_calibrator : callable, optional
        Calibrator factory (``_partial_: true``, e.g. ``TemperatureScaler``), one fitted per member on the
        validation part; ``None`` combines the members' raw probabilities.
    stack : bool
        ``False``: the mean of the calibrated probabilities; ``True``: a :class:`StackedPool` fitted on the
        validation part.
    stack_l2 : float
        L2 penalty of the stacked pool.
    """

    hparam_keys = (*EnsembleClassifier.hparam_keys, "stack", "calibrators", "pool")

    def __init__(
        self,
        members: Mapping[str, Callable[..., Any]],
        copies: Mapping[str, int] | None = None,
        name: str = "calibrated_ensemble",
        class_names: Sequence[str] | None = None,
        seed: int = 0,
        target_stats: Mapping[str, Sequence[float]] | None = None,
        member_calibrator: Callable[[], BaseProbCalibrator] | None = None,
        stack: bool = False,
        stack_l2: float = 1e-3,
    ):
        super().__init__(members, copies, name, class_names, seed, target_stats)
        if member_calibrator is not None and not callable(member_calibrator):
            raise StellarConfigError("member_calibrator must be a calibrator factory (_partial_: true) or null")
        self.member_calibrator = member_calibrator
        self.stack = bool(stack)
        self.stack_l2 = float(stack_l2)
        #: per member: the probability calibrator fitted on the validation part (``member_calibrator``)
        self.prob_calibrators: dict[str, BaseProbCalibrator] = {}
        self.stacked: StackedPool | None = None

    @property
    def calibrators(self) -> dict[str, dict[str, Any]]:
        """The fitted member calibrators as ``to_dict()`` payloads, by member."""
        return {k: c.to_dict() for k, c in self.prob_calibrators.items()}

    @property
    def pool(self) -> dict[str, Any] | None:
        """The fitted stacked pool as a dict, or ``None`` (mean of the members)."""
        return None if self.stacked is None else self.stacked.to_dict()

    def fit(self, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        """Fit the members (:meth:`EnsembleClassifier.fit`), then their calibrators and the pool on ``val``."""
        self.prob_calibrators, self.stacked = {}, None
        metrics = super().fit(train, val)  # val/acc, val/class_mlogloss: the raw mean
        y = np.asarray(val["label"]) if val is not None and len(val.get("label", ())) else np.empty(0, np.int64)
        ok = y >= 0
        if val is None or ok.sum() < 2:
            if self.member_calibrator is not None or self.stack:
                log.warning("member calibration and stacking skipped: %d labelled validation rows", int(ok.sum()))
            return metrics
        raw = self.member_probs(val)
        if self.member_calibrator is not None:
            for key, p in raw.items():
                cal = self.member_calibrator()
                cal.fit(np.log(np.clip(p[ok], LOGIT_FLOOR, 1.0)) if cal.input_kind == "logits" else p[ok], y[ok])
                self.prob_calibrators[key] = cal
        calibrated = self.adjust_probs(raw)
        if self.stack:
            self.stacked = StackedPool(self.stack_l2).fit([p[ok] for p in calibrated.values()], y[ok])
        for key, p in calibrated.items():
            metrics[f"val/{key}.calibrated_acc"] = float(np.mean(p[ok].argmax(1) == y[ok]))
        p = self.combine(calibrated)[ok]
        metrics["val/combined_mlogloss"] = float(-np.mean(np.log(np.clip(p[np.arange(len(p)), y[ok]], LOGIT_FLOOR, 1))))
        metrics["val/combined_acc"] = float(np.mean(p.argmax(1) == y[ok]))
        return metrics

    def adjust_probs(self, probs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each member's probabilities after its calibrator (as they are before calibrators are fitted)."""
        out = {}
        for key, p in probs.items():
            cal = self.prob_calibrators.get(key)
            if cal is None:
                out[key] = p
            else:
                out[key] = cal.transform(np.log(np.clip(p, LOGIT_FLOOR, 1.0)) if cal.input_kind == "logits" else p)
        return out

    def combine(self, probs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The stacked pool of the members' probabilities when fitted, else their mean."""
        if self.stacked is None:
            return super().combine(probs)
        return self.stacked.transform(list(probs.values()))

    def load(self, path: str | Path) -> CalibratedEnsemble:
        """Load the members (:meth:`EnsembleClassifier.load`), their calibrators and the pool."""
        super().load(path)
        _, meta = read_meta(path)
        self.prob_calibrators = {k: BaseProbCalibrator.from_dict(v) for k, v in meta.get("calibrators", {}).items()}
        self.stacked = StackedPool.from_dict(meta["pool"]) if meta.get("pool") else None
        if self.stack != bool(meta.get("stack", False)):
            raise StellarConfigError(f"saved stack={meta.get('stack')} differs from this config's stack={self.stack}")
        return self
