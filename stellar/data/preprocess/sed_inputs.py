"""Model inputs from photometry: the one SED preprocessing object that the datamodule and the server share.

:class:`SEDPreprocessing` takes magnitudes (one row per object, one column per band of ``bands``), their errors
and per-object metadata columns, and returns what the models read:

- ``mag``, ``mag_err`` (N, B) float32, mag: dereddened with the ``ebv`` column when ``deredden`` and the column is
  given (NaN where masked);
- ``features`` (N, F) float32, NaN where missing, named by :meth:`SEDPreprocessing.feature_names`, in order: the
  magnitudes of ``bands``, colours of adjacent bands (or of every pair), the magnitude errors (``use_errors``), the
  absolute magnitude in ``abs_mag_band`` from the ``parallax`` column (mas; NaN where it is not positive), and the
  metadata columns ``extra_features`` as they are (e.g. ``redshift``, ``parallax``).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.preprocess.sed import colours, deredden
from stellar.errors import StellarConfigError, StellarValueError

log = logging.getLogger(__name__)

__all__ = ["SEDPreprocessing"]


@dataclasses.dataclass(frozen=True)
class SEDPreprocessing:
    """Magnitudes, errors, E(B−V), parallax and metadata columns → SED model inputs (see the module docstring).

    Parameters
    ----------
    bands : sequence of str, optional
        Bands of the magnitude columns, in order; ``None`` until a dataset's stored bands fill it in
        (:meth:`for_bands`).
    all_colours : bool
        Every band pair instead of adjacent pairs only.
    use_errors : bool
        Append the magnitude errors as features.
    deredden : bool
        Correct for extinction with the ``ebv`` column (mag), when one is given.
    abs_mag_band : str, optional
        Band whose absolute magnitude ``m + 5 log10(parallax / 100 mas)`` is a feature (needs ``parallax``, mas).
    extra_features : sequence of str
        Metadata columns appended as features.

    Examples
    --------
    >>> prep = SEDPreprocessing(bands=("sdss_g", "sdss_r"), deredden=False, extra_features=("parallax",))
    >>> out = prep([[15.0, 14.5]], None, {"parallax": [2.0]})
    >>> prep.feature_names(), out["features"].tolist()
    (['mag_sdss_g', 'mag_sdss_r', 'sdss_g-sdss_r', 'parallax'], [[15.0, 14.5, 0.5, 2.0]])
    """

    bands: tuple[str, ...] | None = None
    all_colours: bool = False
    use_errors: bool = False
    deredden: bool = True
    abs_mag_band: str | None = None
    extra_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(str(b) for b in self.bands))
        object.__setattr__(self, "extra_features", tuple(str(c) for c in self.extra_features))
        for name in ("all_colours", "use_errors", "deredden"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.abs_mag_band is not None:
            object.__setattr__(self, "abs_mag_band", str(self.abs_mag_band))

    # ---- serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain parameters: ``SEDPreprocessing(**d)`` (what the registry's ``instantiate`` does) rebuilds it."""
        d = dataclasses.asdict(self)
        d["bands"] = None if self.bands is None else list(self.bands)
        d["extra_features"] = list(self.extra_features)
        return d

    # ---- what it reads and makes -------------------------------------------------------------------------
    def for_bands(self, stored: Sequence[str], where: str = "the data") -> SEDPreprocessing:
        """This preprocessing with ``bands`` filled in from ``stored`` (all of them, in order) when unset.

        Raises
        ------
        StellarConfigError
            If a configured band is not in ``stored`` (``where`` names the dataset in the message), or none is left.
        """
        stored = [str(b) for b in stored]
        bands = list(self.bands) if self.bands is not None else stored
        unknown = [b for b in bands if b not in stored]
        if unknown or not bands:
            raise StellarConfigError(f"bands {unknown or bands} are not in {where}; it has {stored}")
        return self if self.bands is not None else dataclasses.replace(self, bands=tuple(bands))

    def _bands(self) -> list[str]:
        if not self.bands:
            raise StellarConfigError("SEDPreprocessing has no bands yet: give bands, or call for_bands(stored)")
        return list(self.bands)

    def colour_pairs(self) -> list[tuple[str, str]]:
        """Band pairs (a, b) whose colour ``a - b`` is a feature."""
        bands = self._bands()
        if self.all_colours:
            return [(a, b) for i, a in enumerate(bands) for b in bands[i + 1 :]]
        return list(itertools.pairwise(bands))

    def required_columns(self) -> list[str]:
        """Metadata columns the features need (``parallax`` for ``abs_mag_band``, then ``extra_features``);
        ``ebv`` is optional (without it nothing is dereddened)."""
        return (["parallax"] if self.abs_mag_band is not None else []) + list(self.extra_features)

    def feature_names(self) -> list[str]:
        """Names of the ``features`` columns, in order."""
        bands = self._bands()
        names = [f"mag_{b}" for b in bands]
        if len(bands) > 1:
            names += [f"{a}-{b}" for a, b in self.colour_pairs()]
        if self.use_errors:
            names += [f"err_{b}" for b in bands]
        if self.abs_mag_band is not None:
            names.append(f"absmag_{self.abs_mag_band}")
        return names + list(self.extra_features)

    # ---- the transform -----------------------------------------------------------------------------------
    def __call__(self, mag: Any, mag_err: Any, meta: Mapping[str, Any] | pd.DataFrame) -> dict[str, np.ndarray]:
        """Model inputs of photometry.

        Parameters
        ----------
        mag : array-like (N, B), mag
            Magnitudes in ``bands`` order; NaN where missing.
        mag_err : array-like (N, B) or None, mag
            1σ errors (``None``: unknown, NaN).
        meta : mapping of str to array-like (N,), or DataFrame
            Per-object columns: ``ebv`` (mag, optional), ``parallax`` (mas) and ``extra_features``.

        Returns
        -------
        dict of str to numpy.ndarray
            ``mag``, ``mag_err`` (N, B) and ``features`` (N, F), float32.
        """
        bands = self._bands()
        mag = np.asarray(mag, dtype=np.float64)
        err = np.full(mag.shape, np.nan) if mag_err is None else np.asarray(mag_err, dtype=np.float64)
        if mag.ndim != 2 or mag.shape[1] != len(bands) or err.shape != mag.shape:
            raise StellarValueError(
                f"mag and mag_err must be (N, {len(bands)}), one column per band of {bands}; "
                f"got {mag.shape} and {err.shape}"
            )
        if self.abs_mag_band is not None and (self.abs_mag_band not in bands or "parallax" not in meta):
            raise StellarConfigError(
                f"abs_mag_band={self.abs_mag_band!r} needs a band of {bands} and a 'parallax' metadata column"
            )
        missing = [c for c in self.extra_features if c not in meta]
        if missing:
            raise StellarConfigError(f"extra_features {missing} are not metadata columns: {list(meta)}")
        mask = ~np.isfinite(mag)
        if self.deredden and "ebv" in meta:
            ebv = np.asarray(meta["ebv"], dtype=float)
            mag, err_out, mask = deredden(mag, ebv, mask=mask, mag_err=err, bands=bands)
            err = err if err_out is None else err_out
        feats = [mag]
        if len(bands) > 1:
            feats.append(colours(mag, err, mask, self.colour_pairs(), bands=bands)[0])
        if self.use_errors:
            feats.append(err)
        if self.abs_mag_band is not None:
            plx = np.asarray(meta["parallax"], dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                abs_mag = mag[:, bands.index(self.abs_mag_band)] + 5.0 * np.log10(
                    np.where(plx > 0, plx, np.nan) / 100.0
                )
            feats.append(abs_mag[:, None])
        for c in self.extra_features:
            feats.append(np.asarray(pd.to_numeric(meta[c], errors="coerce"), dtype=float)[:, None])
        features = np.concatenate(feats, axis=1)
        features = np.where(np.isfinite(features), features, np.nan).astype(np.float32)
        names = self.feature_names()
        log.info(
            "SED features: %d columns %s; %d of %d entries missing (NaN)",
            len(names),
            names,
            int(np.isnan(features).sum()),
            features.size,
        )
        return {"mag": mag.astype(np.float32), "mag_err": err.astype(np.float32), "features": features}
