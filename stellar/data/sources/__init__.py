"""Dataset sources: each builds one stored dataset from a simulator or a folder of survey files."""

from stellar.data.sources.base import BUILD_VERSION, Source
from stellar.data.sources.sed import HipparcosSource, SDSS17Source, SimulatedSEDSource
from stellar.data.sources.spectra import MilesSource, SimulatedSpectraSource, der_snr_noise

__all__ = [
    "BUILD_VERSION",
    "HipparcosSource",
    "MilesSource",
    "SDSS17Source",
    "SimulatedSEDSource",
    "SimulatedSpectraSource",
    "Source",
    "der_snr_noise",
]
