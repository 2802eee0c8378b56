"""The continuum fit behind :func:`~stellar.data.preprocess.spectra.continuum_normalise`: a clipped, weighted
least-squares Chebyshev polynomial in ln λ fitted to ln flux, for all rows of a block at once.

Pure array kernels on float64 blocks of rows (inputs already checked and unitless); the public entry points, with
their checks and units, are in :mod:`stellar.data.preprocess.spectra`.
"""

from __future__ import annotations

import numpy as np

from stellar.errors import StellarValueError


def chebyshev_x(wave: np.ndarray) -> np.ndarray:
    """ln λ mapped onto [-1, 1] per row (the domain of the Chebyshev basis)."""
    lnw = np.log(wave)
    lo, hi = lnw[..., :1], lnw[..., -1:]
    return 2.0 * (lnw - lo) / (hi - lo) - 1.0


#: Pixels averaged into one point of the continuum fit: a smooth low-order continuum loses nothing, lines still
#: span several binned points, and each clipping iteration costs a quarter as much.
_CONTINUUM_BIN = 4


def _bin_last(arr: np.ndarray, size: int, fill: float) -> np.ndarray:
    """Sum of consecutive groups of ``size`` values along the last axis (padded with ``fill``)."""
    m = arr.shape[-1]
    pad = -m % size
    if pad:
        arr = np.concatenate([arr, np.full((*arr.shape[:-1], pad), fill, dtype=arr.dtype)], axis=-1)
    return arr.reshape(*arr.shape[:-1], -1, size).sum(axis=-1)


def _top_per_segment(values: np.ndarray, n_seg: int, k: int) -> np.ndarray:
    """True on the ``k`` largest finite values of each of ``n_seg`` equal segments of every row.

    Keeping the highest points of every stretch in the fit stops the upper-envelope iteration from running
    away where lines leave few continuum points (a fit that overshoots there would otherwise reject them all).
    """
    n, m = values.shape
    length = -(-m // n_seg)
    if length <= k:
        return np.isfinite(values)
    padded = np.full((n, n_seg * length), -np.inf, dtype=values.dtype)
    padded[:, :m] = values
    seg = padded.reshape(n, n_seg, length)
    kth = np.partition(seg, length - k, axis=-1)[..., length - k : length - k + 1]
    return ((seg >= kth) & np.isfinite(seg)).reshape(n, -1)[:, :m]


def fit_continuum(
    x: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray | None,
    bad: np.ndarray,
    degree: int,
    n_iter: int,
    clip_low: float,
    clip_high: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Continuum of a block of rows by clipped weighted least squares; returns (continuum, fitted_rows).

    The fit runs on ln of the (inverse-variance weighted) mean flux of groups of :data:`_CONTINUUM_BIN`
    pixels, in float32 after removing a per-row offset (values of order one), which is ample for a smooth
    continuum; the small normal equations are solved in float64.
    """
    m = flux.shape[1]
    n_par = degree + 1
    size = min(_CONTINUUM_BIN, max(1, m // (10 * n_par)))
    good = ~bad & np.isfinite(flux)
    wgt = good.astype(np.float64) if ivar is None else np.where(good, ivar, 0.0)
    good &= np.isfinite(wgt)
    wgt = np.where(good, wgt, 0.0)
    w_sum = _bin_last(wgt, size, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        f_bin = _bin_last(np.where(good, flux, 0.0) * wgt, size, 0.0) / w_sum
        usable = (w_sum > 0) & (f_bin > 0) & np.isfinite(f_bin)
        y = np.log(np.where(usable, f_bin, 1.0))
    x_bin = _bin_last(x, size, float(x[..., -1:].max())) / size
    n_use = usable.sum(axis=1)
    n_min = max(2 * n_par, 10)
    fitted = n_use >= n_min
    y_lo = np.where(fitted, np.where(usable, y, np.inf).min(axis=1, initial=np.inf), 0.0)
    y_hi = np.where(fitted, np.where(usable, y, -np.inf).max(axis=1, initial=-np.inf), 0.0)
    offset = 0.5 * (y_lo + y_hi)
    y = np.where(usable, y - offset[:, None], 0.0).astype(np.float32)
    if ivar is None:
        iv_scaled = None
        w = np.where(usable, w_sum, 0.0).astype(np.float32)  # unit weight per pixel (unknown noise)
    else:
        # ivar in units of the offset flux, so that ivar · exp(2 fit) (the weight of ln flux) is of order one
        iv_scaled = np.where(usable, w_sum * np.exp(2.0 * offset)[:, None], 0.0)
        iv_scaled /= np.maximum(iv_scaled.sum(axis=1) / np.maximum(n_use, 1), 1e-300)[:, None]
        iv_scaled = iv_scaled.astype(np.float32)
        w = iv_scaled * np.exp(2.0 * y)  # first pass: weights from the data
    # Products of Chebyshev polynomials are sums of two Chebyshev polynomials, T_i T_j = (T_{i+j} + T_|i-j|)/2,
    # so the normal matrix needs only the 2·degree+1 weighted moments of T_k: one thin matmul per iteration.
    ii, jj = np.meshgrid(np.arange(n_par), np.arange(n_par), indexing="ij")
    shared = x.ndim == 1
    basis = np.polynomial.chebyshev.chebvander(x_bin, 2 * degree).astype(np.float32)  # (Mb, K) or (N, Mb, K)
    design = np.ascontiguousarray(basis[..., :n_par])
    include = usable.copy()
    eye = np.eye(n_par)
    lo, hi = (y_lo - offset - 3.0)[:, None], (y_hi - offset + 3.0)[:, None]
    lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)
    for it in range(n_iter + 1):
        wi = np.where(include, w, np.float32(0.0))
        if shared:
            mom = (wi @ basis).astype(np.float64)
            rhs = ((wi * y) @ design).astype(np.float64)
        else:
            mom = np.einsum("nm,nmk->nk", wi, basis, dtype=np.float64)
            rhs = np.einsum("nm,nmk->nk", wi * y, design, dtype=np.float64)
        ata = 0.5 * (mom[:, ii + jj] + mom[:, np.abs(ii - jj)])
        ok = fitted & (include.sum(axis=1) >= n_par)
        scale = np.where(ok, np.trace(ata, axis1=1, axis2=2) / n_par, 1.0)
        ata = np.where(ok[:, None, None], ata, eye) + 1e-10 * scale[:, None, None] * eye
        coef = np.linalg.solve(ata, np.where(ok[:, None], rhs, 0.0)[..., None])[..., 0]
        if it == n_iter:
            break
        fit = coef.astype(np.float32) @ design.T if shared else np.einsum("nmk,nk->nm", design, coef)
        fit = np.clip(fit, lo32, hi32)
        if iv_scaled is not None:
            # weights from the model, not the noisy data: data-based ones favour upward fluctuations
            w = iv_scaled * np.exp(2.0 * fit)
        z = (y - fit) * np.sqrt(w)
        above = include & (z > 0)
        sigma = np.sqrt((np.where(above, z, 0.0) ** 2).sum(axis=1) / np.maximum(above.sum(axis=1), 1))
        sigma = np.maximum(sigma, 1e-3).astype(np.float32)[:, None]  # noiseless input: keep points within 0.2 %
        # asymmetric: absorption lines sit below the continuum, so points below it are rejected sooner
        new = usable & (z > -clip_low * sigma) & (z < clip_high * sigma)
        new |= _top_per_segment(np.where(usable & (z < clip_high * sigma), y - fit, -np.inf), 2 * n_par, 2)
        # never let clipping leave too few points to pin the polynomial down (e.g. the gaps between TiO bands)
        new = np.where((new.sum(axis=1) >= np.maximum(n_min, n_use // 20))[:, None], new, include)
        if np.array_equal(new, include):
            break
        include = new
    full = np.polynomial.chebyshev.chebvander(x, degree)
    fit_full = coef @ full.T if shared else np.einsum("nmk,nk->nm", full, coef)
    fit_full = np.clip(fit_full, lo, hi) + offset[:, None]
    return np.where(fitted[:, None], np.exp(fit_full), 1.0), fitted


def check_fit_args(degree: int, n_iter: int, clip_low: float, clip_high: float) -> None:
    if int(degree) != degree or not 0 <= degree <= 30:
        raise StellarValueError(f"degree must be an integer in [0, 30]; got {degree}")
    if int(n_iter) != n_iter or n_iter < 0:
        raise StellarValueError(f"n_iter must be a non-negative integer; got {n_iter}")
    if not (clip_low > 0 and clip_high > 0):
        raise StellarValueError(f"clip_low and clip_high must be > 0; got {clip_low} and {clip_high}")


def log_shape(continuum: np.ndarray, bad: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """The continuum's shape: ``ln(continuum / median continuum)`` per row, where the data constrain the fit.

    The median is over each row's good pixels. Beyond the first and last good pixel the fit is an extrapolation,
    so the value there is held at the edge one. Rows that were not fitted, or have no good pixel, are 0 (a flat
    continuum).
    """
    good = ~bad & fitted[:, None]
    m = continuum.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_c = np.log(np.where(good, continuum, np.nan))
    any_good = good.any(axis=1)
    first = np.where(any_good, good.argmax(axis=1), 0)
    last = np.where(any_good, m - 1 - good[:, ::-1].argmax(axis=1), 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        med = np.nanmedian(np.where(any_good[:, None], ln_c, 0.0), axis=1)
        shape = np.log(np.where(fitted[:, None], continuum, 1.0)) - med[:, None]
    j = np.clip(np.arange(m)[None, :], first[:, None], last[:, None])
    shape = np.take_along_axis(shape, j, axis=1)
    return np.where(any_good[:, None] & np.isfinite(shape), shape, 0.0)


def normalised(
    flux: np.ndarray, ivar: np.ndarray | None, bad: np.ndarray, continuum: np.ndarray, fitted: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    bad = bad | ~fitted[:, None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        norm = np.where(bad, 1.0, flux / continuum)
        norm_ivar = None if ivar is None else np.where(bad, 0.0, ivar * continuum * continuum)
    return norm, norm_ivar, bad
