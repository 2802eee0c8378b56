"""The mechanism the hash-based strategies share: unit keys, a seeded order of the units, a cut at row fractions.

Each row gets a *unit* key (the row, its object, its sky block…); units are ordered by a seeded hash of their key
(or otherwise, by overriding :meth:`HashSplit._order`) and cut at cumulative-row fractions, so the parts depend
only on the seed and the table's content, never on row order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from stellar.errors import StellarValueError
from stellar.evaluation.splits.audit import PARTS, SplitResult, audit_split, seeded_key_order


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


def _cut(counts: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Bin of each unit (given in order, with its row count) when cutting cumulative rows at ``bounds``.

    A unit falls in the bin holding its middle row, so each bin holds close to its share of rows.
    """
    total = counts.sum()
    cum = np.cumsum(counts) / total
    return np.searchsorted(bounds, cum - 0.5 * counts / total, side="right")


def require_column(meta: pd.DataFrame, col: str, what: str) -> pd.Series:
    """Column ``col`` of ``meta``; a clear error naming ``what`` needs it if the table lacks it."""
    if col not in meta.columns:
        raise StellarValueError(f"{what} needs column {col!r}; table has {list(meta.columns)}")
    return meta[col]


def finite_floats(meta: pd.DataFrame, col: str, what: str) -> np.ndarray:
    """Column ``col`` as floats; a clear error if it is not numeric or holds NaN/inf."""
    column = require_column(meta, col, what)
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


def split_result(
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


class HashSplit:
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
        return split_result(
            meta, row_part, units, strategy=strategy, label_col=self.label_col, group_cols=self.audit_cols, **extra
        )

    def __call__(self, meta: pd.DataFrame) -> SplitResult:
        row_part, units = self._assign(meta, np.cumsum(self.fractions)[:2])
        return self._result(meta, row_part, units, self.strategy, seed=self.seed, fractions=self.fractions.tolist())
