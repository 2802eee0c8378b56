"""Per-object physical summaries of model inputs: what the monitor compares, the server's request log stores and a
person can read.

:func:`summarize` takes the model-input arrays of one modality (the very dict the datamodule serves and the server's
preprocessing returns) and gives one row per object of named float columns, chosen so that a drift in them means
something to an astronomer:

- spectra (``flux``, ``ivar``, ``mask`` on the log-wavelength grid of the preprocessing): median S/N per pixel, the
  unmasked fraction, the bluest and reddest unmasked wavelength (Å), the spread of the normalised flux (line
  strength) and, when the preprocessing keeps it (``continuum``), the continuum slope;
- light curves (``time``, ``flux``, ``flux_err``, ``band``, ``mask``, ``best_period``, ``features``): number of
  epochs, baseline and median cadence (days), number of bands, amplitude (mag), median error, the periodogram
  period, and the variability features by name;
- photometry (``features`` named by the SED preprocessing, ``mag``): one ``band_present_<band>`` flag per band, the
  number of bands, and every feature (magnitudes, colours, absolute magnitude, parallax…) by name;
- several modalities (``present`` and one dict per modality): ``present_<modality>`` flags and each present
  modality's summaries prefixed ``<modality>.`` (NaN where the modality is absent).

:data:`CATEGORICAL` names the columns that are categories (flags and counts), tested with χ² rather than KS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from stellar.errors import StellarValueError

__all__ = ["CATEGORICAL", "is_categorical", "summarize"]

#: column-name patterns of categorical summaries (presence flags and small counts)
CATEGORICAL = (r"(^|\.)present_", r"(^|\.)band_present_", r"(^|\.)n_bands$")


def is_categorical(name: str) -> bool:
    """Whether the summary column ``name`` is a category (χ²-tested) rather than a continuous value."""
    return any(re.search(p, name) for p in CATEGORICAL)


def summarize(arrays: Mapping[str, Any], prep: Any = None) -> pd.DataFrame:
    """Per-object summaries of model inputs (see the module docstring); the modality is read from the keys.

    Parameters
    ----------
    arrays : mapping of str to array
        Model inputs with a first axis of N objects (batch fields of a datamodule, or a server's preprocessed rows);
        other keys (labels, targets, ``index``) are ignored.
    prep : object, optional
        The modality's preprocessing (its ``grid`` gives wavelengths, its ``feature_names()`` the feature names);
        a mapping of modality → preprocessing for several modalities.

    Returns
    -------
    pandas.DataFrame
        N rows of float columns, NaN where a value is undefined.

    Examples
    --------
    >>> import numpy as np
    >>> t = summarize({"features": np.array([[10.0, np.nan]]), "mag": np.array([[10.0, np.nan]])})
    >>> t["n_bands"].tolist(), t["band_present_1"].tolist()
    ([1.0], [0.0])
    """
    if "present" in arrays and isinstance(arrays["present"], Mapping):
        return _multimodal(arrays, prep)
    if "time" in arrays:
        return _lightcurve(arrays, prep)
    if "flux" in arrays and ("ivar" in arrays or "mask" in arrays):
        return _spectra(arrays, prep)
    if "features" in arrays or "mag" in arrays:
        return _sed(arrays, prep)
    raise StellarValueError(
        f"cannot summarise inputs with fields {sorted(arrays)}: expected spectra (flux, ivar, mask), light curves "
        "(time, flux, …), photometry (features, mag) or several modalities (present, …)"
    )


def _n(arrays: Mapping[str, Any], key: str) -> int:
    return len(np.asarray(arrays[key]))


def _nanmedian(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row medians over ``valid`` entries (NaN for rows with none), without warnings.

    One sort of the whole block (the invalid entries last, as NaN), then the middle one or two of each row: the
    same values as ``np.nanmedian``, which, for rows of 600 values or more, loops over the rows in Python.
    """
    valid = valid & ~np.isnan(a)  # a NaN marked valid (0 · inf) is left out, as np.nanmedian leaves it out
    x = np.sort(np.where(valid, a, np.nan), axis=1)
    n = valid.sum(axis=1)
    ok = n > 0
    lo = np.take_along_axis(x, np.maximum(n - 1, 0)[:, None] // 2, axis=1)[:, 0]
    hi = np.take_along_axis(x, (n // 2)[:, None], axis=1)[:, 0] if x.shape[1] else lo
    return np.where(ok, (lo + hi) / 2, np.nan)


def _spectra(arrays: Mapping[str, Any], prep: Any) -> pd.DataFrame:
    flux = np.asarray(arrays["flux"], dtype=np.float64)
    n, k = flux.shape
    bad = np.asarray(arrays["mask"], dtype=bool) if "mask" in arrays else np.zeros((n, k), bool)
    good = ~bad & np.isfinite(flux)
    out: dict[str, np.ndarray] = {"valid_fraction": good.mean(axis=1)}
    if "ivar" in arrays:
        ivar = np.asarray(arrays["ivar"], dtype=np.float64)
        has_noise = good & (ivar > 0)
        out["snr_median"] = _nanmedian(np.abs(flux) * np.sqrt(np.clip(ivar, 0.0, None)), has_noise)
    grid = getattr(prep, "grid", None)
    if grid is not None and len(grid) == k:
        wave = 10.0 ** np.asarray(grid, dtype=np.float64)
        first = np.where(good.any(axis=1), good.argmax(axis=1), -1)
        last = np.where(good.any(axis=1), k - 1 - good[:, ::-1].argmax(axis=1), -1)
        out["wave_blue"] = np.where(first >= 0, wave[np.clip(first, 0, None)], np.nan)
        out["wave_red"] = np.where(last >= 0, wave[np.clip(last, 0, None)], np.nan)
    centred = np.where(good, flux - _nanmedian(flux, good)[:, None], np.nan)
    out["flux_mad"] = _nanmedian(np.abs(centred), good)
    if "continuum" in arrays:
        cont = np.asarray(arrays["continuum"], dtype=np.float64)
        x = np.linspace(-1.0, 1.0, k) if grid is None or len(grid) != k else np.asarray(grid) - np.mean(grid)
        out["continuum_slope"] = _row_slopes(x, cont, good & np.isfinite(cont))
    return pd.DataFrame(out)


def _row_slopes(x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``y`` on ``x`` per row over ``valid`` points (NaN with fewer than 2)."""
    w = valid.astype(np.float64)
    nw = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = (w * x).sum(axis=1) / nw
        ym = (w * np.where(valid, y, 0.0)).sum(axis=1) / nw
        dx = x[None, :] - xm[:, None]
        cov = (w * dx * (np.where(valid, y, 0.0) - ym[:, None])).sum(axis=1)
        var = (w * dx**2).sum(axis=1)
        return np.where((nw >= 2) & (var > 0), cov / var, np.nan)


def _feature_frame(features: np.ndarray, prep: Any, prefix: str = "") -> dict[str, np.ndarray]:
    names_of = getattr(prep, "feature_names", None)
    names = list(names_of()) if callable(names_of) else []
    if len(names) != features.shape[1]:
        names = [f"feature_{j}" for j in range(features.shape[1])]
    return {f"{prefix}{name}": features[:, j].astype(np.float64) for j, name in enumerate(names)}


def _lightcurve(arrays: Mapping[str, Any], prep: Any) -> pd.DataFrame:
    time = np.asarray(arrays["time"], dtype=np.float64)
    n = len(time)
    pad = np.asarray(arrays["mask"], dtype=bool) if "mask" in arrays else np.zeros(time.shape, bool)
    good = ~pad & np.isfinite(time)
    t = np.where(good, time, np.nan)
    out: dict[str, np.ndarray] = {"n_epochs": good.sum(axis=1).astype(np.float64)}
    some = good.any(axis=1)
    first, last = np.full(n, np.nan), np.full(n, np.nan)
    if some.any():
        first[some], last[some] = np.nanmin(t[some], axis=1), np.nanmax(t[some], axis=1)
    out["baseline_days"] = last - first
    ts = np.sort(np.where(good, time, np.inf), axis=1)
    with np.errstate(invalid="ignore"):  # inf - inf between padding slots: NaN, left out below
        dt = np.diff(ts, axis=1)
    out["cadence_days"] = _nanmedian(dt, np.isfinite(dt) & (dt > 0))
    if "band" in arrays:
        band = np.asarray(arrays["band"])
        ids = np.unique(band[good]) if good.any() else np.array([])
        out["n_bands"] = np.array([sum(((band[i] == b) & good[i]).any() for b in ids) for i in range(n)], float)
    if "flux" in arrays:
        flux = np.where(good, np.asarray(arrays["flux"], dtype=np.float64), np.nan)
        hi, lo = np.full(n, np.nan), np.full(n, np.nan)
        if some.any():
            hi[some], lo[some] = np.nanpercentile(flux[some], [95, 5], axis=1)
        out["amplitude_mag"] = hi - lo
    if "flux_err" in arrays:
        err = np.asarray(arrays["flux_err"], dtype=np.float64)
        out["err_median_mag"] = _nanmedian(err, good & np.isfinite(err))
    if "best_period" in arrays:
        period = np.asarray(arrays["best_period"], dtype=np.float64).reshape(n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["log10_best_period"] = np.where(period > 0, np.log10(np.abs(period)), np.nan)
    if "features" in arrays:
        out.update(_feature_frame(np.asarray(arrays["features"], dtype=np.float64), prep, "feature."))
    return pd.DataFrame(out)


def _sed(arrays: Mapping[str, Any], prep: Any) -> pd.DataFrame:
    out: dict[str, np.ndarray] = {}
    bands = list(getattr(prep, "bands", None) or [])
    if "mag" in arrays:
        mag = np.asarray(arrays["mag"], dtype=np.float64)
        if len(bands) != mag.shape[1]:
            bands = [str(j) for j in range(mag.shape[1])]
        present = np.isfinite(mag)
        out.update({f"band_present_{b}": present[:, j].astype(np.float64) for j, b in enumerate(bands)})
        out["n_bands"] = present.sum(axis=1).astype(np.float64)
    if "features" in arrays:
        out.update(_feature_frame(np.asarray(arrays["features"], dtype=np.float64), prep))
    return pd.DataFrame(out)


def _multimodal(arrays: Mapping[str, Any], prep: Any) -> pd.DataFrame:
    present = {m: np.asarray(v, dtype=bool) for m, v in arrays["present"].items()}
    preps = getattr(prep, "modalities", prep)  # a MultiModalPreprocessing, or a plain mapping
    preps = preps if isinstance(preps, Mapping) else {}
    frames = [pd.DataFrame({f"present_{m}": p.astype(np.float64) for m, p in present.items()})]
    for m, p in present.items():
        sub = arrays.get(m)
        if not isinstance(sub, Mapping):
            continue
        table = summarize(sub, preps.get(m))
        table = table.where(pd.Series(p, index=table.index), np.nan, axis=0)
        frames.append(table.add_prefix(f"{m}."))
    return pd.concat(frames, axis=1)
