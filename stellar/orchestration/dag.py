"""The Airflow DAG ``stellar_chain``: ingest → train → evaluate → register → score → monitor.

Each task calls one step of :mod:`stellar.orchestration.tasks` with the DAG run's parameters (the Params below,
which a run's ``conf`` overrides: ``airflow dags trigger stellar_chain --conf '{"model": "spectral_cnn"}'``). The
ingest task is retried (downloads fail transiently); a monitor alert fails the run. The schedule is
``STELLAR_CHAIN_SCHEDULE`` (a cron expression or preset such as ``@weekly``; unset: triggered runs only).

Point Airflow at this folder (``AIRFLOW__CORE__DAGS_FOLDER=<repo>/stellar/orchestration``), or run the chain once
in this process with ``python -m stellar.orchestration.dag '<conf JSON>'`` (``dag.test``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

from stellar.orchestration import tasks

#: retries of the ingest task and the first wait between them (doubled each time)
INGEST_RETRIES, INGEST_RETRY_DELAY = 3, timedelta(minutes=1)


def _param(field: dataclasses.Field) -> Param:
    """An Airflow Param with the default and JSON-schema type of a :class:`~stellar.orchestration.tasks.ChainParams`
    field."""
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    schema = {"str": "string", "bool": "boolean", "str | None": ["null", "string"]}.get(str(field.type), "object")
    return Param(default, type=schema)


def _context() -> tuple[dict[str, Any], str]:
    """The run's parameters and id."""
    ctx = get_current_context()
    return dict(ctx["params"]), str(ctx["run_id"])


with DAG(
    dag_id="stellar_chain",
    description="ingest → train → evaluate → register → score → monitor, each step a stellar pipeline",
    schedule=os.environ.get("STELLAR_CHAIN_SCHEDULE") or None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params={f.name: _param(f) for f in dataclasses.fields(tasks.ChainParams)},
    tags=["stellar"],
) as dag:

    @task(retries=INGEST_RETRIES, retry_delay=INGEST_RETRY_DELAY, retry_exponential_backoff=True)
    def ingest() -> dict[str, Any]:
        return tasks.ingest(*_context())

    @task
    def train(ingested: dict[str, Any]) -> str:
        return tasks.train(*_context())

    @task
    def evaluate(run_dir: str) -> dict[str, Any]:
        return tasks.evaluate(*_context(), run_dir)

    @task
    def register(run_dir: str, evaluation: dict[str, Any]) -> str:
        return tasks.register(*_context(), run_dir)

    @task
    def score(tag: str) -> dict[str, Any]:
        return tasks.score(*_context(), tag)

    @task
    def monitor(tag: str, scored: dict[str, Any]) -> dict[str, Any]:
        return tasks.monitor(*_context(), tag)

    run_dir = train(ingest())
    tag = register(run_dir, evaluate(run_dir))
    monitor(tag, score(tag))


if __name__ == "__main__":
    dag_run = dag.test(run_conf=json.loads(sys.argv[1]) if len(sys.argv) > 1 else None)
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    print(json.dumps({"dag_run": str(dag_run.state), "tasks": states}))
