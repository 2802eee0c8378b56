"""``python -m stellar.crossmatch left.path=<file> right=<file|hipparcos|bsc5|store> …`` (config
``conf/crossmatch.yaml``): a match table and its provenance in the run folder (and optionally in the store)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from stellar.pipelines.crossmatch import run


@hydra.main(version_base="1.3", config_path="../conf", config_name="crossmatch")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
