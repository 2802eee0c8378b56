"""Serve registered models: ``python serve.py [port=8000] [registry.root=…]`` (see conf/serve.yaml).

Endpoints: ``POST /predict/spectral``, ``/predict/lightcurve`` and ``/predict/sed``; OpenAPI at ``/openapi.json``.
"""

import hydra
from omegaconf import DictConfig

from stellar.pipelines.serve import run


@hydra.main(version_base="1.3", config_path="conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
