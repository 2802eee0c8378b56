"""Gradient-boosted tree estimators with the model-output contract of the neural models.

An estimator is what ``train.py`` fits when the configured model is not a LightningModule. It reads named fields
of a datamodule part (numpy arrays from :meth:`StellarDataModule.arrays`), flattens and concatenates them into a
feature matrix ``X`` (NaN = missing, which XGBoost routes down a learned default branch) and returns the same dict
as :class:`~stellar.models.module.StellarModule`: ``logits`` (N, C), here the log of the class probabilities, and
``<t>_mean``, ``<t>_logvar`` in physical units for each regression target.

Regression uses one multi-quantile booster per target (``reg:quantileerror`` at the 16th, 50th and 84th
percentiles, in the same learned space as the neural heads: log10 for ``log_targets``, standardised with the
training part's statistics). The median is the mean of the output and half the 16–84 spread its σ, so a
Gaussian reading of the output has the same 68% interval as the quantiles.

Boosters are saved as UBJSON beside a small JSON file (``estimator.json``) with the class names, targets,
inputs, target statistics and the best iteration of each booster; nothing is pickled.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xgboost as xgb

from stellar.errors import StellarConfigError, StellarDataError

log = logging.getLogger(__name__)

#: file name of the estimator's metadata inside a checkpoint folder
META_FILE = "estimator.json"
#: floor of a probability before its log (logits of the output contract, pools of members' probabilities)
LOGIT_FLOOR = 1e-12


def feature_matrix(arrays: Mapping[str, np.ndarray], inputs: Sequence[str]) -> np.ndarray:
    """Fields ``inputs`` of ``arrays``, each flattened to (N, -1), concatenated into float32 (N, F).

    Boolean fields become 0/1; non-finite values become NaN (missing for XGBoost).
    """
    missing = [k for k in inputs if k not in arrays]
    if missing:
        raise StellarConfigError(f"inputs {missing} are not fields of the data; it has {sorted(arrays)}")
    cols = []
    for k in inputs:
        a = np.asarray(arrays[k])
        cols.append(a.reshape(len(a), -1).astype(np.float32))
    x = np.concatenate(cols, axis=1) if cols else np.empty((0, 0), np.float32)
    return np.where(np.isfinite(x), x, np.nan).astype(np.float32)


#: ``hparams`` keys the pipeline reads from every estimator (``estimator.json``, ``checkpoint_hparams``)
PIPELINE_KEYS: tuple[str, ...] = ("name", "class_names", "targets", "target_stats", "inputs")


def _plain(value: Any) -> Any:
    """JSON-ready copy of an attribute: sequences become lists and mappings dicts, recursively."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Estimator:
    """The one source of an estimator's ``hparams``: the attributes named by ``hparam_keys``, in that order.

    Every subclass declares ``hparam_keys``; declaring the class fails if a key the pipeline reads
    (:data:`PIPELINE_KEYS`) is missing or a key is named twice, so no estimator can forget or duplicate one.
    """

    hparam_keys: ClassVar[tuple[str, ...]] = PIPELINE_KEYS
    class_names: Sequence[str]
    targets: Sequence[str]
    log_targets: Sequence[str]
    target_stats: Mapping[str, Sequence[float]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        keys = cls.hparam_keys
        missing = [k for k in PIPELINE_KEYS if k not in keys]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if missing or twice:
            raise TypeError(f"{cls.__name__}.hparam_keys lacks {missing} / names {twice} twice; got {list(keys)}")

    @property
    def hparams(self) -> dict[str, Any]:
        """The plain-data description of the model (what a Lightning checkpoint keeps as hyper-parameters), saved
        in ``estimator.json``."""
        return {k: _plain(getattr(self, k)) for k in self.hparam_keys}

    def _read_saved(self, path: str | Path) -> tuple[Path, dict[str, Any]]:
        """The ``estimator.json`` that ``save`` wrote (``path``: the folder or the file) and its contents, after
        checking that its class names, targets and inputs are this model's; restores ``target_stats``."""
        meta_path, meta = read_meta(path)
        for key in ("class_names", "targets", "inputs"):
            if list(meta.get(key, [])) != list(getattr(self, key)):
                raise StellarConfigError(f"saved {key} {meta.get(key)} differ from this model's {getattr(self, key)}")
        self.target_stats = {t: tuple(float(v) for v in s) for t, s in meta.get("target_stats", {}).items()}
        return meta_path, meta

    def _set_heads(
        self,
        class_names: Sequence[str] | None,
        targets: Sequence[str],
        log_targets: Sequence[str],
        target_stats: Mapping[str, Sequence[float]] | None,
        require: str = "any",
    ) -> None:
        """Set ``class_names``, ``targets``, ``log_targets`` and ``target_stats`` (learned-space mean and std per
        target, ``(0, 1)`` where not given) as plain data; ``require`` is ``"any"`` (classes, targets or both) or
        ``"targets"``."""
        self.class_names = [str(c) for c in class_names or []]
        self.targets = [str(t) for t in targets]
        if require == "targets" and not self.targets:
            raise StellarConfigError("targets must name at least one label, e.g. [teff, logg, feh]")
        if not self.class_names and not self.targets:
            raise StellarConfigError("model needs class_names, targets or both; got neither")
        self.log_targets = [str(t) for t in log_targets]
        stats = target_stats or {}
        self.target_stats = {t: tuple(float(v) for v in stats.get(t, (0.0, 1.0))) for t in self.targets}


class XGBoostEstimator(Estimator):
    """One classification booster (``multi:softprob``) and/or one multi-quantile booster per regression target.

    Parameters
    ----------
    name : str
        Model name (used by the registry and reports).
    class_names : sequence of str, optional
        Classes of the classification booster; ``None`` or empty for regression only.
    targets : sequence of str
        Regression targets (physical units in the data, NaN where unknown).
    log_targets : sequence of str
        Targets learned as log10 of their value.
    target_stats : mapping of str to (mean, std), optional
        Standardisation of each target in learned space, from the training part (filled in by the pipeline).
    inputs : sequence of str
        Batch fields that make up the feature matrix, in order.
    params : mapping, optional
        XGBoost training parameters shared by every booster (``max_depth``, ``eta``, ``subsample``…);
        ``objective``, ``num_class`` and ``quantile_alpha`` are set here.
    num_boost_round : int
        Maximum number of boosting rounds.
    early_stopping_rounds : int, optional
        Stop when the validation loss has not improved for this many rounds (needs a validation part).
    quantiles : (float, float, float)
        Lower, middle and upper quantile of the regression boosters (default 16/50/84%: ±1σ).
    calibrate_intervals : bool
        Rescale each target's σ by one factor so that 68.3% of the validation truths fall within ±1σ (quantile
        boosters fitted on the training part are overconfident); the factor is saved with the model.
    n_jobs : int
        Threads XGBoost may use.
    seed : int
        XGBoost's random seed.
    """

    hparam_keys = ("name", "class_names", "targets", "log_targets", "target_stats", "inputs", "quantiles",
                   "interval_scale")  # fmt: skip

    def __init__(
        self,
        name: str = "xgboost",
        class_names: Sequence[str] | None = None,
        targets: Sequence[str] = (),
        log_targets: Sequence[str] = ("teff",),
        target_stats: Mapping[str, Sequence[float]] | None = None,
        inputs: Sequence[str] = ("features",),
        params: Mapping[str, Any] | None = None,
        num_boost_round: int = 500,
        early_stopping_rounds: int | None = 30,
        quantiles: Sequence[float] = (0.16, 0.5, 0.84),
        calibrate_intervals: bool = True,
        n_jobs: int = 2,
        seed: int = 0,
    ):
        self._set_heads(class_names, targets, log_targets, target_stats)
        self.inputs = [str(k) for k in inputs]
        if not self.inputs:
            raise StellarConfigError("inputs must name at least one data field, e.g. [features]")
        q = [float(v) for v in quantiles]
        if len(q) != 3 or not 0.0 < q[0] < q[1] < q[2] < 1.0:
            raise StellarConfigError(f"quantiles must be three increasing values in (0, 1); got {list(quantiles)}")
        self.quantiles = q
        self.calibrate_intervals = bool(calibrate_intervals)
        #: per target, the factor applied to σ (1 without interval calibration)
        self.interval_scale: dict[str, float] = {}
        self.params = dict(params or {})
        self.num_boost_round = int(num_boost_round)
        self.early_stopping_rounds = None if early_stopping_rounds is None else int(early_stopping_rounds)
        self.n_jobs = int(n_jobs)
        self.seed = int(seed)
        self.name = str(name)
        self.boosters: dict[str, xgb.Booster] = {}
        self.best_iteration: dict[str, int] = {}
        #: per booster, per data part, per metric: the value at every round (for TensorBoard)
        self.history: dict[str, dict[str, dict[str, list[float]]]] = {}

    # ---- target transforms (the same as StellarModule's) ---------------------------------------------------
    def _to_learned(self, t: str, value: np.ndarray) -> np.ndarray:
        mean, std = self.target_stats[t]
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.log10(value) if t in self.log_targets else value
        return (v - mean) / std

    def _to_physical(self, t: str, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quantiles (N, 3) in standardised learned space → mean and log-variance in physical units."""
        mu, sd = self.target_stats[t]
        q = np.sort(q, axis=1)  # quantile boosters can cross; sorting restores the order
        y = mu + sd * q
        # spread of the (lower, upper) quantiles in units of the normal distribution's
        z = _normal_ppf(self.quantiles[2]) - _normal_ppf(self.quantiles[0])
        sigma = self.interval_scale.get(t, 1.0) * np.maximum((y[:, 2] - y[:, 0]) / z, 1e-6 * sd)
        mid = y[:, 1]
        if t in self.log_targets:
            value = 10.0**mid
            return value, 2.0 * np.log(sigma * value * math.log(10.0))  # delta method, as StellarModule
        return mid, 2.0 * np.log(sigma)

    # ---- fit / predict -------------------------------------------------------------------------------------
    def _train_one(self, key: str, params: dict[str, Any], dtrain: xgb.DMatrix, dval: xgb.DMatrix | None) -> None:
        evals = [(dtrain, "train")] + ([(dval, "val")] if dval is not None else [])
        result: dict[str, Any] = {}
        booster = xgb.train(
            {"nthread": self.n_jobs, "seed": self.seed, "tree_method": "hist", **self.params, **params},
            dtrain,
            num_boost_round=self.num_boost_round,
            evals=evals,
            early_stopping_rounds=self.early_stopping_rounds if dval is not None else None,
            evals_result=result,
            verbose_eval=False,
        )
        best = getattr(booster, "best_iteration", None)
        self.best_iteration[key] = int(best) if best is not None else booster.num_boosted_rounds() - 1
        self.boosters[key] = booster
        self.history[key] = {
            part: {m: [float(v) for v in vals] for m, vals in ms.items()} for part, ms in result.items()
        }
        log.info("booster %s: %d rounds (best %d)", key, booster.num_boosted_rounds(), self.best_iteration[key])

    def fit(self, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        """Fit every booster on ``train``, early-stopping on ``val`` when it has rows.

        Parameters
        ----------
        train, val : mapping of str to numpy.ndarray
            Parts as from :meth:`StellarDataModule.arrays`: the ``inputs`` fields, ``label`` (-1 where unknown)
            and one column per target (physical units, NaN where unknown).

        Returns
        -------
        dict of str to float
            The last (best-iteration) training and validation loss of each booster, e.g. ``val/class_mlogloss``.
        """
        use_val = val is not None and len(val.get("label", ())) > 0
        metrics: dict[str, float] = {}
        x_tr = feature_matrix(train, self.inputs)
        x_va = feature_matrix(val, self.inputs) if use_val and val is not None else None
        if self.class_names:
            k = len(self.class_names)
            y_tr = np.asarray(train["label"])
            ok = y_tr >= 0
            if ok.sum() < 2:
                raise StellarDataError(f"the training part has {int(ok.sum())} labelled rows; need at least 2")
            dtr = xgb.DMatrix(x_tr[ok], label=y_tr[ok])
            dva = None
            if x_va is not None and val is not None:
                y_va = np.asarray(val["label"])
                okv = y_va >= 0
                dva = xgb.DMatrix(x_va[okv], label=y_va[okv]) if okv.any() else None
            self._train_one(
                "class", {"objective": "multi:softprob", "num_class": k, "eval_metric": "mlogloss"}, dtr, dva
            )
        for t in self.targets:
            y = self._to_learned(t, np.asarray(train[t], dtype=float))
            ok = np.isfinite(y)
            if ok.sum() < 2:
                raise StellarDataError(f"target {t!r} has {int(ok.sum())} known values in the training part")
            dtr = xgb.DMatrix(x_tr[ok], label=y[ok])
            dva = None
            if x_va is not None and val is not None:
                yv = self._to_learned(t, np.asarray(val[t], dtype=float))
                okv = np.isfinite(yv)
                dva = xgb.DMatrix(x_va[okv], label=yv[okv]) if okv.any() else None
            params = {"objective": "reg:quantileerror", "quantile_alpha": np.asarray(self.quantiles)}
            self._train_one(t, params, dtr, dva)
            if self.calibrate_intervals and dva is not None and x_va is not None and val is not None:
                self.interval_scale[t] = self._interval_scale(t, x_va, np.asarray(val[t], dtype=float))
                metrics[f"val/{t}_interval_scale"] = self.interval_scale[t]
        for key, parts in self.history.items():
            for part, ms in parts.items():
                for m, values in ms.items():
                    metrics[f"{part}/{key}_{m}"] = values[min(self.best_iteration[key], len(values) - 1)]
        return metrics

    def _interval_scale(self, t: str, x_val: np.ndarray, truth: np.ndarray) -> float:
        """Factor on σ that puts 68.27% of the validation truths within ±1σ (in learned space)."""
        self.interval_scale.pop(t, None)
        q = np.sort(self._predict(t, x_val).reshape(len(x_val), 3), axis=1)
        y = self._to_learned(t, truth)
        ok = np.isfinite(y)
        z = _normal_ppf(self.quantiles[2]) - _normal_ppf(self.quantiles[0])
        sigma = np.maximum((q[:, 2] - q[:, 0]) / z, 1e-6)
        scale = float(np.quantile(np.abs(y[ok] - q[ok, 1]) / sigma[ok], 0.6827))
        log.info("target %s: 68%% interval scaled by %.3f to cover 68%% of %d validation truths", t, scale, ok.sum())
        return scale

    def _predict(self, key: str, x: np.ndarray) -> np.ndarray:
        if key not in self.boosters:
            raise StellarConfigError(f"booster {key!r} is not fitted or loaded (fit() or load() first)")
        return np.asarray(
            self.boosters[key].predict(xgb.DMatrix(x), iteration_range=(0, self.best_iteration[key] + 1)),
            dtype=np.float64,
        )

    def predict_outputs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model-output contract on ``arrays``: ``logits`` and ``<t>_mean``/``<t>_logvar`` (physical units).

        ``logits`` are the log of the class probabilities, so their softmax gives the booster's probabilities back.
        """
        x = feature_matrix(arrays, self.inputs)
        out: dict[str, np.ndarray] = {}
        if self.class_names:
            p = self._predict("class", x).reshape(len(x), len(self.class_names))
            out["logits"] = log_probs(p)
        for t in self.targets:
            mean, logvar = self._to_physical(t, self._predict(t, x).reshape(len(x), 3))
            out[f"{t}_mean"], out[f"{t}_logvar"] = mean.astype(np.float32), logvar.astype(np.float32)
        return out

    # ---- persistence ---------------------------------------------------------------------------------------
    def save(self, directory: str | Path, prefix: str = "") -> Path:
        """Write every booster (``<prefix><key>.ubj``) and ``<prefix>estimator.json`` into ``directory``; returns
        the JSON's path. ``prefix`` lets several models share one flat folder (an ensemble's members)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        files = {key: f"{prefix}{key}.ubj" for key in self.boosters}
        for key, booster in self.boosters.items():
            booster.save_model(str(d / files[key]))
        meta = {**self.hparams, "type": type(self).__name__, "best_iteration": self.best_iteration, "files": files}
        return write_meta(d, prefix, meta)

    def load(self, path: str | Path) -> XGBoostEstimator:
        """Load the boosters saved by :meth:`save` (``path``: the folder or its ``estimator.json``) into this model.

        The saved class names, targets and inputs must match this model's.
        """
        meta_path, meta = self._read_saved(path)
        self.best_iteration = {k: int(v) for k, v in meta["best_iteration"].items()}
        self.interval_scale = {t: float(v) for t, v in meta.get("interval_scale", {}).items()}
        files = meta.get("files", {})
        for key in self.best_iteration:
            booster = xgb.Booster()
            booster.load_model(str(meta_path.parent / files.get(key, f"{key}.ubj")))
            self.boosters[key] = booster
        return self


def physical_outputs(y: np.ndarray, sigma: np.ndarray, log10: bool) -> tuple[np.ndarray, np.ndarray]:
    """``<t>_mean`` and ``<t>_logvar`` (float32, physical units) of a prediction ``y`` ± ``sigma`` in learned space:
    ``10**y`` and the delta method's σ · value · ln 10 for a log10 target, ``y`` and σ otherwise."""
    with np.errstate(over="ignore", divide="ignore"):
        if log10:
            value = 10.0**y
            logvar = 2.0 * np.log(sigma * value * math.log(10.0))
        else:
            value, logvar = y, 2.0 * np.log(sigma)
    return np.asarray(value, dtype=np.float32), np.asarray(logvar, dtype=np.float32)


def log_probs(p: np.ndarray) -> np.ndarray:
    """``logits`` of the output contract from class probabilities: their log, floored at 1e-12, as float32."""
    return np.log(np.clip(p, LOGIT_FLOOR, 1.0)).astype(np.float32)


def members_log_probs(probs: Sequence[np.ndarray]) -> np.ndarray:
    """(M, N, C) float64 log of M members' (N, C) class probabilities, floored as :func:`log_probs` floors them:
    what a log-linear pool of the members sums."""
    return np.log(np.clip(np.stack([np.asarray(p, dtype=np.float64) for p in probs]), LOGIT_FLOOR, 1.0))


def write_meta(directory: Path, prefix: str, meta: Mapping[str, Any]) -> Path:
    """Write an estimator's metadata as ``<directory>/<prefix>estimator.json``; returns its path."""
    path = directory / f"{prefix}{META_FILE}"
    path.write_text(json.dumps(dict(meta), indent=2))
    return path


def read_meta(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """The metadata JSON of a saved estimator (``path``: the JSON file itself, or a folder holding ``estimator.json``)
    and its content."""
    p = Path(path)
    meta_path = p if p.suffix == ".json" else p / META_FILE
    if not meta_path.is_file():
        raise StellarDataError(f"path={str(path)!r} holds no {META_FILE}")
    return meta_path, dict(json.loads(meta_path.read_text()))


def _normal_ppf(p: float) -> float:
    """Quantile of the standard normal distribution."""
    from scipy.special import ndtri

    return float(ndtri(p))
