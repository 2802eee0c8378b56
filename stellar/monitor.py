"""``python -m stellar.monitor run_dir=<train run> datamodule.data_dir=<folder> split=none`` (or ``model=<name>[@ref]``,
``requests=<request log dir>``; config ``conf/monitor.yaml``): exits with status 3 (:data:`ALERT_EXIT_STATUS`) on an
alert when ``fail_on_alert=true``, so that a pipeline can tell an alert from a crash (status 1, Hydra's for an
exception).

``model`` is the name of train's config group, which Hydra will not let a command line set as a value; so an
argument ``model=<name>[@ref]`` is read here as ``model_ref=<name>[@ref]`` (either spelling works)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from stellar.pipelines.common import registry_model_argument
from stellar.pipelines.monitor import run

#: the exit status of an alert with ``fail_on_alert=true`` (a crash exits 1, a bad command line 2)
ALERT_EXIT_STATUS = 3


@hydra.main(version_base="1.3", config_path="../conf", config_name="monitor")
def main(cfg: DictConfig) -> None:
    report, _ = run(cfg)
    status = exit_status(report, bool(cfg.fail_on_alert))
    if status:
        print(f"monitor: ALERT {report['alerts']}", file=sys.stderr)
        sys.exit(status)


def exit_status(report: dict, fail_on_alert: bool) -> int:
    """:data:`ALERT_EXIT_STATUS` when ``fail_on_alert`` and the report alerts, else 0."""
    return ALERT_EXIT_STATUS if fail_on_alert and bool(report["alert"]) else 0


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *registry_model_argument(sys.argv[1:])]
    main()
