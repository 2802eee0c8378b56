"""Evaluation: splits, metrics and probability calibration."""

from stellar.evaluation.calibration import (
    BaseProbCalibrator,
    IsotonicCalibrator,
    NoCalibration,
    TemperatureScaler,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_curve,
)

__all__ = [
    "BaseProbCalibrator",
    "IsotonicCalibrator",
    "NoCalibration",
    "TemperatureScaler",
    "brier_score",
    "expected_calibration_error",
    "negative_log_likelihood",
    "reliability_curve",
]
