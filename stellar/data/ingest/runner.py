"""The ingest loop shared by every connector: plan, skip what is done, fetch concurrently, record, store."""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from stellar.data.ingest.base import Connector, Task, TaskResult
from stellar.data.ingest.manifest import Manifest
from stellar.data.ingest.policy import Fetcher
from stellar.data.ingest.records import Record, store_records
from stellar.data.store import DatasetStore
from stellar.errors import StellarDataError
from stellar.utils import urls

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What one run did: counts, failures with reasons, datasets written, fetch counters, wall time."""

    n_targets: int
    n_done: int
    n_failed: int
    n_skipped_done: int
    failed: dict[str, str]
    datasets: list[str]
    fetch: dict[str, int]
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _run_safely(connector: Connector, task: Task, fetcher: Fetcher) -> TaskResult:
    try:
        return connector.run(task, fetcher)
    except Exception as err:  # one target's surprise must not end the run; it is listed with its reason
        log.exception("task %s failed unexpectedly", task.targets[:3])
        return TaskResult(failed={t: f"{type(err).__name__}: {err}" for t in task.targets})


def ingest(
    connector: Connector,
    targets: pd.DataFrame,
    *,
    store: DatasetStore | None,
    fetcher: Fetcher,
    manifest: Manifest,
    progress: bool = True,
    retry_failed: bool = True,
) -> IngestReport:
    """Ingest ``targets`` with ``connector``; resumable through ``manifest`` and the fetcher's cache.

    Targets the manifest lists as done are read from the cache only (nothing is downloaded for them); the rest
    (and, with ``retry_failed``, those that failed before) are fetched with up to ``policy.concurrency`` tasks in
    flight. Every target ends either done or failed with a reason, recorded as soon as its task ends. When
    ``store`` is given, the records of every done target of this table are written as one dataset per
    (survey, modality).
    """
    t0 = time.perf_counter()
    tasks = connector.plan(targets)
    all_ids = [t for task in tasks for t in task.targets]
    done_before = manifest.done() & set(all_ids)
    previous = manifest.failed()
    failed_before = set(previous) & set(all_ids)
    offline = Fetcher(fetcher.cache, replace(fetcher.policy, offline=True), validate=fetcher.validate)
    from_cache: list[Task] = []
    todo: list[Task] = []
    for task in tasks:
        pending = [t for t in task.targets if t not in done_before]
        if not pending or (not retry_failed and set(pending) <= failed_before):
            from_cache.append(task)  # done before (or failed before and not to be retried): no network
        else:
            todo.append(task)
    records: list[Record] = []
    failed: dict[str, str] = {}
    for task in from_cache:
        res = _run_safely(connector, task, offline)
        lost = [t for t in res.failed if t in done_before]
        if lost:  # a done target's cached answer went missing or bad: fetch the task again
            log.warning("%d done target(s) no longer readable from the cache; fetching again", len(lost))
            todo.append(task)
            continue
        records.extend(res.records)
        failed.update({t: previous[t] for t in res.failed})  # failed before, not retried: the old reason
    log.info(
        "%d target(s): %d done before, %d to fetch in %d task(s)",
        len(all_ids),
        len(done_before),
        sum(len(t.targets) for t in todo),
        len(todo),
    )
    bar = tqdm(
        total=sum(len(t.targets) for t in todo), desc=f"ingest {connector.survey}", unit="target", disable=not progress
    )
    with ThreadPoolExecutor(max_workers=fetcher.policy.concurrency) as pool:
        futures = {pool.submit(_run_safely, connector, task, fetcher): task for task in todo}
        for fut in as_completed(futures):
            task, res = futures[fut], fut.result()
            ok = [t for t in task.targets if t not in res.failed]
            if ok:
                manifest.append(ok, "done")
            for t, why in res.failed.items():
                manifest.append([t], "failed", why)
            records.extend(res.records)
            failed.update(res.failed)
            bar.update(len(task.targets))
            bar.set_postfix(failed=len(failed))
    bar.close()
    names: list[str] = []
    if store is not None and records:
        provenance = {
            "connector": type(connector).__name__,
            "survey": connector.survey,
            "cache": str(fetcher.cache.root),
            "manifest": str(manifest.path),
            "config": {k: v for k, v in vars(connector).items() if isinstance(v, (str, int, float))},
        }
        names = store_records(store, records, provenance)
    stored_ids = {t for task in tasks for t in task.targets} - set(failed)
    if failed:
        log.warning("%d of %d target(s) failed; reasons in %s", len(failed), len(all_ids), manifest.path)
    return IngestReport(
        n_targets=len(all_ids),
        n_done=len(stored_ids),
        n_failed=len(failed),
        n_skipped_done=len(done_before),
        failed=failed,
        datasets=names,
        fetch=fetcher.stats.as_dict() | {"offline_" + k: v for k, v in offline.stats.as_dict().items()},
        wall_s=time.perf_counter() - t0,
    )


def ingest_files(
    input_dir: str | Path,
    *,
    store: DatasetStore | None,
    manifest: Manifest,
    progress: bool = True,
    wcs1d_medium: str = "air",
) -> IngestReport:
    """Ingest every file under ``input_dir`` that a user downloaded already (no network).

    Each file is a target named by its path relative to ``input_dir``; formats are recognised by content and
    name (see :mod:`stellar.data.ingest.formats`, which ``wcs1d_medium`` is passed to). A file no parser
    understands is listed as failed with the reason ``unsupported: …``.
    """
    from stellar.data.ingest.formats import parse_file

    t0 = time.perf_counter()
    if not urls.is_dir(input_dir):
        raise StellarDataError(f"input_dir: {str(input_dir)!r} is not a folder")
    # one spelling of every file for its records' sources and the provenance's hashes: a local folder made absolute
    # (symlinks resolved), a URL as given
    root = urls.display(input_dir)
    files = [rel for rel in urls.find(root) if not urls.basename(rel).startswith(".")]
    records: list[Record] = []
    failed: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for rel in tqdm(files, desc="ingest files", unit="file", disable=not progress):
        path = urls.join(root, rel)
        try:
            body = urls.read_bytes(path)
            recs = parse_file(path, body=body, wcs1d_medium=wcs1d_medium)
        except Exception as err:  # listed with its reason; the other files go on
            failed[rel] = f"{type(err).__name__}: {err}"
            manifest.append([rel], "failed", failed[rel])
            continue
        digest = hashlib.sha256(body).hexdigest()
        manifest.append([rel], "done", n_records=len(recs), sha256=digest)
        hashes[path] = digest
        records.extend(recs)
    from stellar.data.ingest.lightcurves import stitch

    lcs = [r for r in records if r.modality == "lightcurve"]
    records = [r for r in records if r.modality != "lightcurve"] + stitch(lcs)
    provenance = {"input_dir": root, "file_sha256": hashes}
    names = store_records(store, records, provenance) if store is not None and records else []
    if failed:
        log.warning("%d of %d file(s) not ingested: %s", len(failed), len(files), failed)
    return IngestReport(
        n_targets=len(files),
        n_done=len(files) - len(failed),
        n_failed=len(failed),
        n_skipped_done=0,
        failed=failed,
        datasets=names,
        fetch={},
        wall_s=time.perf_counter() - t0,
        extra={"n_records": len(records)},
    )
