"""``run(cfg)`` behind ``python -m stellar.serving.scoring``: a catalogue scored with a registered model on the
executor ``cfg.cluster`` builds (:mod:`stellar.serving.executors`); the scoring itself is
:func:`stellar.serving.scoring.score`."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from stellar.registry import LATEST
from stellar.serving.scoring import score


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score ``cfg.input`` into ``cfg.output`` (``conf/score.yaml``).

    Returns
    -------
    metrics : dict
        ``n_objects``, ``n_errors`` (of a joined .csv/.parquet output; else ``None``), ``partitions``,
        ``computed`` (partitions computed by this run; the others were finished before), ``seconds`` (s) and
        ``objects_per_second`` (s⁻¹, objects computed by this run).
    objects : dict
        ``result``: the :class:`~stellar.serving.scoring.Scored` (``frame``: the joined table, if any).
    """
    name, _, ref = str(cfg.model_ref).partition("@")
    result = score(
        str(cfg.input),
        str(cfg.output),
        name,
        ref or LATEST,
        str(cfg.registry.root),
        str(cfg.id_column),
        int(cfg.partition_rows),
        bool(cfg.progress),
        cfg.store_root,
        instantiate(cfg.cluster),
    )
    metrics = {
        "n_objects": result.n_objects,
        "n_errors": result.n_errors if result.frame is not None else None,
        "partitions": result.partitions,
        "computed": len(result.computed),
        "seconds": result.seconds,
        "objects_per_second": result.objects_per_second,
    }
    return metrics, {"result": result}
