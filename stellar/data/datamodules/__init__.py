"""DataModules: one store-backed base (:mod:`~stellar.data.datamodules.base`), a thin subclass per modality."""

from stellar.data.datamodules.base import StellarDataModule, TensorDictDataset
from stellar.data.datamodules.lightcurve import LightCurveDataModule
from stellar.data.datamodules.sed import SEDDataModule
from stellar.data.datamodules.spectra import SpectraDataModule

__all__ = ["LightCurveDataModule", "SEDDataModule", "SpectraDataModule", "StellarDataModule", "TensorDictDataset"]
