"""Period finding for light curves: :func:`best_period` judges periodogram peaks, their aliases and harmonics
with a multi-harmonic (optionally multiband) fit and the BIC.

Same conventions as :mod:`stellar.data.preprocess.lightcurve` (padded ``(N, T)`` rows, ``mask`` True on bad
points, times in days, ``Quantity`` accepted).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from stellar.data.preprocess._lc_rows import prepare, squeeze
from stellar.data.preprocess._periodogram import frequency_grid, ls_row, top_peaks, uniform
from stellar.errors import StellarValueError


class PeriodSearch(NamedTuple):
    """Everything :func:`best_period` looked at for one light curve.

    Attributes
    ----------
    period : float, d
        The chosen period (NaN when there were too few points).
    frequency : numpy.ndarray, (F,), 1/day
        The search grid.
    power : numpy.ndarray, (F,)
        Combined single-harmonic power: per-band floating-mean Lomb–Scargle power weighted by each band's χ²
        about its mean (the multiband periodogram with independent per-band amplitudes and phases).
    candidates : numpy.ndarray, (K,), 1/day
        Refined candidate frequencies (peaks, their ±1/day aliases and their halves and doubles).
    bic : numpy.ndarray, (K,)
        ``N ln S + n_params ln N`` of the multi-harmonic fit at each candidate, ``S`` its χ² or (``huber``) its
        Huber loss (the BIC with the error scale free, so underestimated errors or an imperfect shape do not
        reward extra harmonics); the smallest wins.
    n_params : numpy.ndarray of int, (K,)
        Parameters of each candidate's best-scoring model (bands' offsets plus harmonic terms).
    """

    period: float
    frequency: np.ndarray
    power: np.ndarray
    candidates: np.ndarray
    bic: np.ndarray
    n_params: np.ndarray


def _design(t: np.ndarray, b: np.ndarray, n_bands: int, f: np.ndarray, n_base: int, n_band: int) -> np.ndarray:
    """Multi-harmonic design matrices (F, T, P) at frequencies ``f``: per-band offsets, ``n_base`` shared harmonics,
    and ``n_band`` harmonics per band beyond the first (the first band's are the shared ones, which avoids the
    degeneracy of base plus all-band terms)."""
    arg = 2 * np.pi * f[:, None] * (t - t.mean())[None, :]  # (F, T); centred times keep the phases accurate
    c1, s1 = np.cos(arg), np.sin(arg)
    harm = [(c1, s1)]
    for _ in range(1, max(n_base, n_band)):  # angle addition: cheaper than more trigonometry
        c, s = harm[-1]
        harm.append((c * c1 - s * s1, s * c1 + c * s1))
    cols = [np.broadcast_to((b == j).astype(float), arg.shape) for j in range(n_bands)]
    for k in range(n_base):
        cols += list(harm[k])
    for j in range(1, n_bands):
        sel = (b == j).astype(float)
        for k in range(n_band):
            cols += [sel * harm[k][0], sel * harm[k][1]]
    return np.stack(cols, axis=-1)


def _chi2(t: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, nb: int, f: np.ndarray, terms: tuple) -> tuple:
    """Weighted least-squares χ² of the multi-harmonic model at each frequency ``f`` (F,); and the parameter count."""
    a = _design(t, b, nb, f, *terms) * np.sqrt(w)[None, :, None]  # whitened: χ² = |a c - y √w|²
    yw = y * np.sqrt(w)
    at = a.transpose(0, 2, 1)
    lhs = at @ a
    rhs = at @ yw
    lhs += 1e-10 * np.trace(lhs, axis1=1, axis2=2)[:, None, None] / lhs.shape[1] * np.eye(lhs.shape[1])
    coef = np.linalg.solve(lhs, rhs[..., None])
    resid = yw[None, :] - (a @ coef)[..., 0]  # explicit residuals: |yw|² - rhs·coef cancels catastrophically
    return np.einsum("ft,ft->f", resid, resid), a.shape[-1]


def _refine(
    t: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    nb: int,
    f0: float,
    half: float,
    terms: tuple,
    passes: int = 2,
    n: int = 7,
) -> tuple[float, float]:
    """Minimise χ²(f) within ``f0 ± half``: ``passes`` zooming passes of an ``n``-point grid, then a parabola."""
    lo, hi = f0 - half, f0 + half
    best_f, best_c = f0, np.inf
    for _ in range(passes):
        grid = np.linspace(lo, hi, n)
        grid = grid[grid > 0]
        c, _ = _chi2(t, y, w, b, nb, grid, terms)
        i = int(np.argmin(c))
        best_f, best_c = float(grid[i]), float(c[i])
        step = grid[1] - grid[0]
        lo, hi = best_f - step, best_f + step
    if 0 < i < len(grid) - 1:  # vertex of the parabola through the last pass's minimum and its neighbours
        c0, c1, c2 = c[i - 1], c[i], c[i + 1]
        den = c0 - 2 * c1 + c2
        if den > 0:
            shift = 0.5 * (c0 - c2) / den
            f_new = best_f + shift * step
            c_new, _ = _chi2(t, y, w, b, nb, np.array([f_new]), terms)
            if c_new[0] < best_c:
                best_f, best_c = float(f_new), float(c_new[0])
    return best_f, best_c


def _robust_bic(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, nb: int, f: float, terms: tuple, c: float
) -> tuple[float, int]:
    """``N ln S + n_params ln N`` of a Huber fit at frequency ``f``: ``S = Σ s² ρ_c(r/s)`` over the whitened
    residuals ``r`` (ρ quadratic within ``c`` scales, linear beyond; ``s`` 1.4826 × their median absolute value),
    by iteratively reweighted least squares (4 passes, the first unweighted). Points the shape cannot follow
    (outliers, a Blazhko star's spread near maximum) then count for less than with χ², which they dominate."""
    a = _design(t, b, nb, np.array([f]), *terms)[0] * np.sqrt(w)[:, None]  # (T, P), whitened
    yw = y * np.sqrt(w)
    eye = np.eye(a.shape[1])
    rw = np.ones_like(yw)
    for _ in range(4):
        aw = a * rw[:, None]
        lhs = aw.T @ a
        lhs += 1e-10 * np.trace(lhs) / lhs.shape[0] * eye
        r = yw - a @ np.linalg.solve(lhs, aw.T @ yw)
        s = 1.4826 * float(np.median(np.abs(r))) + 1e-300
        z = np.abs(r) / s
        rw = np.minimum(1.0, c / np.maximum(z, 1e-12))
    rho = np.where(z < c, 0.5 * z**2, c * z - 0.5 * c * c)
    return t.size * np.log(max(float(rho.sum()) * s * s, 1e-300)) + a.shape[1] * np.log(t.size), a.shape[1]


def _shape(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray, nb: int, f: float, terms: tuple
) -> dict[str, float]:
    """Shape of the weighted least-squares multi-harmonic fit at frequency ``f``, from its shared harmonics (the
    first band's light curve): ``r21`` = A₂/A₁ (harmonic amplitudes; 0 with one harmonic) and ``amplitude``, the
    peak-to-peak of the fitted curve over one cycle (the unit of ``y``)."""
    a = _design(t, b, nb, np.array([f]), *terms)[0] * np.sqrt(w)[:, None]
    lhs = a.T @ a
    lhs += 1e-10 * np.trace(lhs) / lhs.shape[0] * np.eye(lhs.shape[0])
    coef = np.linalg.solve(lhs, a.T @ (y * np.sqrt(w)))
    harm = coef[nb : nb + 2 * terms[0]].reshape(-1, 2)  # (cos, sin) of harmonics 1..k
    amp = np.hypot(harm[:, 0], harm[:, 1])
    phase = 2 * np.pi * np.linspace(0, 1, 256, endpoint=False)
    k = np.arange(1, amp.size + 1)[:, None]
    curve = harm[:, 0] @ np.cos(k * phase) + harm[:, 1] @ np.sin(k * phase)
    r21 = float(amp[1] / amp[0]) if amp.size > 1 and amp[0] > 0 else 0.0
    return {"r21": r21, "amplitude": float(np.ptp(curve))}


#: Peak-to-peak pulsation amplitude in a band relative to V, ``(λ / 551 nm)^-1.2`` (A_B : A_V : A_I ≈ 1.25 : 1 :
#: 0.63; effective wavelengths of Johnson–Cousins and SDSS bands). Not u: the Balmer jump breaks the power law there.
RR_LYRAE_AMPLITUDE_PER_V: Mapping[str, float] = MappingProxyType(
    {"B": 1.29, "V": 1.0, "R": 0.82, "I": 0.63, "g": 1.19, "r": 0.86, "i": 0.68, "z": 0.55}
)


class RRLyraePrior(NamedTuple):
    """A physical prior on an RR Lyrae star's period given the shape of its light curve, in BIC units
    (``-2 ln`` of the prior odds), for :func:`best_period`'s ``prior``.

    RR Lyrae pulsate with periods of 0.2–1.0 d; fundamental-mode RRab stars (a saw-tooth: a fast rise, strong
    harmonics, A₂/A₁ ≈ 0.4–0.55) have P ≳ 0.4 d, first-overtone RRc stars (near-sinusoidal, A₂/A₁ ≈ 0.05–0.25)
    P ≲ 0.5 d (Smith 1995, *RR Lyrae Stars*; Simon & Teays 1982; Sesar et al. 2010). A candidate outside
    ``[min_period, max_period]`` is excluded; one whose shape and period disagree (saw-tooth below ``ab_min``,
    sinusoid above ``c_max``) pays ``penalty`` = 2 ln 20 ≈ 6 (a prior odds of 1:20).

    Amplitude: RRc stars rarely exceed 0.6 mag peak-to-peak in V, RRab stars reach 1.0–1.4 mag (Smith 1995; the
    Bailey diagram). A near-sinusoidal fit whose peak-to-peak exceeds ``c_max_amplitude`` (V mag, scaled to the
    fitted band by :data:`RR_LYRAE_AMPLITUDE_PER_V`) is too large for an RRc, so it is judged as an RRab whose
    harmonics the fit smeared (the fit at a one-day alias of a saw-tooth loses its higher harmonics, whose phases
    shift with each visit's hour, and looks like a short-period sinusoid). The term needs the band's name
    (``shape["band"]``, from :func:`best_period`'s ``band``) and magnitudes; it is skipped for unknown bands and
    with ``c_max_amplitude=None``. None of these values were fitted to data.
    """

    min_period: float = 0.2
    max_period: float = 1.0
    r21_split: float = 0.3
    ab_min: float = 0.4
    c_max: float = 0.5
    penalty: float = 2 * np.log(20.0)
    c_max_amplitude: float | None = 0.7
    amplitude_per_v: Mapping[str, float] = RR_LYRAE_AMPLITUDE_PER_V

    def __call__(self, period: float, shape: dict[str, Any]) -> float:
        """``-2 ln`` prior odds (0 where the period and shape agree; ``inf`` outside the period range)."""
        if not self.min_period <= period <= self.max_period:
            return float("inf")
        sawtooth = shape["r21"] >= self.r21_split
        scale = self.amplitude_per_v.get(str(shape.get("band")))
        if not sawtooth and self.c_max_amplitude is not None and scale is not None:
            sawtooth = shape.get("amplitude", 0.0) > self.c_max_amplitude * scale  # too large for an RRc
        if sawtooth:
            return self.penalty if period < self.ab_min else 0.0
        return self.penalty if period > self.c_max else 0.0


#: Named period priors for :func:`best_period` (``prior="rr_lyrae"``); a callable ``(period, shape) -> -2 ln odds``
#: may be passed instead.
PERIOD_PRIORS: dict[str, Any] = {"rr_lyrae": RRLyraePrior()}


def _local_peaks(p: np.ndarray, j: int, win: int, n: int) -> list[int]:
    """Indices of the ``n`` highest local maxima of ``p`` within ``j ± win`` (the highest point if none)."""
    return top_peaks(p, n, ends=False, lo=max(j - win, 1), hi=min(j + win + 1, p.size - 1)).tolist()


def _combined_power(t: np.ndarray, y: np.ndarray, e: np.ndarray, b: np.ndarray, nb: int, f: np.ndarray) -> np.ndarray:
    """Σ_b χ²₀,b P_b(f) / Σ_b χ²₀,b over bands with at least 5 points (P_b: floating-mean Lomb–Scargle)."""
    use = [j for j in range(nb) if np.count_nonzero(b == j) >= 5]
    if not use:
        return np.full(f.size, np.nan)
    sel = b[None, :] == np.array(use)[:, None]  # (B, T)
    w = np.where(sel, 1.0 / e**2, 0.0)
    mean = (w * y).sum(axis=1) / w.sum(axis=1)
    chi0 = (w * (y[None, :] - mean[:, None]) ** 2).sum(axis=1)
    # one batched transform on the shared times: other bands' points enter with zero weight (error 1e150)
    order = np.argsort(t, kind="stable")
    yy = np.where(sel, y, 0.0)[:, order]
    ee = np.where(sel, e, 1e150)[:, order]
    try:
        import nifty_ls
    except ImportError:
        nifty_ls = None
    if nifty_ls is not None and uniform(f):
        # one thread: light curves are the parallel axis, and finufft's threads cost more than they save here
        res = nifty_ls.lombscargle(t[order], yy, ee, fmin=float(f[0]), fmax=float(f[-1]), Nf=f.size, nthreads=1)
        power = np.asarray(res.power, dtype=float).reshape(len(use), f.size)
    else:
        power = np.stack([ls_row(t[s], y[s], e[s], f, "standard") for s in sel])
    return np.asarray((chi0[:, None] * power).sum(axis=0) / chi0.sum())


def _search_row(
    t: np.ndarray,
    y: np.ndarray,
    e: np.ndarray,
    b: np.ndarray,
    nb: int,
    grid: np.ndarray,
    opts: dict,
    band0: str | None = None,
) -> PeriodSearch:
    """One light curve's search (see :func:`best_period`); ``band0`` names band 0, whose shape a prior sees."""
    n_terms, n_band = opts["n_terms"], (opts["n_terms_band"] if nb > 1 else 0)

    def n_par(k: int) -> int:
        return nb + 2 * k + 2 * n_band * (nb - 1)

    def enough(k: int) -> bool:  # the BIC needs N >> p: sparse data would fit noise with the extra terms
        return t.size >= opts["min_points_per_param"] * n_par(k)

    power = _combined_power(t, y, e, b, nb, grid)
    df = grid[1] - grid[0]
    w = 1.0 / e**2
    seeds: list[tuple[float, int]] = []  # (frequency, shared harmonics)
    win = max(int(np.ceil(opts["alias_window"] / df)), 1)
    # only offsets at which the sampling window has power make aliases (a nightly survey, not Kepler or TESS)
    aliases = [d for d in opts["aliases"] if abs(np.mean(np.exp(2j * np.pi * d * t))) > opts["alias_min_window"]]
    for i in top_peaks(power, opts["n_peaks"], ends=False):
        f = float(grid[i])
        # the peak and the window's aliases (a sidereal day is 1.0027/d), each with its yearly sidelobes: the
        # n_sidelobes highest peaks within alias_window (a season-long gap puts copies at ±1/yr, ±2/yr, ...)
        seeds.append((f, n_terms))
        for fa in [f] + [x for d in aliases for x in (f + d, abs(f - d))]:
            j = int(np.searchsorted(grid, fa))
            if 0 < j < grid.size - 1:
                seeds += [(float(grid[q]), n_terms) for q in _local_peaks(power, j, win, opts["n_sidelobes"])]
        for h in opts["harmonics"]:  # eclipsing binaries with near-equal minima peak at twice their frequency
            k = max(n_terms, int(np.ceil(n_terms / h)))  # reach the same highest frequency: f/2 nests f
            if grid[0] <= f * h <= grid[-1] and enough(k):
                seeds.append((f * h, k))
    uniq = {(round(f / (0.5 * df)), k): (f, k) for f, k in seeds}
    y = y.copy()
    for j in range(nb):  # remove each band's weighted mean: keeps the normal equations well scaled
        s = b == j
        y[s] -= np.sum(w[s] * y[s]) / np.sum(w[s])

    def score(f: float, k: int, chi2: float) -> float:
        prior = opts["prior"]
        extra = (
            0.0 if prior is None else float(prior(1.0 / f, _shape(t, y, w, b, nb, f, (k, n_band)) | {"band": band0}))
        )
        if not np.isfinite(extra):  # excluded by the prior: no fit needed
            return float("inf")
        if opts["huber"] is None:
            return float(t.size * np.log(max(chi2, 1e-300)) + n_par(k) * np.log(t.size)) + extra
        return _robust_bic(t, y, w, b, nb, f, (k, n_band), opts["huber"])[0] + extra

    def judge(f0: float, k: int, half: float) -> tuple[float, float, int]:
        """Refine ``f0`` (the χ² minimum within ±half) and score it at ``k`` harmonics and, where the points allow,
        at more up to n_terms_max (each refined again within ±df/2: more harmonics, a narrower minimum)."""
        f, c = _refine(t, y, w, b, nb, f0, half, (k, n_band))
        best = (f, score(f, k, c), k)
        for k2 in range(k + 1, opts["n_terms_max"] + 1):
            if not enough(k2):
                break
            f2, c2 = _refine(t, y, w, b, nb, f, 0.5 * df, (k2, n_band), passes=1, n=5)
            s2 = score(f2, k2, c2)
            if s2 < best[1]:
                best = (f2, s2, k2)
        return best

    cand, bic, ks = [], [], []
    for f0, k in uniq.values():
        f, sc, k_used = judge(f0, k, 1.5 * df)
        cand.append(f)
        bic.append(sc)
        ks.append(k_used)
    best = int(np.argmin(bic))
    # halving test: the winner's model at f is nested in one at f/2 with twice the harmonics; an eclipsing binary's
    # unequal minima (odd harmonics of its true frequency) pay for the extra terms, noise does not
    f_best, k_best = cand[best], ks[best]
    while 2 * k_best <= opts["max_terms"] and f_best / 2 >= grid[0] and enough(2 * k_best):
        f, sc, k_used = judge(f_best / 2, 2 * k_best, 0.5 * df)
        cand.append(f)
        bic.append(sc)
        ks.append(k_used)
        if bic[-1] >= bic[best]:
            break
        best, f_best, k_best = len(cand) - 1, f, k_used
    params = np.array([n_par(k) for k in ks])
    period = float(1.0 / cand[best]) if np.isfinite(bic[best]) else np.nan  # a prior excluded every candidate
    return PeriodSearch(period, grid, power, np.array(cand), np.array(bic), params)


def best_period(
    time: Any,
    values: Any,
    err: Any = None,
    mask: Any = None,
    band: Any = None,
    *,
    min_period: Any = 0.1,
    max_period: Any = None,
    oversampling: float = 5.0,
    n_terms: int = 3,
    n_terms_band: int = 1,
    n_peaks: int = 5,
    aliases: tuple[float, ...] = (1.0,),
    alias_window: float = 0.01,
    alias_min_window: float = 0.2,
    harmonics: tuple[float, ...] = (0.5, 2.0),
    max_terms: int = 24,
    min_points_per_param: float = 10.0,
    full_output: bool = False,
    n_sidelobes: int = 3,
    n_terms_max: int = 5,
    huber: float | None = 1.5,
    prior: Any = None,
) -> Any:
    """Period that survives the aliases: periodogram peaks refined and judged by a multi-harmonic fit.

    1. Combined periodogram on :func:`frequency_grid`: per band, the floating-mean Lomb–Scargle power (nifty-ls),
       weighted by that band's χ² about its mean (one band: the ordinary periodogram).
    2. Candidates: the ``n_peaks`` highest peaks; for each, and for each ``f ± d`` with ``d`` in ``aliases``
       (sampling aliases: nightly ground surveys put copies of every peak at ±1/day, or ±1.0027/day for the
       sidereal day), the ``n_sidelobes`` highest peaks within ``alias_window`` (a seasonal gap puts yearly
       sidelobes at ±1/yr, ±2/yr, ... around each, and the single-harmonic power often ranks them wrongly); and
       ``f × h`` for ``h`` in ``harmonics``.
    3. Each candidate is refined by minimising the χ² of a multi-harmonic model (per-band offsets, ``n_terms``
       shared harmonics, ``n_terms_band`` extra harmonics per band beyond the first; weights 1/err²) within ±1.5
       grid steps, then scored by the BIC ``N ln S + n_params ln N`` (error scale fitted), with ``S`` the χ² or,
       with ``huber``, the Huber loss of a robust refit (below). Each candidate is also tried with more harmonics,
       up to ``n_terms_max`` while there are ``min_points_per_param`` points per parameter (refined again within
       ±½ grid step), and keeps its best score: a sawtooth's sharp rise needs more terms than three, and the
       true period gains more from them than an alias does. The smallest score wins. Lower-frequency candidates
       ``f × h`` (h < 1) get ``n_terms / h`` harmonics, so that their model contains the one at ``f``: the
       longer period wins only when the extra harmonics pay for themselves (an eclipsing binary's unequal
       minima), not by fitting noise.
    4. Halving test: the winner at ``f`` with ``k`` harmonics is compared with ``f/2`` and ``2k`` harmonics (a nested
       model), repeatedly while the score improves, up to ``max_terms`` harmonics.

    A single-harmonic periodogram favours whichever alias the window function boosts; a multi-harmonic model fits
    the true period's non-sinusoidal shape (and its per-band phases) better than any alias, which is the remedy
    of Sesar+2010 (templates) and VanderPlas & Ivezić 2015 (multiband, multi-term).

    Parameters
    ----------
    time : array-like, Quantity or Time, (T,) or (N, T), d
    values : array-like, (T,) or (N, T), mag or flux
    err : array-like, optional, same unit as ``values``
        1σ errors; unit weights when omitted.
    mask : array-like of bool, optional
        ``True`` on points to leave out.
    band : array-like of str or int, (T,) or (N, T), optional
        Band of each point; one band when omitted.
    min_period, max_period : float or Quantity, d
        Search range (bare floats are days); ``max_period`` defaults to each row's baseline.
    oversampling : float
        Grid samples per peak width ``1/baseline``.
    n_terms, n_terms_band : int
        Harmonics of the shared and of the per-band model.
    n_peaks : int
        Periodogram peaks to consider.
    aliases : tuple of float, 1/day
        Alias offsets to try around each peak.
    alias_window : float, 1/day
        Half-width searched around each peak and alias for its highest ``n_sidelobes`` peaks.
    alias_min_window : float
        An alias offset ``d`` is tried only where the spectral window ``|mean(exp(2πi d t))|`` exceeds this (about
        0.9 at 1/day for nightly ground sampling, ~0 for Kepler/TESS).
    harmonics : tuple of float
        Frequency multiples to try around each peak.
    max_terms : int
        Most harmonics the halving test may use.
    min_points_per_param : float
        Lower-frequency candidates with more harmonics (``f × h``, h < 1, and the halving test) are tried only with
        at least this many points per model parameter: the BIC's large-sample penalty does not stop a sparse light
        curve (~60 points in one band) from fitting noise with doubled harmonics.
    full_output : bool
        Return a :class:`PeriodSearch` (or a list of them, one per row) instead of the periods.
    n_sidelobes : int
        Peaks tried within ``alias_window`` of each peak and alias (1: only the highest, the behaviour before).
    n_terms_max : int
        Most shared harmonics a candidate is tried with (``n_terms`` or less: ``n_terms`` only).
    huber : float or None, scales
        Score candidates by a Huber fit (iteratively reweighted least squares; residuals beyond ``huber`` robust
        standard deviations count linearly, not quadratically); ``None``: by χ². Ground-based light curves have
        outliers and cycle-to-cycle changes (Blazhko modulation) that a fixed-shape fit cannot follow, and χ²
        lets a few of those points decide between a period and its alias. 1.5 is Huber's (1964) usual constant.
    prior : str or callable, optional
        A physical prior on the period given the light-curve shape, added to each candidate's score as
        ``-2 ln`` prior odds: a name in :data:`PERIOD_PRIORS` (``"rr_lyrae"``: :class:`RRLyraePrior`) or a callable
        ``(period_d, shape) -> float`` with ``shape`` the fit's ``{"r21": A₂/A₁, "amplitude": peak-to-peak,
        "band": name}`` (of the first band in sorted order, ``None`` without ``band``; ``inf`` excludes a
        candidate). ``None`` (default): no prior, the generic search. Where the sampling
        leaves a period and its one-day alias almost equally good, the class's period–shape relation decides.

    Returns
    -------
    numpy.ndarray of float, (N,) or scalar array, d
        NaN for light curves with fewer than ``2 + 2 n_terms`` valid points.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t = np.sort(rng.uniform(0, 30, 300))
    >>> y = np.sin(2 * np.pi * t / 0.7) + 0.5 * np.sin(4 * np.pi * t / 0.7 + 1) + rng.normal(0, 0.1, 300)
    >>> round(float(best_period(t, y, np.full(300, 0.1))), 4)
    0.7
    """
    if not (int(n_terms) == n_terms >= 1 and int(n_terms_band) == n_terms_band >= 0 and int(n_peaks) == n_peaks >= 1):
        raise StellarValueError(f"need n_terms >= 1, n_terms_band >= 0, n_peaks >= 1; got {n_terms}, {n_terms_band}, "
                                f"{n_peaks}")  # fmt: skip
    if not (int(n_sidelobes) == n_sidelobes >= 1 and int(n_terms_max) == n_terms_max):
        raise StellarValueError(f"need n_sidelobes >= 1 and an integer n_terms_max; got {n_sidelobes}, {n_terms_max}")
    if huber is not None and not huber > 0:
        raise StellarValueError(f"huber must be > 0 (scales) or None; got {huber}")
    if isinstance(prior, str):
        if prior not in PERIOD_PRIORS:
            raise StellarValueError(f"prior must be one of {sorted(PERIOD_PRIORS)} or a callable; got {prior!r}")
        prior = PERIOD_PRIORS[prior]
    elif prior is not None and not callable(prior):
        raise StellarValueError(f"prior must be a name in {sorted(PERIOD_PRIORS)}, a callable or None; got {prior!r}")
    if not alias_window >= 0:
        raise StellarValueError(f"alias_window must be >= 0 (1/day); got {alias_window}")
    t, y, e, m, single = prepare(time, values, mask, err=err)
    e = np.ones_like(y) if e is None else e
    names: list[str | None] = [None]  # band names, for a prior's amplitude (unknown without ``band``)
    if band is None:
        bidx = np.zeros(y.shape, dtype=int)
    else:
        braw = np.asarray(band)
        try:
            braw = np.broadcast_to(braw, y.shape)
        except ValueError as err_:
            raise StellarValueError(f"band must have the shape of values {y.shape}; got {braw.shape}") from err_
        uniq, bidx = np.unique(braw, return_inverse=True)
        names, bidx = [str(x) for x in uniq], bidx.reshape(y.shape)
    opts: dict[str, Any] = {"n_terms": int(n_terms), "n_terms_band": int(n_terms_band), "n_peaks": int(n_peaks)}
    opts |= {"aliases": tuple(float(a) for a in aliases), "harmonics": tuple(harmonics), "alias_window": alias_window}
    opts["alias_min_window"] = float(alias_min_window)
    opts["max_terms"] = int(max_terms)
    opts["min_points_per_param"] = float(min_points_per_param)
    opts |= {"n_sidelobes": int(n_sidelobes), "n_terms_max": int(n_terms_max), "huber": huber}
    opts["prior"] = prior
    out: list[PeriodSearch | None] = []
    for i in range(y.shape[0]):
        ok = ~m[i]
        if ok.sum() < 2 + 2 * n_terms:
            out.append(None)
            continue
        present, bi = np.unique(bidx[i, ok], return_inverse=True)
        grid = frequency_grid(t[i, ok], min_period, max_period, oversampling)
        row = (t[i, ok], y[i, ok], e[i, ok], bi, int(bi.max()) + 1, grid, opts)
        out.append(_search_row(*row, band0=names[present[0]]))
    if full_output:
        return out[0] if single else out
    periods = np.array([np.nan if r is None else r.period for r in out])
    return squeeze(periods, single)
