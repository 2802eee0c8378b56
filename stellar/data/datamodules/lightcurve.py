"""Multi-band light curves packed to a fixed length, with their periodogram period and variability features."""

from __future__ import annotations

from stellar.data.datamodules.base import StellarDataModule
from stellar.data.preprocess.lightcurve_inputs import LightCurvePreprocessing


class LightCurveDataModule(StellarDataModule):
    """Batch fields ``time``, ``flux`` (relative mag), ``flux_err``, ``band``, ``mask`` (B, n), ``period`` (B,)
    and ``features`` (B, F), as made by :class:`LightCurvePreprocessing`.

    Takes the parameters of :class:`StellarDataModule`; for this modality:

    Parameters
    ----------
    preprocessing : LightCurvePreprocessing
        Bands, packed length and feature settings; the same object the server applies to requests.
    """

    fields = ("time", "flux", "flux_err", "band", "mask", "period", "features")

    def default_preprocessing(self) -> LightCurvePreprocessing:
        return LightCurvePreprocessing()

    @property
    def feature_names(self) -> list[str]:
        return self.preprocessing.feature_names()
