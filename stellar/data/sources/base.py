"""What every source shares: the protocol, and dataset names from a content hash.

A source names its dataset from a hash of everything that determines its content (parameters, input file
bytes, preprocessing, code version), so a stored dataset is reused exactly when it would be rebuilt identically.
``build(preprocessing)`` returns the keyword arguments of :meth:`stellar.data.store.DatasetStore.write`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

from stellar import __version__

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
