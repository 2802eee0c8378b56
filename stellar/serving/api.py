"""LitServe APIs: one per modality, each serving one registered model through the training preprocessing.

The base :class:`StellarAPI` (jobs, failures, batching, the response) lives in :mod:`stellar.serving.base`; each
modality's endpoint in its own module (:mod:`~stellar.serving.spectral`, :mod:`~stellar.serving.lightcurve`,
:mod:`~stellar.serving.sed`, :mod:`~stellar.serving.multimodal`: the fused model).
This module gathers them under the names that ``conf/serve.yaml`` targets.
"""

from stellar.serving.base import CHUNK_ROWS, Failure, Job, StellarAPI
from stellar.serving.lightcurve import LightCurveAPI
from stellar.serving.multimodal import MultiModalAPI
from stellar.serving.sed import SEDAPI
from stellar.serving.spectral import SpectralAPI

__all__ = ["CHUNK_ROWS", "SEDAPI", "Failure", "Job", "LightCurveAPI", "MultiModalAPI", "SpectralAPI", "StellarAPI"]
