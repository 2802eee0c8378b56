"""``python -m stellar.ingest survey=<…> targets=<csv> store=<path>`` (config ``conf/ingest.yaml``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from stellar.pipelines.ingest import run


@hydra.main(version_base="1.3", config_path="../conf", config_name="ingest")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
