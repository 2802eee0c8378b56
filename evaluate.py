"""Score a trained run: ``python evaluate.py run_dir=<run folder> [datamodule.data_dir=<folder> split=none]``."""

import hydra
from omegaconf import DictConfig

from stellar.pipelines.evaluate import run


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
