"""Monitoring: a training reference in every run and artifact, drift tests against it, and label-free estimates
of performance (see :mod:`stellar.pipelines.monitor` for ``python -m stellar.monitor``)."""

from stellar.monitoring.summaries import CATEGORICAL, is_categorical, summarize

__all__ = ["CATEGORICAL", "is_categorical", "summarize"]
