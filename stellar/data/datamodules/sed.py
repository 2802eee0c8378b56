"""SEDs: per-band magnitudes and the feature table that XGBoost and the MLP read."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.datamodules.base import StellarDataModule
from stellar.data.preprocess.sed import colours, deredden
from stellar.data.sources.base import Source
from stellar.data.store import Dataset as StoredDataset
from stellar.errors import StellarConfigError

log = logging.getLogger(__name__)


class SEDDataModule(StellarDataModule):
    """Photometry: batch fields ``mag``, ``mag_err`` (B, n_bands; native magnitudes, NaN where masked) and
    ``features`` (B, F) float32 with NaN where missing; :attr:`feature_names` names the columns of ``features``.

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
    **kwargs
        See :class:`StellarDataModule`.
    """

    fields = ("mag", "mag_err")

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
        **kwargs: Any,
    ):
        super().__init__(source, store_root, **kwargs)
        self.bands = None if bands is None else [str(b) for b in bands]
        self.all_colours = bool(all_colours)
        self.use_errors = bool(use_errors)
        self.deredden = bool(deredden)
        self.abs_mag_band = abs_mag_band
        self.extra_features = [str(c) for c in extra_features]
        self.feature_names: list[str] = []
        self.stored_bands: list[str] = []

    def load_arrays(self, ds: StoredDataset, meta: pd.DataFrame) -> dict[str, np.ndarray]:
        stored = [str(b) for b in ds.attrs.get("bands", [])]
        bands = self.bands if self.bands is not None else stored
        unknown = [b for b in bands if b not in stored]
        if unknown or not bands:
            raise StellarConfigError(f"bands {unknown or bands} are not in dataset {ds.name!r}; it has {stored}")
        cols = [stored.index(b) for b in bands]
        mag = ds.load("mag")[:, cols].astype(np.float64)
        err = ds.load("mag_err")[:, cols].astype(np.float64)
        mask = ~np.isfinite(mag)
        if self.deredden and "ebv" in meta.columns:
            mag, err_out, mask = deredden(mag, meta["ebv"].to_numpy(float), mask=mask, mag_err=err, bands=bands)
            err = err if err_out is None else err_out
        names = [f"mag_{b}" for b in bands]
        feats = [mag]
        if len(bands) > 1:
            pairs = (
                [(a, b) for i, a in enumerate(bands) for b in bands[i + 1 :]]
                if self.all_colours
                else list(itertools.pairwise(bands))
            )
            col, _col_err, _cmask = colours(mag, err, mask, pairs, bands=bands)
            feats.append(col)
            names += [f"{a}-{b}" for a, b in pairs]
        if self.use_errors:
            feats.append(err)
            names += [f"err_{b}" for b in bands]
        if self.abs_mag_band is not None:
            if self.abs_mag_band not in bands or "parallax" not in meta.columns:
                raise StellarConfigError(
                    f"abs_mag_band={self.abs_mag_band!r} needs a band of {bands} and a 'parallax' metadata column"
                )
            plx = meta["parallax"].to_numpy(float)
            with np.errstate(divide="ignore", invalid="ignore"):
                abs_mag = mag[:, bands.index(self.abs_mag_band)] + 5.0 * np.log10(
                    np.where(plx > 0, plx, np.nan) / 100.0
                )
            feats.append(abs_mag[:, None])
            names.append(f"absmag_{self.abs_mag_band}")
        missing = [c for c in self.extra_features if c not in meta.columns]
        if missing:
            raise StellarConfigError(f"extra_features {missing} are not metadata columns: {list(meta.columns)}")
        for c in self.extra_features:
            feats.append(pd.to_numeric(meta[c], errors="coerce").to_numpy(float)[:, None])
            names.append(c)
        features = np.concatenate(feats, axis=1)
        features = np.where(np.isfinite(features), features, np.nan).astype(np.float32)
        log.info(
            "SED features: %d columns %s; %d of %d entries missing (NaN)",
            len(names),
            names,
            int(np.isnan(features).sum()),
            features.size,
        )
        self.stored_bands, self.feature_names = bands, names
        return {"mag": mag.astype(np.float32), "mag_err": err.astype(np.float32), "features": features}

    @property
    def n_features(self) -> int:
        """Number of feature columns (after :meth:`setup`)."""
        return len(self.feature_names)
