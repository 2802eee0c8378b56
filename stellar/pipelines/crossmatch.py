"""``run(cfg)`` behind ``python -m stellar.crossmatch``: cross-match a catalogue file against another or the store.

The catalogues and the matcher are built from ``conf/crossmatch.yaml`` (group ``catalog`` for each side, chosen
with ``catalog@left=…``, and group ``match``); the work is :mod:`stellar.data.crossmatch`. Tests call :func:`run`
with a composed config.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from stellar.data.crossmatch import Catalog, MatchResult, write_match
from stellar.data.store import DatasetStore
from stellar.errors import StellarConfigError, StellarError

log = logging.getLogger(__name__)

MATCHES_FILE = "matches.csv"
PROVENANCE_FILE = "provenance.json"


def _build(node: DictConfig, what: str) -> Any:
    """``instantiate(node)``, with a stellar error raised as itself (Hydra wraps it) and a missing value named."""
    try:
        return instantiate(node)
    except InstantiationException as err:
        if isinstance(err.__cause__, StellarError):
            raise err.__cause__ from err
        raise StellarConfigError(f"{what}: {err}") from err
    except Exception as err:  # omegaconf's MissingMandatoryValue and friends: say which part of the config
        if isinstance(err, StellarError):
            raise
        raise StellarConfigError(f"{what}: {err}") from err


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cross-match per ``cfg`` (see ``conf/crossmatch.yaml``) and write the match table and its provenance.

    Parameters
    ----------
    cfg : DictConfig
        The composed ``conf/crossmatch.yaml``: ``left`` and ``right`` (each builds a
        :class:`~stellar.data.crossmatch.Catalog`), ``match`` (a matcher), ``output_dir``, and optionally
        ``store_name`` to store the match table in ``store``.

    Returns
    -------
    metrics : dict
        The match counts and the separation median, 95th percentile and maximum (arcsec).
    objects : dict
        ``result`` (the :class:`~stellar.data.crossmatch.MatchResult`), ``left``, ``right`` and ``files``.
    """
    left: Catalog = _build(cfg.left, "left")
    right: Catalog = _build(cfg.right, "right")
    matcher = _build(cfg.match, "match")
    result: MatchResult = matcher(left, right)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"matches": out / MATCHES_FILE, "provenance": out / PROVENANCE_FILE}
    if cfg.store_name:
        result.provenance["stored_as"] = f"{cfg.store}::{cfg.store_name}"
        write_match(DatasetStore(cfg.store), cfg.store_name, result)
    result.table.to_csv(files["matches"], index=False)
    files["provenance"].write_text(json.dumps(result.provenance, indent=2, default=str))
    sep = result.provenance["separation_arcsec"]
    metrics = {**result.counts, **{f"separation_{k}_arcsec": v for k, v in sep.items()}}
    print(json.dumps(metrics))
    log.info("matches and provenance written to %s", out)
    return metrics, {"result": result, "left": left, "right": right, "files": files}
