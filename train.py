"""Train a model: ``python train.py [group=option ...] [key=value ...]`` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from stellar.pipelines.train import run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics, _ = run(cfg)
    # returned for Hydra sweepers that optimise a value
    value = metrics.get("val/loss")
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
