"""Grouped k-fold cross-validation over the units of a hash-based split strategy."""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import pandas as pd

from stellar.errors import StellarConfigError, StellarValueError
from stellar.evaluation.splits.audit import SplitResult
from stellar.evaluation.splits.base import HashSplit

log = logging.getLogger(__name__)


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
    >>> from stellar.evaluation.splits import GroupSplit
    >>> meta = pd.DataFrame({"object_id": [f"s{i // 2}" for i in range(20)], "label": "G"})
    >>> results = KFold(GroupSplit(seed=0), n_folds=5).folds(meta)
    >>> sorted(np.concatenate([r.test for r in results]).tolist()) == list(range(20))
    True
    """

    def __init__(self, base: Any, n_folds: int = 5, fold: int = 0):
        if not isinstance(base, HashSplit) or not base.supports_kfold:
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
