"""Post-hoc calibration of regression intervals: per target, a factor on the predicted standard deviation.

A regression head predicts ``<t>_mean`` and ``<t>_logvar`` (physical units; the model-output contract). An interval
calibrator is fitted on held-out rows (the validation part) from the normalised residuals in the space the model
learns in: ``z = (y - mean) / std``, with ``y``, ``mean`` and ``std`` taken as log10 for ``log_targets`` (Teff;
there ``std_log10 = std / (mean ln 10)``, the inverse of the delta method the models apply). It then gives, per
target and interval level, a factor ``k`` such that ``mean ± k · std`` holds that fraction of the truths:

- :class:`NoIntervalCalibration` — the Gaussian quantile (``k = 1`` at 68.27%, 1.96 at 95%).
- :class:`VarianceScaler` — one scale ``s`` per target, the maximum-likelihood value ``s² = mean(z²)`` of a Gaussian
  with the predicted mean; ``k = s · Φ⁻¹((1 + level) / 2)``. Right when the errors are Gaussian and only their
  spread is wrong.
- :class:`ConformalIntervals` — split-conformal on ``|z|`` (Lei et al. 2018; normalised scores as in Papadopoulos
  et al. 2002): ``k`` is the ⌈(n + 1) level⌉-th smallest of the n validation scores, so on exchangeable data the
  interval holds at least ``level`` of new truths whatever the shape of the error distribution.

:meth:`BaseIntervalCalibrator.transform` rescales every fitted target's standard deviation by its 68.27% factor,
so ``mean ± std`` is the calibrated 1σ interval (what the server answers); wider levels use :meth:`factor`.
The JSON round trip (``to_dict`` / ``BaseIntervalCalibrator.from_dict``) mirrors the probability calibrators'.

:class:`SubsetIntervalCalibrator` wraps any of them for multi-modal models: one calibrator per modality subset
(``spectrum``, ``sed``, ``spectrum+sed``…), fitted on the model's outputs with only that subset present, and the
pooled one for a subset or target with too few fitting rows. Its factors depend on each row's subset, so
:meth:`~BaseIntervalCalibrator.factors`, :meth:`~BaseIntervalCalibrator.transform` and
:meth:`~BaseIntervalCalibrator.interval` take an optional ``groups`` (the subset name of each row; every other
calibrator ignores it).
"""

from __future__ import annotations

import copy
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
from scipy.special import erf, ndtri

from stellar.errors import StellarValueError
from stellar.evaluation.calibration.registry import TypeRegistered

log = logging.getLogger(__name__)

#: the fraction of a Gaussian within ±1σ, erf(1/√2): the level of ``mean ± std``
ONE_SIGMA = float(erf(1.0 / math.sqrt(2.0)))
#: the levels every report shows: ±1σ and 95%
REPORT_LEVELS = (ONE_SIGMA, 0.95)
#: levels closer than this are the same level (so a config's 0.6827 is ONE_SIGMA)
LEVEL_TOL = 1e-4

_I = TypeVar("_I", bound="BaseIntervalCalibrator")


def gaussian_factor(level: float) -> float:
    """Half-width of the central ``level`` interval of a standard normal, in σ (1.0 at 68.27%, 1.96 at 95%)."""
    return float(ndtri(0.5 + 0.5 * check_level(level)))


def check_level(level: Any, name: str = "level") -> float:
    """``level`` as a float in (0, 1), else a :class:`StellarValueError` naming ``name``."""
    try:
        value = float(level)
    except (TypeError, ValueError) as err:
        raise StellarValueError(f"{name} must be a number in (0, 1), found {level!r}") from err
    if not 0.0 < value < 1.0:
        raise StellarValueError(f"{name} must be in (0, 1) (a fraction of truths, e.g. 0.95), found {value}")
    return value


def normalised_residuals(
    mean: Any, logvar: Any, truth: Any, log_target: bool = False, name: str = "target"
) -> np.ndarray:
    """``(y - mean) / std`` of the rows where it is defined, in the learned space (log10 for a log target).

    Parameters
    ----------
    mean, logvar, truth : array_like, shape (N,)
        Predicted mean, log-variance (of the physical value, its units squared) and true value, physical units.
    log_target : bool
        Whether the model learns log10 of the target (Teff): residuals and σ are then taken in log10.
    name : str
        The target, for messages.

    Returns
    -------
    numpy.ndarray
        The normalised residuals of the usable rows (finite inputs, σ > 0, and mean and truth > 0 for a log
        target); how many rows were dropped is logged.
    """
    z = _z(mean, logvar, truth, log_target, name)
    ok = np.isfinite(z)
    dropped = int((~ok).sum())
    if dropped:
        log.info(
            "%s: %d of %d rows have no truth or no usable prediction; left out of the residuals", name, dropped, len(z)
        )
    return z[ok]


def _z(mean: Any, logvar: Any, truth: Any, log_target: bool, name: str) -> np.ndarray:
    """``(y - mean) / std`` of every row in the learned space; NaN where it is not defined."""
    m, lv, y = (np.asarray(a, dtype=np.float64).ravel() for a in (mean, logvar, truth))
    if not (len(m) == len(lv) == len(y)):
        raise StellarValueError(
            f"{name}: mean, logvar and truth must have the same length, found {len(m)}, {len(lv)} and {len(y)}"
        )
    with np.errstate(all="ignore"):
        sd = np.exp(0.5 * lv)
        ok = np.isfinite(m) & np.isfinite(sd) & np.isfinite(y) & (sd > 0)
        if log_target:
            ok &= (m > 0) & (y > 0)
            z = (np.log10(y) - np.log10(m)) * m * math.log(10.0) / sd
        else:
            z = (y - m) / sd
    return np.where(ok, z, np.nan)


def inside_interval(
    mean: Any, logvar: Any, truth: Any, k: Any = 1.0, log_target: bool = False, name: str = "target"
) -> np.ndarray:
    """Whether each truth lies in the interval of ``k`` σ about the mean, taken in the learned space (log10 for a
    log target) as :meth:`BaseIntervalCalibrator.interval` takes it: ``|z| <= k``.

    Parameters
    ----------
    mean, logvar, truth : array_like, shape (N,)
        As for :func:`normalised_residuals` (physical units).
    k : float or array_like of shape (N,)
        The interval's half-width in σ (a calibrator's factor; 1 for the model's own 1σ interval).
    log_target, name
        As for :func:`normalised_residuals`.

    Returns
    -------
    numpy.ndarray of bool, shape (N,)
        False where the residual is not defined (no truth, no usable prediction).
    """
    z = _z(mean, logvar, truth, log_target, name)
    with np.errstate(invalid="ignore"):
        return np.abs(z) <= np.asarray(k, dtype=np.float64)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ⌈(n + 1) · level⌉-th smallest of n scores.

    With fewer than ``level / (1 - level)`` scores that rank is beyond n; the largest score is returned and a
    warning logged (the coverage guarantee does not hold then).
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    if n == 0:
        raise StellarValueError("scores must hold at least one value")
    rank = math.ceil((n + 1) * check_level(level) - 1e-12)
    if rank > n:  # ⌈(n + 1) q⌉ ≤ n needs n ≥ q / (1 - q)
        need = math.ceil(level / (1.0 - level) - 1e-9)
        log.warning("conformal level %.4f needs at least %d scores, found %d: using the largest", level, need, n)
        rank = n
    return float(s[rank - 1])


class BaseIntervalCalibrator(TypeRegistered, ABC):
    """Contract of every interval calibrator: fit on held-out predictions, a factor per target and level, JSON.

    Subclasses set ``type_name`` (registered automatically, so :meth:`from_dict` rebuilds the right one) and
    implement ``_fit_target`` (one target's normalised residuals → its state), ``_factor`` and ``_from_state``.

    Attributes
    ----------
    log_targets : list of str
        Targets whose residuals are taken in log10 (set by :meth:`fit`).
    params_ : dict of str to dict
        Fitted state per target (``n``, the number of fitting rows, and the subclass's parameters).
    """

    _registry: ClassVar[dict[str, type[Any]]] = {}
    #: whether ``factor`` needs ``fit`` first (the identity does not)
    requires_fit: ClassVar[bool] = True

    def __init__(self) -> None:
        self.log_targets: list[str] = []
        self.params_: dict[str, dict[str, Any]] | None = None

    @property
    def is_fitted(self) -> bool:
        return self.params_ is not None

    @property
    def targets(self) -> list[str]:
        """The targets with a fitted state."""
        return list(self.params_ or {})

    def fit(
        self: _I,
        outputs: Mapping[str, Any],
        truths: Mapping[str, Any],
        log_targets: Iterable[str] = (),
        min_rows: int = 2,
    ) -> _I:
        """Fit every target of ``truths`` on held-out rows.

        Parameters
        ----------
        outputs : mapping of str to array_like
            The model-output contract: ``<t>_mean`` and ``<t>_logvar`` (physical units) for each target ``t``.
        truths : mapping of str to array_like
            True values per target, physical units (NaN where unknown), aligned with ``outputs``.
        log_targets : iterable of str
            Targets the model learns as log10 (e.g. ``model.log_targets``).
        min_rows : int
            Targets with fewer usable rows keep their predicted σ (logged).
        """
        if not isinstance(truths, Mapping) or not truths:
            raise StellarValueError("truths must map at least one target name to its true values")
        self.log_targets = sorted(str(t) for t in log_targets)
        params: dict[str, dict[str, Any]] = {}
        for t, truth in truths.items():
            for key in (f"{t}_mean", f"{t}_logvar"):
                if key not in outputs:
                    raise StellarValueError(f"outputs must hold {key!r} for target {t!r}; found {sorted(outputs)}")
            z = normalised_residuals(outputs[f"{t}_mean"], outputs[f"{t}_logvar"], truth, t in self.log_targets, t)
            if len(z) < min_rows:
                log.warning(
                    "target %s: %d usable held-out rows (< %d): its intervals are not calibrated", t, len(z), min_rows
                )
                continue
            params[t] = {"n": len(z), **self._fit_target(z)}
            factors = ", ".join(
                f"{lv:.4g}: ×{self._factor(params[t], lv) / gaussian_factor(lv):.3f}" for lv in REPORT_LEVELS
            )
            log.info("%s on %s (%d rows): σ scaled by %s", type(self).__name__, t, len(z), factors)
        if not params:
            raise StellarValueError(f"no target of {sorted(truths)} has {min_rows} or more usable held-out rows")
        self.params_ = params
        return self

    def factor(self, target: str, level: float = ONE_SIGMA) -> float:
        """``k`` such that ``mean ± k · std`` (the model's σ) is the calibrated ``level`` interval of ``target``.

        A target without a fitted state (none were given, or too few rows) gets the Gaussian factor.
        """
        lv = check_level(level)
        if self.requires_fit and not self.is_fitted:
            raise StellarValueError(f"{type(self).__name__} is not fitted: call fit(outputs, truths) before factor")
        state = (self.params_ or {}).get(target)
        return gaussian_factor(lv) if state is None else self._factor(state, lv)

    def factors(self, target: str, level: float, n: int, groups: Sequence[str] | None = None) -> np.ndarray:
        """``k`` of each of ``n`` rows (shape (n,)): :meth:`factor` for every row here; a calibrator per group
        (:class:`SubsetIntervalCalibrator`) reads ``groups``, the group (modality subset) of each row."""
        return np.full(n, self.factor(target, level))

    def transform(self, outputs: Mapping[str, Any], groups: Sequence[str] | None = None) -> dict[str, Any]:
        """A copy of ``outputs`` with each fitted target's ``<t>_logvar`` rescaled so that ``mean ± std`` is the
        calibrated 68.27% interval; other keys (and targets without a fitted state) are unchanged. ``groups``:
        see :meth:`factors`."""
        out = dict(outputs)
        for t in self.targets:
            key = f"{t}_logvar"
            if key in out:
                lv = np.asarray(out[key])
                k = self.factors(t, ONE_SIGMA, len(lv), groups)
                out[key] = (lv + 2.0 * np.log(k)).astype(lv.dtype, copy=False)
        return out

    def interval(
        self, outputs: Mapping[str, Any], target: str, level: float, groups: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated ``level`` interval of ``target`` (physical units; ``outputs`` as the model gives them, before
        :meth:`transform`), as (low, high) arrays. ``groups``: see :meth:`factors`.

        The interval is taken in the space the factors were fitted in: ``mean ± k · std`` for a linear target, and
        ``10 ** (log10(mean) ± k · std_log10)`` for a log target (``std_log10 = std / (mean ln 10)``), so a period
        or a Teff interval is never negative and holds the fraction of truths measured on the residuals; NaN where
        the mean of a log target is not positive."""
        for key in (f"{target}_mean", f"{target}_logvar"):
            if key not in outputs:
                raise StellarValueError(f"outputs must hold {key!r} for target {target!r}; found {sorted(outputs)}")
        mean = np.asarray(outputs[f"{target}_mean"], dtype=np.float64)
        k = self.factors(target, level, len(mean), groups)
        half = k * np.exp(0.5 * np.asarray(outputs[f"{target}_logvar"], dtype=np.float64))
        if target not in self.log_targets:
            return mean - half, mean + half
        with np.errstate(all="ignore"):
            ratio = np.where(mean > 0, np.exp(half / np.where(mean > 0, mean, np.nan)), np.nan)  # 10**(k σ_log10)
        return mean / ratio, mean * ratio

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: ``type``, ``log_targets``, the constructor's settings and ``targets``."""
        if self.requires_fit and not self.is_fitted:
            raise StellarValueError(f"{type(self).__name__} is not fitted: call fit(outputs, truths) before to_dict")
        return {"type": self.type_name, "log_targets": self.log_targets, **self._settings(), "targets": self.params_}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> BaseIntervalCalibrator:
        """Rebuild an interval calibrator from :meth:`to_dict` output, as the right subclass."""
        obj: BaseIntervalCalibrator = cls._rebuild(payload, "interval calibrator")
        if obj.requires_fit and not obj.is_fitted:
            name = payload["type"]
            raise StellarValueError(
                f"payload for interval calibrator type {name!r} must include 'targets' (a fitted state)"
            )
        return obj

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any]) -> BaseIntervalCalibrator:
        obj = cls._from_state(payload)
        obj.log_targets = [str(t) for t in payload.get("log_targets", [])]
        targets = payload.get("targets")
        if targets is not None:
            obj.params_ = {str(t): obj._check_state(str(t), dict(s)) for t, s in dict(targets).items()}
        return obj

    def _settings(self) -> dict[str, Any]:
        """Constructor settings stored beside the state (none by default)."""
        return {}

    @classmethod
    def _from_state(cls, payload: Mapping[str, Any]) -> BaseIntervalCalibrator:
        return cls()

    def _check_state(self, target: str, state: dict[str, Any]) -> dict[str, Any]:
        """Validate one target's stored state (subclasses check their parameters)."""
        if int(state["n"]) < 1:
            raise StellarValueError(f"payload['targets'][{target!r}]['n'] must be >= 1, found {state['n']}")
        return state

    @abstractmethod
    def _fit_target(self, z: np.ndarray) -> dict[str, Any]: ...

    @abstractmethod
    def _factor(self, state: Mapping[str, Any], level: float) -> float: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(targets={self.targets})"


class NoIntervalCalibration(BaseIntervalCalibrator):
    """The identity: the model's σ as it is (Gaussian factors), so an uncalibrated run takes the same path."""

    type_name = "none"
    requires_fit = False

    def _fit_target(self, z: np.ndarray) -> dict[str, Any]:
        return {}

    def _factor(self, state: Mapping[str, Any], level: float) -> float:
        return gaussian_factor(level)


class VarianceScaler(BaseIntervalCalibrator):
    """One scale per target on the predicted σ, the maximum-likelihood ``s = sqrt(mean(z²))`` on held-out rows.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(0.0, 2.0, 5000)  # true errors twice the predicted σ = 1
    >>> out = {"x_mean": np.zeros(5000), "x_logvar": np.zeros(5000)}
    >>> cal = VarianceScaler().fit(out, {"x": y})
    >>> round(cal.factor("x"), 1)
    2.0
    """

    type_name = "variance"

    def _fit_target(self, z: np.ndarray) -> dict[str, Any]:
        return {"scale": float(np.sqrt(np.mean(z**2)))}

    def _factor(self, state: Mapping[str, Any], level: float) -> float:
        return float(state["scale"]) * gaussian_factor(level)

    def _check_state(self, target: str, state: dict[str, Any]) -> dict[str, Any]:
        scale = float(state["scale"])
        if not (np.isfinite(scale) and scale > 0):
            raise StellarValueError(f"payload['targets'][{target!r}]['scale'] must be finite and > 0, found {scale}")
        return super()._check_state(target, state)


class ConformalIntervals(BaseIntervalCalibrator):
    """Split-conformal intervals on the normalised residuals ``|z|``, one quantile per target and level.

    Parameters
    ----------
    levels : sequence of float
        Interval levels to fit, each in (0, 1); 68.27% (``mean ± std``) and 95% are always fitted.
    """

    type_name = "conformal"

    def __init__(self, levels: Sequence[float] = (0.95,)) -> None:
        super().__init__()
        if isinstance(levels, str) or not isinstance(levels, Iterable):
            raise StellarValueError(f"levels must be a sequence of numbers in (0, 1), found {levels!r}")
        fitted: list[float] = []
        for lv in [*REPORT_LEVELS, *(check_level(v, "levels") for v in levels)]:
            if not any(abs(lv - f) < LEVEL_TOL for f in fitted):
                fitted.append(lv)
        self.levels = sorted(fitted)

    def _fit_target(self, z: np.ndarray) -> dict[str, Any]:
        scores = np.abs(z)
        return {"quantiles": [[lv, conformal_quantile(scores, lv)] for lv in self.levels]}

    def _factor(self, state: Mapping[str, Any], level: float) -> float:
        for lv, q in state["quantiles"]:
            if abs(float(lv) - level) < LEVEL_TOL:
                return float(q)
        raise StellarValueError(f"level must be one of the fitted levels {self.levels}, found {level}")

    def _settings(self) -> dict[str, Any]:
        return {"levels": self.levels}

    @classmethod
    def _from_state(cls, payload: Mapping[str, Any]) -> ConformalIntervals:
        return cls(levels=payload["levels"])

    def _check_state(self, target: str, state: dict[str, Any]) -> dict[str, Any]:
        pairs = [(float(lv), float(q)) for lv, q in state["quantiles"]]
        if sorted(lv for lv, _ in pairs) != self.levels or not all(np.isfinite(q) and q >= 0 for _, q in pairs):
            raise StellarValueError(
                f"payload['targets'][{target!r}]['quantiles'] must hold a finite quantile >= 0 "
                f"for each of {self.levels}"
            )
        return {**super()._check_state(target, state), "quantiles": [list(p) for p in pairs]}


def subset_key(name: str) -> str:
    """A modality subset's name in canonical form (its modalities sorted), so ``sed+spectrum`` is ``spectrum+sed``."""
    return "+".join(sorted(p for p in str(name).split("+") if p))


def subset_names(present: Mapping[str, Any]) -> np.ndarray:
    """The modality subset of each row, ``"+"``-joined in the order of ``present`` (modality → (N,) bool mask);
    ``""`` for a row with none."""
    masks = {m: np.asarray(v, dtype=bool).ravel() for m, v in present.items()}
    n = len(next(iter(masks.values()))) if masks else 0
    return np.array(["+".join(m for m, v in masks.items() if v[i]) for i in range(n)], dtype=object)


class SubsetIntervalCalibrator(BaseIntervalCalibrator):
    """One interval calibrator per modality subset, with the pooled one as the fallback.

    The modality subsets of a multi-modal model have different error scales (a spectrum knows Teff, a parallax
    knows log g), so one factor per target cannot cover every subset at its level. This fits a copy of ``pooled``
    per subset on the model's outputs with only that subset present (:meth:`fit_subsets`) and uses it for rows of
    that subset; a subset (or a target of it) with fewer than ``min_rows`` usable rows, or a subset never seen, gets
    the pooled factor, which is also what :meth:`factor` (no rows) answers.

    Parameters
    ----------
    pooled : BaseIntervalCalibrator
        The calibrator to fit on all rows and to copy per subset (unfitted; e.g. :class:`ConformalIntervals`).
    min_rows : int
        Fewest usable validation rows of a target in a subset for that subset's own factor.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> out = {"x_mean": np.zeros(4000), "x_logvar": np.zeros(4000)}  # predicted σ = 1 for both subsets
    >>> a, b = rng.normal(0, 0.5, 4000), rng.normal(0, 2.0, 4000)
    >>> cal = SubsetIntervalCalibrator(VarianceScaler(), min_rows=30)
    >>> cal = cal.fit_subsets(out, {"x": a}, {"a": (out, {"x": a}), "b": (out, {"x": b})})
    >>> [round(float(k), 1) for k in cal.factors("x", ONE_SIGMA, 2, ["a", "b"])]
    [0.5, 2.0]
    """

    type_name = "by_subset"

    def __init__(self, pooled: BaseIntervalCalibrator, min_rows: int = 30) -> None:
        super().__init__()
        if not isinstance(pooled, BaseIntervalCalibrator) or isinstance(pooled, SubsetIntervalCalibrator):
            raise StellarValueError(f"pooled must be an interval calibrator of one scope, found {pooled!r}")
        if int(min_rows) != min_rows or min_rows < 2:
            raise StellarValueError(f"min_rows must be an integer >= 2, found {min_rows!r}")
        self.pooled = pooled
        self.min_rows = int(min_rows)
        #: per subset name (as fitted), its own calibrator
        self.subsets_: dict[str, BaseIntervalCalibrator] = {}
        self._template = copy.deepcopy(pooled)

    @property
    def requires_fit(self) -> bool:  # type: ignore[override]
        return self.pooled.requires_fit

    def fit(
        self,
        outputs: Mapping[str, Any],
        truths: Mapping[str, Any],
        log_targets: Iterable[str] = (),
        min_rows: int = 2,
    ) -> SubsetIntervalCalibrator:
        """Fit the pooled calibrator only (no subsets: every row gets the pooled factor); see :meth:`fit_subsets`."""
        self.pooled.fit(outputs, truths, log_targets, min_rows)
        self.log_targets, self.params_ = self.pooled.log_targets, self.pooled.params_
        return self

    def fit_subsets(
        self,
        outputs: Mapping[str, Any],
        truths: Mapping[str, Any],
        by_subset: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]],
        log_targets: Iterable[str] = (),
    ) -> SubsetIntervalCalibrator:
        """Fit the pooled calibrator on ``outputs``/``truths`` (every held-out row as it comes) and one per subset.

        Parameters
        ----------
        outputs, truths : mapping
            As in :meth:`BaseIntervalCalibrator.fit`: the pooled fit.
        by_subset : mapping of str to (outputs, truths)
            Per modality subset name, the model's outputs on the held-out objects that have the subset, with only it
            present, and their truths.
        log_targets : iterable of str
            Targets the model learns as log10.
        """
        log_targets = list(log_targets)
        self.fit(outputs, truths, log_targets)
        self.subsets_ = {}
        for name, (sub_out, sub_truths) in by_subset.items():
            usable = {
                t: v
                for t, v in sub_truths.items()
                if len(normalised_residuals(sub_out[f"{t}_mean"], sub_out[f"{t}_logvar"], v, t in log_targets, t))
                >= self.min_rows
            }
            if not usable:
                log.warning("subset %s: under %d usable rows for every target: pooled factors", name, self.min_rows)
                continue
            log.info("subset %s: own interval calibrator for %s", name, sorted(usable))
            self.subsets_[name] = copy.deepcopy(self._template).fit(sub_out, usable, log_targets, self.min_rows)
        return self

    def factors(self, target: str, level: float, n: int, groups: Sequence[str] | None = None) -> np.ndarray:
        """Per row, the factor of its subset's calibrator where that has a state for ``target``, else the pooled
        factor (every row when ``groups`` is ``None``)."""
        k = np.full(n, self.factor(target, level))
        if groups is None:
            return k
        g = np.asarray(groups, dtype=object).ravel()
        if len(g) != n:
            raise StellarValueError(f"groups must hold one subset name per row ({n}), found {len(g)}")
        own = {subset_key(s): cal for s, cal in self.subsets_.items() if target in cal.targets}
        keys = np.array([subset_key(x) for x in g], dtype=object)
        for key, cal in own.items():
            k[keys == key] = cal.factor(target, level)
        return k

    def _factor(self, state: Mapping[str, Any], level: float) -> float:
        return self.pooled._factor(state, level)

    def _fit_target(self, z: np.ndarray) -> dict[str, Any]:
        return self.pooled._fit_target(z)

    def to_dict(self) -> dict[str, Any]:
        """``type``, ``min_rows``, the ``pooled`` calibrator's and each subset's ``to_dict()`` (``subsets``)."""
        return {
            "type": self.type_name,
            "min_rows": self.min_rows,
            "pooled": self.pooled.to_dict(),
            "subsets": {s: cal.to_dict() for s, cal in self.subsets_.items()},
        }

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any]) -> SubsetIntervalCalibrator:
        pooled = BaseIntervalCalibrator.from_dict(payload["pooled"])
        if isinstance(pooled, SubsetIntervalCalibrator):
            raise StellarValueError("payload['pooled'] must be an interval calibrator of one scope, not 'by_subset'")
        obj = cls(copy.deepcopy(pooled), int(payload["min_rows"]))
        obj.pooled = pooled
        obj.log_targets, obj.params_ = pooled.log_targets, pooled.params_
        obj.subsets_ = {str(s): BaseIntervalCalibrator.from_dict(p) for s, p in dict(payload["subsets"]).items()}
        return obj

    def __repr__(self) -> str:
        return f"SubsetIntervalCalibrator(pooled={self.pooled!r}, subsets={sorted(self.subsets_)})"


def calibrated_outputs(
    calibrator: BaseIntervalCalibrator | None, outputs: Mapping[str, Any], groups: Sequence[str] | None = None
) -> dict[str, Any]:
    """``outputs`` with calibrated σ (a plain copy without a calibrator); ``groups``: the subset of each row."""
    return dict(outputs) if calibrator is None else calibrator.transform(outputs, groups)
