"""Array fields of the request schemas: rows of numbers, validated once and held as float64 numpy arrays.

A JSON body arrives as lists of Python floats; pydantic checks each value's type (JSON numbers only) in its compiled
core, and :class:`ArrayRows` then keeps the rows as one 2-D array (rows of equal length) or a list of 1-D arrays
(ragged rows). The Arrow path (:mod:`stellar.serving.binary`) and Python callers hand arrays straight in: their
dtype and shape are checked, and no Python float is ever made. What the inference worker receives is therefore
arrays (pickled as buffers, not one object per value), and the schemas' checks are one numpy pass per array
(:func:`finite_counts`, :func:`negative_rows`, :func:`axis_problem`). The OpenAPI schema still says what a JSON
client sends: a list of rows of numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, TypeAlias, get_args, get_origin

import numpy as np
from pydantic import BaseModel, Field, GetCoreSchemaHandler, Strict
from pydantic_core import core_schema

__all__ = [
    "ArrayRows",
    "FloatRows",
    "Number",
    "as_rows",
    "axis_problem",
    "finite_counts",
    "negative_rows",
    "row_lengths",
]

#: JSON numbers only: "1.0" and true are refused, NaN/Infinity are masked
Number = Annotated[float, Strict()]
#: validated rows: a 2-D float64 array when the rows have equal lengths, else a list of 1-D float64 arrays
FloatRows: TypeAlias = np.ndarray | list[np.ndarray]
#: rows of numbers in any form: lists, 1-D arrays or a 2-D array
RowsLike: TypeAlias = np.ndarray | Sequence[Any]


def as_rows(rows: RowsLike) -> FloatRows:
    """``rows`` (lists or 1-D arrays of numbers) as :data:`FloatRows`."""
    if isinstance(rows, np.ndarray):
        return rows.astype(np.float64, copy=False)
    if not len(rows):
        return np.zeros((0, 0))
    if len({len(r) for r in rows}) == 1:
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    return [np.asarray(r, dtype=np.float64) for r in rows]


def row_lengths(rows: RowsLike) -> np.ndarray:
    """The number of values of each row."""
    if isinstance(rows, np.ndarray) and rows.ndim == 2:
        return np.full(len(rows), rows.shape[1])
    return np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))


def _per_row(rows: RowsLike, fn: Callable[[np.ndarray], Any]) -> np.ndarray:
    """``fn`` (a reduction along the last axis) of every row: one call on a 2-D array, else one per row."""
    if isinstance(rows, np.ndarray) and rows.ndim == 2:
        return np.asarray(fn(rows))
    return np.asarray([fn(np.asarray(r, dtype=np.float64)) for r in rows])


def finite_counts(rows: RowsLike) -> np.ndarray:
    """The number of finite values of each row."""
    return _per_row(rows, lambda a: np.isfinite(a).sum(axis=-1))


def negative_rows(rows: RowsLike) -> np.ndarray:
    """Indices of the rows holding a finite negative value (NaN/inf are unknown, not negative)."""
    return np.flatnonzero(_per_row(rows, lambda a: ((a < 0) & (a > -np.inf)).any(axis=-1)))  # NaN < 0 is False


def axis_problem(axis: Any) -> str | None:
    """What is wrong with one axis (``'must be finite'``, ``'must be strictly increasing'``), or ``None``."""
    a = np.asarray(axis, dtype=np.float64)
    if not np.isfinite(a).all():
        return "must be finite"
    if (np.diff(a) <= 0).any():
        return "must be strictly increasing"
    return None


def _to_lists(value: FloatRows) -> list[list[float]]:
    return [np.asarray(r).tolist() for r in value]


@dataclass(frozen=True)
class ArrayRows:
    """The pydantic schema of a field of rows of numbers (``Annotated[FloatRows, ArrayRows(...)]``).

    Parameters
    ----------
    name : str
        The field's name, for the errors.
    min_points, max_points : int
        Fewest and most values per row.
    min_rows, max_rows : int
        Fewest and most rows.
    """

    name: str
    min_points: int
    max_points: int
    min_rows: int
    max_rows: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        row = Annotated[list[Number], Field(min_length=self.min_points, max_length=self.max_points)]
        lists = handler.generate_schema(Annotated[list[row], Field(min_length=self.min_rows, max_length=self.max_rows)])
        return core_schema.no_info_wrap_validator_function(
            self._validate, lists, serialization=core_schema.plain_serializer_function_ser_schema(_to_lists)
        )

    def _validate(self, value: Any, handler: Callable[[Any], Any]) -> FloatRows:
        if isinstance(value, np.ndarray) or (
            isinstance(value, list | tuple) and value and all(isinstance(r, np.ndarray) for r in value)
        ):
            return self._check_arrays(value)
        return as_rows(handler(value))  # lists: each value's type checked by pydantic's core, then one array

    def _check_arrays(self, value: np.ndarray | Sequence[np.ndarray]) -> FloatRows:
        rows = list(value) if not isinstance(value, np.ndarray) else value
        if isinstance(rows, np.ndarray) and rows.ndim != 2:
            raise ValueError(f"{self.name} must be rows of numbers (2-D); got an array of shape {rows.shape}")
        for r in [rows] if isinstance(rows, np.ndarray) else rows:
            if r.dtype.kind not in "fiu":
                raise ValueError(f"{self.name} must hold numbers (float or int); got dtype {r.dtype}")
            if not isinstance(rows, np.ndarray) and r.ndim != 1:
                raise ValueError(f"{self.name} must be rows of numbers; got a row of shape {r.shape}")
        if not self.min_rows <= len(rows) <= self.max_rows:
            raise ValueError(f"{self.name} has {len(rows)} rows; {self.min_rows} to {self.max_rows} allowed")
        lengths = row_lengths(rows)
        bad = np.flatnonzero((lengths < self.min_points) | (lengths > self.max_points))
        if len(bad):
            raise ValueError(
                f"{self.name}[{bad[0]}] has {lengths[bad[0]]} values; {self.min_points} to {self.max_points} allowed"
            )
        return as_rows(rows)


@cache
def array_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` that are :class:`ArrayRows` (also inside ``… | None``)."""

    def has(t: Any) -> bool:
        if get_origin(t) is Annotated:
            return any(isinstance(m, ArrayRows) for m in get_args(t)[1:]) or has(get_args(t)[0])
        return any(has(a) for a in get_args(t))

    return frozenset(
        name
        for name, f in model.model_fields.items()
        if any(isinstance(m, ArrayRows) for m in f.metadata) or has(f.annotation)
    )
