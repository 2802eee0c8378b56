"""Small numeric helpers shared by the models."""

from __future__ import annotations

from typing import Any

import numpy as np


def log10_positive(x: Any) -> np.ndarray:
    """``log10(x)`` as float64 where ``x > 0``, NaN elsewhere (zero, negative or missing values), without warnings."""
    v = np.asarray(x, dtype=np.float64)
    return np.log10(np.where(v > 0, v, np.nan))
