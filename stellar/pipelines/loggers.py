"""Experiment trackers that need more than their Lightning class (``conf/logger``)."""

from __future__ import annotations

import logging
import os
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger

log = logging.getLogger(__name__)


def mlflow_logger(tracking_uri: str | None = None, **kwargs: Any) -> MLFlowLogger:
    """Lightning's ``MLFlowLogger`` to ``tracking_uri``: a tracking server (``http://…``), a database, or a local
    file store (``file:<folder>``, no server needed; ``conf/logger/mlflow.yaml`` puts one in the run folder).

    MLflow 3 keeps the file store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``; for a
    ``file:`` URI this sets that variable when it is not set (an explicit ``false`` in the environment is kept).

    Parameters
    ----------
    tracking_uri : str, optional
        Where runs are recorded; ``None`` is MLflow's default (``MLFLOW_TRACKING_URI``, else ``./mlruns``).
    **kwargs
        Passed to ``MLFlowLogger`` (``experiment_name``, ``run_name``, ``tags``, ``log_model``…).
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "file:./mlruns"
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        log.info("MLflow: a local file store at %s", uri)
    return MLFlowLogger(tracking_uri=tracking_uri, **kwargs)
