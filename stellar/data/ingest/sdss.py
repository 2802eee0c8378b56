"""SDSS spectra: by plate/MJD/fiber, by specobjid or by position, from the SAS through the shared policy.

Positions and specobjids are resolved with one SkyServer SQL query each (CSV answer after a ``#Table1`` line,
as astroquery.sdss reads it); the spectrum is then the ``spec-PLATE-MJD-FIBER.fits`` file of the SAS ``lite``
tree. Both the modern spec file (HDU1 ``COADD`` table, HDU2 specobj/spAll row) and the older image layout
(HDU0 flux, HDU1 ivar, HDU2 log10 λ, HDU3 mask) are parsed.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits

from stellar.data.ingest.base import Namer, Task, TaskResult, has, named_rows, position_id
from stellar.data.ingest.policy import Fetcher, FetchError, Request
from stellar.data.ingest.records import Record
from stellar.errors import StellarDataError

log = logging.getLogger(__name__)

SPECTRA_UNITS = {
    "loglam": "dex(Angstrom)",
    "flux": "1e-17 erg / (s cm2 Angstrom)",
    "ivar": "1e+34 s2 cm4 Angstrom2 / erg2",
    "and_mask": "",
}
_SDSS_RUN2D = {"26", "103", "104"}  # SDSS-I/II reductions live under sdss/, the rest under eboss/


def _s(value: Any) -> str:
    return value.decode().strip() if isinstance(value, bytes) else str(value).strip()


_JNAME = re.compile(r"J(\d{2})(\d{2})(\d{2}(?:\.\d+)?)([+-])(\d{2})(\d{2})(\d{2}(?:\.\d+)?)")


def _jname_position(source: str) -> dict[str, float]:
    """``ra``/``dec`` (deg) from an ``SDSS Jhhmmss.ss+ddmmss.s`` file name; NaN (logged) when there is none."""
    m = _JNAME.search(Path(source).name)
    if m is None:
        log.info("%s: no J-name in the file name; the object position is unknown (NaN)", source)
        return {"ra": np.nan, "dec": np.nan}
    h, mi, s, sign, d, dm, ds = m.groups()
    ra = 15.0 * (int(h) + int(mi) / 60.0 + float(s) / 3600.0)
    dec = (1 if sign == "+" else -1) * (int(d) + int(dm) / 60.0 + float(ds) / 3600.0)
    return {"ra": ra, "dec": dec}


_TFORM = re.compile(r"(\d*)([LBIJKEDA])")
_CODES = {"L": "i1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


def _hdu(hdul: fits.HDUList, index: int) -> Any:
    try:
        return hdul[index]
    except IndexError:
        return None


def _first_row(hdul: fits.HDUList, index: int, body: bytes) -> dict[str, Any]:
    """First row of binary table ``index`` as {UPPER-CASE name: value}.

    The specobj/spAll table of a BOSS spec file has ~230 columns, and astropy builds a Column object for each
    before giving one value (0.15–0.5 s a file); when every TFORM is a plain fixed-size type the row is read
    straight from the bytes with a numpy dtype built from the header, otherwise through astropy.
    """
    hdr = hdul[index].header
    fields: list[tuple[str, Any]] = []
    for i in range(1, int(hdr["TFIELDS"]) + 1):
        m = _TFORM.fullmatch(str(hdr[f"TFORM{i}"]).strip())
        if m is None or hdr.get(f"TSCAL{i}", 1) != 1 or hdr.get(f"TZERO{i}", 0) != 0:
            data = hdul[index].data
            return {c.upper(): data[c][0] for c in data.columns.names}
        r, code = int(m.group(1) or 1), m.group(2)
        dtype: Any = f"S{r}" if code == "A" else (_CODES[code], (r,)) if r > 1 else _CODES[code]
        fields.append((str(hdr[f"TTYPE{i}"]).upper(), dtype))
    dt = np.dtype(fields)
    if dt.itemsize != int(hdr["NAXIS1"]):
        data = hdul[index].data
        return {c.upper(): data[c][0] for c in data.columns.names}
    # the HDU's own fileinfo: HDUList.fileinfo re-serialises every header of the file to check for resizing
    row = np.frombuffer(body, dtype=dt, count=1, offset=int(hdul[index].fileinfo()["datLoc"]))[0]
    return {name: row[name] for name in dt.names or ()}


def parse_spec(body: bytes, source: str, object_id: str | None = None) -> Record:
    """One SDSS spectrum FITS (either layout) as a record; ``object_id`` defaults to ``sdss-PLATE-MJD-FIBER``."""
    with fits.open(io.BytesIO(body), memmap=False) as h:
        head = h[0].header
        hdu1, hdu2 = _hdu(h, 1), _hdu(h, 2)  # len(h) would read every one of the ~16 HDU headers
        if isinstance(hdu1, fits.BinTableHDU) and "loglam" in hdu1.columns.names:
            d = h[1].data
            arrays: dict[str, np.ndarray] = {
                "loglam": np.asarray(d["loglam"], dtype=np.float32),
                "flux": np.asarray(d["flux"], dtype=np.float32),
                "ivar": np.asarray(d["ivar"], dtype=np.float32),
                "and_mask": np.asarray(d["and_mask"], dtype=np.int32),
            }
            spec = _first_row(h, 2, body) if isinstance(hdu2, fits.BinTableHDU) else {}

            def col(name: str, default: Any = None) -> Any:
                return spec.get(name, default)

            meta: dict[str, Any] = {
                "class": _s(col("CLASS", "")),
                "subclass": _s(col("SUBCLASS", "")),
                "z": float(col("Z", np.nan)),
                "z_err": float(col("Z_ERR", np.nan)),
                "plate": int(col("PLATE", head.get("PLATEID", -1))),
                "mjd": int(col("MJD", head.get("MJD", -1))),
                "fiber": int(col("FIBERID", head.get("FIBERID", -1))),
                "specobjid": _s(col("SPECOBJID", "")),
                "run2d": _s(col("RUN2D", head.get("RUN2D", ""))),
                "ra": float(col("PLUG_RA", head.get("PLUG_RA", head.get("RA", np.nan)))),
                "dec": float(col("PLUG_DEC", head.get("PLUG_DEC", head.get("DEC", np.nan)))),
                "layout": "spec",
            }
        elif len(h) >= 4 and h[0].data is not None and h[0].data.ndim == 1:
            n = h[0].data.shape[0]
            arrays = {
                "loglam": np.asarray(h[2].data, dtype=np.float32),
                "flux": np.asarray(h[0].data, dtype=np.float32),
                "ivar": np.asarray(h[1].data, dtype=np.float32),
                "and_mask": np.asarray(h[3].data, dtype=np.int32),
            }
            if any(len(a) != n for a in arrays.values()):
                raise StellarDataError(f"{source}: image-layout HDUs have different lengths")
            meta = {
                "class": _s(head.get("CLASS", "")),
                "subclass": _s(head.get("SUBCLASS", "")),
                "z": float(head.get("Z", np.nan)),
                "z_err": np.nan,
                "plate": int(head.get("PLATEID", -1)),
                "mjd": int(head.get("MJD", -1)),
                "fiber": int(head.get("FIBERID", -1)),
                "specobjid": "",
                "run2d": _s(head.get("RUN2D", "")),
                # header RA/DEC of this layout are the plate centre; the object's position is in its J-name
                **_jname_position(source),
                "layout": "image",
            }
        else:
            raise StellarDataError(f"{source}: neither an SDSS spec file (COADD table) nor the image layout")
    if object_id is None:
        object_id = (
            f"sdss-{meta['plate']:04d}-{meta['mjd']:05d}-{meta['fiber']:04d}"
            if int(meta["plate"]) > 0 and int(meta["fiber"]) > 0
            else f"sdss-{Path(source).name.removesuffix('.fits')}"
        )
    return Record("sdss", "spectra", object_id, meta, arrays, source, dict(SPECTRA_UNITS), mask_of="flux")


def parse_skyserver_csv(body: bytes) -> pd.DataFrame:
    """A SkyServer SQL answer (CSV after a ``#Table1`` line) with lower-case column names."""
    lines = body.decode("utf-8", errors="replace").splitlines()
    lines = [ln for ln in lines if not ln.startswith("#")]
    if not lines:
        raise StellarDataError("empty SkyServer answer")
    df = pd.read_csv(io.StringIO("\n".join(lines)), dtype={"objid": str, "specobjid": str, "run2d": str})
    df.columns = [c.lower() for c in df.columns]
    return df


@dataclass
class SDSSConnector:
    """SDSS optical spectra.

    Target table columns (one of): ``plate, mjd, fiber`` (and ``run2d`` to skip the lookup), ``specobjid``,
    or ``ra, dec`` (deg, nearest spectrum within ``radius_arcsec``). An optional ``target_id`` names the row.
    """

    sas_url: str = "https://data.sdss.org/sas"
    skyserver_url: str = "https://skyserver.sdss.org/dr17/SkyServerWS/SearchTools/SqlSearch"
    release: str = "dr17"
    radius_arcsec: float = 2.0
    survey: str = "sdss"

    def plan(self, targets: pd.DataFrame) -> list[Task]:
        namers: list[Namer] = [
            (("plate", "mjd", "fiber"), lambda r: f"{int(r['plate']):04d}-{int(r['mjd']):05d}-{int(r['fiber']):04d}"),
            (("specobjid",), lambda r: str(r["specobjid"])),
            (("ra", "dec"), position_id),
        ]
        return [Task([t], [r]) for t, r in named_rows(targets, namers)]

    def _lookup(self, row: dict[str, Any], fetcher: Fetcher) -> dict[str, Any]:
        cols = "s.specobjid, s.plate, s.mjd, s.fiberid, s.run2d, s.ra, s.dec, s.class, s.subclass, s.z"
        if has(row, "plate", "mjd", "fiber"):
            where = (
                f"FROM SpecObj s WHERE s.plate = {int(row['plate'])} AND s.mjd = {int(row['mjd'])} "
                f"AND s.fiberid = {int(row['fiber'])}"
            )
        elif has(row, "specobjid"):
            where = f"FROM SpecObj s WHERE s.specobjid = {int(row['specobjid'])}"
        else:
            r_arcmin = self.radius_arcsec / 60.0
            where = (
                f"FROM SpecObj s JOIN dbo.fGetNearbySpecObjEq({float(row['ra'])}, {float(row['dec'])}, "
                f"{r_arcmin}) n ON s.specobjid = n.specobjid ORDER BY n.distance"
            )
        req = Request.make(self.skyserver_url, {"cmd": f"SELECT TOP 1 {cols} {where}", "format": "csv"}, kind="csv")
        df = parse_skyserver_csv(fetcher.fetch(req).read_bytes())
        if df.empty:
            raise FetchError("no SDSS spectrum matches", retryable=False)
        return dict(df.iloc[0])

    def spectrum_request(self, plate: int, mjd: int, fiber: int, run2d: str) -> Request:
        tree = "sdss" if run2d in _SDSS_RUN2D else "eboss"
        name = f"spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits"
        path = f"{self.release}/{tree}/spectro/redux/{run2d}/spectra/lite/{plate:04d}/{name}"
        return Request.make(f"{self.sas_url.rstrip('/')}/{path}", kind="fits")

    def run(self, task: Task, fetcher: Fetcher) -> TaskResult:
        (target,), (row,) = task.targets, task.rows
        try:
            if not has(row, "plate", "mjd", "fiber", "run2d"):
                found = self._lookup(row, fetcher)
                row = {
                    **row,
                    "plate": found["plate"],
                    "mjd": found["mjd"],
                    "fiber": found["fiberid"],
                    "run2d": str(found["run2d"]),
                }
            req = self.spectrum_request(int(row["plate"]), int(row["mjd"]), int(row["fiber"]), str(row["run2d"]))
            rec = parse_spec(fetcher.fetch(req).read_bytes(), req.url, object_id=f"sdss-{target}")
        except (FetchError, StellarDataError) as err:
            return TaskResult(failed={target: getattr(err, "reason", str(err))})
        return TaskResult(records=[rec])
