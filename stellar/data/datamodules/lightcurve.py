"""Multi-band light curves packed to a fixed length, with their periodogram period and variability features."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from stellar.data.augment import LightCurveAugmentation
from stellar.data.datamodules.base import StellarDataModule
from stellar.data.preprocess.lightcurve_inputs import LightCurvePreprocessing
from stellar.data.store import Dataset as StoredDataset
from stellar.errors import StellarConfigError


class LightCurveDataModule(StellarDataModule):
    """Batch fields ``time``, ``flux`` (relative mag), ``flux_err``, ``band``, ``mask`` (B, n), ``best_period``
    (B,, the periodogram period in days) and ``features`` (B, F), as made by :class:`LightCurvePreprocessing`.
    The catalogue period, when it is a target, is the separate ``period`` field.

    Takes the parameters of :class:`StellarDataModule`; for this modality:

    Parameters
    ----------
    preprocessing : LightCurvePreprocessing
        Bands, packed length and feature settings; the same object the server applies to requests.
    augment : LightCurveAugmentation, optional
        Applied to the batches of the training loader only (``datamodule/augment=lightcurve``); ``None`` (the
        default) trains on the stored light curves as they are.
    """

    fields = ("time", "flux", "flux_err", "band", "mask", "best_period", "features")

    def __init__(
        self,
        *args: Any,
        preprocessing: LightCurvePreprocessing | None = None,
        augment: LightCurveAugmentation | None = None,
        **kwargs: Any,
    ):
        if preprocessing is not None:
            kwargs["preprocessing"] = preprocessing
        super().__init__(*args, **kwargs)
        if augment is not None and not callable(augment):
            raise StellarConfigError(f"augment must be a callable on batches (LightCurveAugmentation); got {augment!r}")
        self.augment = augment

    def load_arrays(self, ds: StoredDataset, meta: pd.DataFrame, rows: slice | None = None) -> dict[str, np.ndarray]:
        """The stored fields; a dataset written before the periodogram period was named ``best_period`` holds it
        as the array ``period`` (the label ``period`` is always a column of the table, never an array)."""
        renamed = "best_period" not in ds.fields and "period" in ds.fields
        return {f: ds.load("period" if renamed and f == "best_period" else f, rows) for f in self.fields}

    def default_preprocessing(self) -> LightCurvePreprocessing:
        return LightCurvePreprocessing()

    @property
    def feature_names(self) -> list[str]:
        return self.preprocessing.feature_names()

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True, collate_fn=self.augment)
