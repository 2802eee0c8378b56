"""Split strategies: metadata table → train/val/test row indices, with a leakage audit.

Assignment depends only on the seed and on the table's content (the key column's values), never on row order:
rows (or groups) are ordered by a seeded hash of their key and cut at the requested fractions, so shuffling the
table gives the same parts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stellar.errors import StellarValueError

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


def audit_split(
    meta: pd.DataFrame,
    parts: dict[str, np.ndarray],
    *,
    label_col: str | None = None,
    group_cols: Sequence[str] = ("object_id",),
    strategy: str = "",
) -> dict[str, Any]:
    """Class counts per part and, for each group column, how many values appear in more than one part.

    A class present in the table but absent from a part is logged as a warning and listed under
    ``absent_classes``.
    """
    audit: dict[str, Any] = {"strategy": strategy, "n_rows": {k: len(v) for k, v in parts.items()}}
    overlap: dict[str, dict[str, int]] = {}
    for col in group_cols:
        if col not in meta.columns:
            continue
        values = {k: set(meta[col].to_numpy()[v].tolist()) for k, v in parts.items()}
        names = list(parts)
        overlap[col] = {f"{a}&{b}": len(values[a] & values[b]) for i, a in enumerate(names) for b in names[i + 1 :]}
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


class _HashSplit:
    """Shared mechanism: order units (rows or groups) by a seeded hash of a key, cut at the fractions."""

    strategy = "hash"

    def __init__(self, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0, label_col: str | None = "label"):
        fr = np.asarray(fractions, dtype=float)
        if fr.shape != (3,) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
            raise StellarValueError(f"fractions must be three non-negative numbers summing to 1; got {list(fractions)}")
        self.fractions = fr
        self.seed = int(seed)
        self.label_col = label_col

    def unit_keys(self, meta: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, meta: pd.DataFrame) -> SplitResult:
        if len(meta) == 0:
            raise StellarValueError("cannot split an empty table")
        keys = np.asarray(self.unit_keys(meta)).astype(str)
        uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        order = np.argsort(seeded_key_order(uniq.tolist(), self.seed), kind="stable")
        # cut on cumulative row counts so each part holds close to its fraction of rows
        cum = np.cumsum(counts[order]) / len(keys)
        bounds = np.cumsum(self.fractions)[:2]
        unit_part = np.empty(len(uniq), dtype=np.int64)
        unit_part[order] = np.searchsorted(bounds, cum - 0.5 * counts[order] / len(keys), side="right")
        row_part = unit_part[inverse]
        parts = {name: np.flatnonzero(row_part == i) for i, name in enumerate(PARTS)}
        audit = audit_split(meta, parts, label_col=self.label_col, strategy=self.strategy)
        audit.update(seed=self.seed, fractions=self.fractions.tolist())
        return SplitResult(audit=audit, **parts)


class RandomSplit(_HashSplit):
    """Row-level split: each row (observation) is placed independently, keyed by ``row_key``.

    Repeated observations of one star can land on both sides: use :class:`GroupSplit` for honest numbers.
    """

    strategy = "random"

    def __init__(self, *args: Any, row_key: str = "obs_id", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.row_key = row_key

    def unit_keys(self, meta: pd.DataFrame) -> np.ndarray:
        if self.row_key not in meta.columns:
            raise StellarValueError(
                f"random split needs a unique row key column {self.row_key!r}; table has {list(meta.columns)}"
            )
        keys = meta[self.row_key].astype(str).to_numpy()
        if len(set(keys.tolist())) != len(keys):
            raise StellarValueError(f"column {self.row_key!r} must be unique per row for a random split")
        return keys


class GroupSplit(_HashSplit):
    """Group-level split: every row sharing a ``group_key`` value lands in the same part."""

    strategy = "group"

    def __init__(self, *args: Any, group_key: str = "object_id", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.group_key = group_key

    def unit_keys(self, meta: pd.DataFrame) -> np.ndarray:
        if self.group_key not in meta.columns:
            raise StellarValueError(f"group split needs column {self.group_key!r}; table has {list(meta.columns)}")
        return meta[self.group_key].astype(str).to_numpy()
