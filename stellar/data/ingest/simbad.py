"""SIMBAD main identifier and object type by name or position (TAP ``sync`` through the shared policy), with the
object type mapped to our taxonomy by :func:`stellar.data.labels.simbad_otype_labels` (unmapped types are kept
as ``unmapped`` and counted, never guessed)."""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stellar.data.ingest.base import Namer, Task, TaskResult, has, named_rows, position_id
from stellar.data.ingest.policy import Fetcher, FetchError, Request
from stellar.data.ingest.records import Record
from stellar.data.labels import simbad_otype_labels
from stellar.errors import StellarDataError

log = logging.getLogger(__name__)

_SCRIPT_DATA = b"::data::"


def read_answer(body: bytes) -> pd.DataFrame:
    """A SIMBAD TAP VOTable, or an answer of the older script interface (VOTable after ``::data::``), as a
    table with lower-case columns and ``ra``/``dec`` in degrees (sexagesimal strings are converted)."""
    from astropy.table import Table

    if body.lstrip().startswith(b"::script::") or _SCRIPT_DATA in body[:4096]:
        start = body.find(_SCRIPT_DATA)
        if start < 0:
            raise StellarDataError("SIMBAD script answer without a ::data:: section (an error answer?)")
        body = body[body.index(b"\n", start) + 1 :].lstrip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = Table.read(io.BytesIO(body), format="votable").to_pandas()
    df.columns = [str(c).lower() for c in df.columns]
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].map(lambda v: v.decode() if isinstance(v, bytes) else v)
    if len(df) and "ra" in df.columns and df["ra"].dtype == object:
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        c = SkyCoord(df["ra"].astype(str).tolist(), df["dec"].astype(str).tolist(), unit=(u.hourangle, u.deg))
        df["ra"], df["dec"] = c.ra.deg, c.dec.deg
    return df


def answer_records(df: pd.DataFrame, source: str, matched: list[str] | None = None) -> list[Record]:
    """One record per SIMBAD object; ``otype`` mapped to ``class`` and ``variability`` (``unmapped`` if not in
    the table, ``""`` when the answer carries no otype)."""
    otypes = df["otype"].fillna("").astype(str).tolist() if "otype" in df.columns else [""] * len(df)
    labels = simbad_otype_labels([o for o in otypes if o])
    it = iter(labels)
    recs = []
    for i, row in enumerate(df.itertuples(index=False)):
        d = row._asdict()
        otype = otypes[i]
        cls, var = next(it) if otype else ("", "")
        main_id = " ".join(str(d.get("main_id", "")).split())
        meta = {
            "main_id": main_id,
            "otype": otype,
            "class": cls,
            "variability": var,
            "sp_type": str(d.get("sp_type", "") or ""),
            "ra": float(d.get("ra", np.nan)),
            "dec": float(d.get("dec", np.nan)),
            "matched_id": matched[i] if matched else " ".join(str(d.get("matched_id", "") or "").split()),
        }
        coord = np.asarray([meta["ra"], meta["dec"]], dtype=np.float64)
        recs.append(Record("simbad", "catalog", f"simbad-{main_id}", meta, {"coord": coord}, source, {"coord": "deg"}))
    return recs


@dataclass
class SimbadConnector:
    """SIMBAD objects. Target table: ``name`` (any identifier SIMBAD knows) or ``ra, dec`` (deg, the nearest
    object within ``radius_arcsec``)."""

    tap_url: str = "https://simbad.cds.unistra.fr/simbad/sim-tap"
    radius_arcsec: float = 5.0
    survey: str = "simbad"

    def plan(self, targets: pd.DataFrame) -> list[Task]:
        namers: list[Namer] = [(("name",), lambda r: str(r["name"])), (("ra", "dec"), position_id)]
        return [Task([t], [r]) for t, r in named_rows(targets, namers)]

    def run(self, task: Task, fetcher: Fetcher) -> TaskResult:
        (t,), (row,) = task.targets, task.rows
        cols = "basic.main_id, basic.ra, basic.dec, basic.otype, basic.sp_type"
        if has(row, "name"):
            name = str(row["name"]).replace("'", "''")
            adql = (
                f"SELECT {cols}, ident.id AS matched_id FROM basic JOIN ident ON basic.oid = ident.oidref "
                f"WHERE ident.id = '{name}'"
            )
        else:
            point = f"POINT('ICRS', {float(row['ra'])}, {float(row['dec'])})"
            adql = (
                f"SELECT TOP 1 {cols} FROM basic WHERE CONTAINS(POINT('ICRS', basic.ra, basic.dec), "
                f"CIRCLE('ICRS', {float(row['ra'])}, {float(row['dec'])}, {self.radius_arcsec / 3600.0})) = 1 "
                f"ORDER BY DISTANCE(POINT('ICRS', basic.ra, basic.dec), {point})"
            )
        req = Request.make(
            f"{self.tap_url.rstrip('/')}/sync",
            {"REQUEST": "doQuery", "LANG": "ADQL", "FORMAT": "votable", "QUERY": adql},
            method="POST",
            kind="votable",
        )
        try:
            df = read_answer(fetcher.fetch(req).read_bytes())
        except (FetchError, StellarDataError) as err:
            return TaskResult(failed={t: getattr(err, "reason", str(err))})
        if df.empty:
            return TaskResult(failed={t: "no SIMBAD object matches"})
        return TaskResult(records=answer_records(df.iloc[:1], req.url, matched=[t]))
