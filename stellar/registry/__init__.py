"""The model registry: immutable, versioned model artifacts and movable aliases.

Layout under the registry root (a local path or an fsspec URL)::

    <name>/versions/v<N>/        one version, written once, never torn or overwritten by a concurrent writer
        .claim.json              the number's claim: the writer's token, created exclusively before anything else
        manifest.json            name, version, class names, targets, inputs, preprocessing, fingerprint, files and
                                 the claim's token; created exclusively and last: the version is then complete
        checkpoints/<file>       the run's best checkpoint (or booster file(s))
        config.yaml              the composed training config (interpolations intact)
        config_resolved.yaml     the resolved training config (what the server rebuilds the model from)
        calibrator.json          ``BaseProbCalibrator.to_dict()`` (absent when the run had none)
        metrics.json             the run's metrics
        MODEL_CARD.md            a short model card
    <name>/aliases/<alias>.json  ``{"version": N, …}``: ``production``, ``staging``…

- :mod:`~stellar.registry.store` — names, the layout under the root, hashed and atomic writes
  (the exclusive creates behind claims are :mod:`stellar.utils.claims`)
- :mod:`~stellar.registry.model_version` — :class:`ModelVersion`: one version's files and the model rebuilt from them
- :mod:`~stellar.registry.versions` — :class:`ModelRegistry`: resolve, get, register, aliases
- :mod:`~stellar.registry.cards` — the model card and the training data's fingerprint
- :mod:`~stellar.registry.runs` — :func:`register_run`, what ``train.py register=true`` calls
- :mod:`~stellar.registry.cli` — ``python -m stellar.registry list|versions|card|show|alias …``
"""

from stellar.registry.cards import default_card, fingerprint
from stellar.registry.cli import main
from stellar.registry.model_version import ModelVersion
from stellar.registry.runs import _modality as _modality
from stellar.registry.runs import register_run
from stellar.registry.store import CARD, DEFAULT_ROOT, LATEST, MANIFEST, RegistryStore, validate_name
from stellar.registry.versions import ModelRegistry

__all__ = [
    "CARD",
    "DEFAULT_ROOT",
    "LATEST",
    "MANIFEST",
    "ModelRegistry",
    "ModelVersion",
    "RegistryStore",
    "default_card",
    "fingerprint",
    "main",
    "register_run",
    "validate_name",
]
