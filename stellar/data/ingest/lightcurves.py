"""Kepler, K2 and TESS light curves: search (lightkurve, online only), download through the shared policy,
parse the ``LIGHTCURVE`` table and stitch quarters/campaigns/sectors with per-segment normalisation."""

from __future__ import annotations

import io
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits

from stellar.data.ingest.base import Namer, Task, TaskResult, has, named_rows
from stellar.data.ingest.policy import Fetcher, FetchError, Request
from stellar.data.ingest.records import Record
from stellar.errors import StellarDataError, StellarValueError

log = logging.getLogger(__name__)

LC_UNITS = {"time": "d", "flux": "", "flux_err": "", "sap_flux": "", "sap_flux_err": "", "quality": "", "segment": ""}
_ID_KEYS = (("TICID", "tic"), ("KEPLERID", "kic"))


def parse_lc(body: bytes, source: str) -> Record:
    """One ``*_llc.fits`` / ``*_lc.fits`` file as a single-segment record (fluxes in e-/s, not normalised).

    ``time`` is in days from the file's BJD reference (``meta['bjd_ref']``); ``segment`` is the quarter,
    campaign or sector.
    """
    with fits.open(io.BytesIO(body), memmap=False) as h:
        if "LIGHTCURVE" not in h:
            raise StellarDataError(f"{source}: no LIGHTCURVE HDU; not a Kepler/K2/TESS light-curve file")
        head, lc = h[0].header, h["LIGHTCURVE"]
        d, lh = lc.data, lc.header
        names = d.columns.names
        qcol = "SAP_QUALITY" if "SAP_QUALITY" in names else "QUALITY"
        mission = str(head.get("MISSION", head.get("TELESCOP", ""))).strip().lower()
        mission = "k2" if mission == "k2" else "tess" if "tess" in mission else "kepler"
        segment = int(head.get("QUARTER", head.get("CAMPAIGN", head.get("SECTOR", -1))))
        prefix, number = next(((p, head[k]) for k, p in _ID_KEYS if k in head), ("obj", head.get("OBJECT", "")))
        if mission == "k2":
            prefix = "epic"
        arrays: dict[str, np.ndarray] = {
            "time": np.asarray(d["TIME"], dtype=np.float64),
            "flux": np.asarray(d["PDCSAP_FLUX"], dtype=np.float32),
            "flux_err": np.asarray(d["PDCSAP_FLUX_ERR"], dtype=np.float32),
            "sap_flux": np.asarray(d["SAP_FLUX"], dtype=np.float32),
            "sap_flux_err": np.asarray(d["SAP_FLUX_ERR"], dtype=np.float32),
            "quality": np.asarray(d[qcol], dtype=np.int32),
            "segment": np.full(len(d), segment, dtype=np.int16),
        }
        meta = {
            "mission": mission,
            "segments": str(segment),
            "ra": float(head.get("RA_OBJ", np.nan)),
            "dec": float(head.get("DEC_OBJ", np.nan)),
            "teff": float(head.get("TEFF") or np.nan),
            "logg": float(head.get("LOGG") or np.nan),
            "mag": float(head.get("KEPMAG", head.get("TESSMAG")) or np.nan),
            "bjd_ref": float(lh.get("BJDREFI", 0)) + float(lh.get("BJDREFF", 0.0)),
        }
    units = {
        **LC_UNITS,
        "flux": "electron / s",
        "flux_err": "electron / s",
        "sap_flux": "electron / s",
        "sap_flux_err": "electron / s",
    }
    return Record(mission, "lightcurve", f"{prefix}-{int(number)}", meta, arrays, source, units, mask_of="flux")


def stitch(records: list[Record]) -> list[Record]:
    """One record per (mission, object): segments in time order, each flux divided by its own median.

    PDCSAP and SAP fluxes are normalised separately (by the median of their finite values in that segment), and
    their errors by the same factor; a segment with no finite flux is dropped and counted.
    """
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.survey, r.object_id)].append(r)
    out = []
    for (_, oid), recs in groups.items():
        recs = sorted(
            recs, key=lambda r: float(np.nanmin(r.arrays["time"])) if np.isfinite(r.arrays["time"]).any() else np.inf
        )
        parts: dict[str, list[np.ndarray]] = defaultdict(list)
        kept = []
        for r in recs:
            a = dict(r.arrays)
            for f, e in (("flux", "flux_err"), ("sap_flux", "sap_flux_err")):
                med = np.nanmedian(a[f]) if np.isfinite(a[f]).any() else np.nan
                a[f], a[e] = a[f] / med, a[e] / med
            if not np.isfinite(a["flux"]).any():
                log.warning("dropped segment %s of %s: no finite PDCSAP flux", r.meta["segments"], oid)
                continue
            kept.append(r)
            for k, v in a.items():
                parts[k].append(v)
        if not kept:
            continue
        meta = {**kept[0].meta, "segments": ",".join(r.meta["segments"] for r in kept), "n_segments": len(kept)}
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        units = {**kept[0].units, "flux": "", "flux_err": "", "sap_flux": "", "sap_flux_err": ""}
        out.append(
            Record(
                kept[0].survey, "lightcurve", oid, meta, arrays, ";".join(r.source for r in kept), units, mask_of="flux"
            )
        )
    return out


@dataclass
class MASTLightCurveConnector:
    """Light curves of one mission (``kepler``, ``k2`` or ``tess``) from MAST.

    Target table: ``target`` (``KIC 10002792``, ``TIC 358108509``…) with optional ``quarter``, ``campaign`` or
    ``sector``, or ``data_uri`` (one or more ``mast:…`` URIs separated by ``;``), which skips the search. The
    search runs ``lightkurve.search_lightcurve`` (online only) and its answer is cached like any other.
    """

    mission: str = "kepler"
    download_url: str = "https://mast.stsci.edu/api/v0.1/Download/file"
    author: str | None = None
    exptime: str | None = "long"
    survey: str = ""

    def __post_init__(self) -> None:
        if self.mission not in ("kepler", "k2", "tess"):
            raise StellarValueError(f"mission must be 'kepler', 'k2' or 'tess'; got {self.mission!r}")
        self.survey = self.survey or self.mission

    def plan(self, targets: pd.DataFrame) -> list[Task]:
        namers: list[Namer] = [(("target",), lambda r: str(r["target"])), (("data_uri",), lambda r: str(r["data_uri"]))]
        return [Task([t], [r]) for t, r in named_rows(targets, namers)]

    def _search(self, row: dict[str, Any], fetcher: Fetcher) -> list[str]:
        segment = {k: int(row[k]) for k in ("quarter", "campaign", "sector") if has(row, k)}
        params = {
            "target": str(row["target"]),
            "mission": self.mission,
            "author": self.author or "",
            "exptime": self.exptime or "",
            **segment,
        }
        req = Request.make("lightkurve:search_lightcurve", params, kind="json")

        def search() -> bytes:
            import lightkurve as lk  # imported here: it is slow and only the search needs it

            res = lk.search_lightcurve(
                str(row["target"]), mission=self.mission, author=self.author, exptime=self.exptime, **segment
            )
            return json.dumps([str(u) for u in res.table["dataURI"]]).encode()

        uris = json.loads(fetcher.fetch_computed(req, search).read_bytes())
        if not uris:
            raise FetchError(f"no {self.mission} light curve found for {row['target']}", retryable=False)
        return [str(u) for u in uris]

    def run(self, task: Task, fetcher: Fetcher) -> TaskResult:
        (target,), (row,) = task.targets, task.rows
        try:
            uris = str(row["data_uri"]).split(";") if has(row, "data_uri") else self._search(row, fetcher)
            recs = []
            for uri in uris:
                req = Request.make(self.download_url, {"uri": uri.strip()}, kind="fits")
                recs.append(parse_lc(fetcher.fetch(req).read_bytes(), uri.strip()))
            stitched = stitch(recs)
        except (FetchError, StellarDataError) as err:
            return TaskResult(failed={target: getattr(err, "reason", str(err))})
        if len(stitched) != 1:
            ids = [r.object_id for r in stitched]
            return TaskResult(failed={target: f"files of {len(stitched)} different objects: {ids}"})
        return TaskResult(records=stitched)
