"""SEDs: per-band magnitudes and the feature table that XGBoost and the MLP read."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.datamodules.base import StellarDataModule
from stellar.data.preprocess.sed_inputs import SEDPreprocessing
from stellar.data.sources.base import Source
from stellar.data.store import Dataset as StoredDataset
from stellar.errors import StellarConfigError

log = logging.getLogger(__name__)


class SEDDataModule(StellarDataModule):
    """Photometry: batch fields ``mag``, ``mag_err`` (B, n_bands; native magnitudes, NaN where masked) and
    ``features`` (B, F) float32 with NaN where missing, as made by
    :class:`~stellar.data.preprocess.sed_inputs.SEDPreprocessing` (the object the server applies to requests);
    :attr:`feature_names` names the columns of ``features``.

    Features, in order: the magnitudes of ``bands`` (dereddened with the ``ebv`` metadata column when ``deredden``
    and the column exists), colours of adjacent bands (or of every pair), the magnitude errors (``use_errors``),
    the absolute magnitude in ``abs_mag_band`` from the ``parallax`` column (mas; NaN where it is not positive), and
    the metadata columns ``extra_features`` as they are (e.g. ``redshift``, ``parallax``).

    Parameters
    ----------
    bands : sequence of str, optional
        Bands to use, a subset of the dataset's (default: all of them, in stored order).
    all_colours : bool
        Every band pair instead of adjacent pairs only.
    use_errors : bool
        Append the magnitude errors as features.
    deredden : bool
        Correct for extinction with the ``ebv`` metadata column, if there is one.
    abs_mag_band : str, optional
        Band whose absolute magnitude ``m + 5 log10(parallax / 100 mas)`` is a feature.
    extra_features : sequence of str
        Metadata columns appended as features.
    preprocessing : SEDPreprocessing, optional
        All of the above as one object (then leave those keys at their defaults).
    **kwargs
        See :class:`StellarDataModule`.
    """

    fields = ("mag", "mag_err")
    preprocessing: SEDPreprocessing

    def __init__(
        self,
        source: Source,
        store_root: str,
        bands: Sequence[str] | None = None,
        all_colours: bool = False,
        use_errors: bool = False,
        deredden: bool = True,
        abs_mag_band: str | None = None,
        extra_features: Sequence[str] = (),
        preprocessing: SEDPreprocessing | None = None,
        **kwargs: Any,
    ):
        keys = SEDPreprocessing(
            bands=None if bands is None else tuple(bands),
            all_colours=all_colours,
            use_errors=use_errors,
            deredden=deredden,
            abs_mag_band=abs_mag_band,
            extra_features=tuple(extra_features),
        )
        if preprocessing is not None and keys != SEDPreprocessing():
            raise StellarConfigError(
                "give the SED preprocessing either as preprocessing or as bands/all_colours/use_errors/deredden/"
                f"abs_mag_band/extra_features, not both; got {preprocessing} and {keys}"
            )
        super().__init__(source, store_root, preprocessing=preprocessing or keys, **kwargs)

    def load_arrays(self, ds: StoredDataset, meta: pd.DataFrame, rows: slice | None = None) -> dict[str, np.ndarray]:
        stored = [str(b) for b in ds.attrs.get("bands", [])]
        prep = self.preprocessing.for_bands(stored, where=f"dataset {ds.name!r}")
        cols = [stored.index(b) for b in prep.bands or ()]
        self.preprocessing = prep  # with the dataset's bands: what the registry stores and the server applies
        return prep(ds.load("mag", rows)[:, cols], ds.load("mag_err", rows)[:, cols], meta)

    @property
    def stored_bands(self) -> list[str]:
        """The bands of the magnitude columns (after :meth:`setup` when ``bands`` was left to the dataset)."""
        return list(self.preprocessing.bands or [])

    @property
    def feature_names(self) -> list[str]:
        """Names of the ``features`` columns (after :meth:`setup` when ``bands`` was left to the dataset)."""
        return self.preprocessing.feature_names() if self.preprocessing.bands else []

    @property
    def n_features(self) -> int:
        """Number of feature columns (after :meth:`setup`)."""
        return len(self.feature_names)
