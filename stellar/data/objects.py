"""The object table: one row per star, its best position and its identifier in every survey that has it.

Columns: ``object_id`` (unique, ``<survey>:<key>`` of the catalogue it was built from), ``survey`` (the catalogue
the position comes from, ``""`` when there is none yet), ``ra``, ``dec`` (deg, ICRS) at ``epoch`` (Julian year;
NaN without a position), then ``id_<survey>`` per identifier (strings, ``""`` when the star is not in that
survey) and, per match that built it, ``sep_<survey>_arcsec`` and ``ambiguous_<survey>``. It is built from one
catalogue (:meth:`ObjectTable.from_catalog`) and grown one cross-match at a time (:meth:`ObjectTable.add_match`);
each step appends to its provenance, and the whole is stored as a table of kind ``objects`` in the dataset store.

Examples
--------
>>> import pandas as pd
>>> from stellar.data.crossmatch import Catalog, IdMatch
>>> stars = Catalog(pd.DataFrame({"name": ["HD1", "HD2"], "hd": [1, 2]}), name="lib", ra=None, dec=None, id="hd")
>>> objects = ObjectTable.from_catalog(stars, survey="lib", key="name", ids={"hd": "hd"})
>>> bright = Catalog(pd.DataFrame({"hd": [2], "hr": [7], "ra": [10.0], "dec": [-5.0]}), name="bsc", id="hd")
>>> objects = objects.add_match(IdMatch()(stars, bright), bright, survey="bsc", ids={"hr": "hr"})
>>> objects.table[["object_id", "survey", "ra", "id_hd", "id_hr"]].to_dict("records")[1]
{'object_id': 'lib:HD2', 'survey': 'bsc', 'ra': 10.0, 'id_hd': '2', 'id_hr': '7'}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.crossmatch import Catalog, MatchResult
from stellar.data.store import DatasetStore
from stellar.errors import StellarDataError, StellarValueError

#: the columns every object table has (the store's required metadata plus the epoch of the position)
OBJECT_COLUMNS = ("object_id", "survey", "ra", "dec", "epoch")
#: the kind (``modality`` attribute) of an object table in the store
KIND = "objects"


def _id_strings(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_float_dtype(values):
        values = values.astype("Int64")
    return np.asarray(values.astype("string").fillna("").str.strip(), dtype=object)


@dataclasses.dataclass
class ObjectTable:
    """Objects across modalities (see the module docstring for the columns).

    Parameters
    ----------
    table : pandas.DataFrame
        The rows; must hold :data:`OBJECT_COLUMNS` with unique, non-empty ``object_id``.
    provenance : list of dict
        One entry per building step (the catalogue it started from, each cross-match's provenance).
    """

    table: pd.DataFrame
    provenance: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        missing = [c for c in OBJECT_COLUMNS if c not in self.table.columns]
        if missing:
            raise StellarValueError(f"table lacks object column(s) {missing}; it has {list(self.table.columns)}")
        ids = self.table["object_id"].astype(str)
        if (ids == "").any() or ids.duplicated().any():
            dup = sorted(set(ids[ids.duplicated()]))[:10]
            raise StellarDataError(f"object_id must be unique and non-empty; repeated or empty: {dup or ['']}")

    @property
    def identifiers(self) -> list[str]:
        """The surveys with an identifier column (``id_<survey>``)."""
        return [c[3:] for c in self.table.columns if c.startswith("id_")]

    @classmethod
    def from_catalog(cls, catalog: Catalog, *, survey: str, key: str, ids: Mapping[str, str]) -> ObjectTable:
        """One object per row of ``catalog``.

        Parameters
        ----------
        catalog : Catalog
            The catalogue; its position (if any) becomes the objects' position at ``catalog.epoch``.
        survey : str
            Its short name; ``object_id`` is ``<survey>:<key value>``.
        key : str
            The column whose values are unique per row (e.g. ``name``).
        ids : mapping of str to str
            Identifier name → column, e.g. ``{"miles": "miles_id", "hd": "hd"}``.
        """
        t = catalog.table
        for arg, col in [("key", key), *((f"ids[{k!r}]", c) for k, c in ids.items())]:
            if col not in t.columns:
                raise StellarValueError(f"{arg}: column {col!r} is not in {catalog.name}; it has {list(t.columns)}")
        has_pos = catalog.ra is not None
        ra = catalog.column("ra") if has_pos else np.full(len(t), np.nan)
        dec = catalog.column("dec") if has_pos else np.full(len(t), np.nan)
        ok = np.isfinite(ra) & np.isfinite(dec)
        table = pd.DataFrame(
            {
                "object_id": [f"{survey}:{v}" for v in _id_strings(t[key])],
                "survey": np.where(ok, survey, ""),
                "ra": ra,
                "dec": dec,
                "epoch": np.where(ok, float(catalog.epoch), np.nan),
            }
        )
        for name, col in ids.items():
            table[f"id_{name}"] = _id_strings(t[col])
        step = {"step": "from_catalog", "survey": survey, "key": key, "ids": dict(ids), **catalog.describe()}
        return cls(table=table, provenance=[step])

    def add_match(
        self,
        result: MatchResult,
        right: Catalog,
        *,
        survey: str,
        ids: Mapping[str, str],
        take_position: bool = True,
    ) -> ObjectTable:
        """A new table with the identifiers of the rows ``result`` matched in ``right``.

        Parameters
        ----------
        result : MatchResult
            A match whose left catalogue is this table (same rows, same order).
        right : Catalog
            The matched catalogue.
        survey : str
            Its short name (for ``sep_<survey>_arcsec``, ``ambiguous_<survey>`` and the ``survey`` column).
        ids : mapping of str to str
            Identifier name → column of ``right`` to copy (unmatched rows get ``""``).
        take_position : bool
            Replace the position of matched objects by ``right``'s, moved to the match epoch (use it when
            ``right`` is the more precise astrometry).
        """
        if len(result.table) != len(self.table):
            raise StellarValueError(
                f"result has {len(result.table)} left rows but the object table has {len(self.table)}: match "
                "the object table itself (ObjectTable.catalog()) as the left catalogue"
            )
        rows = result.table["right_row"].to_numpy()
        hit = rows >= 0
        t = self.table.copy()
        for name, col in ids.items():
            if col not in right.table.columns:
                raise StellarValueError(f"ids[{name!r}]: column {col!r} is not in {right.name}")
            values = _id_strings(right.table[col])
            new = np.where(hit, values[np.maximum(rows, 0)] if len(values) else "", "")
            old = t[f"id_{name}"].to_numpy(dtype=object) if f"id_{name}" in t else np.full(len(t), "", dtype=object)
            t[f"id_{name}"] = np.where(new != "", new, old)
        t[f"sep_{survey}_arcsec"] = result.table["separation_arcsec"].to_numpy()
        t[f"ambiguous_{survey}"] = result.table["ambiguous"].to_numpy()
        if take_position and right.ra is not None and hit.any():
            epoch = float(result.provenance.get("epoch", right.epoch))
            pos = right.positions(epoch, method=result.provenance.get("propagation", "rigorous"))
            ra, dec = pos.ra.deg[rows[hit]], pos.dec.deg[rows[hit]]
            good = np.isfinite(ra) & np.isfinite(dec)
            where = np.flatnonzero(hit)[good]
            t.loc[where, "ra"], t.loc[where, "dec"] = ra[good], dec[good]
            t.loc[where, "epoch"], t.loc[where, "survey"] = epoch, survey
        step = {"step": "add_match", "survey": survey, "ids": dict(ids), "take_position": take_position}
        return ObjectTable(table=t, provenance=[*self.provenance, {**step, **result.provenance}])

    def catalog(self, name: str = "objects", epoch: float | None = None) -> Catalog:
        """This table as the left :class:`Catalog` of a further match (positions at one epoch).

        Parameters
        ----------
        name : str
            Short name for provenance.
        epoch : float, optional
            The epoch of the positions; default: the one epoch of the rows that have a position (a table whose
            positions are at several epochs must be given one, and is refused).
        """
        epochs = sorted(set(self.table["epoch"].dropna().astype(float)))
        if epoch is None:
            if len(epochs) > 1:
                raise StellarValueError(f"positions are at several epochs {epochs}; give epoch=")
            epoch = epochs[0] if epochs else 2000.0
        elif epochs and epochs != [float(epoch)]:
            raise StellarValueError(f"epoch={epoch} but the positions are at {epochs}")
        return Catalog(table=self.table, name=name, epoch=float(epoch), id=None, source="object table")

    def to_store(self, store: DatasetStore, name: str) -> None:
        """Write the table and its provenance to ``store`` (kind :data:`KIND`; immutable like any dataset)."""
        store.write_table(
            name,
            self.table,
            kind=KIND,
            required=OBJECT_COLUMNS,
            units={"ra": "deg", "dec": "deg", "epoch": "yr"},
            provenance={"steps": self.provenance},
        )

    @classmethod
    def from_store(cls, store: DatasetStore, name: str) -> ObjectTable:
        """Read an object table written by :meth:`to_store`."""
        ds = store.open(name)
        if ds.attrs.get("modality") != KIND:
            raise StellarDataError(f"{name!r} in {store.root!r} is a {ds.attrs.get('modality')!r}, not an object table")
        return cls(table=ds.meta, provenance=list(ds.attrs.get("provenance", {}).get("steps", [])))
