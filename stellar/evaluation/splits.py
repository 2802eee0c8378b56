"""Split strategies: metadata table → train/val/test row indices, with a leakage audit.

Assignment depends only on the seed and on the table's content, never on row order. Every hash-based strategy
(:class:`RandomSplit`, :class:`GroupSplit`, :class:`SkySplit`, :class:`TimeSplit`) shares one mechanism: each row
gets a *unit* key (the row, its object, its sky block…), units are ordered by a seeded hash of their key (or by
time, for :class:`TimeSplit`) and cut at cumulative-row fractions, so shuffling the table gives the same parts.
:class:`KFold` cuts the same ordering into k folds instead; :class:`SurveySplit` reuses the group mechanism for the
domain-shift protocol.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
import pandas as pd
from astropy_healpix import HEALPix
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from stellar.errors import StellarConfigError, StellarValueError

log = logging.getLogger(__name__)

PARTS = ("train", "val", "test")


def seeded_key_order(keys: Sequence[Any], seed: int) -> np.ndarray:
    """Uniform pseudo-random numbers in [0, 1) for each key, from SHA-1 of ``f"{seed}:{key}"``.

    Equal keys get equal numbers; the result does not depend on the order of ``keys``.
    """
    out = np.empty(len(keys), dtype=np.float64)
    for i, k in enumerate(keys):
        digest = hashlib.sha1(f"{seed}:{k}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0**64
    return out


@dataclass
class SplitResult:
    """Row indices of each part (sorted) and the audit of the split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    audit: dict[str, Any] = field(default_factory=dict)

    def parts(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def save_audit(self, path: str | Path) -> Path:
        """Write the audit as JSON (creating folders) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.audit, indent=2, sort_keys=True))
        return path


@dataclass
class Units:
    """What a strategy hands the shared mechanism: one unit key per row, plus what the audit should check.

    Attributes
    ----------
    keys : np.ndarray
        Unit key of every row (rows with equal keys always land in the same part).
    groups : dict of str to np.ndarray
        Extra per-row group ids whose overlap between parts the audit reports (e.g. ``sky_block``).
    info : dict
        Strategy-specific facts recorded in the audit (JSON-serialisable).
    """

    keys: np.ndarray
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def audit_split(
    meta: pd.DataFrame,
    parts: dict[str, np.ndarray],
    *,
    label_col: str | None = None,
    group_cols: Sequence[str] = ("object_id",),
    extra_groups: Mapping[str, np.ndarray] | None = None,
    strategy: str = "",
) -> dict[str, Any]:
    """Class counts per part and, for each group, how many of its values appear in more than one part.

    Parameters
    ----------
    meta : pd.DataFrame
        The metadata table that was split.
    parts : dict of str to np.ndarray
        Row indices of each part.
    label_col : str, optional
        Class column; its counts per part are reported, and a class present in the table but absent from a part
        is logged as a warning and listed under ``absent_classes``.
    group_cols : sequence of str
        Columns of ``meta`` whose overlap between parts is reported (missing columns are skipped).
    extra_groups : mapping of str to np.ndarray, optional
        Per-row group ids that are not columns of ``meta`` (e.g. HEALPix blocks), one value per row; their
        overlap is reported under their name.
    strategy : str
        Name recorded in the audit.

    Returns
    -------
    dict
        ``n_rows`` per part, ``overlap[group]["a&b"]`` counts and, with ``label_col``, ``class_counts`` and
        ``absent_classes``.
    """
    groups: dict[str, np.ndarray] = {col: meta[col].to_numpy() for col in group_cols if col in meta.columns}
    for name, values in (extra_groups or {}).items():
        values = np.asarray(values)
        if len(values) != len(meta):
            raise StellarValueError(
                f"extra_groups[{name!r}] must hold one value per row ({len(meta)}); got {len(values)}"
            )
        groups[name] = values
    audit: dict[str, Any] = {"strategy": strategy, "n_rows": {k: len(v) for k, v in parts.items()}}
    overlap: dict[str, dict[str, int]] = {}
    names = list(parts)
    for col, values in groups.items():
        sets = {k: set(values[v].tolist()) for k, v in parts.items()}
        overlap[col] = {f"{a}&{b}": len(sets[a] & sets[b]) for i, a in enumerate(names) for b in names[i + 1 :]}
    audit["overlap"] = overlap
    if label_col is not None and label_col in meta.columns:
        labels = meta[label_col].astype(str).to_numpy()
        counts = {k: pd.Series(labels[v]).value_counts().sort_index().to_dict() for k, v in parts.items()}
        audit["class_counts"] = {k: {str(c): int(n) for c, n in v.items()} for k, v in counts.items()}
        all_classes = set(labels.tolist())
        absent = {k: sorted(all_classes - set(v)) for k, v in counts.items() if len(parts[k]) and all_classes - set(v)}
        audit["absent_classes"] = absent
        for part, missing in absent.items():
            log.warning(
                "split %s: class(es) %s present in the table are absent from the %s part", strategy, missing, part
            )
    return audit


def _cut(counts: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Bin of each unit (given in order, with its row count) when cutting cumulative rows at ``bounds``.

    A unit falls in the bin holding its middle row, so each bin holds close to its share of rows.
    """
    total = counts.sum()
    cum = np.cumsum(counts) / total
    return np.searchsorted(bounds, cum - 0.5 * counts / total, side="right")


def _column(meta: pd.DataFrame, col: str, what: str) -> pd.Series:
    if col not in meta.columns:
        raise StellarValueError(f"{what} needs column {col!r}; table has {list(meta.columns)}")
    return meta[col]


def _finite_floats(meta: pd.DataFrame, col: str, what: str) -> np.ndarray:
    """Column ``col`` as floats; a clear error if it is not numeric or holds NaN/inf."""
    column = _column(meta, col, what)
    try:
        values = column.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise StellarValueError(f"{what}: column {col!r} must be numeric; got dtype {column.dtype}") from err
    bad = ~np.isfinite(values)
    if bad.any():
        raise StellarValueError(
            f"{what}: {int(bad.sum())} of {len(values)} rows have NaN or infinite {col!r}; drop or fill them first"
        )
    return values


def _split_result(
    meta: pd.DataFrame,
    row_part: np.ndarray,
    units: Units,
    *,
    strategy: str,
    label_col: str | None,
    group_cols: Sequence[str],
    **extra: Any,
) -> SplitResult:
    """Rows of part ``i`` are those with ``row_part == i`` (``-1``: in no part); audit included."""
    parts = {name: np.flatnonzero(row_part == i) for i, name in enumerate(PARTS)}
    audit = audit_split(
        meta, parts, label_col=label_col, group_cols=group_cols, extra_groups=units.groups, strategy=strategy
    )
    unit_ids = np.unique(np.asarray(units.keys).astype(str), return_inverse=True)[1]
    audit["n_units"] = {k: len(np.unique(unit_ids[v])) for k, v in parts.items()}
    audit.update(units.info)
    audit.update(extra)
    return SplitResult(audit=audit, **parts)


class _HashSplit:
    """Shared mechanism: order units (rows, groups, sky blocks) by a seeded hash of their key, cut at the fractions.

    Subclasses define :meth:`units` (and may reorder units with :meth:`_order`, or add audit facts that need the
    parts with :meth:`_audit_parts`).
    """

    strategy = "hash"
    #: whether :class:`KFold` may cut this strategy's units into folds
    supports_kfold = True

    def __init__(self, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0, label_col: str | None = "label"):
        fr = np.asarray(fractions, dtype=float)
        if fr.shape != (3,) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
            raise StellarValueError(f"fractions must be three non-negative numbers summing to 1; got {list(fractions)}")
        self.fractions = fr
        self.seed = int(seed)
        self.label_col = label_col

    def units(self, meta: pd.DataFrame) -> Units:
        """Unit key of every row."""
        raise NotImplementedError

    @property
    def audit_cols(self) -> tuple[str, ...]:
        """Columns whose overlap between parts the audit reports."""
        return ("object_id",)

    def _order(self, meta: pd.DataFrame, keys: np.ndarray, inverse: np.ndarray) -> np.ndarray:
        """Order of the unique unit ``keys`` (``inverse`` maps rows to them): by seeded hash."""
        return np.argsort(seeded_key_order(keys.tolist(), self.seed), kind="stable")

    def _audit_parts(self, meta: pd.DataFrame, row_part: np.ndarray) -> dict[str, Any]:
        return {}

    def _assign(self, meta: pd.DataFrame, bounds: np.ndarray) -> tuple[np.ndarray, Units]:
        """Bin of every row when the ordered units are cut at cumulative-row fractions ``bounds``."""
        if len(meta) == 0:
            raise StellarValueError("cannot split an empty table")
        units = self.units(meta)
        keys = np.asarray(units.keys).astype(str)
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        order = self._order(meta, uniq, inverse)
        unit_bin = np.empty(len(uniq), dtype=np.int64)
        unit_bin[order] = _cut(counts[order], bounds)
        return unit_bin[inverse], units

    def _result(
        self, meta: pd.DataFrame, row_part: np.ndarray, units: Units, strategy: str, **extra: Any
    ) -> SplitResult:
        extra.update(self._audit_parts(meta, row_part))
        return _split_result(
            meta, row_part, units, strategy=strategy, label_col=self.label_col, group_cols=self.audit_cols, **extra
        )

    def __call__(self, meta: pd.DataFrame) -> SplitResult:
        row_part, units = self._assign(meta, np.cumsum(self.fractions)[:2])
        return self._result(meta, row_part, units, self.strategy, seed=self.seed, fractions=self.fractions.tolist())


class RandomSplit(_HashSplit):
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


class GroupSplit(_HashSplit):
    """Group-level split: every row sharing a ``group_key`` value lands in the same part."""

    strategy = "group"

    def __init__(self, *args: Any, group_key: str = "object_id", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.group_key = group_key

    @property
    def audit_cols(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(("object_id", self.group_key)))

    def units(self, meta: pd.DataFrame) -> Units:
        return Units(_column(meta, self.group_key, "group split").astype(str).to_numpy())


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
        ra = _finite_floats(meta, self.ra_col, "sky split")
        dec = _finite_floats(meta, self.dec_col, "sky split")
        if np.any(np.abs(dec) > 90):
            raise StellarValueError(
                f"sky split: {self.dec_col!r} must be in [-90, 90] deg; {int((np.abs(dec) > 90).sum())} rows are not"
            )
        return np.asarray(self.healpix.lonlat_to_healpix(ra * u.deg, dec * u.deg), dtype=np.int64)

    def units(self, meta: pd.DataFrame) -> Units:
        pix = self.blocks(meta)
        obj = _column(meta, self.group_key, "sky split").astype(str).to_numpy()
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
        np.minimum.at(first, inverse, _finite_floats(meta, self.time_col, "time split"))
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


class KFold:
    """Grouped k-fold over the units of any hash-based strategy (random rows, groups, sky blocks).

    The base strategy's units are ordered by its seeded hash and cut into ``n_folds`` folds of about equal row
    counts; fold ``fold`` is the test part, fold ``fold + 1`` (mod ``n_folds``) the val part, the rest train. The
    base's ``fractions`` are not used. The folds do not depend on ``fold``, so the k test parts partition the rows.

    Parameters
    ----------
    base : RandomSplit, GroupSplit or SkySplit
        Strategy whose units, seed and label column are used.
    n_folds : int
        Number of folds, at least 3 (train, val and test each need one).
    fold : int
        Index of the test fold, in ``[0, n_folds)``.

    Examples
    --------
    >>> meta = pd.DataFrame({"object_id": [f"s{i // 2}" for i in range(20)], "label": "G"})
    >>> results = KFold(GroupSplit(seed=0), n_folds=5).folds(meta)
    >>> sorted(np.concatenate([r.test for r in results]).tolist()) == list(range(20))
    True
    """

    def __init__(self, base: Any, n_folds: int = 5, fold: int = 0):
        if not isinstance(base, _HashSplit) or not base.supports_kfold:
            name = getattr(base, "strategy", type(base).__name__)
            raise StellarConfigError(
                f"k-fold needs a strategy with hashed units (random, group, sky); got base={name!r}: survey and time "
                "splits fix which rows are test by design"
            )
        if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 3:
            raise StellarValueError(f"n_folds must be an integer >= 3 (test, val and train folds); got {n_folds!r}")
        if isinstance(fold, bool) or not isinstance(fold, int | np.integer) or not 0 <= fold < n_folds:
            raise StellarValueError(f"fold must be an integer in [0, {n_folds}); got {fold!r}")
        self.base = base
        self.n_folds = int(n_folds)
        self.fold = int(fold)

    @property
    def strategy(self) -> str:
        return f"{self.base.strategy}_kfold"

    def __call__(self, meta: pd.DataFrame) -> SplitResult:
        k = self.n_folds
        row_fold, units = self.base._assign(meta, np.arange(1, k) / k)
        sizes = np.bincount(row_fold, minlength=k)
        if np.any(sizes == 0):
            log.warning(
                "k-fold %s: folds %s are empty (too few units for %d folds)",
                self.strategy,
                np.flatnonzero(sizes == 0).tolist(),
                k,
            )
        row_part = np.where(row_fold == self.fold, 2, np.where(row_fold == (self.fold + 1) % k, 1, 0))
        return self.base._result(
            meta,
            row_part,
            units,
            self.strategy,
            seed=self.base.seed,
            n_folds=k,
            fold=self.fold,
            fold_rows=sizes.tolist(),
        )

    def folds(self, meta: pd.DataFrame) -> list[SplitResult]:
        """The ``n_folds`` splits, one per test fold."""
        out = []
        for i in range(self.n_folds):
            split = copy.copy(self)
            split.fold = i
            out.append(split(meta))
        return out


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
        survey = _column(meta, self.survey_col, "survey split").astype(str).to_numpy()
        groups = _column(meta, self.group_key, "survey split").astype(str).to_numpy()
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
        return _split_result(
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
