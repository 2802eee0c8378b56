"""The field's strong linear baseline as an estimator: RidgeCV per target and a logistic regression for the class.

``model=spectral_ridge`` reads the spectra datamodule's numpy arrays through a *representation* (a config object
with ``_target_``): the continuum-normalised flux as it is (:class:`Fields`, optionally with the continuum channel
beside it), or the flux-calibrated spectrum over its median (:class:`FluxOverMedian`: ``flux · exp(continuum)``,
which keeps the continuum slope that carries temperature). Each column is standardised with the training part's
statistics (missing values become the column mean).

Regression: one ridge per target in the learned space of the other models (log10 for ``log_targets``), its
penalty chosen among ``alphas`` by efficient leave-one-out on the training part. With ``kernel_gammas`` the ridge
is a kernel ridge with the Gaussian (RBF) kernel ``exp(-γ |x - x'|² / F)`` over the F standardised columns, γ and the
penalty chosen together by exact leave-one-out (one eigendecomposition of the training kernel per γ); it follows
the non-linear run of the spectra from O to M stars that one linear map cannot. A ridge has no per-star
uncertainty, so each target's σ is the root-mean-square residual on the validation part (leave-one-out residuals
without one), in learned space, turned into ``<t>_logvar`` in physical units by the delta method; the pipeline's
interval calibrator then scales it. With ``per_star_sigma`` the kernel ridge reads as the posterior mean of a
Gaussian process (kernel s²K, noise s²α) and each star gets that process's predictive σ, its amplitude s fitted to
the same residuals; with ``sigma_by`` (a target, e.g. Teff) σ also follows the training leave-one-out residual
scale at the star's predicted value of that target. A :class:`Stacked` representation holds several blocks of
columns, and ``kernel_weights`` lets a target's kernel be a weighted sum of one RBF kernel per block (the weight
chosen with γ and the penalty by leave-one-out). Classification: a multinomial logistic regression, its ``C``
chosen among ``mk_cs`` by validation accuracy (ties: validation log loss), fitted on the training part only, so that the
calibrators fitted on the validation part see out-of-sample outputs.

Everything is saved as ``<prefix>ridge.npz`` (plain arrays, loaded with ``allow_pickle=False``) beside
``<prefix>estimator.json``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from stellar.errors import StellarConfigError, StellarDataError
from stellar.evaluation.calibration import negative_log_likelihood
from stellar.models.estimators import (
    PIPELINE_KEYS,
    Estimator,
    feature_matrix,
    log_probs,
    physical_outputs,
    write_meta,
)
from stellar.utils.numeric import log10_positive

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))


#: candidate bandwidths of the residual-scale smoother (``sigma_by``), in units of the abscissa's standard deviation
SMOOTH_BANDWIDTHS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


def _nadaraya_watson(at: np.ndarray, x: np.ndarray, v: np.ndarray, h: float, leave_out: bool = False) -> np.ndarray:
    """The Gaussian-weighted mean of ``v`` (at abscissae ``x``) at each of ``at``, bandwidth ``h``; ``leave_out``
    drops each point's own weight (``at`` is ``x``)."""
    e = -0.5 * ((at[:, None] - x[None, :]) / h) ** 2
    if leave_out:
        np.fill_diagonal(e, -np.inf)
    w = np.exp(e - e.max(axis=1, keepdims=True))  # the nearest point keeps weight 1: no 0 / 0 far from the data
    return (w @ v) / w.sum(1)


class Representation(Protocol):
    """What the ridge reads: the data fields it needs, and the (N, F) feature matrix they make."""

    inputs: list[str]

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray: ...


class Fields:
    """The named fields side by side, each flattened (e.g. ``[flux]``, or ``[flux, continuum]``).

    Parameters
    ----------
    inputs : sequence of str
        Data fields, in order.
    """

    def __init__(self, inputs: Sequence[str] = ("flux",)):
        self.inputs = [str(k) for k in inputs]
        if not self.inputs:
            raise StellarConfigError("inputs must name at least one data field, e.g. [flux]")

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return feature_matrix(arrays, self.inputs)


class Columns:
    """Chosen columns of one (N, F) field, e.g. the colours and the absolute magnitude among an SED's ``features``.

    Parameters
    ----------
    field : str
        The data field (an (N, F) array; NaN = missing).
    columns : sequence of int
        Its column indices, in order.
    """

    def __init__(self, field: str = "features", columns: Sequence[int] = (0,)):
        self.inputs = [str(field)]
        self.columns = [int(c) for c in columns]
        if not self.columns or min(self.columns) < 0:
            raise StellarConfigError(f"columns must be a non-empty list of column indices >= 0; got {list(columns)}")

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.inputs[0] not in arrays:
            raise StellarConfigError(f"input {self.inputs[0]!r} is not a field of the data (it has {sorted(arrays)})")
        x = np.asarray(arrays[self.inputs[0]], dtype=np.float32)
        if x.ndim != 2 or max(self.columns) >= x.shape[1]:
            raise StellarDataError(
                f"columns {self.columns} of field {self.inputs[0]!r} need an (N, > {max(self.columns)}) array; got "
                f"shape {x.shape}"
            )
        return x[:, self.columns]


class FluxOverMedian:
    """The flux-calibrated spectrum over its median good pixel: ``flux · exp(continuum)`` / median.

    ``continuum`` is the preprocessing's continuum channel (``ln(C / median C)``), so the product is the resampled
    spectrum up to a constant; dividing by the median good pixel removes the constant (distance, exposure).

    Parameters
    ----------
    flux, continuum, mask : str
        Fields of the continuum-normalised flux, the continuum channel and the bad-pixel mask (True = bad).
    log : bool
        Take the natural log of the ratio (line depths become additive); pixels ≤ 0 become missing.
    """

    def __init__(self, flux: str = "flux", continuum: str = "continuum", mask: str = "mask", log: bool = False):
        self.inputs = [str(flux), str(continuum), str(mask)]
        self.log = bool(log)

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        missing = [k for k in self.inputs if k not in arrays]
        if missing:
            raise StellarConfigError(
                f"inputs {missing} are not fields of the data (it has {sorted(arrays)}); FluxOverMedian needs the "
                "continuum channel: datamodule.preprocessing.continuum_channel=true"
            )
        f = np.asarray(arrays[self.inputs[0]], dtype=np.float64) * np.exp(np.asarray(arrays[self.inputs[1]]))
        good = ~np.asarray(arrays[self.inputs[2]], dtype=bool) & np.isfinite(f)
        med = np.array([np.median(r[g]) if g.any() else np.nan for r, g in zip(f, good, strict=True)])
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.where(good, f / med[:, None], np.nan)
            if self.log:
                x = np.log(np.where(x > 0, x, np.nan))
        return x.astype(np.float32)


class Stacked:
    """Several representations side by side, each a block of columns that the kernel ridge can weigh on its own.

    With ``kernel_weights`` the kernel is ``w · k₁ + (1 - w) · mean(k₂, …)``, each ``k_b`` the RBF kernel over its
    own block's standardised columns (a sum of kernels, one per view of the spectrum, or of one object's
    modalities: the spectrum beside its SED's :class:`Columns`); the classifier reads the blocks of the ridge's
    ``classifier_blocks`` (the first by default), the linear ridge every column.

    Parameters
    ----------
    parts : sequence of Representation
        The blocks, in order (e.g. the flux over its median, then the continuum-normalised flux).
    """

    def __init__(self, parts: Sequence[Representation]):
        self.parts = list(parts)
        if not self.parts or not all(callable(r) and getattr(r, "inputs", None) for r in self.parts):
            raise StellarConfigError("parts must be a non-empty list of representations (each with _target_)")
        self.inputs = list(dict.fromkeys(k for r in self.parts for k in r.inputs))

    def blocks(self, arrays: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Each part's (N, F_b) matrix."""
        return [np.asarray(r(arrays), dtype=np.float32) for r in self.parts]

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.hstack(self.blocks(arrays))


class RidgeEstimator(Estimator):
    """RidgeCV per regression target and a multinomial logistic regression for the class, on standardised inputs.

    Parameters
    ----------
    name : str
        Model name.
    class_names : sequence of str, optional
        Classes of the logistic regression (the datamodule's); ``None`` or empty for regression only.
    targets : sequence of str
        Regression targets (physical units in the data, NaN where unknown).
    log_targets : sequence of str
        Targets learned as log10 of their value (Teff).
    target_stats : mapping of str to (mean, std), optional
        Learned-space statistics from the pipeline (kept for the output contract; the ridge fits its own intercept).
    representation : Representation, optional
        What the model reads (default: :class:`FluxOverMedian`).
    alphas : sequence of float
        Candidate ridge penalties (on standardised columns), chosen per target by leave-one-out on train.
    kernel_gammas : sequence of float
        Candidate widths γ of an RBF kernel (in units of 1 / number of columns); empty for the linear ridge.
    mk_cs : sequence of float
        Candidate inverse L2 strengths of the logistic regression, chosen on the validation part (the first
        without one).
    kernel_weights : mapping of str to sequence of float, optional
        Per target, candidate weights ``w`` in [0, 1] of the first block of a :class:`Stacked` representation in
        the kernel ``w · k₁ + (1 - w) · k_rest``, chosen with γ and the penalty by leave-one-out on train; targets
        not named use the first block alone (``w = 1``).
    per_star_sigma : bool
        Kernel ridge only: each star's σ is the Gaussian-process posterior predictive σ of the same kernel and
        penalty, ``s · sqrt(1 + α - kᵀ(K + αI)⁻¹k)`` (learned space), larger far from the training stars; the
        amplitude ``s`` from the validation residuals (leave-one-out without them). ``False``: one σ per target.
    classifier_blocks : sequence of int, optional
        Indices of the blocks of a :class:`Stacked` representation that the classifier reads, e.g. ``[0, 1]`` for
        the spectrum and the SED of a joint representation; the first block by default.
    sigma_by : str, optional
        A target (e.g. ``teff``) whose prediction each star's σ also follows: σ is multiplied by the residual scale
        at that prediction, ``exp(m(ŷ))`` with ``m`` a Gaussian smoother of the training leave-one-out log |residual|
        (of each target) over the leave-one-out prediction of ``sigma_by``, its bandwidth by leave-one-out. MILES
        errors are several times larger for O/B and M stars than for F-K stars, which a kernel's distance misses.
    seed : int
        Unused by the solvers (both deterministic); kept so that ensembles can hand every member a seed.
    """

    hparam_keys = (
        *PIPELINE_KEYS, "log_targets", "n_features", "alpha", "gamma", "weight", "mk_c", "sigma", "per_star_sigma",
        "sigma_by", "bandwidth", "classifier_blocks",
    )  # fmt: skip

    def __init__(
        self,
        name: str = "spectral_ridge",
        class_names: Sequence[str] | None = None,
        targets: Sequence[str] = ("teff", "logg", "feh"),
        log_targets: Sequence[str] = ("teff",),
        target_stats: Mapping[str, Sequence[float]] | None = None,
        representation: Representation | None = None,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        kernel_gammas: Sequence[float] = (),
        mk_cs: Sequence[float] = (1e-3, 1e-2, 1e-1),
        kernel_weights: Mapping[str, Sequence[float]] | None = None,
        per_star_sigma: bool = False,
        sigma_by: str | None = None,
        classifier_blocks: Sequence[int] | None = None,
        seed: int = 0,
    ):
        self.name = str(name)
        self._set_heads(class_names, targets, log_targets, target_stats)
        self.representation: Representation = representation if representation is not None else FluxOverMedian()
        if not callable(self.representation) or not getattr(self.representation, "inputs", None):
            raise StellarConfigError("representation must be a Representation (e.g. _target_: ...FluxOverMedian)")
        self.inputs = list(self.representation.inputs)
        self.alphas = [float(a) for a in alphas]
        self.mk_cs = [float(c) for c in mk_cs]
        self.kernel_gammas = [float(g) for g in kernel_gammas]
        if any(g <= 0 for g in self.kernel_gammas):
            raise StellarConfigError(f"kernel_gammas must be positive; got {list(kernel_gammas)}")
        if not self.alphas or min(self.alphas) <= 0 or not self.mk_cs or min(self.mk_cs) <= 0:
            raise StellarConfigError(f"alphas and mk_cs must be non-empty and positive; got {alphas}, {mk_cs}")
        self.kernel_weights = {str(t): [float(w) for w in ws] for t, ws in (kernel_weights or {}).items()}
        bad = {t: ws for t, ws in self.kernel_weights.items() if not ws or not all(0 <= w <= 1 for w in ws)}
        unknown = sorted(set(self.kernel_weights) - set(self.targets))
        if bad or unknown or (self.kernel_weights and not self.kernel_gammas):
            raise StellarConfigError(
                f"kernel_weights must map targets {self.targets} to non-empty lists of weights in [0, 1] and needs "
                f"kernel_gammas; got {dict(kernel_weights or {})}"
            )
        self.per_star_sigma = bool(per_star_sigma)
        self.sigma_by = None if sigma_by is None else str(sigma_by)
        if self.sigma_by is not None and self.sigma_by not in self.targets:
            raise StellarConfigError(f"sigma_by must be one of the targets {self.targets} or null; got {sigma_by!r}")
        #: per target: the bandwidth of the residual-scale smoother (``sigma_by``), in the abscissa's units
        self.bandwidth: dict[str, float] = {}
        if self.per_star_sigma and not self.kernel_gammas:
            raise StellarConfigError("per_star_sigma needs the kernel ridge: set kernel_gammas (e.g. [0.1, 1.0])")
        self.classifier_blocks = [int(b) for b in (classifier_blocks if classifier_blocks is not None else [0])]
        n_parts = len(getattr(self.representation, "parts", [None]))
        if not self.classifier_blocks or not all(0 <= b < n_parts for b in self.classifier_blocks):
            raise StellarConfigError(
                f"classifier_blocks must be a non-empty list of block indices in [0, {n_parts}) of the representation; "
                f"got {classifier_blocks}"
            )
        self.seed = int(seed)
        self.n_features: int | None = None
        #: per target: the chosen penalty
        self.alpha: dict[str, float] = {}
        #: per target: the chosen RBF width (kernel ridge only)
        self.gamma: dict[str, float] = {}
        #: per target: the weight of the first block in the kernel (Stacked representations; 1 otherwise)
        self.weight: dict[str, float] = {}
        #: per target: the residual σ in learned space (with ``per_star_sigma``, the Gaussian-process amplitude s)
        self.sigma: dict[str, float] = {}
        self.mk_c: float | None = None
        self.arrays_: dict[str, np.ndarray] = {}

    # ---- inputs ---------------------------------------------------------------------------------------------
    def _matrix(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Standardised (N, F) features; missing values at the column mean (0)."""
        x = np.asarray(self.representation(arrays), dtype=np.float64)
        if x.ndim != 2:
            raise StellarDataError(f"the representation of {self.inputs} must be (N, F); got shape {x.shape}")
        if self.n_features is not None and x.shape[1] != self.n_features:
            raise StellarDataError(f"inputs {self.inputs} give {x.shape[1]} columns; this model has {self.n_features}")
        if "x_mean" in self.arrays_:
            x = (x - self.arrays_["x_mean"]) / self.arrays_["x_scale"]
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    def _learned(self, t: str, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        if t not in arrays:
            raise StellarDataError(f"target {t!r} is not a field of the data; it has {sorted(arrays)}")
        return log10_positive(arrays[t]) if t in self.log_targets else np.asarray(arrays[t], dtype=np.float64)

    # ---- fit ------------------------------------------------------------------------------------------------
    def fit(self, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        """Fit every ridge and the classifier on ``train``; σ and ``C`` from ``val`` when it has rows.

        Returns, per target, the chosen penalty (``train/<t>_alpha``) and the validation RMS residual in learned
        space (``val/<t>_rmse_learned``); the classifier's ``C`` and validation accuracy.
        """
        from sklearn.linear_model import RidgeCV

        self.n_features, self.arrays_, self.gamma, self.weight, self.bandwidth = None, {}, {}, {}, {}
        blocks = getattr(self.representation, "blocks", None)
        parts = blocks(train) if callable(blocks) else [self.representation(train)]
        raw = np.hstack([np.asarray(b, dtype=np.float64) for b in parts])
        if raw.ndim != 2 or len(raw) < 3:
            raise StellarDataError(f"the training part must give (N >= 3, F) features; got shape {raw.shape}")
        if any(w < 1 for ws in self.kernel_weights.values() for w in ws) and len(parts) < 2:
            raise StellarConfigError("kernel_weights below 1 need a Stacked representation of two or more parts")
        self.arrays_["block_sizes"] = np.array([np.shape(b)[1] for b in parts], dtype=np.int64)
        with warnings.catch_warnings():  # all-missing columns get mean 0, scale 1
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, scale = np.nanmean(raw, axis=0), np.nanstd(raw, axis=0)
        self.arrays_["x_mean"] = np.nan_to_num(mean)
        self.arrays_["x_scale"] = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
        self.n_features = raw.shape[1]
        x = self._matrix(train)
        use_val = val is not None and len(val.get(self.inputs[0], ())) > 0
        xv = self._matrix(val) if use_val and val is not None else None
        metrics: dict[str, float] = {}
        loo: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # rows, residuals, GP variance shapes
        for t in self.targets:
            y = self._learned(t, train)
            ok = np.isfinite(y)
            if ok.sum() < 3:
                raise StellarDataError(f"target {t!r} has {int(ok.sum())} known values in the training part")
            if self.kernel_gammas:
                resid, loo_shape = self._fit_kernel(t, x, y, ok)
            else:
                ridge = RidgeCV(alphas=self.alphas, store_cv_results=True).fit(x[ok], y[ok])
                self.alpha[t] = float(ridge.alpha_)
                self.arrays_[f"coef_{t}"] = np.asarray(ridge.coef_, dtype=np.float64)
                self.arrays_[f"intercept_{t}"] = np.asarray(float(ridge.intercept_))
                resid = y[ok] - ridge.cv_results_[:, self.alphas.index(self.alpha[t])]  # leave-one-out
                loo_shape = np.ones(int(ok.sum()))
            loo[t] = (ok, resid, loo_shape)
            metrics[f"train/{t}_alpha"] = self.alpha[t]
        if self.sigma_by is not None:
            self._fit_smoothers(x, train, loo)
        for t, (ok, resid, loo_shape) in loo.items():
            resid = resid / np.sqrt(loo_shape * self._smooth(t, self._abscissa(x)[ok]))
            if xv is not None and val is not None:
                yv = self._learned(t, val)
                okv = np.isfinite(yv)
                if okv.sum() >= 2:
                    resid = yv[okv] - self._linear(t, xv[okv])
                    metrics[f"val/{t}_rmse_learned"] = float(np.sqrt(np.mean(resid**2)))
                    resid = resid / np.sqrt(self._shape(t, xv[okv]))
            self.sigma[t] = float(max(np.sqrt(np.mean(resid**2)), 1e-9))
            log.info("ridge %s: alpha %.3g, sigma %.4g (learned space)", t, self.alpha[t], self.sigma[t])
        if self.class_names:
            xv_clf = self._classifier_columns(xv) if xv is not None else None
            metrics.update(self._fit_classifier(self._classifier_columns(x), np.asarray(train["label"]), xv_clf, val))
        return metrics

    def _linear(self, t: str, x: np.ndarray) -> np.ndarray:
        """The prediction of target ``t`` (learned space) on standardised features."""
        if t in self.gamma:
            k = self._kernel(x, self.arrays_["train_x"].astype(np.float64), self.gamma[t], self.weight.get(t, 1.0))
            return k @ self.arrays_[f"dual_{t}"] + float(self.arrays_[f"intercept_{t}"])
        return x @ self.arrays_[f"coef_{t}"] + float(self.arrays_[f"intercept_{t}"])

    def _classifier_columns(self, x: np.ndarray) -> np.ndarray:
        """The columns of the ``classifier_blocks`` (the first block by default); all of them for one block."""
        sizes = [int(n) for n in self.arrays_.get("block_sizes", [x.shape[1]])]
        starts = np.cumsum([0, *sizes])
        return np.hstack([x[:, starts[b] : starts[b + 1]] for b in self.classifier_blocks])

    def _sq_dists(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        """Per block, the squared distances between the rows of ``a`` and ``b`` over the block's column count."""
        sizes = self.arrays_.get("block_sizes", np.array([a.shape[1]]))  # runs saved before blocks: one block
        out, start = [], 0
        for n in (int(v) for v in sizes):
            pa, pb = a[:, start : start + n], b[:, start : start + n]
            d2 = (pa * pa).sum(1)[:, None] + (pb * pb).sum(1)[None, :] - 2.0 * pa @ pb.T
            out.append(np.maximum(d2, 0.0) / n)
            start += n
        return out

    @staticmethod
    def _mix(d2s: list[np.ndarray], gamma: float, weight: float) -> np.ndarray:
        """``w · exp(-γ d₁²) + (1 - w) · mean_b exp(-γ d_b²)`` over the blocks after the first."""
        k = np.exp(-gamma * d2s[0]) * weight
        if weight < 1:
            k = k + (1.0 - weight) * np.mean([np.exp(-gamma * d) for d in d2s[1:]], axis=0)
        return k

    def _kernel(self, a: np.ndarray, b: np.ndarray, gamma: float, weight: float = 1.0) -> np.ndarray:
        return self._mix(self._sq_dists(a, b), gamma, weight)

    def _fit_kernel(self, t: str, x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kernel ridge of ``t`` on the rows ``ok``: (γ, w, α) by exact leave-one-out; returns the LOO residuals and
        the shape of their variance (the Gaussian process's with ``per_star_sigma``, ones otherwise).

        With K = V diag(λ) Vᵀ, the hat matrix is H = V diag(λ / (λ + α)) Vᵀ and the leave-one-out residual of row
        i is (y_i - ŷ_i) / (1 - H_ii), for every α from one eigendecomposition.
        """
        if "train_x" not in self.arrays_:  # every training row; a target's unknown rows get a zero dual weight
            self.arrays_["train_x"] = x.astype(np.float32)
        xs, target = self.arrays_["train_x"].astype(np.float64)[ok], y[ok]
        center = float(target.mean())
        d2s = self._sq_dists(xs, xs)
        best: tuple[float, float, float, float, np.ndarray] | None = None
        for g, w in ((g, w) for g in self.kernel_gammas for w in self.kernel_weights.get(t, [1.0])):
            lam, vec = np.linalg.eigh(self._mix(d2s, g, w))
            lam = np.maximum(lam, 0.0)
            proj = vec.T @ (target - center)
            for a in self.alphas:
                shrink = lam / (lam + a)
                fitted = vec @ (shrink * proj)
                h = np.einsum("ij,j,ij->i", vec, shrink, vec)
                loo = (target - center - fitted) / np.maximum(1.0 - h, 1e-12)
                score = float(np.mean(loo**2))
                if best is None or score < best[0]:
                    best = (score, g, w, a, loo)
        assert best is not None  # kernel_gammas and alphas are non-empty
        _, g, w, a, loo = best
        lam, vec = np.linalg.eigh(self._mix(d2s, g, w))
        inv = (vec / (np.maximum(lam, 0.0) + a)) @ vec.T  # (K + αI)⁻¹
        dual = np.zeros(len(ok))
        dual[ok] = inv @ (target - center)
        self.gamma[t], self.weight[t], self.alpha[t] = float(g), float(w), float(a)
        self.arrays_[f"dual_{t}"], self.arrays_[f"intercept_{t}"] = dual, np.asarray(center)
        if not self.per_star_sigma:
            return loo, np.ones(len(loo))
        full = np.zeros((len(ok), len(ok)))  # zero rows and columns for the rows without this target
        full[np.ix_(ok, ok)] = inv
        self.arrays_[f"kinv_{t}"] = full
        # the Gaussian process's leave-one-out variance of row i is s² / [(K + αI)⁻¹]_ii
        return loo, 1.0 / np.diag(inv)

    def _shape(self, t: str, x: np.ndarray) -> np.ndarray:
        """The per-star variance shape of target ``t`` on standardised features: ``1 + α - kᵀ(K + αI)⁻¹k``, the
        Gaussian-process posterior predictive variance of the kernel over its amplitude s²; ones for a model
        without per-star σ (the linear ridge, or a run saved before ``per_star_sigma``)."""
        shape = self._smooth(t, self._abscissa(x))
        if f"kinv_{t}" not in self.arrays_:
            return shape
        k = self._kernel(x, self.arrays_["train_x"].astype(np.float64), self.gamma[t], self.weight.get(t, 1.0))
        quad = np.einsum("ij,jk,ik->i", k, self.arrays_[f"kinv_{t}"], k)
        return shape * np.maximum(1.0 + self.alpha[t] - quad, self.alpha[t])

    def _abscissa(self, x: np.ndarray) -> np.ndarray:
        """The prediction of ``sigma_by`` (learned space) that the residual scale follows; zeros without one."""
        return self._linear(self.sigma_by, x) if self.sigma_by is not None else np.zeros(len(x))

    def _smooth(self, t: str, at: np.ndarray) -> np.ndarray:
        """The squared residual scale of ``t`` at ``at`` (a Nadaraya-Watson smoother of the training leave-one-out
        log |residual| over the ``sigma_by`` abscissa); ones without ``sigma_by`` or for runs saved before it."""
        if f"smooth_x_{t}" not in self.arrays_:
            return np.ones(len(at))
        return np.exp(2.0 * _nadaraya_watson(at, self.arrays_[f"smooth_x_{t}"], self.arrays_[f"smooth_v_{t}"],
                                             self.bandwidth[t]))  # fmt: skip

    def _fit_smoothers(
        self, x: np.ndarray, train: Mapping[str, np.ndarray], loo: Mapping[str, tuple[np.ndarray, ...]]
    ) -> None:
        """Per target, the smoother of log |leave-one-out residual| over the ``sigma_by`` abscissa, its bandwidth
        (in units of the abscissa's spread) chosen among ``SMOOTH_BANDWIDTHS`` by leave-one-out squared error. The
        abscissa on train is the leave-one-out prediction where ``sigma_by`` is known (what a new star would get)."""
        assert self.sigma_by is not None
        by_ok, by_resid, _ = loo[self.sigma_by]
        at = self._abscissa(x)
        at[by_ok] = self._learned(self.sigma_by, train)[by_ok] - by_resid
        spread = float(np.std(at)) or 1.0
        for t, (ok, resid, _) in loo.items():
            xs, v = at[ok], np.log(np.abs(resid) + 1e-9)
            errs = {h: float(np.mean((_nadaraya_watson(xs, xs, v, h * spread, leave_out=True) - v) ** 2))
                    for h in SMOOTH_BANDWIDTHS}  # fmt: skip
            self.bandwidth[t] = min(errs, key=errs.__getitem__) * spread
            self.arrays_[f"smooth_x_{t}"], self.arrays_[f"smooth_v_{t}"] = xs, v

    def _fit_classifier(
        self, x: np.ndarray, y: np.ndarray, xv: np.ndarray | None, val: Mapping[str, np.ndarray] | None
    ) -> dict[str, float]:
        from sklearn.linear_model import LogisticRegression

        ok = y >= 0
        present = np.unique(y[ok])
        if len(present) < 2:
            raise StellarDataError(f"the training part has {len(present)} labelled class(es); the classifier needs 2")
        yv = np.asarray(val["label"]) if xv is not None and val is not None else np.zeros(0, int)
        okv = yv >= 0
        best: tuple[float, float] | None = None
        kept: dict[str, np.ndarray] = {}
        metrics: dict[str, float] = {}
        for c in self.mk_cs if okv.any() else self.mk_cs[:1]:
            clf = LogisticRegression(C=c, max_iter=3000).fit(x[ok], y[ok])
            self._store_classifier(clf.coef_, clf.intercept_, present)
            if not okv.any() or xv is None:
                self.mk_c = c
                break
            p = self._class_probs(xv[okv])
            acc = float(np.mean(p.argmax(1) == yv[okv]))
            nll = negative_log_likelihood(p, yv[okv])
            if best is None or (acc, -nll) > best:
                best, self.mk_c, kept = (acc, -nll), c, dict(self.arrays_)
                metrics.update({"val/accuracy": acc, "val/class_nll": nll})
        if best is not None:
            self.arrays_ = kept
        metrics["train/mk_c"] = float(self.mk_c or 0.0)
        log.info("ridge classifier: C %.3g", self.mk_c)
        return metrics

    def _store_classifier(self, coef: np.ndarray, intercept: np.ndarray, present: np.ndarray) -> None:
        if len(present) == 2:  # sigmoid(z) = softmax([0, z])
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        self.arrays_.update({"clf_coef": coef, "clf_intercept": intercept, "clf_classes": present.astype(np.int64)})

    def _class_probs(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.arrays_["clf_coef"].T + self.arrays_["clf_intercept"]
        z = np.exp(z - z.max(axis=1, keepdims=True))
        p = np.zeros((len(x), len(self.class_names)))
        p[:, self.arrays_["clf_classes"]] = z / z.sum(axis=1, keepdims=True)
        return p

    # ---- predict --------------------------------------------------------------------------------------------
    def loo_predictions(self, part: Mapping[str, np.ndarray], targets: Sequence[str]) -> dict[str, np.ndarray]:
        """Exact leave-one-out predictions (learned space) of this fitted kernel ridge (``kernel_gammas``) on its
        own training rows ``part``, e.g. out-of-sample inputs of a model stacked on it (the late fusion's cascade).

        With the dual weights d = (K + αI)⁻¹ (y − c) of the rows with a known target, the in-sample residual is
        y − ŷ = α d and the leave-one-out residual (y_i − ŷ_i) / (1 − H_ii) = d_i / [(K + αI)⁻¹]_ii (H = K (K + αI)⁻¹;
        the penalty, width and centre as fitted on all rows, as the leave-one-out search of :meth:`fit` has them).
        A row whose target is unknown was not fitted on its own value: it gets the in-sample prediction.
        """
        arrays = self.arrays_
        if "train_x" not in arrays or any(t not in self.gamma for t in targets):
            raise StellarConfigError(
                f"cascade.out_of_sample: loo needs a kernel-ridge source (kernel_gammas) fitted on every one of "
                f"{list(targets)}; {self.name} is not one: use out_of_sample: crossfit"
            )
        xs = arrays["train_x"].astype(np.float64)
        x = self._matrix(part)
        if x.shape != xs.shape or float(np.max(np.abs(x - xs), initial=0.0)) > 1e-3:
            raise StellarDataError(
                "cascade: the rows given are not the source's training rows; cannot form its leave-one-out"
            )
        out: dict[str, np.ndarray] = {}
        for t in targets:
            pred = self._linear(t, xs)
            y = self._learned(t, part)
            ok = np.isfinite(y)
            kinv = arrays.get(f"kinv_{t}")
            if kinv is not None:
                diag = np.diag(np.asarray(kinv, dtype=np.float64))[ok]
            else:  # a ridge fitted without per-star σ keeps no inverse: form it
                k = self._kernel(xs[ok], xs[ok], self.gamma[t], self.weight.get(t, 1.0))
                diag = np.diag(np.linalg.inv(k + self.alpha[t] * np.eye(int(ok.sum()))))
            dual = np.asarray(arrays[f"dual_{t}"], dtype=np.float64)[ok]
            loo = pred.copy()
            loo[ok] = y[ok] - dual / diag
            out[t] = loo
        return out

    def predict_outputs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model-output contract: ``logits`` (log class probabilities), ``<t>_mean``/``<t>_logvar`` (physical)."""
        if "x_mean" not in self.arrays_:
            raise StellarConfigError(f"{self.name} is not fitted or loaded (fit() or load() first)")
        x = self._matrix(arrays)
        out: dict[str, np.ndarray] = {}
        if self.class_names:
            out["logits"] = log_probs(self._class_probs(self._classifier_columns(x)))
        for t in self.targets:
            sigma = self.sigma[t] * np.sqrt(self._shape(t, x))
            out[f"{t}_mean"], out[f"{t}_logvar"] = physical_outputs(self._linear(t, x), sigma, t in self.log_targets)
        return out

    # ---- persistence ----------------------------------------------------------------------------------------
    def save(self, directory: str | Path, prefix: str = "") -> Path:
        """Write ``<prefix>ridge.npz`` and ``<prefix>estimator.json`` into ``directory``; returns the JSON's path."""
        if "x_mean" not in self.arrays_:
            raise StellarConfigError(f"{self.name} is not fitted; nothing to save")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.savez(d / f"{prefix}ridge.npz", allow_pickle=False, **self.arrays_)
        meta = {**self.hparams, "type": type(self).__name__, "files": {"ridge": f"{prefix}ridge.npz"}}
        return write_meta(d, prefix, meta)

    def load(self, path: str | Path) -> RidgeEstimator:
        """Load what :meth:`save` wrote (``path``: the folder or its ``estimator.json``); the saved class names,
        targets and inputs must match this model's."""
        meta_path, meta = self._read_saved(path)
        self.log_targets, self.n_features = list(meta["log_targets"]), meta["n_features"]
        self.alpha = {t: float(v) for t, v in meta["alpha"].items()}
        self.gamma = {t: float(v) for t, v in meta.get("gamma", {}).items()}
        self.weight = {t: float(v) for t, v in meta.get("weight", {}).items()}  # runs saved before: one block
        self.sigma = {t: float(v) for t, v in meta["sigma"].items()}
        self.per_star_sigma = bool(meta.get("per_star_sigma", False))  # runs saved before it had one σ per target
        self.sigma_by = meta.get("sigma_by")
        self.classifier_blocks = [int(b) for b in meta.get("classifier_blocks", [0])]  # runs saved before: the first
        self.bandwidth = {t: float(v) for t, v in meta.get("bandwidth", {}).items()}
        self.mk_c = meta["mk_c"]
        with np.load(meta_path.parent / meta["files"]["ridge"], allow_pickle=False) as z:
            self.arrays_ = {k: z[k] for k in z.files}
        return self
