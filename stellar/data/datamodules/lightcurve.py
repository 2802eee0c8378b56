"""Multi-band light curves packed to a fixed length, with their periodogram period and variability features."""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from stellar.data.augment import LightCurveAugmentation
from stellar.data.datamodules.base import StellarDataModule
from stellar.data.preprocess.lightcurve_inputs import LightCurvePreprocessing
from stellar.errors import StellarConfigError


class LightCurveDataModule(StellarDataModule):
    """Batch fields ``time``, ``flux`` (relative mag), ``flux_err``, ``band``, ``mask`` (B, n), ``period`` (B,)
    and ``features`` (B, F), as made by :class:`LightCurvePreprocessing`.

    Takes the parameters of :class:`StellarDataModule`; for this modality:

    Parameters
    ----------
    preprocessing : LightCurvePreprocessing
        Bands, packed length and feature settings; the same object the server applies to requests.
    augment : LightCurveAugmentation, optional
        Applied to the batches of the training loader only (``datamodule/augment=lightcurve``); ``None`` (the
        default) trains on the stored light curves as they are.
    """

    fields = ("time", "flux", "flux_err", "band", "mask", "period", "features")

    def __init__(self, *args: Any, augment: LightCurveAugmentation | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if augment is not None and not callable(augment):
            raise StellarConfigError(f"augment must be a callable on batches (LightCurveAugmentation); got {augment!r}")
        self.augment = augment

    def default_preprocessing(self) -> LightCurvePreprocessing:
        return LightCurvePreprocessing()

    @property
    def feature_names(self) -> list[str]:
        return self.preprocessing.feature_names()

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True, collate_fn=self.augment)
