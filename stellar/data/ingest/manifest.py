"""The manifest of one survey's ingest: which targets are done and which failed, and why.

An append-only JSON-lines file; the last line about a target wins. Every line is flushed and fsynced, so a
killed process loses at most the line it was writing (a torn last line is skipped on reading).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Manifest:
    """Done/failed records of targets, by target id."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = threading.Lock()

    def records(self) -> dict[str, dict[str, Any]]:
        """The latest record of every target."""
        out: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return out
        torn = 0
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                torn += 1
                continue
            out[str(rec["target"])] = rec
        if torn:
            log.warning("skipped %d torn manifest line(s) in %s", torn, self.path)
        return out

    def done(self) -> set[str]:
        return {t for t, r in self.records().items() if r["status"] == "done"}

    def failed(self) -> dict[str, str]:
        return {t: str(r.get("reason", "")) for t, r in self.records().items() if r["status"] == "failed"}

    def append(self, targets: Iterable[str], status: str, reason: str = "", **extra: Any) -> None:
        """Record ``status`` (``done`` or ``failed``) for each target."""
        now = datetime.now(timezone.utc).isoformat()
        lines = "".join(
            json.dumps({"target": str(t), "status": status, "reason": reason, "at": now, **extra}) + "\n"
            for t in targets
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(lines)
                fh.flush()
                os.fsync(fh.fileno())
