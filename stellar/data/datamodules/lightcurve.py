"""Multi-band light curves packed to a fixed length, with their periodogram period and variability features."""

from __future__ import annotations

from typing import Any

from stellar.data.datamodules.base import StellarDataModule
from stellar.data.preprocess.lightcurve_inputs import LightCurvePreprocessing
from stellar.data.sources.base import Source


class LightCurveDataModule(StellarDataModule):
    """Batch fields ``time``, ``flux`` (relative mag), ``flux_err``, ``band``, ``mask`` (B, n), ``period`` (B,)
    and ``features`` (B, F), as made by :class:`LightCurvePreprocessing`.

    Parameters
    ----------
    preprocessing : LightCurvePreprocessing
        Bands, packed length and feature settings; the same object the server applies to requests.
    **kwargs
        See :class:`StellarDataModule`.
    """

    fields = ("time", "flux", "flux_err", "band", "mask", "period", "features")

    def __init__(
        self, source: Source, store_root: str, preprocessing: LightCurvePreprocessing | None = None, **kwargs: Any
    ):
        super().__init__(source, store_root, **kwargs)
        self.preprocessing = preprocessing or LightCurvePreprocessing()

    @property
    def dataset_name(self) -> str:
        return self.source.dataset_name(self.preprocessing.to_dict())

    def build_kwargs(self) -> dict[str, Any]:
        return self.source.build(self.preprocessing)

    @property
    def feature_names(self) -> list[str]:
        return self.preprocessing.feature_names()
