"""The steps of the scheduled chain (ingest → train → evaluate → register → score → monitor) as plain functions.

Each step composes the project's Hydra config (``conf/<step>.yaml``) with overrides made from the chain's
parameters (a DAG run's ``conf``) and calls the step's pipeline, ``stellar.pipelines.<step>.run(cfg)``, exactly
as its command line would. Nothing here imports Airflow, nor the pipelines before a step runs (Airflow parses the
DAG file often): :mod:`stellar.orchestration.dag` wraps these functions in tasks, and the tests call them directly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from stellar.errors import StellarConfigError, StellarError

log = logging.getLogger(__name__)

#: the steps of the chain, in order; also the keys of ``ChainParams.overrides``
STEPS = ("ingest", "train", "evaluate", "register", "score", "monitor")


class MonitorAlertError(StellarError):
    """The monitor found drift or a performance drop: raised to fail the scheduled run."""


@dataclasses.dataclass(frozen=True)
class ChainParams:
    """What a run of the chain is about: the parameters of a DAG run (its ``conf``), each with its default.

    Parameters
    ----------
    model : str
        Option of train's ``model`` group; also the registered model's name.
    datamodule : str or None
        Option of train's ``datamodule`` group (``None``: the config's default, the built-in simulated spectra).
    experiment : str or None
        Option of train's ``experiment`` group.
    data_dir : str or None
        ``datamodule.data_dir`` (a folder or URL) for train; the batch of the monitor and the default catalogue of
        the score step.
    store_dir : str or None
        The dataset store (``paths.store_dir``) ingest writes and the datamodules read.
    registry_root : str or None
        The model registry (``registry.root``; ``None``: the config's default).
    alias : str
        Alias the register step points at the new version (score and monitor read that very version).
    runs_dir : str
        Folder of the chain's outputs: ``<runs_dir>/<run id>/<step>``.
    ingest_dir : str or None
        A folder of downloaded files for the ingest step (``input_dir=``).
    survey, targets : str or None
        Or a survey connector and its CSV of targets for the ingest step; with none of the three, ingest has
        nothing to do.
    score_input, score_output : str or None
        Catalogue the score step reads (default ``data_dir``; with neither, nothing is scored) and where it writes
        (default ``<runs_dir>/<run id>/score/scores.parquet``).
    fail_on_alert : bool
        Fail the run when the monitor alerts.
    overrides : mapping of str to list of str
        Further Hydra overrides per step (a key of :data:`STEPS`), e.g. ``{"train": ["trainer.max_epochs=5"]}``.
    """

    model: str = "spectral_cnn"
    datamodule: str | None = None
    experiment: str | None = None
    data_dir: str | None = None
    store_dir: str | None = None
    registry_root: str | None = None
    alias: str = "staging"
    runs_dir: str = "outputs/orchestration"
    ingest_dir: str | None = None
    survey: str | None = None
    targets: str | None = None
    score_input: str | None = None
    score_output: str | None = None
    fail_on_alert: bool = True
    overrides: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any] | None) -> ChainParams:
        """The parameters of a DAG run's ``conf``; ``None`` values take the defaults.

        Raises
        ------
        StellarConfigError
            For a key that is not a parameter, or ``overrides`` naming a step that is not one of :data:`STEPS`.
        """
        conf = {k: v for k, v in dict(conf or {}).items() if v is not None}
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(conf) - set(allowed))
        if unknown:
            raise StellarConfigError(f"DAG run conf keys {unknown} are not parameters of the chain; allowed: {allowed}")
        steps = dict(conf.get("overrides") or {})
        bad = sorted(set(steps) - set(STEPS))
        if bad:
            raise StellarConfigError(f"overrides names steps {bad}; allowed: {list(STEPS)}")
        conf["overrides"] = {k: [str(o) for o in v] for k, v in steps.items()}
        return cls(**conf)

    def output_dir(self, run_id: str, step: str) -> Path:
        """``<runs_dir>/<run id>/<step>``, the run id spelled for a folder name (Airflow's hold ``:`` and ``+``)."""
        return Path(self.runs_dir) / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id) / step


def _common(p: ChainParams, run_id: str, step: str, registry: bool = True) -> list[str]:
    """Overrides every step takes: its output folder, the store and (``registry``) the registry."""
    ovs = [f"paths.output_dir={p.output_dir(run_id, step)}", f"paths.log_dir={p.runs_dir}"]
    ovs += [f"paths.store_dir={p.store_dir}"] if p.store_dir else []
    ovs += [f"registry.root={p.registry_root}"] if p.registry_root and registry else []
    return ovs


def version_ref(tag: str) -> str:
    """``name@vN`` (a ``model_ref``) of a version's ``name:vN`` tag."""
    name, _, version = tag.partition(":")
    return f"{name}@{version}"


def ingest_overrides(p: ChainParams, run_id: str) -> list[str]:
    """``conf/ingest.yaml`` overrides: the folder, or the survey and its targets (``None``: nothing to ingest)."""
    ovs = _common(p, run_id, "ingest", registry=False)
    ovs += [f"cache_dir={p.output_dir(run_id, 'ingest') / 'raw_cache'}", "progress=false"]
    ovs += [f"input_dir={p.ingest_dir}"] if p.ingest_dir else []
    ovs += [f"survey={p.survey}", f"targets={p.targets}"] if p.survey else []
    return ovs + list(p.overrides.get("ingest", []))


def train_overrides(p: ChainParams, run_id: str) -> list[str]:
    """``conf/train.yaml`` overrides (registration is the register step's, after evaluation)."""
    ovs = [f"datamodule={p.datamodule}"] if p.datamodule else []
    ovs += [f"model={p.model}", "register=false", *_common(p, run_id, "train")]
    ovs += [f"experiment={p.experiment}"] if p.experiment else []
    ovs += [f"datamodule.data_dir={p.data_dir}"] if p.data_dir else []
    return ovs + list(p.overrides.get("train", []))


def run_overrides(p: ChainParams, run_id: str, step: str, run_dir: str) -> list[str]:
    """``conf/evaluate.yaml`` overrides of the evaluate and register steps: the train run folder."""
    return [f"run_dir={run_dir}", *_common(p, run_id, step), *p.overrides.get(step, [])]


def score_overrides(p: ChainParams, run_id: str, model_ref: str) -> list[str]:
    """``conf/score.yaml`` overrides: the registered model, the catalogue and where its scores go; in the task's
    process (``cluster=none``: the scheduler's worker is the unit of parallelism)."""
    out = p.score_output or str(p.output_dir(run_id, "score") / "scores.parquet")
    ovs = [f"model_ref={model_ref}", f"input={p.score_input or p.data_dir}", f"output={out}"]
    return [*ovs, "cluster=none", "progress=false", *_common(p, run_id, "score"), *p.overrides.get("score", [])]


def monitor_overrides(p: ChainParams, run_id: str, model_ref: str) -> list[str]:
    """``conf/monitor.yaml`` overrides: the registered model against ``data_dir`` (every object) or, without one,
    the test part of its training datamodule."""
    ovs = [f"model_ref={model_ref}", *_common(p, run_id, "monitor")]
    ovs += [f"datamodule.data_dir={p.data_dir}", "split=none"] if p.data_dir else []
    return ovs + list(p.overrides.get("monitor", []))


def compose_config(name: str, overrides: Sequence[str]) -> DictConfig:
    """``conf/<name>.yaml`` composed with ``overrides``, as its command line would compose it."""
    # the pipelines (torch, Lightning) load when a step runs, not when Airflow parses the DAG file
    from stellar.pipelines.common import CONF_DIR

    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR, job_name=f"orchestration_{name}"):
        return compose(name, overrides=list(overrides))


def ingest(conf: Mapping[str, Any] | None, run_id: str) -> dict[str, Any]:
    """Ingest step: ``stellar.pipelines.ingest.run``; the report without its per-target failures (JSON-sized)."""
    p = ChainParams.from_conf(conf)
    if not (p.ingest_dir or p.survey):
        log.info("ingest: no ingest_dir or survey given; nothing to ingest")
        return {"ingested": False}
    from stellar.pipelines.ingest import run

    report, _ = run(compose_config("ingest", ingest_overrides(p, run_id)))
    return {k: v for k, v in report.items() if k != "failed"} | {"n_failed": len(report.get("failed") or {})}


def train(conf: Mapping[str, Any] | None, run_id: str) -> str:
    """Train step: ``stellar.pipelines.train.run``; returns the run folder."""
    from stellar.pipelines.train import run

    cfg = compose_config("train", train_overrides(ChainParams.from_conf(conf), run_id))
    run(cfg)
    return str(cfg.paths.output_dir)


def evaluate(conf: Mapping[str, Any] | None, run_id: str, run_dir: str) -> dict[str, Any]:
    """Evaluate step: ``stellar.pipelines.evaluate.run`` on the train run's test part; the report's scalars."""
    from stellar.pipelines.evaluate import run

    report, _ = run(compose_config("evaluate", run_overrides(ChainParams.from_conf(conf), run_id, "evaluate", run_dir)))
    return json.loads(json.dumps({k: v for k, v in report.items() if k != "meta"}, default=float))


def register(conf: Mapping[str, Any] | None, run_id: str, run_dir: str) -> str:
    """Register step: the train run's best model, calibrators and reference as a new registry version (what
    ``train.py register=true`` stores), with the chain's alias pointed at it; returns ``<name>:v<N>``."""
    from stellar.pipelines.evaluate import load_run
    from stellar.registry.runs import register_run

    p = ChainParams.from_conf(conf)
    cfg = compose_config("evaluate", run_overrides(p, run_id, "register", run_dir))
    loaded = load_run(cfg, stage="fit")
    train_cfg = loaded["train_cfg"]
    with open_dict(train_cfg):  # the run's registry name, in this chain's registry, with this chain's alias
        train_cfg.registry = OmegaConf.merge(train_cfg.get("registry") or {}, {"aliases": [p.alias]})
        train_cfg.registry.root = cfg.registry.root
    objects = {"model": loaded["model"], "datamodule": loaded["dm"]} | {
        k: loaded[k] for k in ("calibrator", "interval_calibrator")
    }
    return str(register_run(train_cfg, run_dir, objects).tag)


def score(conf: Mapping[str, Any] | None, run_id: str, tag: str) -> dict[str, Any]:
    """Score step: ``stellar.pipelines.score.run`` of the version ``tag`` (``name:vN``) over the catalogue (none
    given: nothing to do)."""
    p = ChainParams.from_conf(conf)
    if not (p.score_input or p.data_dir):
        log.info("score: no score_input or data_dir given; nothing to score")
        return {"scored": False}
    from stellar.pipelines.score import run

    metrics, _ = run(compose_config("score", score_overrides(p, run_id, version_ref(tag))))
    return dict(metrics)


def monitor(conf: Mapping[str, Any] | None, run_id: str, tag: str) -> dict[str, Any]:
    """Monitor step: ``stellar.pipelines.monitor.run`` of the version ``tag`` (``name:vN``); raises
    :class:`MonitorAlertError` when the report alerts and ``fail_on_alert`` (the default)."""
    from stellar.pipelines.monitor import run

    p = ChainParams.from_conf(conf)
    report, objects = run(compose_config("monitor", monitor_overrides(p, run_id, version_ref(tag))))
    return check_alert(report, p.fail_on_alert, objects.get("paths"))


def check_alert(report: Mapping[str, Any], fail_on_alert: bool, paths: Any = None) -> dict[str, Any]:
    """``{"alert", "alerts"}`` of a monitor report; raises :class:`MonitorAlertError` naming the checks that alerted
    when ``fail_on_alert`` and the report alerts."""
    summary = {"alert": bool(report["alert"]), "alerts": list(report.get("alerts") or [])}
    if summary["alert"] and fail_on_alert:
        where = f"; report: {paths.get('html')}" if isinstance(paths, Mapping) and paths.get("html") else ""
        raise MonitorAlertError(f"monitor alerted on {summary['alerts']}{where}; fail_on_alert=false lets it pass")
    return summary
