"""``run(cfg)`` behind ``python -m stellar.ingest``: a survey's targets, or a folder of downloaded files, into a store.

The connectors, the fetch policy, the raw cache and the loop they share live in :mod:`stellar.data.ingest`; this
module builds them from ``conf/ingest.yaml`` and runs them. Tests call :func:`run` with a composed config.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from stellar.data.ingest.cache import RawCache
from stellar.data.ingest.manifest import Manifest
from stellar.data.ingest.policy import Fetcher, FetchPolicy
from stellar.data.ingest.runner import IngestReport, ingest, ingest_files
from stellar.data.store import DatasetStore
from stellar.errors import StellarConfigError
from stellar.utils import urls

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ingest per ``cfg`` (see ``conf/ingest.yaml``); returns (report as a dict, {"report", "store"}).

    Parameters
    ----------
    cfg : DictConfig
        The composed ``conf/ingest.yaml``: exactly one of ``survey`` (with ``targets``) or ``input_dir``, and
        ``store``, ``cache_dir``, ``manifest``, ``policy``, ``offline``…

    Returns
    -------
    metrics : dict
        :meth:`IngestReport.as_dict` plus ``manifest`` (the path of the done/failed manifest).
    objects : dict
        ``report`` (the :class:`~stellar.data.ingest.runner.IngestReport`) and ``store`` (the
        :class:`~stellar.data.store.DatasetStore` written to).
    """
    if (cfg.survey is None) == (cfg.input_dir is None):
        raise StellarConfigError(
            f"give exactly one of survey=<{'|'.join(cfg.surveys)}> (with targets=<csv>) or input_dir=<folder>; "
            f"got survey={cfg.survey!r}, input_dir={cfg.input_dir!r}"
        )
    for key in ("cache_dir", "manifest"):  # appended to and renamed into place: a local folder's operations
        if cfg.get(key) and not urls.is_local(cfg[key]):
            raise StellarConfigError(
                f"{key}={cfg[key]!r}: the raw cache and its manifests are local (input_dir= and store= take URLs)"
            )
    store = DatasetStore(cfg.store)
    cache_dir = Path(cfg.cache_dir)
    manifest = Manifest(cfg.manifest or cache_dir / "manifests" / f"{cfg.survey or 'files'}.jsonl")
    report: IngestReport
    if cfg.input_dir is not None:
        report = ingest_files(
            cfg.input_dir, store=store, manifest=manifest, progress=cfg.progress, wcs1d_medium=cfg.wcs1d_medium
        )
    else:
        if cfg.survey not in cfg.surveys:
            raise StellarConfigError(f"survey={cfg.survey!r} is not one of {list(cfg.surveys)}")
        if cfg.targets is None:
            raise StellarConfigError("survey=… needs targets=<csv of targets>")
        policy = FetchPolicy(**OmegaConf.to_container(cfg.policy, resolve=True), offline=cfg.offline)  # type: ignore[arg-type]
        connector = instantiate(cfg.surveys[cfg.survey].connector)
        targets = pd.read_csv(cfg.targets, dtype=str, keep_default_na=False)
        report = ingest(
            connector,
            targets,
            store=store,
            fetcher=Fetcher(RawCache(cache_dir), policy),
            manifest=manifest,
            progress=cfg.progress,
            retry_failed=cfg.retry_failed,
        )
    out = report.as_dict()
    out["manifest"] = str(manifest.path)
    print(json.dumps({k: v for k, v in out.items() if k != "failed"} | {"n_failed_listed": len(report.failed)}))
    for target, why in sorted(report.failed.items())[:20]:
        print(f"failed: {target}: {why}")
    return out, {"report": report, "store": store}
