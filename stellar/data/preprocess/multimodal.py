"""The preprocessing of a multi-modal model: each modality's own preprocessing object, by modality name.

:class:`~stellar.data.datamodules.multimodal.MultiModalDataModule` exposes one after ``setup`` (each modality's
datamodule has by then completed its own, e.g. the SED bands read from the dataset), so the registry stores it like
any other preprocessing and ``/predict/multimodal`` applies to each modality exactly what training applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from stellar.errors import StellarValueError


@dataclasses.dataclass(frozen=True)
class MultiModalPreprocessing:
    """Per-modality preprocessing objects (each with ``to_dict()``, rebuilt by Hydra from its ``_target_``).

    Parameters
    ----------
    modalities : dict of str to object
        ``spectrum`` → :class:`~stellar.data.preprocess.spectra.SpectrumPreprocessing`, ``sed`` →
        :class:`~stellar.data.preprocess.sed_inputs.SEDPreprocessing`, ``lightcurve`` →
        :class:`~stellar.data.preprocess.lightcurve_inputs.LightCurvePreprocessing`; ``None`` where a modality
        stores its data as read.
    """

    modalities: dict[str, Any]

    def __post_init__(self) -> None:
        from omegaconf import DictConfig, OmegaConf

        mods: Any = self.modalities
        if isinstance(mods, DictConfig):  # from Hydra (``_recursive_`` off): the to_dict() form
            mods = OmegaConf.to_container(mods)
        if not isinstance(mods, Mapping) or not mods:
            raise StellarValueError(f"modalities must be a non-empty dict of preprocessing objects; got {mods!r}")
        object.__setattr__(self, "modalities", {str(m): _build(p) for m, p in mods.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form with a ``_target_`` at every level, so that Hydra rebuilds it as is."""
        out: dict[str, Any] = {}
        for m, prep in self.modalities.items():
            if prep is None or isinstance(prep, dict):
                out[m] = prep
            else:
                out[m] = {"_target_": f"{type(prep).__module__}.{type(prep).__qualname__}", **prep.to_dict()}
        return {
            "_target_": f"{type(self).__module__}.{type(self).__qualname__}",
            "_recursive_": False,
            "modalities": out,
        }


def _build(prep: Any) -> Any:
    """A preprocessing object from itself or from its ``to_dict()`` form (a mapping with ``_target_``)."""
    if not isinstance(prep, Mapping):
        return prep
    from hydra.utils import instantiate

    if "_target_" not in prep:
        raise StellarValueError(f"a modality's preprocessing must be an object or its to_dict() form; got {prep!r}")
    return instantiate(dict(prep))
