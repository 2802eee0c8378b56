"""Names that become path components (datasets in the store, models and aliases in the registry)."""

from __future__ import annotations

import re
from typing import Any

from stellar.errors import StellarValueError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def is_valid_name(value: Any) -> bool:
    """Whether ``value`` passes :func:`validate_name`."""
    return isinstance(value, str) and bool(_NAME_RE.match(value)) and ".." not in value


def validate_name(value: Any, what: str = "name") -> str:
    """A name safe as one path component: letters, digits, ``_-.``, starting with a letter or digit, no ``..``.

    Parameters
    ----------
    value : Any
        The candidate name.
    what : str
        What the name is for, used in the error message (e.g. ``"dataset name"``, ``"alias"``).

    Returns
    -------
    str
        ``value`` itself.

    Raises
    ------
    StellarValueError
        If ``value`` is not a string of up to 128 allowed characters.

    Examples
    --------
    >>> validate_name("spectral_cnn")
    'spectral_cnn'
    """
    if not is_valid_name(value):
        raise StellarValueError(
            f"{what} {value!r} is not allowed: use up to 128 letters, digits, '_', '-', '.' "
            "starting with a letter or digit (no path separators or '..')"
        )
    return value
