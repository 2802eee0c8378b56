"""``python -m stellar.monitor run_dir=<train run> datamodule.data_dir=<folder> split=none`` (or ``model=<name>[@ref]``,
``requests=<request log dir>``; config ``conf/monitor.yaml``): exits with status 1 on an alert when
``fail_on_alert=true``.

``model`` is the name of train's config group, which Hydra will not let a command line set as a value; so an
argument ``model=<name>[@ref]`` is read here as ``model_ref=<name>[@ref]`` (either spelling works)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from stellar.pipelines.common import registry_model_argument
from stellar.pipelines.monitor import run


@hydra.main(version_base="1.3", config_path="../conf", config_name="monitor")
def main(cfg: DictConfig) -> None:
    report, _ = run(cfg)
    status = exit_status(report, bool(cfg.fail_on_alert))
    if status:
        print(f"monitor: ALERT {report['alerts']}", file=sys.stderr)
        sys.exit(status)


def exit_status(report: dict, fail_on_alert: bool) -> int:
    """1 when ``fail_on_alert`` and the report alerts, else 0."""
    return int(fail_on_alert and bool(report["alert"]))


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *registry_model_argument(sys.argv[1:])]
    main()
