"""Model inputs from light curves: the one preprocessing object that light-curve datamodules and the server share.

:class:`LightCurvePreprocessing` takes padded multi-band light curves (one row per object, points of every band
in one row, a band index per point) and returns what the models read:

- ``time`` (N, n) in days since each object's first valid point; ``flux`` (N, n) in magnitudes relative to the
  band's median (flux inputs become ``-2.5 log10(f / median)``, so brightening is negative, as in magnitudes);
  ``flux_err`` (N, n) in magnitudes; ``band`` (N, n) int; ``mask`` (N, n) bool, ``True`` on padding;
- ``best_period`` (N,) in days: the periodogram period (:func:`stellar.data.preprocess.lightcurve.features` on the
  band with most points), which the transformer uses to phase its tokens (named apart from the ``period`` label,
  so that a target can never stand in for it);
- ``features`` (N, F): per-band variability features, band medians and colours (NaN where undefined), named by
  :meth:`LightCurvePreprocessing.feature_names`, the inputs of the feature + XGBoost baseline.

Rows with more valid points than ``n_points`` keep ``n_points`` of them evenly spaced in time order, so the
whole baseline is kept (logged at INFO).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from stellar.data.preprocess._lc_rows import as_time, rows
from stellar.data.preprocess.lightcurve import features, sigma_clip
from stellar.errors import StellarValueError

log = logging.getLogger(__name__)

#: Per-band features passed to the baseline, in this order (see :func:`features`).
BAND_FEATURES: tuple[str, ...] = (
    "period",
    "amplitude",
    "skewness",
    "kurtosis",
    "mad_std",
    "eta",
    "stetson_k",
    "beyond_1std",
    "n_points",
)
_MAG_PER_LN = 2.5 / np.log(10.0)


@dataclasses.dataclass(frozen=True)
class LightCurvePreprocessing:
    """Light curves → model inputs (see the module docstring).

    Parameters
    ----------
    bands : sequence of str
        Band names; ``band`` arrays index into this tuple.
    n_points : int
        Fixed length of the packed sequences.
    values : {"mag", "flux"}
        Whether input values are magnitudes or fluxes (any unit; converted to relative magnitudes).
    clip_sigma : float or None
        Per-band robust sigma clipping of outliers (``None`` turns it off).
    min_period, max_period : float, d
        Period search range of the features (``max_period`` ``None``: each light curve's baseline).
    oversampling : float
        Frequency-grid samples per periodogram peak width.
    """

    bands: tuple[str, ...] = ("r",)
    n_points: int = 256
    values: Literal["mag", "flux"] = "mag"
    clip_sigma: float | None = 5.0
    min_period: float = 0.1
    max_period: float | None = None
    oversampling: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", tuple(str(b) for b in self.bands))
        if not self.bands or len(set(self.bands)) != len(self.bands):
            raise StellarValueError(f"bands must be non-empty and unique; got {self.bands}")
        if int(self.n_points) < 8:
            raise StellarValueError(f"n_points must be >= 8; got {self.n_points}")
        object.__setattr__(self, "n_points", int(self.n_points))
        if self.values not in ("mag", "flux"):
            raise StellarValueError(f"values must be 'mag' or 'flux'; got {self.values!r}")

    # ---- serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["bands"] = list(self.bands)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LightCurvePreprocessing:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise StellarValueError(f"unknown LightCurvePreprocessing keys {unknown}; allowed {sorted(fields)}")
        return cls(**d)

    def feature_names(self) -> list[str]:
        names = [f"{b}_{f}" for b in self.bands for f in BAND_FEATURES]
        names += [f"{b}_median" for b in self.bands]
        names += [f"{a}-{b}" for a, b in zip(self.bands[:-1], self.bands[1:], strict=True)]
        return names

    # ---- the transform -----------------------------------------------------------------------------------
    def __call__(
        self, time: Any, values: Any, err: Any = None, band: Any = None, mask: Any = None
    ) -> dict[str, np.ndarray]:
        """Model inputs of padded light curves.

        Parameters
        ----------
        time : array-like, Quantity or Time, (T,) or (N, T), d
        values : array-like, (T,) or (N, T), mag or flux (see ``values``)
        err : array-like, same shape and unit as ``values``, optional
            Without errors every point gets the row's robust scatter (stated in the log).
        band : array-like of int, optional
            Index into ``bands`` of every point; ``None`` puts every point in the first band.
        mask : array-like of bool, optional
            ``True`` on bad or padded points.

        Returns
        -------
        dict of numpy.ndarray
            ``time``, ``flux``, ``flux_err`` (float32, (N, n)), ``band`` (int64), ``mask`` (bool), ``best_period``
            (float32, (N,)) and ``features`` (float32, (N, F)).
        """
        x = rows(values, "values", float, allow_empty=False)
        t = np.broadcast_to(rows(as_time(time), "time", float, allow_empty=False), x.shape).astype(float)
        if mask is None:
            m = np.zeros(x.shape, bool)
        else:
            m = np.broadcast_to(rows(mask, "mask", bool, allow_empty=False), x.shape).copy()
        if band is None:
            b = np.zeros(x.shape, np.int64)
        else:
            b = np.broadcast_to(rows(band, "band", np.int64, allow_empty=False), x.shape)
        if ((b < 0) | (b >= len(self.bands)))[~m].any():
            raise StellarValueError(f"band indices must lie in 0..{len(self.bands) - 1} for bands {self.bands}")
        e = None if err is None else np.broadcast_to(rows(err, "err", float, allow_empty=False), x.shape).astype(float)
        bad = ~np.isfinite(x) | ~np.isfinite(t)
        if e is not None:
            bad |= ~np.isfinite(e) | (e <= 0)
        if self.values == "flux":
            bad |= ~(x > 0)
            with np.errstate(all="ignore"):
                e = None if e is None else _MAG_PER_LN * e / x
                x = -2.5 * np.log10(np.where(bad, 1.0, x))
        n_bad = int(np.count_nonzero(bad & ~m))
        if n_bad:
            log.info("light curves: masked %d points with non-finite or non-positive values/errors", n_bad)
        m |= bad
        if e is None:
            log.info("light curves: no errors given; each point gets its band's robust scatter")
        rel, e, m, medians = self._per_band(t, x, e, b, m)
        feats, period = self._features(t, rel, e, b, m, medians)
        packed = _pack(t, rel, e, b, m, self.n_points)
        return {**packed, "best_period": period.astype(np.float32), "features": feats.astype(np.float32)}

    def _per_band(
        self, t: np.ndarray, x: np.ndarray, e: np.ndarray | None, b: np.ndarray, m: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Clip and subtract the median per band; fill missing errors; returns rel. mags, errors, mask, medians."""
        rel = np.zeros_like(x)
        err = np.zeros_like(x) if e is None else e.copy()
        medians = np.full((x.shape[0], len(self.bands)), np.nan)
        for k in range(len(self.bands)):
            off = m | (b != k)
            if self.clip_sigma is not None:
                clipped = sigma_clip(x, off, sigma=self.clip_sigma)
                m = m | (clipped & ~off)
                off = clipped
            # a band without points in a row gives NaN medians there (features then say "missing"), not a warning
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                xs = np.where(off, np.nan, x)
                med = np.nanmedian(xs, axis=1) if xs.shape[1] else np.full(len(x), np.nan)
                scatter = 1.482602 * np.nanmedian(np.abs(xs - med[:, None]), axis=1)
            medians[:, k] = med
            rel = np.where(off, rel, x - med[:, None])
            if e is None:
                err = np.where(off, err, np.maximum(np.nan_to_num(scatter, nan=1.0), 1e-4)[:, None])
        err = np.where(m, 0.0, err)
        return np.where(m, 0.0, rel), err, m, medians

    def _features(
        self, t: np.ndarray, rel: np.ndarray, e: np.ndarray, b: np.ndarray, m: np.ndarray, medians: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cols: list[np.ndarray] = []
        safe_e = np.where(m, 1.0, e)
        for k in range(len(self.bands)):
            f = features(
                t,
                rel,
                safe_e,
                m | (b != k),
                min_period=self.min_period,
                max_period=self.max_period,
                oversampling=self.oversampling,
            )
            cols += [np.asarray(f[name], dtype=float).reshape(-1) for name in BAND_FEATURES]
        feats = np.column_stack(cols + [medians[:, k] for k in range(len(self.bands))])
        if len(self.bands) > 1:
            feats = np.column_stack([feats, medians[:, :-1] - medians[:, 1:]])
        per_band_n = np.stack([((b == k) & ~m).sum(axis=1) for k in range(len(self.bands))], axis=1)
        ref = per_band_n.argmax(axis=1)
        periods = feats[:, [k * len(BAND_FEATURES) for k in range(len(self.bands))]]
        period = periods[np.arange(len(ref)), ref]
        return feats, period


def _pack(t: np.ndarray, x: np.ndarray, e: np.ndarray, b: np.ndarray, m: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Valid points in time order, evenly thinned to ``n`` where there are more, padded after."""
    rows = t.shape[0]
    out_t = np.zeros((rows, n), np.float32)
    out_x, out_e = np.zeros_like(out_t), np.zeros_like(out_t)
    out_b = np.zeros((rows, n), np.int64)
    out_m = np.ones((rows, n), bool)
    thinned = 0
    for i in range(rows):
        idx = np.flatnonzero(~m[i])
        idx = idx[np.argsort(t[i, idx], kind="stable")]
        if len(idx) > n:
            idx = idx[np.round(np.linspace(0, len(idx) - 1, n)).astype(int)]
            thinned += 1
        k = len(idx)
        if k == 0:
            continue
        out_t[i, :k] = t[i, idx] - t[i, idx[0]]
        out_x[i, :k], out_e[i, :k], out_b[i, :k] = x[i, idx], e[i, idx], b[i, idx]
        out_m[i, :k] = False
    if thinned:
        log.info("light curves: %d of %d rows thinned evenly in time to %d points", thinned, rows, n)
    return {"time": out_t, "flux": out_x, "flux_err": out_e, "band": out_b, "mask": out_m}


def band_indices(names: Sequence[str], bands: Sequence[str]) -> np.ndarray:
    """Index into ``bands`` of every band name in ``names`` (a clear error names unknown bands)."""
    lookup = {str(bnd): i for i, bnd in enumerate(bands)}
    unknown = sorted({str(nm) for nm in names} - set(lookup))
    if unknown:
        raise StellarValueError(f"unknown band(s) {unknown}; the bands are {list(bands)}")
    return np.asarray([lookup[str(nm)] for nm in names], dtype=np.int64)
