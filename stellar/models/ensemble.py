"""An ensemble of estimators: the mean of their class probabilities and a Gaussian mixture of their regression outputs,
with the model-output contract.

Members are estimator factories (Hydra ``_partial_: true`` configs, e.g. ``sed_xgboost`` and an MLP, or
``spectral_ridge`` on two representations), each fitted ``copies`` times with seeds ``seed, seed + 1, …`` on the same
training part (early stopping and checkpoint choice on the same validation part). ``predict_outputs`` returns
``logits`` = log of the mean probability of the members with a class head, and, for each regression target, the
moments of the equal-weight mixture of the members that predict it: mean of the means, variance = mean of the
variances + variance of the means (physical units). So the pipeline calibrates, scores, saves and serves an
ensemble like any single estimator.

With ``calibrate_members`` each member is first calibrated on the validation part (temperature scaling of its
logits, variance scaling of its σ), so that an overconfident member does not dominate the average; those
calibrators are saved (``to_dict()`` JSON) in the ensemble's ``estimator.json``.

Every member saves into the same flat folder under its own prefix (``xgb_0.class.ubj``, ``xgb_0.estimator.json``,
``mlp_0.mlp.pt``…) beside the ensemble's ``estimator.json``, so that the registry, which stores the files of a
checkpoint folder, keeps all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stellar.errors import StellarConfigError
from stellar.evaluation.calibration import (
    BaseIntervalCalibrator,
    BaseProbCalibrator,
    TemperatureScaler,
    VarianceScaler,
    calibrated_probs,
    log_loss_per_row,
    negative_log_likelihood,
    softmax,
)
from stellar.models.estimators import (
    PIPELINE_KEYS,
    Estimator,
    log_probs,
    members_log_probs,
    read_meta,
    write_meta,
)
from stellar.utils.numeric import log10_positive

log = logging.getLogger(__name__)


def gaussian_mixture(
    means: Sequence[np.ndarray], logvars: Sequence[np.ndarray], weights: Sequence[float] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and log-variance of the mixture of Gaussians ``N(means[i], exp(logvars[i]))``.

    Parameters
    ----------
    means, logvars : sequence of numpy.ndarray
        One (N,) array per member, in the target's units (e.g. K) and their square's log.
    weights : sequence of float or numpy.ndarray, optional
        Mixture weights, one per member, non-negative and not all zero (normalised here); equal by default. An
        (M, N) array gives each object its own weights (each column normalised, e.g. from :func:`_present_weights`).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The weighted mean of the means, and the log of (weighted mean of the variances + weighted variance of the
        means).
    """
    if not means or len(means) != len(logvars):
        raise StellarConfigError(
            f"means and logvars must be equally long and non-empty; got {len(means)}, {len(logvars)}"
        )
    mu = np.stack([np.asarray(m, dtype=np.float64) for m in means])
    var = np.exp(np.stack([np.asarray(v, dtype=np.float64) for v in logvars]))
    if isinstance(weights, np.ndarray) and weights.ndim == 2:
        if weights.shape != mu.shape or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise StellarConfigError(f"per-object weights must be finite, >= 0 and of shape {mu.shape}")
        w = weights / weights.sum(axis=0)
    else:
        w = _normalised(None if weights is None else list(np.ravel(weights)), len(means))[:, None]
    mean = np.sum(w * mu, axis=0)
    return mean, np.log(np.sum(w * (var + (mu - mean) ** 2), axis=0))


def _normalised(weights: Sequence[float] | None, n: int) -> np.ndarray:
    """``weights`` as an array of ``n`` non-negative numbers summing to 1 (equal when ``None``)."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise StellarConfigError(f"weights must be {n} non-negative numbers, not all zero; got {list(w)}")
    return w / w.sum()


def _mae_loss(
    means: Mapping[str, np.ndarray],
    truth: np.ndarray,
    learned: Callable[[np.ndarray], np.ndarray],
    trusted: Sequence[np.ndarray] | None = None,
) -> Callable[[Mapping[str, float]], np.ndarray]:
    """Per object, the absolute error in the learned space of the weighted mean of the members' ``means`` against
    ``truth`` (their mean is the MAE); with ``trusted`` (one mask per member), each object's weights over the
    members trusted for it."""
    member = {k: np.asarray(m, dtype=np.float64) for k, m in means.items()}
    target = learned(np.asarray(truth, dtype=np.float64))
    mu = np.stack(list(member.values()))

    def loss(w: Mapping[str, float]) -> np.ndarray:
        ws = [w[k] for k in member]
        if trusted is None:
            mean = np.tensordot(np.asarray(ws), mu, axes=1)
        else:
            mean = np.sum(_present_weights(ws, trusted, len(ws), mu.shape[1]) * mu, axis=0)
        return np.abs(learned(mean) - target)

    return loss


def simplex_grid(n: int, step: float) -> np.ndarray:
    """Every weight vector of ``n`` members on the simplex with the given step (rows sum to 1), e.g. ``n=2,
    step=0.25``: (0, 1), (0.25, 0.75), …, (1, 0)."""
    k = round(1.0 / step)
    if n < 1 or k < 1 or not np.isclose(k * step, 1.0):
        raise StellarConfigError(f"weight_step must divide 1 (e.g. 0.1, 0.05) and n >= 1; got {step}, {n}")
    rows: list[list[int]] = []

    def fill(prefix: list[int], left: int, slots: int) -> None:
        if slots == 1:
            rows.append([*prefix, left])
            return
        for i in range(left + 1):
            fill([*prefix, i], left - i, slots - 1)

    fill([], k, n)
    return np.asarray(rows, dtype=np.float64) / k


def _check_margin(margin: float) -> None:
    if not (np.isfinite(margin) and margin >= 0):
        raise StellarConfigError(f"weight_margin must be a non-negative number; got {margin}")


def best_weights(
    keys: Sequence[str],
    step: float,
    loss: Callable[[Mapping[str, float]], float | np.ndarray],
    margin: float = 0.0,
) -> dict[str, float] | None:
    """The member weights with the lowest mean ``loss`` on the simplex grid of ``step``: one weight per member kind
    (``<kind>_<i>`` keys; copies of a kind share its weight equally); ``None`` with fewer than two kinds.

    ``loss`` returns the loss of a weighting, either as one number or per object (its mean is compared). With
    ``margin > 0`` (per-object losses needed) a mixture is kept only if it beats the best single kind by more than
    ``margin`` standard errors of their paired per-object difference; otherwise all weight goes to that kind: the
    one-standard-error rule at ``margin=1``, which prefers the simpler answer when the validation part cannot tell
    them apart.
    """
    _check_margin(margin)
    kind_of = {k: k.rsplit("_", 1)[0] for k in keys}
    kinds = list(dict.fromkeys(kind_of.values()))
    if len(kinds) < 2:
        return None
    per_kind = {c: sum(kind_of[k] == c for k in keys) for c in kinds}
    best, best_w, best_v = np.inf, None, None
    single, single_w, single_v = np.inf, None, None
    for row in simplex_grid(len(kinds), step):
        w = {k: float(row[kinds.index(kind_of[k])]) / per_kind[kind_of[k]] for k in keys}
        values = np.asarray(loss(w), dtype=np.float64)
        if margin > 0 and (values.ndim != 1 or len(values) < 2):
            raise StellarConfigError("weight_margin > 0 needs a loss per object (at least two), not one number")
        value = float(np.mean(values))
        if value < best - 1e-12:
            best, best_w, best_v = value, w, values
        if np.count_nonzero(row) == 1 and value < single - 1e-12:
            single, single_w, single_v = value, w, values
    if margin == 0 or best_w is None or single_w is None or best_w == single_w:
        return best_w
    assert best_v is not None and single_v is not None
    diff = best_v - single_v
    se = float(np.std(diff, ddof=1) / np.sqrt(len(diff)))
    return best_w if float(np.mean(diff)) < -margin * se else single_w


def _present_weights(
    weights: Sequence[float] | None, present: Sequence[np.ndarray] | None, m: int, n: int
) -> np.ndarray:
    """(M, N) weights of ``m`` members for ``n`` objects, normalised over the members present for each object; an
    object whose present members all have weight 0 weighs them equally; one with none present gets NaN."""
    w = _normalised(weights, m)[:, None]
    mask = np.ones((m, n), bool) if present is None else np.stack([np.asarray(p, dtype=bool) for p in present])
    if mask.shape != (m, n):
        raise StellarConfigError(f"present must be {m} masks of {n} objects; got shape {mask.shape}")
    w = w * mask
    total = w.sum(axis=0)
    w = np.where(total > 0, w, mask.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return w / w.sum(axis=0)


def log_linear_pool(
    probs: Sequence[np.ndarray], weights: Sequence[float] | None = None, present: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """The log-linear pool of the members' class probabilities: ``softmax(sum_m w_m log p_m)`` per object, the
    weights normalised over the members ``present`` for that object.

    Parameters
    ----------
    probs : sequence of numpy.ndarray
        One (N, C) array of probabilities per member.
    weights : sequence of float, optional
        One non-negative weight per member (equal by default).
    present : sequence of numpy.ndarray, optional
        One (N,) boolean mask per member: which objects it may answer for (all by default). An object with one
        member present gets that member's probabilities; one with none, NaN.

    Returns
    -------
    numpy.ndarray
        (N, C) probabilities.
    """
    if not probs:
        raise StellarConfigError("probs must hold at least one member's probabilities")
    log_p = members_log_probs(probs)
    w = _present_weights(weights, present, log_p.shape[0], log_p.shape[1])
    return softmax(np.einsum("mn,mnc->nc", np.nan_to_num(w), log_p)) * np.where(np.isnan(w[0]), np.nan, 1.0)[:, None]


def gaussian_product(
    means: Sequence[np.ndarray],
    logvars: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
    present: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The weighted product of Gaussians ``N(means[m], exp(logvars[m]))`` per object: precision
    ``sum_m w_m / var_m`` and the precision-weighted mean, the weights normalised over the members ``present``.

    With weights summing to 1 this is a generalised product of experts: one member present gives that member's
    Gaussian back; two members of equal weight give the mean their precisions weigh and the harmonic mean of their
    variances.

    Parameters
    ----------
    means, logvars : sequence of numpy.ndarray
        One (N,) array per member (any units, the same for all members) and the log of its variance.
    weights : sequence of float, optional
        One non-negative weight per member (equal by default).
    present : sequence of numpy.ndarray, optional
        One (N,) boolean mask per member (all by default); an object with none present gets NaN.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The combined mean and log-variance, (N,) each.
    """
    if not means or len(means) != len(logvars):
        raise StellarConfigError(
            f"means and logvars must be equally long and non-empty; got {len(means)}, {len(logvars)}"
        )
    mu = np.stack([np.asarray(m, dtype=np.float64) for m in means])
    lv = np.stack([np.asarray(v, dtype=np.float64) for v in logvars])
    w = _present_weights(weights, present, mu.shape[0], mu.shape[1])
    used = np.nan_to_num(w) > 0
    prec_m = np.where(used, np.nan_to_num(w) * np.exp(-np.where(used, lv, 0.0)), 0.0)
    prec = prec_m.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(used, prec_m * np.where(used, mu, 0.0), 0.0).sum(axis=0) / prec
        return np.where(prec > 0, mean, np.nan), np.where(prec > 0, -np.log(prec), np.nan)


class Ensemble(Estimator):
    """Mean class probabilities and the Gaussian mixture of the regression outputs of several fitted estimators.

    Parameters
    ----------
    members : mapping of str to callable
        Member kinds by name; each is called as ``factory(class_names=..., seed=..., name=..., target_stats=...)``
        and must return an estimator (``fit``, ``predict_outputs``, ``save(folder, prefix)``, ``load(json_path)``)
        with a class head (``logits``), regression targets (``<t>_mean``/``<t>_logvar``) or both.
    copies : mapping of str to int, optional
        How many copies of each kind to fit (default 1 each), with seeds ``seed + i``; copy ``i`` of kind ``k``
        is named ``k_i``.
    name : str
        Model name.
    class_names : sequence of str, optional
        The classes (the datamodule's), handed to every member.
    seed : int
        Seed of the first copy of each kind.
    target_stats : mapping of str to (mean, std), optional
        Learned-space statistics of the targets (the datamodule's), handed to every member.
    calibrate_members : bool
        Calibrate each member on the validation part before averaging (temperature scaling of its logits,
        variance scaling of its σ in its learned space).
    weighting : {"equal", "validation"}
        How the members are weighed, per head (the class head and each target): ``"equal"`` (every copy alike), or
        ``"validation"``: one weight per member kind (shared by its copies), per head, chosen on the validation
        part among the grid of ``weight_step`` on the simplex: the lowest log loss for the class head, the lowest
        mean absolute error of the mixture mean (in the learned space, log10 for log targets) for a target. So a
        member that is better at one head and worse at another is used where it is better.
    weight_step : float
        Step of the weight grid (``weighting="validation"``), dividing 1.
    weight_margin : float
        ``weighting="validation"``: keep a mixture for a head only if its validation loss is lower than the best
        single member kind's by more than ``weight_margin`` standard errors of their paired per-object difference
        (1: the one-standard-error rule); otherwise that kind alone answers the head. 0 (default): the lowest loss.
    weight_space : {"learned", "physical"}
        Where a target's validation MAE is measured when choosing its weights: in the learned space (log10 for log
        targets, the default), or in the target's own units (K for Teff, where the hottest stars dominate the MAE).
    trust_quantile : mapping of str to float, optional
        Member kinds trusted for a regression target only between the ``1 - q`` and ``q`` quantiles of the training
        values of that target (learned space), e.g. ``{net: 0.95}``: the network answers Teff only for a star that
        the other members place between the 5% and 95% quantiles of the training Teff; outside, the other members
        answer alone. Networks
        extrapolate badly where the training set is sparse (the few O/B stars of MILES); a kernel ridge reverts to
        its mean. Whether a star is inside is judged by the mean of the members not gated; the ranges are fitted on
        the training part and kept in ``estimator.json``.
    """

    hparam_keys = (*PIPELINE_KEYS, "log_targets", "members", "weighting", "weight_margin", "weight_space",
                   "trust_quantile")  # fmt: skip

    def __init__(
        self,
        members: Mapping[str, Callable[..., Any]],
        copies: Mapping[str, int] | None = None,
        name: str = "ensemble",
        class_names: Sequence[str] | None = None,
        seed: int = 0,
        target_stats: Mapping[str, Sequence[float]] | None = None,
        calibrate_members: bool = False,
        weighting: str = "equal",
        weight_step: float = 0.1,
        weight_margin: float = 0.0,
        weight_space: str = "learned",
        trust_quantile: Mapping[str, float] | None = None,
    ):
        if weighting not in ("equal", "validation"):
            raise StellarConfigError(f"weighting must be 'equal' or 'validation'; got {weighting!r}")
        simplex_grid(1, weight_step)  # checks the step
        if weight_space not in ("learned", "physical"):
            raise StellarConfigError(f"weight_space must be 'learned' or 'physical'; got {weight_space!r}")
        _check_margin(weight_margin)
        if not members:
            raise StellarConfigError("members must name at least one estimator config")
        copies = dict(copies or {})
        unknown = sorted(set(copies) - set(members))
        if unknown:
            raise StellarConfigError(f"copies names {unknown}, which are not members ({sorted(members)})")
        self.name, self.seed = str(name), int(seed)
        self.calibrate_members = bool(calibrate_members)
        self.weighting, self.weight_step = str(weighting), float(weight_step)
        self.weight_margin, self.weight_space = float(weight_margin), str(weight_space)
        self.trust_quantile = {str(k): float(q) for k, q in (trust_quantile or {}).items()}
        bad = {k: q for k, q in self.trust_quantile.items() if k not in members or not 0.5 < q <= 1.0}
        if bad or (self.trust_quantile and set(self.trust_quantile) >= set(members)):
            raise StellarConfigError(
                f"trust_quantile must map member kinds {sorted(members)} (not all of them) to quantiles in (0.5, 1]; "
                f"got {dict(trust_quantile or {})}"
            )
        #: per gated kind and target: the (low, high) learned-space range it is trusted in (fitted on train)
        self.trust_range: dict[str, dict[str, tuple[float, float]]] = {}
        #: per head ("class" or a target), the weight of each member (``weighting="validation"``; absent: equal)
        self.weights: dict[str, dict[str, float]] = {}
        given = [str(c) for c in class_names or []]
        stats = {t: tuple(float(v) for v in s) for t, s in (target_stats or {}).items()}
        self.models: dict[str, Any] = {}
        for kind, factory in members.items():
            if not callable(factory):
                raise StellarConfigError(f"member {kind!r} must be an estimator factory (_partial_: true)")
            n = int(copies.get(kind, 1))
            if n < 1:
                raise StellarConfigError(f"copies[{kind!r}] must be at least 1; got {n}")
            for i in range(n):
                key = f"{kind}_{i}"
                self.models[key] = factory(
                    class_names=given, seed=self.seed + i, name=f"{self.name}.{key}", target_stats=stats
                )
        models = list(self.models.values())
        #: the classes, when at least one member has a class head
        self.class_names = given if any(getattr(m, "class_names", None) for m in models) else []
        #: every member's regression targets (the union, in first-seen order) and its log10 targets
        self.targets = list(dict.fromkeys(t for m in models for t in getattr(m, "targets", ())))
        self.log_targets = [t for t in dict.fromkeys(t for m in models for t in getattr(m, "log_targets", ()))
                            if t in self.targets]  # fmt: skip
        if not self.class_names and not self.targets:
            raise StellarConfigError(
                f"the ensemble needs class_names (got {given}) with a class-head member, or members with targets"
            )
        self.target_stats = {t: stats.get(t, (0.0, 1.0)) for t in self.targets}
        inputs = {tuple(getattr(m, "inputs", ())) for m in models}
        #: the data fields every member reads (the union, in first-seen order)
        self.inputs = list(dict.fromkeys(k for m in models for k in getattr(m, "inputs", ())))
        if len(inputs) > 1:
            log.info("ensemble members read different inputs: %s", sorted(inputs))
        #: per member: its probability and interval calibrators (``calibrate_members``), ``None`` where not fitted
        self.member_calibrators: dict[str, dict[str, BaseProbCalibrator | BaseIntervalCalibrator | None]] = {}
        #: per member and booster/head, per data part, per metric: the value at every round or epoch
        self.history: dict[str, dict[str, dict[str, list[float]]]] = {}

    @property
    def members(self) -> list[str]:
        """The fitted copies, ``<kind>_<i>``, in fitting order."""
        return list(self.models)

    def fit(self, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        """Fit every member in turn (then its calibrators on ``val`` with ``calibrate_members``); returns each
        member's metrics under ``<part>/<member>.<metric>`` and, on ``val``, the ensemble's log loss and accuracy
        (``val/class_mlogloss``, ``val/acc``) and each target's MAE (``val/<t>_mae``)."""
        metrics: dict[str, float] = {}
        self.history, self.member_calibrators, self.weights = {}, {}, {}
        for n, (key, model) in enumerate(self.models.items(), start=1):
            for k, v in model.fit(train, val).items():
                part, _, metric = k.partition("/")
                metrics[f"{part}/{key}.{metric}"] = float(v)
            for sub, parts in getattr(model, "history", {}).items():
                self.history[f"{key}.{sub}"] = parts
            if self.calibrate_members and val is not None and len(val.get("label", ())):
                self.member_calibrators[key] = self._calibrate(model, val)
            log.info("ensemble member %s fitted (%d of %d)", key, n, len(self.models))
        self.trust_range = self._fit_trust_range(train)
        if self.weighting == "validation" and val is not None and len(val.get("label", ())):
            self.weights = self._fit_weights(val)
            for head, ws in self.weights.items():
                log.info("ensemble weights for %s (chosen on val): %s", head, ws)
                for key, w in ws.items():
                    metrics[f"val/weight.{head}.{key}"] = w
        if val is not None and len(val.get("label", ())):
            out = self.predict_outputs(val)
            y = np.asarray(val["label"])
            ok = y >= 0
            if "logits" in out and ok.any():
                p = softmax(out["logits"].astype(np.float64))[ok]
                metrics["val/class_mlogloss"] = negative_log_likelihood(p, y[ok])
                metrics["val/acc"] = float(np.mean(p.argmax(1) == y[ok]))
            for t in self.targets:
                truth = np.asarray(val[t], dtype=np.float64)
                if np.isfinite(truth).any():
                    metrics[f"val/{t}_mae"] = float(np.nanmean(np.abs(out[f"{t}_mean"] - truth)))
        return metrics

    @staticmethod
    def _calibrate(
        model: Any, val: Mapping[str, np.ndarray]
    ) -> dict[str, BaseProbCalibrator | BaseIntervalCalibrator | None]:
        """A member's temperature (on its labelled validation rows) and σ scale (on its validation truths)."""
        out = model.predict_outputs(val)
        cals: dict[str, BaseProbCalibrator | BaseIntervalCalibrator | None] = {"probs": None, "intervals": None}
        y = np.asarray(val["label"])
        if "logits" in out and (y >= 0).sum() >= 2:
            cals["probs"] = TemperatureScaler().fit(out["logits"][y >= 0], y[y >= 0])
        truths = {t: np.asarray(val[t], dtype=np.float64) for t in getattr(model, "targets", ())}
        truths = {t: v for t, v in truths.items() if np.isfinite(v).sum() >= 2}
        if truths:
            cals["intervals"] = VarianceScaler().fit(out, truths, log_targets=getattr(model, "log_targets", ()))
        return cals

    def _fit_weights(self, val: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
        """Per head, the member-kind weights of the simplex grid with the lowest validation loss (log loss for the
        class head, MAE of the mixture mean in the learned space for a target); heads with one kind are left out."""
        outs = {key: self._member_outputs(key, val) for key in self.models}
        weights: dict[str, dict[str, float]] = {}

        def choose(head: str, keys: list[str], loss: Callable[[Mapping[str, float]], np.ndarray]) -> None:
            best_w = best_weights(keys, self.weight_step, loss, self.weight_margin)
            if best_w is not None:
                weights[head] = best_w

        y = np.asarray(val["label"])
        ok = y >= 0
        # each member's calibrated probabilities on the labelled rows
        probs = {k: p[ok] for k, (_, p) in outs.items() if p is not None}
        if self.class_names and ok.sum() >= 2 and probs:

            def log_loss(w: Mapping[str, float]) -> np.ndarray:
                return log_loss_per_row(np.sum([w[k] * p for k, p in probs.items()], axis=0), y[ok])

            choose("class", list(probs), log_loss)
        for t in self.targets:
            keys = [k for k, (o, _) in outs.items() if f"{t}_mean" in o]
            truth = np.asarray(val.get(t, np.full(len(y), np.nan)), dtype=np.float64)
            good = np.isfinite(truth) & (truth > 0 if t in self.log_targets else True)
            if good.sum() < 2 or not keys:
                continue
            learned = np.log10 if t in self.log_targets and self.weight_space == "learned" else np.asarray
            means = {k: outs[k][0][f"{t}_mean"][good] for k in keys}
            choose(t, keys, _mae_loss(means, truth[good], learned, self._trusted(t, means)))
        return weights

    def _fit_trust_range(self, train: Mapping[str, np.ndarray]) -> dict[str, dict[str, tuple[float, float]]]:
        """Per kind of ``trust_quantile`` and target: the ``1 - q`` and ``q`` quantiles of the training values
        (learned space)."""
        ranges: dict[str, dict[str, tuple[float, float]]] = {}
        for kind, q in self.trust_quantile.items():
            for t in self.targets:
                v = np.asarray(train.get(t, ()), dtype=np.float64)
                v = v[np.isfinite(v) & ((v > 0) if t in self.log_targets else True)]
                if len(v) < 2:
                    continue
                v = np.log10(v) if t in self.log_targets else v
                ranges.setdefault(kind, {})[t] = (float(np.quantile(v, 1.0 - q)), float(np.quantile(v, q)))
        return ranges

    def _trusted(self, t: str, means: Mapping[str, np.ndarray]) -> list[np.ndarray] | None:
        """Per member of ``means`` (its means of target ``t``), whether it is trusted for each object: the gated
        kinds only where the mean of the other members lies in their range; ``None`` when nothing is gated."""
        kind = {k: k.rsplit("_", 1)[0] for k in means}
        gated = {k for k in means if t in self.trust_range.get(kind[k], {})}
        free = [np.asarray(m, dtype=np.float64) for k, m in means.items() if k not in gated]
        if not gated or not free:
            return None
        ref = np.mean(free, axis=0)
        ref = log10_positive(ref) if t in self.log_targets else ref
        masks = []
        for k, m in means.items():
            if k in gated:
                lo, hi = self.trust_range[kind[k]][t]
                masks.append((ref >= lo) & (ref <= hi))
            else:
                masks.append(np.ones(len(np.asarray(m)), bool))
        return masks

    def _head_weights(self, head: str, keys: Sequence[str]) -> list[float] | None:
        """The weights of ``keys`` for ``head`` (``None``: equal)."""
        ws = self.weights.get(head)
        if not ws or any(k not in ws for k in keys):
            return None
        return [ws[k] for k in keys]

    def _member_outputs(self, key: str, arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, Any], np.ndarray | None]:
        """A member's outputs (σ calibrated where it has an interval calibrator) and class probabilities."""
        out = self.models[key].predict_outputs(arrays)
        cals = self.member_calibrators.get(key, {})
        intervals = cals.get("intervals")
        if isinstance(intervals, BaseIntervalCalibrator):
            out = intervals.transform(out)
        probs = cals.get("probs")
        p = None
        if "logits" in out:
            logits = np.asarray(out["logits"], dtype=np.float64)
            p = calibrated_probs(probs, logits) if isinstance(probs, BaseProbCalibrator) else softmax(logits)
        return out, p

    def member_probs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Class probabilities (N, C) of each member with a class head, after its own calibrator, by member."""
        probs = {key: self._member_outputs(key, arrays)[1] for key in self.models}
        return {key: p for key, p in probs.items() if p is not None}

    def adjust_probs(self, probs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Hook: the members' probabilities as :meth:`combine` takes them (as they are here; a subclass may
        recalibrate them)."""
        return dict(probs)

    def combine(self, probs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ensemble's class probabilities from the members': their mean, weighted by the class head's weights
        where chosen on val (a subclass may stack them)."""
        w = _normalised(self._head_weights("class", list(probs)), len(probs))
        return np.tensordot(w, np.stack(list(probs.values())), axes=1)

    def predict_outputs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``logits`` (N, C): the log of :meth:`combine` of the class probabilities of the members with a class
        head; for each target, ``<t>_mean``/``<t>_logvar`` of the mixture of the members that predict it."""
        probs: dict[str, np.ndarray] = {}
        means: dict[str, list[np.ndarray]] = {t: [] for t in self.targets}
        logvars: dict[str, list[np.ndarray]] = {t: [] for t in self.targets}
        keys: dict[str, list[str]] = {t: [] for t in self.targets}
        for key in self.models:
            out, p = self._member_outputs(key, arrays)
            if p is not None:
                probs[key] = p
            for t in self.targets:
                if f"{t}_mean" in out:
                    means[t].append(out[f"{t}_mean"])
                    logvars[t].append(out[f"{t}_logvar"])
                    keys[t].append(key)
        result: dict[str, np.ndarray] = {}
        if self.class_names:
            result["logits"] = log_probs(self.combine(self.adjust_probs(probs)))
        for t in self.targets:
            head = self._head_weights(t, keys[t])
            trusted = self._trusted(t, dict(zip(keys[t], means[t], strict=True)))
            weights = head if trusted is None else _present_weights(head, trusted, len(keys[t]), len(trusted[0]))
            mean, logvar = gaussian_mixture(means[t], logvars[t], weights)
            result[f"{t}_mean"], result[f"{t}_logvar"] = mean.astype(np.float32), logvar.astype(np.float32)
        return result

    def save(self, directory: str | Path, prefix: str = "") -> Path:
        """Every member under the prefix ``<prefix><member>.`` and ``<prefix>estimator.json`` in ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        files = {key: model.save(d, prefix=f"{prefix}{key}.").name for key, model in self.models.items()}
        cals = {key: {kind: None if c is None else c.to_dict() for kind, c in cs.items()}
                for key, cs in self.member_calibrators.items()}  # fmt: skip
        meta = {**self.hparams, "type": type(self).__name__, "files": files, "member_calibrators": cals,
                "weights": self.weights, "trust_range": self.trust_range}  # fmt: skip
        return write_meta(d, prefix, meta)

    def load(self, path: str | Path) -> Ensemble:
        """Load what :meth:`save` wrote (``path``: its JSON file or the folder); members must match the config."""
        meta_path, meta = read_meta(path)
        if list(meta.get("class_names", [])) != self.class_names:
            raise StellarConfigError(f"saved class_names {meta.get('class_names')} differ from {self.class_names}")
        if list(meta.get("members", [])) != list(self.models):
            raise StellarConfigError(
                f"saved members {meta.get('members')} differ from this config's {list(self.models)}"
            )
        for key, model in self.models.items():
            model.load(meta_path.parent / meta["files"][key])
        self.weights = {h: {k: float(v) for k, v in ws.items()} for h, ws in meta.get("weights", {}).items()}
        self.trust_range = {kind: {t: (float(r[0]), float(r[1])) for t, r in rs.items()}
                            for kind, rs in meta.get("trust_range", {}).items()}  # fmt: skip
        if set(self.trust_range) != set(self.trust_quantile):
            raise StellarConfigError(
                f"saved trust ranges for {sorted(self.trust_range)} differ from this config's trust_quantile "
                f"{sorted(self.trust_quantile)}"
            )
        self.member_calibrators = {}
        for key, cs in meta.get("member_calibrators", {}).items():
            self.member_calibrators[key] = {
                "probs": None if cs.get("probs") is None else BaseProbCalibrator.from_dict(cs["probs"]),
                "intervals": None if cs.get("intervals") is None else BaseIntervalCalibrator.from_dict(cs["intervals"]),
            }
        return self


#: the name of :class:`Ensemble` before it took regression members; configs and runs saved with it still load
EnsembleClassifier = Ensemble
