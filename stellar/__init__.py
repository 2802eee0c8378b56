"""stellar: calibrated stellar classification and parameters from public survey data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stellar._version import __version__

if TYPE_CHECKING:
    from stellar.serving.predictor import Predictor

__all__ = ["__version__", "load"]


def load(model: str, registry: str | None = None) -> Predictor:
    """The predictor of a registered model: ``stellar.load("spectral_cnn@production").predict(flux, wavelength=…)``.

    Parameters
    ----------
    model : str
        ``<name>[@<version or alias>]`` (latest without one).
    registry : str, optional
        Registry root, a path or an fsspec URL (default ``$STELLAR_REGISTRY``, else ``registry``).

    Returns
    -------
    Predictor
        See :class:`stellar.serving.predictor.Predictor`; torch and the model load here, not on ``import stellar``.
    """
    from stellar.serving.predictor import load as _load

    return _load(model, registry)
