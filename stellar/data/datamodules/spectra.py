"""Spectra on a shared log-wavelength grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from stellar.data.datamodules.base import StellarDataModule
from stellar.data.preprocess.spectra import SpectrumPreprocessing
from stellar.data.sources.base import Source


class SpectraDataModule(StellarDataModule):
    """Spectra on a shared log-wavelength grid: batch fields ``flux``, ``ivar``, ``mask`` (B, L).

    Parameters
    ----------
    preprocessing : SpectrumPreprocessing
        Resampling grid and continuum normalisation; the same object the server applies to requests.
    **kwargs
        See :class:`StellarDataModule`.
    """

    fields = ("flux", "ivar", "mask")

    def __init__(
        self, source: Source, store_root: str, preprocessing: SpectrumPreprocessing | None = None, **kwargs: Any
    ):
        super().__init__(source, store_root, **kwargs)
        self.preprocessing = preprocessing or SpectrumPreprocessing()

    @property
    def dataset_name(self) -> str:
        return self.source.dataset_name(self.preprocessing.to_dict())

    def build_kwargs(self) -> dict[str, Any]:
        return self.source.build(self.preprocessing)

    @property
    def log_wave(self) -> np.ndarray:
        return np.asarray(self.preprocessing.grid)
