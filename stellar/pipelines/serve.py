"""``run(cfg)`` behind ``python serve.py``: build the LitServer from ``conf/serve.yaml`` and serve until it stops.

What the server is made of (the endpoints, the payload limit, the optional API key) lives in
:mod:`stellar.serving.server`; this module only starts it. Tests build the server with
:func:`~stellar.serving.server.build_server` and drive it in-process.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from stellar.serving.server import build_server

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start the server and block until it stops (``python serve.py``).

    Parameters
    ----------
    cfg : DictConfig
        The composed ``conf/serve.yaml`` (``host``, ``port``, ``api_servers``, ``log_level``, ``endpoints``…).

    Returns
    -------
    metrics : dict
        ``routes``: the path of every endpoint served.
    objects : dict
        ``server``: the :class:`litserve.LitServer`.
    """
    server = build_server(cfg)
    routes = [api.api_path for api in server.litapi_connector]
    log.info("serving %s on http://%s:%s (OpenAPI at /docs, /openapi.json)", routes, cfg.host, cfg.port)
    server.run(
        host=str(cfg.host),
        port=int(cfg.port),
        num_api_servers=int(cfg.get("api_servers", 1)),
        generate_client_file=False,
        log_level=str(cfg.log_level),
    )
    return {"routes": routes}, {"server": server}
