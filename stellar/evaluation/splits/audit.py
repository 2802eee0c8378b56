"""What every split returns and how it is checked: :class:`SplitResult`, :func:`audit_split`, the seeded key order.

The audit reports class counts per part and how many objects (or other groups) appear in more than one part: the
leakage a row-level split lets through.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
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
