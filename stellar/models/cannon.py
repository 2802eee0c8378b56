"""The Cannon as an estimator: a per-pixel quadratic label model fitted by ``train.py`` on continuum-normalised flux.

The label model and its two steps are in :mod:`stellar.models.cannon_fit`. This wrapper reads the datamodule's
numpy arrays (``flux``, ``ivar``, ``mask``), learns the regression targets in the same space as the other models
(log10 for ``log_targets``, standardised with the training part's statistics), and returns the model-output
contract: ``<t>_mean`` and ``<t>_logvar`` in physical units, the variance from the curvature of χ² at the inferred
labels (delta method for log targets), and ``logits`` (log class probabilities) from a multinomial logistic
regression on the inferred labels and their log-uncertainties. That classifier is fitted on labels inferred for
the training stars by Cannons that did not see them (``cv_folds`` cross-fitting), so it learns from labels as
noisy as those it meets at test time.

Everything is saved as ``<prefix>cannon.npz`` (plain arrays, loaded with ``allow_pickle=False``) beside
``<prefix>estimator.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from stellar.errors import StellarConfigError, StellarDataError
from stellar.models.cannon_fit import CannonFit, infer_labels, label_vector, n_terms, pixel_weights, train_pixels
from stellar.models.estimators import PIPELINE_KEYS, Estimator, log_probs, physical_outputs, write_meta
from stellar.utils.numeric import log10_positive

log = logging.getLogger(__name__)


class CannonEstimator(Estimator):
    """The Cannon (Ness et al. 2015): labels from spectra through a generative per-pixel model.

    Parameters
    ----------
    name : str
        Model name.
    class_names : sequence of str, optional
        Classes of the label-space classifier (the datamodule's); ``None`` or empty for regression only.
    targets : sequence of str
        The labels of the model (physical units in the data; training rows need all of them).
    log_targets : sequence of str
        Targets modelled as log10 of their value (Teff).
    target_stats : mapping of str to (mean, std), optional
        Pivot and scale of each label in learned space, from the training part (filled in by the pipeline).
    inputs : sequence of str
        The flux field, then optionally its inverse variance and its bad-pixel mask (True = bad), in that order.
    order : int
        2 for the quadratic label model, 1 for a linear one.
    use_ivar : bool, optional
        Whether ``ivar`` is the measurement noise. ``None`` decides at fit time: ``ivar`` that is the same on every
        good training pixel (the preprocessing's unit weights where the noise is unknown, as for MILES) only marks
        usable pixels, and the fitted scatter carries all the noise.
    n_starts, n_candidates : int
        Optimisations per star, started from the best of ``n_candidates`` training label points and the mean.
    cv_folds : int
        Folds of the cross-fitting that gives the classifier its training labels (0: the Cannon's own labels
        of its training stars, which are less noisy than at test time).
    mk_c : float
        Inverse L2 strength of the classifier (scikit-learn's ``C``).
    chi2_scale : bool
        Scale each star's label covariance by its reduced χ² where that exceeds 1: real spectra that the quadratic
        model does not fit to within their noise get wider intervals than the bare curvature gives.
    seed : int
        Seed of the candidate choice and the cross-fitting folds.
    """

    hparam_keys = (*PIPELINE_KEYS, "log_targets", "order", "use_ivar", "chi2_scale", "n_pixels")

    def __init__(
        self,
        name: str = "spectral_cannon",
        class_names: Sequence[str] | None = None,
        targets: Sequence[str] = ("teff", "logg", "feh"),
        log_targets: Sequence[str] = ("teff",),
        target_stats: Mapping[str, Sequence[float]] | None = None,
        inputs: Sequence[str] = ("flux", "ivar", "mask"),
        order: int = 2,
        use_ivar: bool | None = None,
        n_starts: int = 3,
        n_candidates: int = 64,
        cv_folds: int = 5,
        mk_c: float = 1.0,
        chi2_scale: bool = True,
        seed: int = 0,
    ):
        self.name = str(name)
        self._set_heads(class_names, targets, log_targets, target_stats, require="targets")
        self.inputs = [str(k) for k in inputs]
        if not 1 <= len(self.inputs) <= 3:
            raise StellarConfigError(f"inputs must be [flux], [flux, ivar] or [flux, ivar, mask]; got {self.inputs}")
        if int(order) not in (1, 2):
            raise StellarConfigError(f"order must be 1 (linear) or 2 (quadratic); got {order}")
        if int(n_starts) < 1 or int(n_candidates) < 1 or int(cv_folds) < 0 or int(cv_folds) == 1 or mk_c <= 0:
            raise StellarConfigError(
                f"need n_starts, n_candidates >= 1, cv_folds 0 or >= 2 and mk_c > 0; got {n_starts}, {n_candidates}, "
                f"{cv_folds}, {mk_c}"
            )
        self.order = int(order)
        self.use_ivar = None if use_ivar is None else bool(use_ivar)
        self.n_starts, self.n_candidates, self.cv_folds = int(n_starts), int(n_candidates), int(cv_folds)
        self.mk_c, self.chi2_scale, self.seed = float(mk_c), bool(chi2_scale), int(seed)
        self.n_pixels: int | None = None
        self.fit_: CannonFit | None = None
        self.candidates = np.zeros((0, len(self.targets)))
        self.bounds = (np.full(len(self.targets), -np.inf), np.full(len(self.targets), np.inf))
        #: the label-space classifier: feature pivot and scale, then (C, F) coefficients and (C,) intercepts
        self.clf: dict[str, np.ndarray] = {}

    # ---- inputs and labels ---------------------------------------------------------------------------------
    def _spectra(self, arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flux, noise variance (0 = unknown) and usable pixels (N, P) of ``arrays``."""
        missing = [k for k in self.inputs if k not in arrays]
        if missing:
            raise StellarConfigError(f"inputs {missing} are not fields of the data; it has {sorted(arrays)}")
        flux = np.asarray(arrays[self.inputs[0]], dtype=np.float64)
        if flux.ndim != 2:
            raise StellarDataError(f"{self.inputs[0]} must be (N, pixels); got shape {flux.shape}")
        if self.n_pixels is not None and flux.shape[1] != self.n_pixels:
            raise StellarDataError(f"{self.inputs[0]} has {flux.shape[1]} pixels; this model has {self.n_pixels}")
        ivar = np.asarray(arrays[self.inputs[1]], dtype=np.float64) if len(self.inputs) > 1 else np.ones_like(flux)
        bad = np.asarray(arrays[self.inputs[2]], dtype=bool) if len(self.inputs) > 2 else np.zeros(flux.shape, bool)
        if ivar.shape != flux.shape or bad.shape != flux.shape:
            raise StellarDataError(f"flux {flux.shape}, ivar {ivar.shape} and mask {bad.shape} must have one shape")
        good = ~bad & np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
        if self.use_ivar is None:  # decided once, on the training part
            self.use_ivar = bool(good.any() and np.ptp(ivar[good]) > 0)
            log.info("Cannon: ivar %s", "is the measurement noise" if self.use_ivar else "only marks usable pixels")
        with np.errstate(divide="ignore"):
            noise_var = np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0) if self.use_ivar else np.zeros_like(flux)
        return np.where(good, flux, 0.0), noise_var, good

    def _learned(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """(N, L) standardised learned-space labels (NaN where unknown)."""
        cols = []
        for t in self.targets:
            if t not in arrays:
                raise StellarDataError(f"target {t!r} is not a field of the data; it has {sorted(arrays)}")
            v = log10_positive(arrays[t]) if t in self.log_targets else np.asarray(arrays[t], dtype=np.float64)
            mean, std = self.target_stats[t]
            cols.append((v - mean) / std)
        return np.stack(cols, axis=1)

    # ---- fit -----------------------------------------------------------------------------------------------
    def _train(self, x: np.ndarray, spectra: tuple[np.ndarray, np.ndarray, np.ndarray]) -> CannonFit:
        if len(x) < n_terms(len(self.targets), self.order) + 1:
            raise StellarDataError(
                f"{len(x)} training spectra with all of {self.targets}; the order-{self.order} model needs at least "
                f"{n_terms(len(self.targets), self.order) + 1}"
            )
        return train_pixels(x, *spectra, order=self.order)

    def _infer(self, fit: CannonFit, spectra: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
        labels, cov, _ = infer_labels(fit, *spectra, self.candidates, self.bounds, self.n_starts, self.chi2_scale)
        sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
        return labels, sd

    def fit(self, train: Mapping[str, np.ndarray], val: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        """Train the label model on the training rows with every target known, then the label-space classifier.

        Returns the training χ² per usable pixel (``train/chi2_per_pixel``) and, with a validation part, the
        validation MAE of each target in learned space (``val/<t>_mae``) and the classifier's accuracy.
        """
        spectra = self._spectra(train)
        self.n_pixels = spectra[0].shape[1]
        x = self._learned(train)
        ok = np.isfinite(x).all(axis=1)
        rng = np.random.default_rng(self.seed)
        rows = np.flatnonzero(ok)
        pick = rng.choice(rows, size=min(self.n_candidates, len(rows)), replace=False) if len(rows) else rows
        self.candidates = np.vstack([np.zeros((1, len(self.targets))), x[pick]])
        span = x[ok].max(0) - x[ok].min(0) if ok.any() else np.ones(len(self.targets))
        self.bounds = (x[ok].min(0) - 0.25 * span, x[ok].max(0) + 0.25 * span) if ok.any() else self.bounds
        sub = tuple(a[ok] for a in spectra)
        self.fit_ = self._train(x[ok], sub)
        metrics: dict[str, float] = {}
        labels, sd = self._infer(self.fit_, spectra)
        metrics["train/chi2_per_pixel"] = float(self._chi2(labels[ok], sub))
        if self.class_names:
            if self.cv_folds >= 2:  # labels of each training star from a Cannon that did not see it
                folds = rng.permutation(len(rows)) % self.cv_folds
                for k in range(self.cv_folds):
                    held, kept = rows[folds == k], rows[folds != k]
                    fit_k = self._train(x[kept], tuple(a[kept] for a in spectra))
                    labels[held], sd[held] = self._infer(fit_k, tuple(a[held] for a in spectra))
            self._fit_classifier(labels, sd, np.asarray(train["label"]))
        if val is not None and len(val.get(self.inputs[0], ())):
            out = self.predict_outputs(val)
            xv = self._learned(val)
            pred = self._learned({t: out[f"{t}_mean"] for t in self.targets})
            for i, t in enumerate(self.targets):
                err = np.abs(pred[:, i] - xv[:, i]) * self.target_stats[t][1]
                metrics[f"val/{t}_mae_learned"] = float(np.nanmean(err))
            yv = np.asarray(val["label"])
            if self.class_names and (yv >= 0).any():
                metrics["val/accuracy"] = float(np.mean(out["logits"][yv >= 0].argmax(1) == yv[yv >= 0]))
        return metrics

    def _chi2(self, labels: np.ndarray, spectra: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
        assert self.fit_ is not None
        flux, noise_var, good = spectra
        w = pixel_weights(self.fit_.s2, noise_var, good)
        r = flux - label_vector(labels, self.order) @ self.fit_.theta.T
        return float((w * r * r).sum() / max((w > 0).sum(), 1))

    # ---- label-space classifier -----------------------------------------------------------------------------
    @staticmethod
    def _features(labels: np.ndarray, sd: np.ndarray) -> np.ndarray:
        return np.hstack([labels, np.log(np.clip(sd, 1e-6, 1e6))])

    def _fit_classifier(self, labels: np.ndarray, sd: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        feats = self._features(labels, sd)
        ok = (y >= 0) & np.isfinite(feats).all(axis=1)
        present = np.unique(y[ok])
        if len(present) < 2:
            raise StellarDataError(f"the training part has {len(present)} labelled class(es); the classifier needs 2")
        pivot, scale = feats[ok].mean(0), np.maximum(feats[ok].std(0), 1e-9)
        lr = LogisticRegression(C=self.mk_c, max_iter=2000).fit((feats[ok] - pivot) / scale, y[ok])
        coef, icpt = lr.coef_, lr.intercept_
        if len(present) == 2:  # sigmoid(z) = softmax([0, z])
            coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt])
        self.clf = {"pivot": pivot, "scale": scale, "coef": coef, "intercept": icpt, "classes": present}

    def _class_probs(self, labels: np.ndarray, sd: np.ndarray) -> np.ndarray:
        feats = (self._features(labels, sd) - self.clf["pivot"]) / self.clf["scale"]
        z = np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0) @ self.clf["coef"].T + self.clf["intercept"]
        z = np.exp(z - z.max(axis=1, keepdims=True))
        p = np.zeros((len(labels), len(self.class_names)))
        p[:, self.clf["classes"].astype(int)] = z / z.sum(axis=1, keepdims=True)
        return p

    # ---- predict -------------------------------------------------------------------------------------------
    def predict_outputs(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model-output contract: ``<t>_mean``/``<t>_logvar`` (physical units) and ``logits`` (log-probs)."""
        if self.fit_ is None:
            raise StellarConfigError("the Cannon is not fitted or loaded (fit() or load() first)")
        labels, sd = self._infer(self.fit_, self._spectra(arrays))
        out: dict[str, np.ndarray] = {}
        if self.class_names:
            out["logits"] = log_probs(self._class_probs(labels, sd))
        for i, t in enumerate(self.targets):
            mean, std = self.target_stats[t]
            y, sigma = mean + std * labels[:, i], std * sd[:, i]
            out[f"{t}_mean"], out[f"{t}_logvar"] = physical_outputs(y, sigma, t in self.log_targets)
        return out

    # ---- persistence ---------------------------------------------------------------------------------------
    def save(self, directory: str | Path, prefix: str = "") -> Path:
        """Write ``<prefix>cannon.npz`` and ``<prefix>estimator.json`` into ``directory``; returns the JSON's path."""
        if self.fit_ is None:
            raise StellarConfigError("the Cannon is not fitted; nothing to save")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays = {"theta": self.fit_.theta, "s2": self.fit_.s2, "candidates": self.candidates,
                  "bound_lo": self.bounds[0], "bound_hi": self.bounds[1],
                  **{f"clf_{k}": v for k, v in self.clf.items()}}  # fmt: skip
        np.savez(d / f"{prefix}cannon.npz", allow_pickle=False, **arrays)
        meta = {**self.hparams, "type": type(self).__name__, "files": {"cannon": f"{prefix}cannon.npz"}}
        return write_meta(d, prefix, meta)

    def load(self, path: str | Path) -> CannonEstimator:
        """Load what :meth:`save` wrote (``path``: the folder or its ``estimator.json``) into this model; the saved
        class names, targets and inputs must match this model's."""
        meta_path, meta = self._read_saved(path)
        self.log_targets, self.order = list(meta["log_targets"]), int(meta["order"])
        self.use_ivar, self.n_pixels = meta["use_ivar"], meta["n_pixels"]
        self.chi2_scale = bool(meta["chi2_scale"])
        with np.load(meta_path.parent / meta["files"]["cannon"], allow_pickle=False) as z:
            self.fit_ = CannonFit(theta=z["theta"], s2=z["s2"], order=self.order)
            self.candidates, self.bounds = z["candidates"], (z["bound_lo"], z["bound_hi"])
            self.clf = {k[4:]: z[k] for k in z.files if k.startswith("clf_")}
        return self
