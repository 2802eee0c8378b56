"""The Cannon's label model (Ness et al. 2015, ApJ 808, 16): its training step and its test step, in numpy.

Every pixel λ of a continuum-normalised spectrum is modelled as ``f_nλ = θ_λ · ℓ(x_n) + noise``, with noise
variance ``s_λ² + σ_nλ²``: ``x_n`` are the star's labels (standardised), ``ℓ`` the label vector
``[1, x_i, x_i x_j (i ≤ j)]`` (quadratic; linear with ``order=1``), ``s_λ`` the model's intrinsic scatter at that
pixel and ``σ_nλ`` the measurement noise. The training step fits ``θ_λ`` and ``s_λ`` of every pixel by maximum
likelihood: for a given ``s_λ`` the best ``θ_λ`` is weighted least squares, so the profile likelihood of ``s_λ`` is
minimised in one dimension (a grid in ``log s`` refined by golden-section search), all pixels at once. The test step
infers each star's labels by non-linear least squares over all its pixels (from the best of several starts) and
their covariance from the curvature at the optimum, ``(Jᵀ W J)⁻¹``.

Masked pixels (``good`` False) get zero weight in both steps; a pixel with fewer good training stars than
coefficients is left out of the model (``s_λ = ∞``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from stellar.errors import StellarDataError, StellarValueError

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def n_terms(n_labels: int, order: int) -> int:
    """Length of the label vector: 1 + L (+ L(L+1)/2 for the quadratic model)."""
    return 1 + n_labels + (n_labels * (n_labels + 1) // 2 if order == 2 else 0)


def label_vector(x: np.ndarray, order: int = 2) -> np.ndarray:
    """The label vector ``ℓ`` of every row of ``x`` (N, L): ``[1, x_i, x_i x_j (i ≤ j)]``, shape (N, K)."""
    if order not in (1, 2):
        raise StellarValueError(f"order must be 1 (linear) or 2 (quadratic); got {order}")
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n, n_lab = x.shape
    cols = [np.ones(n), *x.T]
    if order == 2:
        cols += [x[:, i] * x[:, j] for i in range(n_lab) for j in range(i, n_lab)]
    return np.stack(cols, axis=1)


def label_vector_jacobian(x: np.ndarray, order: int = 2) -> np.ndarray:
    """``∂ℓ/∂x`` at one label point ``x`` (L,), shape (K, L)."""
    n_lab = len(x)
    rows = [np.zeros(n_lab), *np.eye(n_lab)]
    if order == 2:
        for i in range(n_lab):
            for j in range(i, n_lab):
                d = np.zeros(n_lab)
                d[i] += x[j]
                d[j] += x[i]
                rows.append(d)
    return np.asarray(rows)


def pixel_weights(s2: np.ndarray, noise_var: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Inverse total variance ``1 / (s_λ² + σ_nλ²)`` of every pixel, 0 where ``good`` is False or ``s_λ`` is ∞."""
    with np.errstate(divide="ignore"):
        w = np.where(good, 1.0 / (s2[None, :] + noise_var), 0.0)
    return np.where(np.isfinite(w), w, 0.0)


@dataclass
class CannonFit:
    """A trained label model: coefficients ``theta`` (P, K) and scatter variance ``s2`` (P,; ∞ on unused pixels)."""

    theta: np.ndarray
    s2: np.ndarray
    order: int


def train_pixels(
    labels: np.ndarray,
    flux: np.ndarray,
    noise_var: np.ndarray,
    good: np.ndarray,
    order: int = 2,
    s_range: tuple[float, float] = (1e-5, 1.0),
    n_grid: int = 26,
    n_refine: int = 30,
) -> CannonFit:
    """The training step: ``θ_λ`` and ``s_λ`` of every pixel by maximum likelihood.

    Parameters
    ----------
    labels : numpy.ndarray
        (N, L) standardised labels of the training stars (all finite).
    flux : numpy.ndarray
        (N, P) continuum-normalised flux (dimensionless).
    noise_var : numpy.ndarray
        (N, P) measurement variance ``σ_nλ²`` (flux units²; 0 where the noise is unknown and ``s_λ`` carries all).
    good : numpy.ndarray of bool
        (N, P) pixels that take part.
    order : int
        1 for a linear label model, 2 for the quadratic one.
    s_range : (float, float)
        Search range of ``s_λ`` (flux units); the lower end is a floor that keeps noise-free fits finite.
    n_grid, n_refine : int
        Points of the ``log s`` grid, and golden-section steps around its best point.
    """
    x = np.asarray(labels, dtype=np.float64)
    f = np.where(good, np.asarray(flux, dtype=np.float64), 0.0)
    nv = np.where(good, np.asarray(noise_var, dtype=np.float64), 0.0)
    design = label_vector(x, order)
    n, k = design.shape
    if f.shape[0] != n or nv.shape != f.shape or good.shape != f.shape:
        raise StellarDataError(f"labels {x.shape}, flux {f.shape}, noise_var {nv.shape}, good {good.shape} disagree")
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(f)) or np.any(nv < 0) or not np.all(np.isfinite(nv)):
        raise StellarDataError("training labels, good fluxes and noise variances must be finite (variance ≥ 0)")
    p = f.shape[1]
    outer = (design[:, :, None] * design[:, None, :]).reshape(n, k * k)
    eye = np.eye(k)

    def profile(log_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = pixel_weights(np.exp(2.0 * log_s), nv, good)
        a = (w.T @ outer).reshape(p, k, k)
        jitter = 1e-10 * np.trace(a, axis1=1, axis2=2)[:, None, None] / k + 1e-300
        theta = np.linalg.solve(a + jitter * eye, ((w * f).T @ design)[..., None])[..., 0]
        r = f - design @ theta.T
        logw = np.log(np.where(w > 0, w, 1.0))
        return 0.5 * (w * r * r).sum(0) - 0.5 * logw.sum(0), theta

    grid = np.linspace(np.log(s_range[0]), np.log(s_range[1]), n_grid)
    nll = np.stack([profile(np.full(p, g))[0] for g in grid])
    best = np.argmin(nll, axis=0)
    lo, hi = grid[np.maximum(best - 1, 0)], grid[np.minimum(best + 1, n_grid - 1)]
    c, d = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fc, fd = profile(c)[0], profile(d)[0]
    for _ in range(n_refine):  # vectorised golden-section search, one bracket per pixel
        left = fc < fd
        hi, lo = np.where(left, d, hi), np.where(left, lo, c)  # keep the side of the lower interior point
        c, d = np.where(left, hi - _GOLDEN * (hi - lo), d), np.where(left, c, lo + _GOLDEN * (hi - lo))
        f_new = profile(np.where(left, c, d))[0]
        fc, fd = np.where(left, f_new, fd), np.where(left, fc, f_new)
    log_s = 0.5 * (lo + hi)
    _, theta = profile(log_s)
    s2 = np.exp(2.0 * log_s)
    dead = good.sum(0) < k + 1  # too few stars to fit the coefficients and a scatter
    s2[dead] = np.inf
    theta[dead] = 0.0
    return CannonFit(theta=theta, s2=s2, order=order)


def _chi2_table(fit: CannonFit, candidates: np.ndarray, flux: np.ndarray, w: np.ndarray) -> np.ndarray:
    """χ² (N, C) of every star against the model spectrum of every candidate label point."""
    model = label_vector(candidates, fit.order) @ fit.theta.T  # (C, P)
    return (w * flux * flux).sum(1)[:, None] - 2.0 * (w * flux) @ model.T + w @ (model * model).T


def infer_labels(
    fit: CannonFit,
    flux: np.ndarray,
    noise_var: np.ndarray,
    good: np.ndarray,
    candidates: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    n_starts: int = 3,
    chi2_scale: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test step: labels of every star by non-linear least squares, and their covariance from the curvature.

    Parameters
    ----------
    fit : CannonFit
        The trained label model.
    flux, noise_var, good : numpy.ndarray
        (N, P) continuum-normalised flux, measurement variance (0 = unknown) and usable pixels.
    candidates : numpy.ndarray
        (C, L) label points (standardised) whose model spectra are compared with each star; the ``n_starts``
        with the lowest χ² start the optimisation, and the best end point is kept.
    bounds : (numpy.ndarray, numpy.ndarray)
        Lower and upper bound of each label (the quadratic model is not trusted far outside its training set).
    n_starts : int
        Optimisations per star.
    chi2_scale : bool
        Multiply each star's covariance by its reduced χ² where that exceeds 1 (as ``curve_fit`` without
        ``absolute_sigma``): a star the model cannot fit to within its noise gets wider intervals.

    Returns
    -------
    labels : numpy.ndarray
        (N, L) standardised labels; the first candidate on a star with too few usable pixels.
    cov : numpy.ndarray
        (N, L, L) covariance ``(Jᵀ W J)⁻¹`` at the optimum; ∞ on the diagonal where it is undetermined.
    chi2 : numpy.ndarray
        (N,) χ² at the optimum.
    """
    f = np.where(good, np.asarray(flux, dtype=np.float64), 0.0)
    w = pixel_weights(fit.s2, np.where(good, noise_var, 0.0), good)
    n, n_lab = len(f), candidates.shape[1]
    table = _chi2_table(fit, candidates, f, w)
    order = np.argsort(table, axis=1)[:, : max(1, n_starts)]
    labels = np.empty((n, n_lab))
    cov = np.full((n, n_lab, n_lab), 0.0)
    chi2 = np.empty(n)
    lo, hi = bounds
    for i in range(n):
        use = w[i] > 0
        if use.sum() <= n_lab:
            labels[i], chi2[i] = candidates[0], np.nan
            cov[i][np.diag_indices(n_lab)] = np.inf
            continue
        theta, sq, fi = fit.theta[use], np.sqrt(w[i, use]), f[i, use]

        def res(x: np.ndarray, theta: np.ndarray = theta, sq: np.ndarray = sq, fi: np.ndarray = fi) -> np.ndarray:
            return sq * (fi - theta @ label_vector(x[None], fit.order)[0])

        def jac(x: np.ndarray, theta: np.ndarray = theta, sq: np.ndarray = sq) -> np.ndarray:
            return -sq[:, None] * (theta @ label_vector_jacobian(x, fit.order))

        best = None
        for j in order[i]:
            sol = least_squares(res, np.clip(candidates[j], lo, hi), jac=jac, bounds=(lo, hi), method="trf")
            if best is None or sol.cost < best.cost:
                best = sol
        assert best is not None
        labels[i], chi2[i] = best.x, 2.0 * best.cost
        jj = jac(best.x)
        cov[i] = np.linalg.pinv(jj.T @ jj)
        if chi2_scale:
            cov[i] *= max(1.0, chi2[i] / (use.sum() - n_lab))
    return labels, cov, chi2
