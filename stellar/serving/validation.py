"""The 422 answer to a request body that fails validation, as strict JSON.

FastAPI's own handler echoes each error's ``input``; a body holding the ``NaN``/``Infinity`` literals that Python's
and JavaScript's JSON writers emit echoes them back as floats that strict JSON cannot encode, and the answer became
a 500. :func:`validation_error_response` answers the same 422 (same ``detail`` list: ``type``, ``loc``, ``msg``,
``input``…) with every non-finite number spelled as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

__all__ = ["strict_json", "validation_error_response"]


def strict_json(value: Any) -> Any:
    """``value`` (plain JSON data) with every non-finite float replaced by its JavaScript name.

    Examples
    --------
    >>> strict_json({"spectra": [[float("nan"), float("inf"), -float("inf"), 1.0]]})
    {'spectra': [['NaN', 'Infinity', '-Infinity', 1.0]]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


async def validation_error_response(request: Request, exc: Exception) -> JSONResponse:
    """The 422 of a :class:`~fastapi.exceptions.RequestValidationError`, encodable as strict JSON.

    Registered on the server's app for ``RequestValidationError`` (see :func:`stellar.serving.server.build_server`).
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else [{"msg": str(exc)}]
    return JSONResponse(status_code=422, content={"detail": strict_json(jsonable_encoder(errors))})
