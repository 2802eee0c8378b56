"""Spectrum preprocessing: pure, batch-first array functions shared by datamodules, simulators and the server.

Every function takes arrays whose last axis is the spectral axis (one spectrum per row), returns new arrays and
never mutates its inputs. Wavelengths are in Ångström (vacuum unless a function says otherwise); an astropy
``Quantity`` of any length unit is accepted wherever a wavelength is. Flux is flux density per unit wavelength
in arbitrary units, ``ivar`` its inverse variance, and ``mask`` is ``True`` on bad pixels.

:func:`preprocess_spectra` is the single entry point (air → vacuum, rest frame, flux-conserving resampling
onto a log-λ grid, continuum normalisation, cleaning); :class:`SpectrumPreprocessing` freezes its parameters
so that configs can build it with ``_target_`` and artifacts can store it with ``to_dict()``.

The functions live by step: ``_wave`` (grid, air to vacuum, rest frame), ``_inputs`` (checks, chunks of rows),
``_resample`` (flux-conserving resampling) and ``_pipeline`` (continuum normalisation, the one path and its
parameters); import them from here.
"""

from stellar.data.preprocess.spectra._pipeline import SpectrumPreprocessing, continuum_normalise, preprocess_spectra
from stellar.data.preprocess.spectra._resample import resample_flux_conserving
from stellar.data.preprocess.spectra._wave import C_KMS, air_to_vacuum, log_wavelength_grid, to_rest_frame

__all__ = [
    "C_KMS",
    "SpectrumPreprocessing",
    "air_to_vacuum",
    "continuum_normalise",
    "log_wavelength_grid",
    "preprocess_spectra",
    "resample_flux_conserving",
    "to_rest_frame",
]
