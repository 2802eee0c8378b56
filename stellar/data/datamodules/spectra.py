"""Spectra on a shared log-wavelength grid."""

from __future__ import annotations

import numpy as np

from stellar.data.datamodules.base import StellarDataModule
from stellar.data.preprocess.spectra import SpectrumPreprocessing


class SpectraDataModule(StellarDataModule):
    """Spectra on a shared log-wavelength grid: batch fields ``flux``, ``ivar``, ``mask`` (B, L).

    Takes the parameters of :class:`StellarDataModule`; for this modality:

    Parameters
    ----------
    preprocessing : SpectrumPreprocessing
        Resampling grid and continuum normalisation; the same object the server applies to requests.
    """

    fields = ("flux", "ivar", "mask")

    def default_preprocessing(self) -> SpectrumPreprocessing:
        return SpectrumPreprocessing()

    @property
    def log_wave(self) -> np.ndarray:
        return np.asarray(self.preprocessing.grid)
