"""Split strategies: random rows, groups (objects), sky blocks, time order, and surveys (domain shift).

:class:`RandomSplit`, :class:`GroupSplit`, :class:`SkySplit` and :class:`TimeSplit` are :class:`HashSplit`
subclasses that differ only in their unit keys (and, for time, the unit order); :class:`SurveySplit` reuses the
group mechanism on the rows of the training surveys.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import astropy.units as u
import numpy as np
import pandas as pd
from astropy_healpix import HEALPix
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from stellar.errors import StellarValueError
from stellar.evaluation.splits.audit import PARTS, SplitResult, seeded_key_order
from stellar.evaluation.splits.base import HashSplit, Units, finite_floats, require_column, split_result

log = logging.getLogger(__name__)


class RandomSplit(HashSplit):
    """Row-level split: each row (observation) is placed independently, keyed by ``row_key``.

    Repeated observations of one star can land on both sides: use :class:`GroupSplit` for honest numbers.
    """

    strategy = "random"

    def __init__(self, *args: Any, row_key: str = "obs_id", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.row_key = row_key

    def units(self, meta: pd.DataFrame) -> Units:
        if self.row_key not in meta.columns:
            raise StellarValueError(
                f"random split needs a unique row key column {self.row_key!r}; table has {list(meta.columns)}"
            )
        keys = meta[self.row_key].astype(str).to_numpy()
        if len(set(keys.tolist())) != len(keys):
            raise StellarValueError(f"column {self.row_key!r} must be unique per row for a random split")
        return Units(keys)


class GroupSplit(HashSplit):
    """Group-level split: every row sharing a ``group_key`` value lands in the same part."""

    strategy = "group"

    def __init__(self, *args: Any, group_key: str = "object_id", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.group_key = group_key

    @property
    def audit_cols(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(("object_id", self.group_key)))

    def units(self, meta: pd.DataFrame) -> Units:
        return Units(require_column(meta, self.group_key, "group split").astype(str).to_numpy())


class SkySplit(GroupSplit):
    """Sky-block split: every HEALPix block (and every object) lands whole in one part.

    The block of a row is its HEALPix pixel (nested ordering) at ``nside``, from ``ra``/``dec`` in degrees. An object
    whose rows fall in several blocks (positions jittering across a border) joins those blocks: the unit is the
    connected component of the block–object graph, keyed by its smallest pixel index. That depends only on the table's
    content, so the split stays independent of row order, and both the block and the ``group_key`` overlap between
    parts are 0 by construction (the audit reports ``overlap["sky_block"]``).

    Parameters
    ----------
    nside : int
        HEALPix resolution, a power of 2 (16 gives blocks of about 3.7 deg, 3072 on the sky).
    ra_col, dec_col : str
        Columns of right ascension and declination, in degrees.

    Other Parameters
    ----------------
    fractions : sequence of float
        Train/val/test shares of rows (cut at unit boundaries, so met closely only with many blocks).
    seed : int
        Seed of the block order.
    label_col : str, optional
        Class column for the audit.
    group_key : str
        Object column kept whole across blocks.

    Examples
    --------
    >>> meta = pd.DataFrame({"object_id": ["a", "a", "b"], "ra": [10.0, 10.0, 200.0], "dec": [5.0, 5.0, -30.0]})
    >>> res = SkySplit(nside=4, fractions=(0.5, 0.0, 0.5), seed=0)(meta)
    >>> res.audit["overlap"]["sky_block"]["train&test"]
    0
    """

    strategy = "sky"

    def __init__(self, *args: Any, nside: int = 16, ra_col: str = "ra", dec_col: str = "dec", **kwargs: Any):
        super().__init__(*args, **kwargs)
        if isinstance(nside, bool) or not isinstance(nside, int | np.integer) or nside < 1 or nside & (nside - 1):
            raise StellarValueError(f"nside must be a positive power of 2 (1, 2, 4, …, 16, …); got {nside!r}")
        self.healpix = HEALPix(nside=int(nside), order="nested")
        self.nside = int(nside)
        self.ra_col = ra_col
        self.dec_col = dec_col

    def blocks(self, meta: pd.DataFrame) -> np.ndarray:
        """HEALPix pixel index (nested, at ``nside``) of every row."""
        ra = finite_floats(meta, self.ra_col, "sky split")
        dec = finite_floats(meta, self.dec_col, "sky split")
        if np.any(np.abs(dec) > 90):
            raise StellarValueError(
                f"sky split: {self.dec_col!r} must be in [-90, 90] deg; {int((np.abs(dec) > 90).sum())} rows are not"
            )
        return np.asarray(self.healpix.lonlat_to_healpix(ra * u.deg, dec * u.deg), dtype=np.int64)

    def units(self, meta: pd.DataFrame) -> Units:
        pix = self.blocks(meta)
        obj = require_column(meta, self.group_key, "sky split").astype(str).to_numpy()
        blocks, block_idx = np.unique(pix, return_inverse=True)
        _, obj_idx = np.unique(obj, return_inverse=True)
        # bipartite graph blocks ↔ objects: an object seen in two blocks joins them
        n_b = len(blocks)
        n_nodes = n_b + int(obj_idx.max()) + 1
        graph = coo_matrix((np.ones(len(pix)), (block_idx, n_b + obj_idx)), shape=(n_nodes, n_nodes))
        _, comp = connected_components(graph, directed=False)
        comp_min = np.full(comp.max() + 1, np.iinfo(np.int64).max)
        np.minimum.at(comp_min, comp[:n_b], blocks)
        unit = comp_min[comp[block_idx]]
        n_units = len(np.unique(unit))
        if n_units < n_b:
            log.info(
                "sky split: %d objects straddle blocks; %d blocks merged into %d units", n_b - n_units, n_b, n_units
            )
        info = {
            "nside": self.nside,
            "block_area_deg2": float(self.healpix.pixel_area.to_value(u.deg**2)),
            "n_blocks": n_b,
            "n_blocks_merged": int(n_b - n_units),
        }
        return Units(unit.astype(str), groups={"sky_block": pix}, info=info)


class TimeSplit(GroupSplit):
    """Temporal split: train on the groups seen first, validate on later ones, test on the latest.

    Groups (``group_key``) are ordered by their earliest ``time_col`` value, ties broken by the seeded hash (so the
    split stays independent of row order), and cut at cumulative-row fractions: every train group is first seen no
    later than every val group, and every val group no later than every test group. A group's later epochs stay
    with it, so a train row can be later than a test group's first epoch; the audit reports each part's
    ``time_range`` (all rows) and ``first_seen_range`` (groups' earliest times).

    Parameters
    ----------
    time_col : str
        Column of observation times; any numeric scale where larger is later (e.g. MJD, in days).

    Other Parameters
    ----------------
    fractions : sequence of float
        Train/val/test shares of rows, in time order.
    seed : int
        Seed of the tie-break between groups first seen at the same time.
    label_col : str, optional
        Class column for the audit.
    group_key : str
        Column whose rows stay together.
    """

    strategy = "time"
    supports_kfold = False

    def __init__(self, *args: Any, time_col: str = "mjd", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.time_col = time_col

    def _first_seen(self, meta: pd.DataFrame, inverse: np.ndarray, n_units: int) -> np.ndarray:
        first = np.full(n_units, np.inf)
        np.minimum.at(first, inverse, finite_floats(meta, self.time_col, "time split"))
        return first

    def _order(self, meta: pd.DataFrame, keys: np.ndarray, inverse: np.ndarray) -> np.ndarray:
        first = self._first_seen(meta, inverse, len(keys))
        return np.lexsort((seeded_key_order(keys.tolist(), self.seed), first))

    def _audit_parts(self, meta: pd.DataFrame, row_part: np.ndarray) -> dict[str, Any]:
        t = meta[self.time_col].to_numpy(dtype=np.float64)
        _, inverse = np.unique(meta[self.group_key].astype(str).to_numpy(), return_inverse=True)
        first = self._first_seen(meta, inverse, int(inverse.max()) + 1)[inverse]

        def span(v: np.ndarray) -> list[float] | None:
            return [float(v.min()), float(v.max())] if len(v) else None

        return {
            "time_col": self.time_col,
            "time_range": {p: span(t[row_part == i]) for i, p in enumerate(PARTS)},
            "first_seen_range": {p: span(first[row_part == i]) for i, p in enumerate(PARTS)},
        }


class SurveySplit:
    """Domain-shift split: train and validate on some surveys, test on others.

    Rows of ``train_surveys`` are split into train/val by group (the :class:`GroupSplit` mechanism, ``val_fraction``
    of their rows to val); rows of ``test_surveys`` all go to test; rows of other surveys go to no part (counted in
    the audit and logged). With ``drop_shared_groups`` (default), rows of train surveys whose group also appears in
    a test survey (the same star observed by both) are left out of train/val too, so the ``group_key`` overlap with
    test is 0; turn it off for cross-matched studies where the same stars are the point.

    Parameters
    ----------
    train_surveys, test_surveys : sequence of str
        Disjoint, non-empty lists of survey names, each present in ``survey_col``.
    val_fraction : float
        Share of the train-survey rows that go to val, in [0, 1).
    seed : int
        Seed of the group order.
    survey_col : str
        Column of survey names.
    group_key : str
        Column whose rows stay together.
    drop_shared_groups : bool
        Leave out train-survey rows of groups also seen in a test survey.
    label_col : str, optional
        Class column for the audit.
    """

    strategy = "survey"
    supports_kfold = False

    def __init__(
        self,
        train_surveys: Sequence[str],
        test_surveys: Sequence[str],
        val_fraction: float = 0.15,
        seed: int = 0,
        survey_col: str = "survey",
        group_key: str = "object_id",
        drop_shared_groups: bool = True,
        label_col: str | None = "label",
    ):
        train, test = self._names(train_surveys, "train_surveys"), self._names(test_surveys, "test_surveys")
        both = sorted(set(train) & set(test))
        if both:
            raise StellarValueError(f"surveys {both} are in both train_surveys and test_surveys; they must be disjoint")
        if not 0 <= float(val_fraction) < 1:
            raise StellarValueError(f"val_fraction must be in [0, 1); got {val_fraction!r}")
        self.train_surveys, self.test_surveys = train, test
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.survey_col = survey_col
        self.group_key = group_key
        self.drop_shared_groups = bool(drop_shared_groups)
        self.label_col = label_col
        fractions = (1.0 - self.val_fraction, self.val_fraction, 0.0)
        self._groups = GroupSplit(fractions, seed=seed, label_col=label_col, group_key=group_key)

    @staticmethod
    def _names(surveys: Sequence[str], arg: str) -> list[str]:
        if isinstance(surveys, str) or not len(surveys):
            raise StellarValueError(f"{arg} must be a non-empty list of survey names; got {surveys!r}")
        return sorted({str(s) for s in surveys})

    def __call__(self, meta: pd.DataFrame) -> SplitResult:
        if len(meta) == 0:
            raise StellarValueError("cannot split an empty table")
        survey = require_column(meta, self.survey_col, "survey split").astype(str).to_numpy()
        groups = require_column(meta, self.group_key, "survey split").astype(str).to_numpy()
        present = sorted(set(survey.tolist()))
        unknown = sorted(set(self.train_surveys + self.test_surveys) - set(present))
        if unknown:
            raise StellarValueError(
                f"surveys {unknown} in train_surveys/test_surveys are not in column {self.survey_col!r}; "
                f"the table has {present}"
            )
        is_train, is_test = np.isin(survey, self.train_surveys), np.isin(survey, self.test_surveys)
        row_part = np.full(len(meta), -1, dtype=np.int64)
        row_part[is_test] = 2
        shared = is_train & np.isin(groups, groups[is_test])
        n_shared = int(shared.sum())
        if n_shared and self.drop_shared_groups:
            log.warning(
                "survey split: %d rows of train surveys belong to %s values also in test surveys; left out",
                n_shared,
                self.group_key,
            )
            is_train &= ~shared
        idx = np.flatnonzero(is_train)
        if len(idx):
            row_part[idx] = self._groups._assign(meta.iloc[idx], np.array([1.0 - self.val_fraction, 1.0]))[0]
        unused = int((~np.isin(survey, self.train_surveys + self.test_surveys)).sum())
        if unused:
            log.info("survey split: %d rows of surveys in neither list go to no part", unused)
        return split_result(
            meta,
            row_part,
            Units(groups),
            strategy=self.strategy,
            label_col=self.label_col,
            group_cols=tuple(dict.fromkeys(("object_id", self.group_key))),
            seed=self.seed,
            val_fraction=self.val_fraction,
            train_surveys=self.train_surveys,
            test_surveys=self.test_surveys,
            surveys={p: sorted(set(survey[row_part == i].tolist())) for i, p in enumerate(PARTS)},
            shared_group_rows=n_shared,
            dropped_rows=n_shared if self.drop_shared_groups else 0,
            unused_rows=unused,
        )
