"""SED photometry assembly: pure, batch-first array functions shared by datamodules, simulators and the server.

Every function takes arrays whose last axis is the band axis (one object per row, bands in :data:`BANDS` order
unless a ``bands`` argument says otherwise), returns new arrays and never mutates its inputs. Magnitudes are in
each band's native system (:data:`BAND_INFO`); ``mask`` is ``True`` on unusable entries, and masked entries
hold NaN in ``mag`` and ``mag_err`` so that they can never be mistaken for numbers.

- :func:`merge_bands` assembles per-survey tables into the fixed band order, masking sentinels;
- :func:`mag_to_flux` / :func:`flux_to_mag` convert to flux density (Jy by default) with first-order errors;
- :func:`extinction_coefficients` / :func:`deredden` correct for Galactic extinction with ``dust_extinction``;
- :func:`colours` forms colours with errors added in quadrature.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from astropy.modeling.parameters import InputParameterError
from dust_extinction.parameter_averages import F99, G23

from stellar.errors import StellarValueError
from stellar.utils.units import to_value

log = logging.getLogger(__name__)

#: Flux density of an AB magnitude of zero, Jy (Oke & Gunn 1983).
AB_ZERO_POINT_JY = 3631.0
#: d(ln F)/dm: σ_F = 0.4 ln(10) F σ_m to first order.
_K = 0.4 * np.log(10.0)


@dataclass(frozen=True)
class Band:
    """One photometric band.

    Attributes
    ----------
    wave_eff : float, Å
        Effective (SDSS, Gaia: pivot; 2MASS, WISE: isophotal) wavelength, used for extinction and for
        converting between F_ν and F_λ.
    system : str
        ``"AB"`` or ``"Vega"``: the system the survey reports magnitudes in.
    ab_offset : float, mag
        ``m_AB - m_native``; added to a native magnitude before converting to flux with the AB zero point.
    """

    wave_eff: float
    system: str
    ab_offset: float


# Sources.
# SDSS: λ_eff from the SDSS DR7 imaging documentation (Fukugita+1996 system, Doi+2010 curves); magnitudes are
#   nominally AB, but the SDSS docs give u_AB = u_SDSS - 0.04 and z_AB = z_SDSS + 0.02 (estimated, ±0.01-0.02
#   mag); we apply those two offsets, g, r, i are taken as AB.
# Gaia DR3: pivot wavelengths of the DR3 passbands (SVO Filter Profile Service, GAIA/GAIA3.*); AB offsets are
#   ZP_AB - ZP_Vega from Riello+2021 (A&A 649, A3): G 25.8010-25.6874, BP 25.3540-25.3385, RP 25.1040-24.7479.
# 2MASS: isophotal wavelengths from Cohen+2003 (AJ 126, 1090); AB offsets from Blanton & Roweis 2007 (AJ 133, 734).
# WISE: isophotal wavelengths and AB offsets (2.699, 3.339) from Jarrett+2011 (ApJ 735, 112) / the WISE
#   All-Sky explanatory supplement §IV.4.h.
BAND_INFO: dict[str, Band] = {
    "sdss_u": Band(3551.0, "AB", -0.04),
    "sdss_g": Band(4686.0, "AB", 0.0),
    "sdss_r": Band(6165.0, "AB", 0.0),
    "sdss_i": Band(7481.0, "AB", 0.0),
    "sdss_z": Band(8931.0, "AB", 0.02),
    "gaia_g": Band(6217.6, "Vega", 0.1136),
    "gaia_bp": Band(5109.7, "Vega", 0.0155),
    "gaia_rp": Band(7769.0, "Vega", 0.3561),
    "2mass_j": Band(12350.0, "Vega", 0.91),
    "2mass_h": Band(16620.0, "Vega", 1.39),
    "2mass_ks": Band(21590.0, "Vega", 1.85),
    "wise_w1": Band(33526.0, "Vega", 2.699),
    "wise_w2": Band(46028.0, "Vega", 3.339),
    # Johnson U, B and V (the Bright Star Catalogue; B and V also Hipparcos/Tycho-era tables) and Cousins I (V - I of
    # the Hipparcos new reduction): effective wavelengths and AB offsets from Blanton & Roweis 2007, Table 1. Not in
    # BANDS: catalogues that have them use their own list.
    "johnson_u": Band(3571.0, "Vega", 0.79),
    "johnson_b": Band(4344.0, "Vega", -0.09),
    "johnson_v": Band(5456.0, "Vega", 0.02),
    "cousins_i": Band(7994.0, "Vega", 0.45),
}

#: The fixed band order of every merged SED array (:func:`merge_bands`).
BANDS: tuple[str, ...] = (
    "sdss_u",
    "sdss_g",
    "sdss_r",
    "sdss_i",
    "sdss_z",
    "gaia_g",
    "gaia_bp",
    "gaia_rp",
    "2mass_j",
    "2mass_h",
    "2mass_ks",
    "wise_w1",
    "wise_w2",
)

#: Values surveys write for "no measurement" (SDSS -9999, SExtractor-style ±99.99). Compared to 1e-6 mag.
DEFAULT_SENTINELS: tuple[float, ...] = (-9999.0, -99.99, 99.99)

#: Extinction laws by name; a ``dust_extinction`` R_V-parametrised model class is accepted as well.
EXTINCTION_LAWS: dict[str, Any] = {"G23": G23, "F99": F99}


def _band_list(bands: str | Sequence[str], name: str = "bands") -> tuple[str, ...]:
    names = (bands,) if isinstance(bands, str) else tuple(bands)
    unknown = [b for b in names if b not in BAND_INFO]
    if unknown:
        raise StellarValueError(f"{name} has unknown band(s) {unknown}; allowed: {list(BANDS)}")
    return names


def _band_column(bands: str | Sequence[str], shape: tuple[int, ...], name: str) -> tuple[tuple[str, ...], bool]:
    """Band names for the last axis of an array of ``shape``; ``True`` when one band applies to all entries."""
    names = _band_list(bands, "band")
    if isinstance(bands, str):
        return names, True
    if not shape or shape[-1] != len(names):
        raise StellarValueError(f"{name} must have a last axis of length {len(names)} (one per band); got {shape}")
    return names, False


def _band_values(names: tuple[str, ...], attr: str, single: bool = False) -> np.ndarray:
    """Per-band attribute as a (B,) array, or a 0-d array when one band applies to every entry."""
    values = np.array([getattr(BAND_INFO[b], attr) for b in names], dtype=np.float64)
    return values[0] if single else values


def _mag(x: Any, name: str) -> np.ndarray:
    """Float array of magnitudes; a Quantity must carry ``mag``."""
    return to_value(x, u.mag if isinstance(x, u.Quantity) else u.dimensionless_unscaled, name)


def _column(table: Any, col: str, table_name: str) -> np.ndarray:
    try:
        values = table[col]
    except (KeyError, IndexError, TypeError) as err:
        raise StellarValueError(f"tables[{table_name!r}] has no column {col!r}") from err
    arr = _mag(values, col)
    if arr.ndim != 1:
        raise StellarValueError(f"column {col!r} of tables[{table_name!r}] must be 1-D; got shape {arr.shape}")
    return arr


def _is_sentinel(x: np.ndarray, sentinels: Sequence[float]) -> np.ndarray:
    hit = np.zeros(x.shape, dtype=bool)
    for s in sentinels:
        hit |= np.isclose(x, s, rtol=0.0, atol=1e-6)
    return hit


def merge_bands(
    tables: Mapping[str, Any],
    column_map: Mapping[str, tuple[str, str] | tuple[str, str, str | None]],
    *,
    sentinels: Sequence[float] = DEFAULT_SENTINELS,
    band_sentinels: Mapping[str, Sequence[float]] | None = None,
    bands: Sequence[str] = BANDS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assemble per-survey magnitude columns into the fixed :data:`BANDS` order (or the order of ``bands``).

    The tables must already be cross-matched: row ``k`` of every table is the same object.

    Parameters
    ----------
    tables : mapping of str to DataFrame or dict of arrays
        One table per survey, each with the same number of rows N.
    column_map : mapping of band name to (table, mag column) or (table, mag column, error column or None)
        Where each band's magnitude (mag, native system) and 1σ error (mag) live. Bands not named are
        masked throughout; without an error column ``mag_err`` is NaN but the magnitude is kept.
    sentinels : sequence of float, mag
        Values meaning "no measurement" in any column (default ``-9999, -99.99, 99.99``).
    band_sentinels : mapping of band name to sequence of float, optional
        Further sentinels for single bands, e.g. ``{"sdss_r": [25.0]}`` where a source documents 25.0 as missing.
    bands : sequence of str
        Band order of the output columns (default :data:`BANDS`); every band of ``column_map`` must be in it.

    Returns
    -------
    mag : numpy.ndarray (N, B), mag
        Magnitudes; NaN where masked.
    mag_err : numpy.ndarray (N, B), mag
        1σ errors; NaN where masked or not given.
    mask : numpy.ndarray of bool (N, B)
        ``True`` where the band is missing, a sentinel, non-finite, or has a non-finite or non-positive error.

    Examples
    --------
    >>> mag, err, mask = merge_bands({"sdss": {"g": [20.1, -9999.0], "g_err": [0.02, 0.5]}},
    ...                              {"sdss_g": ("sdss", "g", "g_err")})
    >>> mask[:, 1].tolist(), int(mask.sum())
    ([False, True], 25)
    """
    if not tables:
        raise StellarValueError("tables must hold at least one table")
    order = _band_list(bands)
    outside = [b for b in _band_list(list(column_map), "column_map") if b not in order]
    if outside:
        raise StellarValueError(f"column_map names band(s) {outside} that are not in bands {list(order)}")
    band_sentinels = dict(band_sentinels or {})
    _band_list(list(band_sentinels), "band_sentinels")
    lengths = {}
    for name, table in tables.items():
        first = next(iter(table.keys()), None) if hasattr(table, "keys") else None
        if first is None:
            raise StellarValueError(f"tables[{name!r}] must be a DataFrame or dict of arrays with columns")
        lengths[name] = len(np.asarray(table[first]))
    if len(set(lengths.values())) != 1:
        raise StellarValueError(f"tables must all have the same number of rows (cross-matched); got {lengths}")
    n = next(iter(lengths.values()))

    mag = np.full((n, len(order)), np.nan)
    err = np.full((n, len(order)), np.nan)
    mask = np.ones((n, len(order)), dtype=bool)
    counts = {"missing band": 0, "sentinel": 0, "non-finite": 0, "bad error": 0}
    for j, band in enumerate(order):
        spec = column_map.get(band)
        if spec is None:
            counts["missing band"] += n
            continue
        if len(spec) not in (2, 3):
            raise StellarValueError(f"column_map[{band!r}] must be (table, mag column[, error column]); got {spec}")
        table_name, mag_col = spec[0], spec[1]
        err_col = spec[2] if len(spec) == 3 else None
        if table_name not in tables:
            raise StellarValueError(f"column_map[{band!r}] names table {table_name!r}; allowed: {list(tables)}")
        m = _column(tables[table_name], mag_col, table_name)
        bad_sent = _is_sentinel(m, (*sentinels, *band_sentinels.get(band, ())))
        bad_fin = ~np.isfinite(m) & ~bad_sent
        bad = bad_sent | bad_fin
        e = np.full(n, np.nan)
        if err_col is not None:
            e = _column(tables[table_name], err_col, table_name)
            e_bad = (_is_sentinel(e, sentinels) | ~np.isfinite(e) | (e <= 0)) & ~bad
            counts["bad error"] += int(e_bad.sum())
            bad |= e_bad
        counts["sentinel"] += int(bad_sent.sum())
        counts["non-finite"] += int(bad_fin.sum())
        mask[:, j] = bad
        mag[:, j] = np.where(bad, np.nan, m)
        err[:, j] = np.where(bad, np.nan, e)
    log.info(
        "merge_bands: masked %d of %d entries (%s)",
        int(mask.sum()),
        mask.size,
        ", ".join(f"{k}: {v}" for k, v in counts.items()),
    )
    return mag, err, mask


def mag_to_flux(
    mag: Any, mag_err: Any = None, band: str | Sequence[str] = BANDS, *, unit: Any = u.Jy
) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert magnitudes to flux density, ``F_ν = 3631 Jy · 10^(-0.4 (m + Δ_AB))``.

    Parameters
    ----------
    mag : array-like or Quantity, mag
        Native-system magnitudes; the last axis follows ``band`` when it is a sequence.
    mag_err : array-like or Quantity, mag, optional
        1σ errors, same shape as ``mag``.
    band : str or sequence of str
        One band for every entry, or one per entry of the last axis (default :data:`BANDS`).
    unit : astropy unit or str
        Flux-density unit of the result: Jy (default) or any F_ν or F_λ unit (e.g. ``erg / (s cm2 AA)``,
        converted at each band's effective wavelength).

    Returns
    -------
    flux : numpy.ndarray, ``unit``
        Flux density; NaN where ``mag`` is NaN.
    flux_err : numpy.ndarray or None, ``unit``
        First-order 1σ error ``0.4 ln(10) F σ_m``; ``None`` when ``mag_err`` is not given.

    Examples
    --------
    >>> f, _ = mag_to_flux(0.0, band="sdss_g")
    >>> float(f)
    3631.0
    """
    m = _mag(mag, "mag")
    names, single = _band_column(band, m.shape, "mag")
    flux_jy = AB_ZERO_POINT_JY * 10.0 ** (-0.4 * (m + _band_values(names, "ab_offset", single)))
    scale = _jy_to(unit, names, single)
    flux = flux_jy * scale
    if mag_err is None:
        return flux, None
    e = _mag(mag_err, "mag_err")
    if e.shape != m.shape:
        raise StellarValueError(f"mag_err must have the shape of mag {m.shape}; got {e.shape}")
    return flux, _K * np.abs(flux) * e


def _jy_to(unit: Any, names: tuple[str, ...], single: bool) -> np.ndarray:
    """Factor from Jy to ``unit`` per band (F_λ units need each band's effective wavelength)."""
    try:
        target = u.Unit(unit)
        wave = _band_values(names, "wave_eff", single) * u.AA
        return np.asarray((1.0 * u.Jy).to_value(target, equivalencies=u.spectral_density(wave)), dtype=float)
    except (ValueError, TypeError, u.UnitsError) as err:
        raise StellarValueError(f"unit must be a flux-density unit (F_ν or F_λ); got {unit!r}") from err


def flux_to_mag(
    flux: Any, flux_err: Any = None, band: str | Sequence[str] = BANDS, *, unit: Any = u.Jy
) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert flux density to native-system magnitudes, the inverse of :func:`mag_to_flux`.

    Parameters
    ----------
    flux : array-like or Quantity, ``unit`` (Jy by default)
        Flux density; a Quantity may carry any F_ν or F_λ unit.
    flux_err : array-like or Quantity, optional
        1σ errors in the same unit, same shape.
    band : str or sequence of str
        One band for every entry, or one per entry of the last axis (default :data:`BANDS`).
    unit : astropy unit or str
        Unit of bare-number ``flux`` and ``flux_err``.

    Returns
    -------
    mag : numpy.ndarray, mag
        Magnitudes; NaN where the flux is non-positive or non-finite (counted and logged).
    mag_err : numpy.ndarray or None, mag
        First-order 1σ error ``σ_F / (0.4 ln(10) F)``; ``None`` when ``flux_err`` is not given.

    Examples
    --------
    >>> m, e = flux_to_mag(363.1, 3.631, band="sdss_r")
    >>> round(float(m), 6), round(float(e), 5)
    (2.5, 0.01086)
    """
    f = _flux_jy(flux, unit, band, "flux")
    bad = ~np.isfinite(f) | (f <= 0)
    if bad.any():
        log.info("flux_to_mag: %d of %d fluxes non-positive or non-finite, set to NaN", int(bad.sum()), f.size)
    names, single = _band_column(band, f.shape, "flux")
    safe = np.where(bad, np.nan, f)
    mag = -2.5 * np.log10(safe / AB_ZERO_POINT_JY) - _band_values(names, "ab_offset", single)
    if flux_err is None:
        return mag, None
    e = _flux_jy(flux_err, unit, band, "flux_err")
    if e.shape != f.shape:
        raise StellarValueError(f"flux_err must have the shape of flux {f.shape}; got {e.shape}")
    return mag, e / (_K * safe)


def _flux_jy(x: Any, unit: Any, band: str | Sequence[str], name: str) -> np.ndarray:
    shape = np.shape(x.value if isinstance(x, u.Quantity) else x)
    names, single = _band_column(band, shape, name)
    try:
        q = x if isinstance(x, u.Quantity) else to_value(x, u.dimensionless_unscaled, name) * u.Unit(unit)
    except (ValueError, TypeError) as err:
        raise StellarValueError(f"unit must be a flux-density unit (F_ν or F_λ); got {unit!r}") from err
    wave = _band_values(names, "wave_eff", single) * u.AA
    return to_value(q, u.Jy, name, equivalencies=u.spectral_density(wave))


def _law(law: Any, r_v: float) -> Any:
    model_cls = EXTINCTION_LAWS.get(law) if isinstance(law, str) else law
    if model_cls is None:
        raise StellarValueError(f"law must be one of {list(EXTINCTION_LAWS)} or a dust_extinction model; got {law!r}")
    try:
        return model_cls(Rv=r_v)
    except InputParameterError as err:
        raise StellarValueError(f"r_v={r_v} is outside the range of law {law!r}: {err}") from err
    except TypeError as err:
        raise StellarValueError(f"law must be an R_V-parametrised dust_extinction model; got {law!r}") from err


def extinction_coefficients(bands: Sequence[str] = BANDS, *, r_v: float = 3.1, law: Any = "G23") -> np.ndarray:
    """Extinction per unit reddening, ``A_band / E(B-V) = R_V · (A_λ/A_V)(λ_eff)``.

    Parameters
    ----------
    bands : sequence of str
        Band names (default :data:`BANDS`).
    r_v : float
        Total-to-selective extinction ratio R_V = A_V / E(B-V).
    law : {"G23", "F99"} or dust_extinction model class
        Gordon+2023 (0.0912-32 µm) or Fitzpatrick 1999 (0.1-3.3 µm) average extinction curve.

    Returns
    -------
    numpy.ndarray (B,), mag per mag of E(B-V)
        NaN for bands outside the law's wavelength range (e.g. WISE with F99).

    Notes
    -----
    The curve is evaluated at each band's effective wavelength, not integrated over the passband against a
    stellar spectrum, so values differ by up to ~10% from passband-integrated tables (e.g. Schlafly &
    Finkbeiner 2011) for the broad blue bands; that is well inside the scatter of E(B-V) maps.
    """
    names = _band_list(bands)
    model = _law(law, float(r_v))
    x = 1e4 / _band_values(names, "wave_eff")  # inverse microns
    lo, hi = (float(v) for v in model.x_range)
    ok = (x >= lo) & (x <= hi)
    out = np.full(len(names), np.nan)
    if ok.any():
        out[ok] = r_v * np.asarray(model(x[ok] / u.micron), dtype=float)
    return out


def deredden(
    mag: Any,
    ebv: Any,
    *,
    mask: Any = None,
    mag_err: Any = None,
    ebv_err: Any = None,
    bands: Sequence[str] = BANDS,
    r_v: float = 3.1,
    law: Any = "G23",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Correct magnitudes for extinction, ``m_0 = m - R_V E(B-V) (A_λ/A_V)(λ_eff)``.

    Parameters
    ----------
    mag : array-like or Quantity (N, B), mag
        Magnitudes in ``bands`` order.
    ebv : float or array-like (N,), mag
        Reddening E(B-V) per object; must be finite and ≥ 0.
    mask : array-like of bool (N, B), optional
        ``True`` on masked entries, which are returned unchanged. Default: where ``mag`` is NaN.
    mag_err : array-like (N, B), mag, optional
        1σ magnitude errors; when given, ``ebv_err`` is added in quadrature.
    ebv_err : float or array-like (N,), mag, optional
        1σ error on E(B-V); ignored without ``mag_err``.
    bands : sequence of str
        Band of each column (default :data:`BANDS`).
    r_v : float
        R_V = A_V / E(B-V).
    law : {"G23", "F99"} or dust_extinction model class
        Extinction curve, see :func:`extinction_coefficients`.

    Returns
    -------
    mag : numpy.ndarray (N, B), mag
        Dereddened magnitudes; NaN where the output mask is set.
    mag_err : numpy.ndarray (N, B) or None, mag
        ``sqrt(σ_m² + (A_band/E(B-V) · σ_E)²)``; ``None`` when ``mag_err`` is not given.
    mask : numpy.ndarray of bool (N, B)
        Input mask, plus bands outside the law's wavelength range (counted and logged).
    """
    m = _mag(mag, "mag")
    names = _band_list(bands)
    if m.ndim != 2 or m.shape[1] != len(names):
        raise StellarValueError(f"mag must be (N, {len(names)}), one column per band; got shape {m.shape}")
    n = m.shape[0]
    e_bv = _per_object(ebv, n, "ebv")
    if not np.all(np.isfinite(e_bv)) or np.any(e_bv < 0):
        raise StellarValueError("ebv must be finite and >= 0 mag")
    msk = np.isnan(m) if mask is None else np.asarray(mask, dtype=bool)
    if msk.shape != m.shape:
        raise StellarValueError(f"mask must have the shape of mag {m.shape}; got {msk.shape}")
    coeff = extinction_coefficients(names, r_v=r_v, law=law)
    out_of_range = np.broadcast_to(~np.isfinite(coeff), m.shape) & ~msk
    if out_of_range.any():
        log.info(
            "deredden: masked %d entries in bands %s outside the range of law %r",
            int(out_of_range.sum()),
            [b for b, c in zip(names, coeff, strict=True) if not np.isfinite(c)],
            law,
        )
    out_mask = msk | out_of_range
    a = e_bv[:, None] * np.nan_to_num(coeff, nan=0.0)[None, :]
    out = np.where(out_mask, np.nan, np.where(msk, m, m - a))
    if mag_err is None:
        return out, None, out_mask
    err = _mag(mag_err, "mag_err")
    if err.shape != m.shape:
        raise StellarValueError(f"mag_err must have the shape of mag {m.shape}; got {err.shape}")
    if ebv_err is not None:
        s_e = _per_object(ebv_err, n, "ebv_err")
        if not np.all(np.isfinite(s_e)) or np.any(s_e < 0):
            raise StellarValueError("ebv_err must be finite and >= 0 mag")
        err = np.hypot(err, s_e[:, None] * np.nan_to_num(coeff, nan=0.0)[None, :])
    return out, np.where(out_mask, np.nan, err), out_mask


def _per_object(x: Any, n: int, name: str) -> np.ndarray:
    v = _mag(x, name)
    if v.ndim == 0:
        return np.full(n, float(v))
    if v.shape != (n,):
        raise StellarValueError(f"{name} must be a scalar or have shape ({n},); got {v.shape}")
    return v


def colours(
    mag: Any,
    mag_err: Any,
    mask: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    bands: Sequence[str] = BANDS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colours ``m_a - m_b`` with errors added in quadrature.

    Parameters
    ----------
    mag, mag_err : array-like (N, B), mag
        Magnitudes and 1σ errors in ``bands`` order; ``mag_err`` may be ``None`` (errors are then NaN).
    mask : array-like of bool (N, B)
        ``True`` on masked entries.
    pairs : sequence of (str, str)
        Band pairs (a, b), e.g. ``[("sdss_g", "sdss_r")]``.
    bands : sequence of str
        Band of each column (default :data:`BANDS`).

    Returns
    -------
    colour : numpy.ndarray (N, P), mag
        ``m_a - m_b``; NaN where masked.
    colour_err : numpy.ndarray (N, P), mag
        ``sqrt(σ_a² + σ_b²)``; NaN where masked.
    colour_mask : numpy.ndarray of bool (N, P)
        ``True`` where either band is masked.
    """
    names = _band_list(bands)
    m = _mag(mag, "mag")
    if m.ndim != 2 or m.shape[1] != len(names):
        raise StellarValueError(f"mag must be (N, {len(names)}), one column per band; got shape {m.shape}")
    e = np.full(m.shape, np.nan) if mag_err is None else _mag(mag_err, "mag_err")
    msk = np.asarray(mask, dtype=bool)
    for arr, nm in ((e, "mag_err"), (msk, "mask")):
        if arr.shape != m.shape:
            raise StellarValueError(f"{nm} must have the shape of mag {m.shape}; got {arr.shape}")
    bad_pairs = [p for p in pairs if len(p) != 2 or p[0] not in names or p[1] not in names]
    if bad_pairs or not pairs:
        raise StellarValueError(f"pairs must be a non-empty list of (band, band) from {list(names)}; got {bad_pairs}")
    ia = np.array([names.index(a) for a, _ in pairs])
    ib = np.array([names.index(b) for _, b in pairs])
    cmask = msk[:, ia] | msk[:, ib]
    colour = np.where(cmask, np.nan, m[:, ia] - m[:, ib])
    err = np.where(cmask, np.nan, np.hypot(e[:, ia], e[:, ib]))
    return colour, err, cmask
