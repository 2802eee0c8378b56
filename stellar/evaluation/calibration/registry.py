"""A type registry for JSON-persisted objects: subclasses register by ``type_name`` under their family's root.

:class:`~stellar.evaluation.calibration.base.BaseProbCalibrator` and
:class:`~stellar.evaluation.calibration.intervals.BaseIntervalCalibrator` are two such families: each root holds
its own registry, so a probability calibrator's ``"type"`` is never mistaken for an interval calibrator's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from stellar.errors import StellarConfigError, StellarValueError


class TypeRegistered:
    """Mixin: a class that declares ``_registry = {}`` in its body is a root; its subclasses with a
    ``type_name`` of their own register there (classes without one are intermediate and are not registered)."""

    type_name: ClassVar[str]
    _registry: ClassVar[dict[str, type[Any]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("type_name")
        if "_registry" in cls.__dict__ or name is None:
            return
        known = cls._registry.get(name)
        # the same class defined again (a module reload) may replace itself; a different class may not
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise StellarConfigError(f"calibrator type {name!r} is already registered by {known.__qualname__}")
        cls._registry[name] = cls

    @classmethod
    def registered_types(cls) -> list[str]:
        """Names accepted in the ``"type"`` key of ``from_dict``."""
        return sorted(cls._registry)

    @classmethod
    def _registered_class(cls, payload: Any) -> type[Any]:
        """The registered subclass named by ``payload["type"]``; it must be ``cls`` or derive from it."""
        if not isinstance(payload, Mapping):
            raise StellarValueError(f"payload must be a mapping produced by to_dict(), found {type(payload).__name__}")
        name = payload.get("type")
        sub = cls._registry.get(name) if isinstance(name, str) else None
        if sub is None:
            raise StellarValueError(f"payload['type'] must be one of {cls.registered_types()}, found {name!r}")
        if not issubclass(sub, cls):
            raise StellarValueError(f"payload['type'] {name!r} builds a {sub.__name__}, not a {cls.__name__}")
        return sub

    @classmethod
    def _rebuild(cls, payload: Any, what: str) -> Any:
        """The registered subclass's ``_from_payload(payload)``; a missing or mistyped key becomes a
        :class:`StellarValueError` saying the payload of ``what`` (e.g. ``"calibrator"``) is malformed."""
        sub = cls._registered_class(payload)
        try:
            return sub._from_payload(payload)
        except StellarValueError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise StellarValueError(f"payload for {what} type {payload['type']!r} is malformed: {err!r}") from err

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any]) -> Any:
        """Build an instance from a ``to_dict`` payload (each family's root implements it)."""
        raise NotImplementedError
