"""Gaia DR3 astrometry and photometry by source_id (in chunks) or by cone, as ADQL on the archive's TAP
``sync`` endpoint through the shared policy (no long-lived async job to time out; a failed chunk is retried or
listed, never cached). ``astroquery.gaia`` is not imported: it contacts the archive on import."""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stellar.data.ingest.base import Namer, Task, TaskResult, has, named_rows, position_id
from stellar.data.ingest.policy import Fetcher, FetchError, Request
from stellar.data.ingest.records import Record
from stellar.errors import StellarDataError

log = logging.getLogger(__name__)

BANDS = ("G", "BP", "RP")
COLUMNS = (
    "source_id",
    "ra",
    "dec",
    "parallax",
    "parallax_error",
    "pmra",
    "pmdec",
    "phot_g_mean_mag",
    "phot_bp_mean_mag",
    "phot_rp_mean_mag",
    "phot_g_mean_flux_over_error",
    "phot_bp_mean_flux_over_error",
    "phot_rp_mean_flux_over_error",
    "ruwe",
)
_MAG_PER_RELFLUX = 2.5 / np.log(10.0)


def read_table(body: bytes, fmt: str) -> pd.DataFrame:
    """A Gaia TAP answer (``votable``, ``ecsv``, ``csv`` or the archive's ``json``) with lower-case columns."""
    if fmt == "json":
        doc = json.loads(body)
        df = pd.DataFrame(doc["data"], columns=[m["name"] for m in doc["metadata"]])
    elif fmt == "csv":
        df = pd.read_csv(io.BytesIO(body))
    else:
        from astropy.table import Table

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # VOTable unit and ucd chatter
            df = Table.read(io.BytesIO(body), format="ascii.ecsv" if fmt == "ecsv" else "votable").to_pandas()
    df.columns = [str(c).lower() for c in df.columns]
    return df


def table_records(df: pd.DataFrame, source: str) -> list[Record]:
    """One record per Gaia source: ``mag`` and ``mag_err`` over (G, BP, RP), astrometry in the metadata.

    ``mag_err`` is ``2.5 / ln 10 / flux_over_error`` (photon noise only, no zero-point term). Missing columns
    (``ruwe`` is not in every answer) become NaN and are counted.
    """
    if "source_id" not in df.columns:
        raise StellarDataError(f"{source}: no source_id column; columns are {list(df.columns)[:10]}…")
    absent = [c for c in COLUMNS if c not in df.columns]
    if absent:
        log.info("%s lacks column(s) %s; stored as NaN", source, absent)
    col = {
        c: (pd.to_numeric(df[c], errors="coerce").to_numpy(float) if c in df.columns else np.full(len(df), np.nan))
        for c in COLUMNS[1:]
    }
    mag = np.stack([col[f"phot_{b.lower()}_mean_mag"] for b in BANDS], axis=1).astype(np.float32)
    foe = np.stack([col[f"phot_{b.lower()}_mean_flux_over_error"] for b in BANDS], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(foe > 0, _MAG_PER_RELFLUX / foe, np.nan).astype(np.float32)
    out = []
    for i, sid in enumerate(df["source_id"].astype("int64")):
        meta = {"source_id": str(sid), **{c: float(col[c][i]) for c in COLUMNS[1:] if "phot_" not in c}}
        out.append(
            Record(
                "gaia",
                "sed",
                f"gaia-dr3-{sid}",
                meta,
                {"mag": mag[i], "mag_err": err[i]},
                source,
                {"mag": "mag", "mag_err": "mag", "parallax": "mas", "ra": "deg", "dec": "deg"},
            )
        )
    return out


@dataclass
class GaiaConnector:
    """Gaia DR3 ``gaia_source`` rows.

    Target table: ``source_id`` rows (queried ``chunk_size`` at a time), or ``ra, dec`` (deg) with an optional
    ``radius_arcsec`` (default ``radius_arcsec``) for a cone.
    """

    tap_url: str = "https://gea.esac.esa.int/tap-server/tap"
    table: str = "gaiadr3.gaia_source"
    chunk_size: int = 500
    radius_arcsec: float = 5.0
    survey: str = "gaia"

    def plan(self, targets: pd.DataFrame) -> list[Task]:
        namers: list[Namer] = [
            (("source_id",), lambda r: str(int(r["source_id"]))),
            (("ra", "dec"), lambda r: f"cone{position_id(r)}"),
        ]
        named = named_rows(targets, namers)
        by_id = [(t, r) for t, r in named if has(r, "source_id")]
        cones = [Task([t], [r]) for t, r in named if not has(r, "source_id")]
        chunks = [by_id[i : i + self.chunk_size] for i in range(0, len(by_id), self.chunk_size)]
        return [Task([t for t, _ in c], [r for _, r in c]) for c in chunks] + cones

    def _query(self, adql: str, fetcher: Fetcher) -> pd.DataFrame:
        req = Request.make(
            f"{self.tap_url.rstrip('/')}/sync",
            {"REQUEST": "doQuery", "LANG": "ADQL", "FORMAT": "votable", "QUERY": adql},
            method="POST",
            kind="votable",
        )
        return read_table(fetcher.fetch(req).read_bytes(), "votable")

    def run(self, task: Task, fetcher: Fetcher) -> TaskResult:
        cols = ", ".join(COLUMNS)
        try:
            if has(task.rows[0], "source_id"):
                ids = [int(r["source_id"]) for r in task.rows]
                df = self._query(
                    f"SELECT {cols} FROM {self.table} WHERE source_id IN ({', '.join(map(str, ids))})", fetcher
                )
                recs = {int(r.meta["source_id"]): r for r in table_records(df, self.tap_url)}
                res = TaskResult()
                for t, sid in zip(task.targets, ids, strict=True):
                    if sid in recs:
                        res.records.append(recs[sid])
                    else:
                        res.failed[t] = f"source_id {sid} not in {self.table}"
                return res
            (t,), (row,) = task.targets, task.rows
            r_deg = float(row.get("radius_arcsec") or self.radius_arcsec) / 3600.0
            df = self._query(
                f"SELECT {cols} FROM {self.table} WHERE 1 = CONTAINS(POINT(ra, dec), "
                f"CIRCLE({float(row['ra'])}, {float(row['dec'])}, {r_deg}))",
                fetcher,
            )
            if df.empty:
                return TaskResult(failed={t: f"no source within {r_deg * 3600:.1f} arcsec"})
            return TaskResult(records=table_records(df, self.tap_url))
        except (FetchError, StellarDataError) as err:
            return TaskResult(failed={t: getattr(err, "reason", str(err)) for t in task.targets})
