"""Monitoring: a training reference in every run and artifact, drift tests against it, and label-free estimates
of performance (``python -m stellar.monitor``: :mod:`stellar.pipelines.monitor`)."""

from stellar.monitoring.checks import DEFAULTS, build_reference, check_batch
from stellar.monitoring.reference import REFERENCE_FILE, InputSketch, TrainingReference
from stellar.monitoring.summaries import CATEGORICAL, is_categorical, summarize

__all__ = [
    "CATEGORICAL",
    "DEFAULTS",
    "REFERENCE_FILE",
    "InputSketch",
    "TrainingReference",
    "build_reference",
    "check_batch",
    "is_categorical",
    "summarize",
]
