"""What every source shares: the protocol, and dataset names from a content hash.

A source names its dataset from a hash of everything that determines its content (parameters, input file
bytes, preprocessing, code version), so a stored dataset is reused exactly when it would be rebuilt identically.
``build(preprocessing)`` returns the keyword arguments of :meth:`stellar.data.store.DatasetStore.write`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

import numpy as np
import pandas as pd

from stellar._version import __version__

#: Bump when a source's build logic changes what it stores (the dataset name hashes it, so old builds are not reused).
BUILD_VERSION = 2


class Source(Protocol):
    def dataset_name(self, preprocessing: dict[str, Any]) -> str: ...

    def build(self, preprocessing: Any) -> dict[str, Any]: ...


def digest(*parts: Any) -> str:
    """12 hex digits of SHA-256 over the code version, ``BUILD_VERSION`` and ``parts`` (bytes, or JSON-able)."""
    h = hashlib.sha256(f"{__version__}/{BUILD_VERSION}".encode())
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]


def simulated_meta(prefix: str, n: int, seed: int, stream: int = 1) -> pd.DataFrame:
    """Identity and sky columns of ``n`` simulated objects: ids ``<prefix><seed>-<i>``, survey ``simulated`` and
    positions uniform on the sphere, drawn from ``default_rng([seed, stream])``."""
    rng = np.random.default_rng([seed, stream])
    ids = [f"{prefix}{seed}-{i:07d}" for i in range(n)]
    return pd.DataFrame(
        {
            "object_id": ids,
            "obs_id": ids,
            "survey": "simulated",
            "ra": rng.uniform(0.0, 360.0, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n))),
        }
    )
