"""XGBoost models for SEDs, with the predict contract of the neural models (see :mod:`stellar.models.estimators`).

:class:`SEDClassifier` and :class:`SEDRegressor` are the generic :class:`~stellar.models.estimators.XGBoostEstimator`
with the SED defaults (``inputs = ["features"]``: the feature table of
:class:`~stellar.data.preprocess.sed_inputs.SEDPreprocessing`, i.e. magnitudes, colours, errors, absolute magnitude
and extra columns, made by the SED datamodule in training and by ``/predict/sed`` in serving) and a check that each
has what it needs: class names for the classifier, targets for the regressor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stellar.errors import StellarConfigError
from stellar.models.estimators import XGBoostEstimator, feature_matrix

__all__ = ["SEDClassifier", "SEDRegressor", "XGBoostEstimator", "feature_matrix"]


class SEDClassifier(XGBoostEstimator):
    """Class probabilities from SED features (``multi:softprob``); see :class:`XGBoostEstimator` for parameters."""

    def __init__(self, name: str = "sed_xgboost", class_names: Sequence[str] | None = None, **kwargs: Any):
        if not class_names:
            raise StellarConfigError("SEDClassifier needs class_names (the datamodule's classes); got none")
        kwargs.setdefault("targets", ())
        super().__init__(name=name, class_names=class_names, **kwargs)


class SEDRegressor(XGBoostEstimator):
    """Physical parameters (e.g. Teff, logg) with a 16–84% quantile uncertainty; classes are not predicted.

    ``class_names`` passed by the pipeline are ignored: a regressor has no class head.
    """

    def __init__(
        self,
        name: str = "sed_xgboost_regressor",
        class_names: Sequence[str] | None = None,
        targets: Sequence[str] = ("teff", "logg"),
        **kwargs: Any,
    ):
        if not targets:
            raise StellarConfigError("SEDRegressor needs targets, e.g. [teff, logg]; got none")
        super().__init__(name=name, class_names=None, targets=targets, **kwargs)
