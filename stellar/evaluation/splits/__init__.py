"""Split strategies: metadata table → train/val/test row indices, with a leakage audit.

Assignment depends only on the seed and on the table's content, never on row order. Every hash-based strategy
(:class:`RandomSplit`, :class:`GroupSplit`, :class:`SkySplit`, :class:`TimeSplit`) shares one mechanism: each row
gets a *unit* key (the row, its object, its sky block…), units are ordered by a seeded hash of their key (or by
time, for :class:`TimeSplit`) and cut at cumulative-row fractions, so shuffling the table gives the same parts.
:class:`KFold` cuts the same ordering into k folds instead; :class:`SurveySplit` reuses the group mechanism for the
domain-shift protocol.

- :mod:`~stellar.evaluation.splits.audit` — :class:`SplitResult`, :func:`audit_split`, :func:`seeded_key_order`
- :mod:`~stellar.evaluation.splits.base` — the shared mechanism (unit keys, seeded order, cut at row fractions)
- :mod:`~stellar.evaluation.splits.strategies` — random, group, sky, time and survey splits
- :mod:`~stellar.evaluation.splits.kfold` — :class:`KFold` over a hash-based strategy

Configs build them as ``_target_: stellar.evaluation.splits.<Name>`` (``conf/split/*.yaml``).
"""

from stellar.evaluation.splits.audit import PARTS, SplitResult, audit_split, seeded_key_order
from stellar.evaluation.splits.kfold import KFold
from stellar.evaluation.splits.strategies import GroupSplit, RandomSplit, SkySplit, SurveySplit, TimeSplit

__all__ = [
    "PARTS",
    "GroupSplit",
    "KFold",
    "RandomSplit",
    "SkySplit",
    "SplitResult",
    "SurveySplit",
    "TimeSplit",
    "audit_split",
    "seeded_key_order",
]
