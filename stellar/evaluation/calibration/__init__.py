"""Probability calibration: maps from model scores to calibrated class probabilities, and calibration metrics.

Every calibrator follows one contract (:class:`BaseProbCalibrator`): ``fit(scores, y_true)`` on held-out data,
``transform(scores)`` → probabilities of shape (N, C) whose rows sum to 1, and a JSON round trip
(``to_dict()`` / ``BaseProbCalibrator.from_dict(payload)``) so the fitted map travels with a registry version.
``input_kind`` says whether a calibrator reads raw ``"logits"`` or softmaxed ``"probs"``, so a pipeline knows
what to feed it. Labels must be known here (integers in ``[0, C)``); drop unlabelled rows (label < 0) first.

- :mod:`~stellar.evaluation.calibration.scores` — :func:`validate_scores` (the one validation helper), :func:`softmax`
- :mod:`~stellar.evaluation.calibration.diagnostics` — reliability curve, ECE, Brier score, NLL
- :mod:`~stellar.evaluation.calibration.base` — :class:`BaseProbCalibrator` (registry, persistence),
  :func:`calibrated_probs`
- :mod:`~stellar.evaluation.calibration.calibrators` — :class:`NoCalibration`, :class:`TemperatureScaler`,
  :class:`IsotonicCalibrator`
- :mod:`~stellar.evaluation.calibration.intervals` — regression intervals: :class:`BaseIntervalCalibrator`
  (the same registry and JSON round trip), :class:`NoIntervalCalibration`, :class:`VarianceScaler`,
  :class:`ConformalIntervals`, fitted on normalised residuals of ``<t>_mean``/``<t>_logvar``, and
  :class:`SubsetIntervalCalibrator` (one of them per modality subset of a multi-modal model, pooled fallback)
- :mod:`~stellar.evaluation.calibration.registry` — :class:`TypeRegistered`, the ``type_name`` registry both
  families share

This package imports nothing from ``stellar.evaluation.metrics`` (which builds its report on these functions), nor
from pipelines or serving (which both apply calibrators through :func:`calibrated_probs`).
"""

from stellar.evaluation.calibration.base import BaseProbCalibrator, calibrated_probs
from stellar.evaluation.calibration.calibrators import IsotonicCalibrator, NoCalibration, TemperatureScaler
from stellar.evaluation.calibration.diagnostics import (
    brier_score,
    expected_calibration_error,
    log_loss_per_row,
    negative_log_likelihood,
    reliability_curve,
)
from stellar.evaluation.calibration.intervals import (
    ONE_SIGMA,
    REPORT_LEVELS,
    BaseIntervalCalibrator,
    ConformalIntervals,
    NoIntervalCalibration,
    SubsetIntervalCalibrator,
    VarianceScaler,
    calibrated_outputs,
    conformal_quantile,
    gaussian_factor,
    inside_interval,
    normalised_residuals,
    subset_key,
    subset_names,
)
from stellar.evaluation.calibration.scores import INPUT_KINDS, PROB_SUM_TOL, InputKind, softmax, validate_scores

__all__ = [
    "INPUT_KINDS",
    "ONE_SIGMA",
    "PROB_SUM_TOL",
    "REPORT_LEVELS",
    "BaseIntervalCalibrator",
    "BaseProbCalibrator",
    "ConformalIntervals",
    "InputKind",
    "IsotonicCalibrator",
    "NoCalibration",
    "NoIntervalCalibration",
    "SubsetIntervalCalibrator",
    "TemperatureScaler",
    "VarianceScaler",
    "brier_score",
    "calibrated_outputs",
    "calibrated_probs",
    "conformal_quantile",
    "expected_calibration_error",
    "gaussian_factor",
    "inside_interval",
    "log_loss_per_row",
    "negative_log_likelihood",
    "normalised_residuals",
    "reliability_curve",
    "softmax",
    "subset_key",
    "subset_names",
    "validate_scores",
]
