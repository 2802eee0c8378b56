"""The one place where physical units are checked and stripped at public boundaries."""

from __future__ import annotations

from typing import Any

import astropy.units as u
import numpy as np

from stellar.errors import StellarValueError

#: physical unit of each regression target the models predict (evaluation reports, the predictor's Table columns)
TARGET_UNITS = {"teff": "K", "logg": "dex", "feh": "dex", "period": "d", "amplitude": "mag"}


def to_value(x: Any, unit: u.UnitBase | str, name: str, *, equivalencies: Any = None) -> np.ndarray:
    """Return ``x`` as a float ndarray expressed in ``unit``.

    A bare number or array is taken to be in ``unit`` already (the caller's signature says so);
    an astropy ``Quantity`` is converted, and one with an incompatible unit raises.

    Parameters
    ----------
    x : float, array-like or astropy.units.Quantity
        The value to check.
    unit : astropy unit or str
        The unit the kernels expect.
    name : str
        The argument name, used in error messages.
    equivalencies : list, optional
        Astropy equivalencies (e.g. ``u.spectral()``).

    Examples
    --------
    >>> import astropy.units as u
    >>> float(to_value(5000 * u.AA, "nm", "wave"))
    500.0
    """
    unit = u.Unit(unit)
    if isinstance(x, u.Quantity):
        try:
            return np.asarray(x.to_value(unit, equivalencies=equivalencies or []), dtype=float)
        except u.UnitConversionError as err:
            raise StellarValueError(f"{name} has unit {x.unit}, which cannot be converted to {unit}") from err
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError) as err:
        raise StellarValueError(f"{name} must be numeric (in {unit}); got {type(x).__name__}") from err
