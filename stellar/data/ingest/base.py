"""What every survey connector offers: plan tasks from a target table, run one task through a fetcher."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from stellar.data.ingest.policy import Fetcher
from stellar.data.ingest.records import Record
from stellar.errors import StellarValueError


@dataclass
class Task:
    """A unit of work: the targets it answers (ids) and their rows from the target table."""

    targets: list[str]
    rows: list[dict[str, Any]]


@dataclass
class TaskResult:
    """Records of the targets that succeeded and the reason of each that failed."""

    records: list[Record] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class Connector(Protocol):
    """A survey connector (SDSS, Gaia, Kepler/TESS, SIMBAD)."""

    survey: str

    def plan(self, targets: pd.DataFrame) -> list[Task]: ...

    def run(self, task: Task, fetcher: Fetcher) -> TaskResult: ...


def has(row: dict[str, Any], *cols: str) -> bool:
    """True when every column is present and not empty/NaN in ``row``."""
    return all(
        c in row
        and row[c] is not None
        and not (isinstance(row[c], float) and row[c] != row[c])
        and str(row[c]).strip() != ""
        for c in cols
    )


def target_ids(targets: pd.DataFrame, default: list[str]) -> list[str]:
    """The ``target_id`` column when given, else ``default``; duplicates are refused."""
    ids = [str(x) for x in targets["target_id"]] if "target_id" in targets.columns else default
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique().tolist()
    if dup:
        raise StellarValueError(f"targets has duplicate target ids {dup[:5]}; each target must be named once")
    return ids


#: (columns a row must fill, the row's default target id when it does), tried in order
Namer = tuple[tuple[str, ...], Callable[[dict[str, Any]], str]]


def position_id(row: dict[str, Any]) -> str:
    """Default target id of a position row: ``RA±DEC`` in degrees to 6 decimals."""
    return f"{float(row['ra']):.6f}{float(row['dec']):+.6f}"


def named_rows(targets: pd.DataFrame, namers: Sequence[Namer]) -> list[tuple[str, dict[str, Any]]]:
    """(target id, row) of every target row; the first namer whose columns the row fills names it.

    Raises
    ------
    StellarValueError
        A row fills none of the namers' columns (the message lists what each would need).
    """
    rows = targets.to_dict("records")
    default = []
    for i, r in enumerate(rows):
        namer = next((f for cols, f in namers if has(r, *cols)), None)
        if namer is None:
            need = " or ".join("/".join(cols) for cols, _ in namers)
            raise StellarValueError(f"targets row {i} needs {need}; it has {sorted(r)}")
        default.append(namer(r))
    return list(zip(target_ids(targets, default), rows, strict=True))
