"""Score a trained run or a registered model: ``python evaluate.py run_dir=<run folder>`` or
``python evaluate.py model=<name>[@<version or alias>] [registry.root=<path or URL>]``, each with optional
``datamodule.data_dir=<folder or URL> split=none``.

``model`` is the name of train's config group, so ``model=…`` is read as ``model_ref=…`` (either spelling works).
"""

import sys

import hydra
from omegaconf import DictConfig

from stellar.pipelines.common import registry_model_argument
from stellar.pipelines.evaluate import run


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *registry_model_argument(sys.argv[1:])]
    main()
