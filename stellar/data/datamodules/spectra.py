"""Spectra on a shared log-wavelength grid."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stellar.data.datamodules.base import StellarDataModule
from stellar.data.preprocess.spectra import SpectrumPreprocessing
from stellar.data.store import Dataset as StoredDataset


class SpectraDataModule(StellarDataModule):
    """Spectra on a shared log-wavelength grid: batch fields ``flux``, ``ivar``, ``mask`` (B, L), and
    ``continuum`` (B, L) when the preprocessing keeps the continuum's shape (``continuum_channel``).

    Takes the parameters of :class:`StellarDataModule`; for this modality:

    Parameters
    ----------
    preprocessing : SpectrumPreprocessing
        Resampling grid and continuum normalisation; the same object the server applies to requests.
    """

    fields = ("flux", "ivar", "mask")

    def default_preprocessing(self) -> SpectrumPreprocessing:
        return SpectrumPreprocessing()

    def load_arrays(self, ds: StoredDataset, meta: pd.DataFrame, rows: slice | None = None) -> dict[str, np.ndarray]:
        arrays = super().load_arrays(ds, meta, rows)
        if getattr(self.preprocessing, "continuum_channel", False):
            arrays["continuum"] = ds.load("continuum", rows)
        return arrays

    @property
    def log_wave(self) -> np.ndarray:
        return np.asarray(self.preprocessing.grid)
