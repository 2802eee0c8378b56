"""Light-curve preprocessing: pure, batch-first array functions shared by datamodules, simulators and the server.

Light curves travel as padded ``(N, T)`` arrays (one light curve per row; a 1-D ``(T,)`` array is one light
curve) with a boolean ``mask`` that is ``True`` on bad or padded points, as in the dataset store. Times are in
days (BJD/BKJD/BTJD/MJD offsets alike; only differences matter here); an astropy ``Quantity`` of any time unit
is accepted wherever a time, period or window is, and frequencies are in 1/day (``Quantity`` accepted). Flux or
magnitude values carry arbitrary units. Every function returns new arrays and never mutates its inputs; points
newly masked are counted and logged at INFO.

Typical chain for a Kepler/TESS light curve::

    time, flux, err, quality = from_lightkurve(lc)
    mask = quality_mask(quality, mission="kepler") | ~np.isfinite(flux)
    flat, trend, mask = detrend_biweight(time, flux, mask, window=0.75)  # relative flux
    mask = sigma_clip(flat, mask, sigma=5.0)
    feats = features(time, flat, err / trend, mask)  # errors relative to the same trend

(``normalise`` gives relative flux without detrending.)

The functions live by step: ``_clean`` (lightkurve's arrays, quality flags, sigma clipping, normalisation),
``_detrend`` (the biweight), ``_periodograms`` (Lomb–Scargle power, phase folding, the period of the highest
peak) and ``_features``; import them from here. The input checks (:mod:`.._lc_rows`) and the periodogram core
(:mod:`.._periodogram`: frequency grid, the one peak finder) are shared with :mod:`..period`.
"""

# The private helpers imported "as" themselves, and _grid_params, are not API: the tests check them here.
from stellar.data.preprocess._periodogram import frequency_grid
from stellar.data.preprocess._periodogram import grid_params as _grid_params  # noqa: F401
from stellar.data.preprocess.lightcurve._clean import (
    MAD_TO_SIGMA,
    from_lightkurve,
    normalise,
    quality_mask,
    sigma_clip,
)
from stellar.data.preprocess.lightcurve._clean import _nanmedian_rows as _nanmedian_rows
from stellar.data.preprocess.lightcurve._clean import _quantile_sorted as _quantile_sorted
from stellar.data.preprocess.lightcurve._clean import _sorted_rows as _sorted_rows
from stellar.data.preprocess.lightcurve._detrend import detrend_biweight
from stellar.data.preprocess.lightcurve._features import features, to_fixed_length
from stellar.data.preprocess.lightcurve._periodograms import _best_of_single as _best_of_single
from stellar.data.preprocess.lightcurve._periodograms import _peak_periods as _peak_periods
from stellar.data.preprocess.lightcurve._periodograms import (
    lomb_scargle,
    multiband_lomb_scargle,
    peak_period,
    phase_fold,
)

__all__ = [
    "MAD_TO_SIGMA",
    "detrend_biweight",
    "features",
    "frequency_grid",
    "from_lightkurve",
    "lomb_scargle",
    "multiband_lomb_scargle",
    "normalise",
    "peak_period",
    "phase_fold",
    "quality_mask",
    "sigma_clip",
    "to_fixed_length",
]
