"""Files a user already has (``input_dir=``): recognise each by content and name and parse it into records.

Recognised: SDSS spec files (both layouts), LAMOST spectra (``.fits`` or ``.fits.gz``), Kepler/K2/TESS light
curves, Gaia TAP answers (VOTable, ECSV, archive JSON) and XP datalink zips, SIMBAD answers (TAP VOTable or the
script interface), SkyServer cross-id CSV, CDS XMatch CSV against 2MASS, MAST TIC JSON, EROS-2 ``.time`` light
curves, MACHO ``lc_*.tar.bz2`` archives and one-dimensional FITS spectra with a linear or log-linear WCS (stellar
libraries, IRAF; :mod:`~stellar.data.ingest.wcs1d`). Anything else raises ``StellarDataError('unsupported: …')``.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from stellar.data.ingest import gaia, simbad, wcs1d
from stellar.data.ingest.lightcurves import parse_lc
from stellar.data.ingest.records import Record
from stellar.data.ingest.sdss import SPECTRA_UNITS, parse_skyserver_csv, parse_spec
from stellar.errors import CorruptPayloadError, StellarDataError
from stellar.utils import urls

log = logging.getLogger(__name__)

MAG_LC_UNITS = {"time": "d", "mag": "mag", "mag_err": "mag", "band": ""}


def parse_lamost(body: bytes, source: str) -> Record:
    """A LAMOST low-resolution spectrum: primary image rows flux, ivar, wavelength (Å), andmask, ormask."""
    with fits.open(io.BytesIO(body), memmap=False) as h:
        head, img = h[0].header, h[0].data
        if img is None or img.ndim != 2 or img.shape[0] < 4:
            raise StellarDataError(f"{source}: LAMOST image should be (5, n_pix); it is {getattr(img, 'shape', None)}")
        arrays = {
            "loglam": np.log10(img[2].astype(np.float64)).astype(np.float32),
            "flux": img[0].astype(np.float32),
            "ivar": img[1].astype(np.float32),
            "and_mask": img[3].astype(np.int32),
        }
        meta = {
            "class": str(head.get("CLASS", "")).strip(),
            "subclass": str(head.get("SUBCLASS", "")).strip(),
            "z": float(head.get("Z", np.nan)),
            "ra": float(head.get("RA", np.nan)),
            "dec": float(head.get("DEC", np.nan)),
            "obsid": str(head.get("OBSID", "")),
            "designation": str(head.get("DESIG", "")).strip(),
        }
    oid = f"lamost-{meta['obsid'] or Path(source).name}"
    return Record(
        "lamost", "spectra", oid, meta, arrays, source, {**SPECTRA_UNITS, "flux": "", "ivar": ""}, mask_of="flux"
    )


def parse_fits(body: bytes, source: str, *, wcs1d_medium: str = "air") -> list[Record]:
    """A FITS file by its HDUs and primary header; ``wcs1d_medium`` see :func:`parse_file`."""
    try:
        with fits.open(io.BytesIO(body), memmap=False) as h:
            names = [hdu.name for hdu in h]
            telescope = str(h[0].header.get("TELESCOP", "")).upper()
            wcs_spectrum = wcs1d.claims(h[0].header)
    except OSError as err:  # astropy's "Empty or corrupt FITS file": parse_file promises a StellarDataError
        raise CorruptPayloadError(f"{source}: a FITS header with no readable HDU ({err})") from err
    if "LIGHTCURVE" in names:
        return [parse_lc(body, source)]
    if telescope.startswith("LAMOST"):
        return [parse_lamost(body, source)]
    if telescope.startswith("SDSS") or "COADD" in names:
        return [parse_spec(body, source)]
    if wcs_spectrum:
        return [wcs1d.parse_wcs1d(body, source, wcs1d_medium)]
    raise StellarDataError(f"unsupported: FITS with HDUs {names} and TELESCOP {telescope!r}")


def parse_gaia_zip(body: bytes, source: str) -> list[Record]:
    """A Gaia DR3 datalink zip: the ``XP_SAMPLED`` member becomes one ``xp_spectra`` record (wavelength nm,
    flux and error in W m⁻² nm⁻¹); the other products (XP coefficients, MCMC samples) are counted, not stored."""
    out, skipped = [], []
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        for name in z.namelist():
            if not name.startswith("XP_SAMPLED"):
                skipped.append(name)
                continue
            with fits.open(io.BytesIO(z.read(name)), memmap=False) as h:
                d = h[1].data
                arrays: dict[str, np.ndarray] = {
                    "wavelength": np.asarray(d["wavelength"], np.float64),
                    "flux": np.asarray(d["flux"], np.float32),
                    "flux_error": np.asarray(d["flux_error"], np.float32),
                }
            sid = name.rsplit(" ", 1)[-1].removesuffix(".fits")
            out.append(
                Record(
                    "gaia",
                    "xp_spectra",
                    f"gaia-dr3-{sid}",
                    {"source_id": sid, "ra": np.nan, "dec": np.nan},
                    arrays,
                    f"{source}!{name}",
                    {"wavelength": "nm", "flux": "W / (m2 nm)", "flux_error": "W / (m2 nm)"},
                    mask_of="flux",
                )
            )
    if skipped:
        log.info("%s: %d datalink product(s) not stored (no modality for them yet): %s", source, len(skipped), skipped)
    if not out:
        raise StellarDataError(f"unsupported: zip without an XP_SAMPLED product ({skipped})")
    return out


def _sed(survey: str, oid: str, bands: list[str], mags: list[float], errs: list[float], meta: dict, source: str):
    m = np.asarray(mags, dtype=np.float32)
    e = np.asarray(errs, dtype=np.float32)
    return Record(
        survey,
        "sed",
        oid,
        {**meta, "bands": ",".join(bands)},
        {"mag": m, "mag_err": e},
        source,
        {"mag": "mag", "mag_err": "mag"},
    )


def parse_xmatch_2mass(body: bytes, source: str) -> list[Record]:
    """A CDS XMatch answer against 2MASS: J, H, K magnitudes and errors (missing as NaN)."""
    df = pd.read_csv(io.BytesIO(body), dtype={"2MASS": str})
    out = []
    for r in df.to_dict("records"):
        meta = {
            "ra": float(r["RAJ2000"]),
            "dec": float(r["DEJ2000"]),
            "input_id": str(r.get("my_id", "")),
            "ang_dist_arcsec": float(r["angDist"]),
            "qfl": str(r.get("Qfl", "")),
        }
        out.append(
            _sed(
                "2mass",
                f"2mass-{r['2MASS']}",
                ["J", "H", "K"],
                [r[f"{b}mag"] for b in "JHK"],
                [r[f"e_{b}mag"] for b in "JHK"],
                meta,
                source,
            )
        )
    return out


TIC_BANDS = ("Tmag", "GAIAmag", "Bmag", "Vmag", "Jmag", "Hmag", "Kmag")


def parse_tic_json(body: bytes, source: str) -> list[Record]:
    """A MAST TIC catalogue answer (JSON ``data`` rows): magnitudes in ``TIC_BANDS`` order, Teff etc. in meta."""
    out = []
    for r in json.loads(body)["data"]:
        nan = float("nan")
        mags = [nan if r.get(b) is None else float(r[b]) for b in TIC_BANDS]
        errs = [nan if r.get(f"e_{b}") is None else float(r[f"e_{b}"]) for b in TIC_BANDS]
        meta = {
            "tic_id": str(r["ID"]),
            "ra": float(r["ra"]),
            "dec": float(r["dec"]),
            **{k: (nan if r.get(k) is None else float(r[k])) for k in ("Teff", "logg", "plx", "rad", "mass")},
            "obj_type": str(r.get("objType") or ""),
            "lumclass": str(r.get("lumclass") or ""),
        }
        out.append(_sed("tic", f"tic-{r['ID']}", [b.removesuffix("mag") for b in TIC_BANDS], mags, errs, meta, source))
    return out


def _mag_lc(survey: str, oid: str, bands: dict[str, np.ndarray], meta: dict, source: str, missing: float | None):
    """(time, mag, err) per band → one long-format record; ``missing`` magnitudes become NaN (counted)."""
    parts = [(i, a) for i, (_, a) in enumerate(bands.items())]
    time = np.concatenate([a[:, 0] for _, a in parts])
    mag = np.concatenate([a[:, 1] for _, a in parts]).astype(np.float32)
    err = np.concatenate([a[:, 2] for _, a in parts]).astype(np.float32)
    band = np.concatenate([np.full(len(a), i, np.int8) for i, a in parts])
    if missing is not None:
        bad = np.isclose(mag, missing)
        if bad.any():
            log.info(
                "%s: %d of %d magnitudes are the missing value %s; set to NaN",
                source,
                int(bad.sum()),
                len(mag),
                missing,
            )
        mag, err = np.where(bad, np.nan, mag), np.where(bad, np.nan, err)
    return Record(
        survey,
        "lightcurve_mag",
        oid,
        {**meta, "bands": ",".join(bands)},
        {"time": time, "mag": mag, "mag_err": err, "band": band},
        source,
        dict(MAG_LC_UNITS),
        mask_of="mag",
    )


def parse_eros(body: bytes, source: str) -> Record:
    """An EROS-2 ``.time`` file: date, R mag and error, B mag and error (99.999 = missing). The date is kept as
    written (days on the EROS time scale of the file; no conversion)."""
    text = body.decode("ascii", errors="replace")
    rows = np.loadtxt(io.StringIO(text), comments="#", ndmin=2)
    if rows.shape[1] < 5:
        raise StellarDataError(f"{source}: EROS .time rows need 5 columns; they have {rows.shape[1]}")
    header = [ln for ln in text.splitlines() if ln.startswith("#")]
    note = next((ln.strip("# ").rstrip(".") for ln in header[2:] if ln.strip("# ")), "")
    star = Path(source).name.removesuffix(".time")
    bands = {"R": rows[:, [0, 1, 2]], "B": rows[:, [0, 3, 4]]}
    return _mag_lc("eros", f"eros-{star}", bands, {"ra": np.nan, "dec": np.nan, "note": note}, source, 99.999)


def parse_macho_tar(body: bytes, source: str) -> Record:
    """A MACHO ``lc_FIELD.TILE.SEQ.tar.bz2``: one ``MJD Mag Err`` member per band (R, B); position from the
    member header (RA in hours)."""
    bands: dict[str, np.ndarray] = {}
    ra = dec = np.nan
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name, reverse=True):  # R before B
            fh = tar.extractfile(m)
            if fh is None:
                continue
            text = fh.read().decode("ascii", errors="replace")
            head = [ln.split() for ln in text.splitlines() if ln.startswith("#1") or ln.startswith("# 1")]
            if head and len(head[0]) >= 6:
                ra, dec = float(head[0][3]) * 15.0, float(head[0][4])
            band = m.name.rsplit(".", 2)[-2] if m.name.count(".") >= 2 else m.name
            bands[band] = np.loadtxt(io.StringIO(text), comments="#", ndmin=2)[:, :3]
    if not bands:
        raise StellarDataError(f"{source}: no light-curve members in the archive")
    star = Path(source).name.removeprefix("lc_").split(".tar")[0]
    return _mag_lc("macho", f"macho-{star}", bands, {"ra": ra, "dec": dec}, source, None)


def parse_file(path: str | Path, *, body: bytes | None = None, wcs1d_medium: str = "air") -> list[Record]:
    """Records of one file (a path or an fsspec URL), recognised by content and name.

    Parameters
    ----------
    path : str or Path
        The file.
    body : bytes, optional
        Its content, when the caller has read it already (default: read from ``path``).
    wcs1d_medium : {"air", "vacuum"}
        Wavelength medium of a 1-D WCS FITS spectrum whose header does not say (:mod:`~stellar.data.ingest.wcs1d`).

    Raises
    ------
    StellarDataError
        ``unsupported: …`` when no parser recognises the file; otherwise the parser's own complaint.
    """
    body = urls.read_bytes(path) if body is None else body
    name = urls.basename(path).lower()
    source = str(path)
    if name.endswith(".gz") and body[:2] == b"\x1f\x8b" and ".tar" not in name:
        body = gzip.decompress(body)
        name = name.removesuffix(".gz")
    if body.startswith(b"SIMPLE  ="):
        return parse_fits(body, source, wcs1d_medium=wcs1d_medium)
    if name.endswith((".tar.bz2", ".tar.gz", ".tgz", ".tar")):
        return [parse_macho_tar(body, source)]
    if name.endswith(".zip"):
        return parse_gaia_zip(body, source)
    if name.endswith(".time"):
        return [parse_eros(body, source)]
    head = body[:4096]
    if head.lstrip().startswith(b"::script::"):
        return simbad.answer_records(simbad.read_answer(body), source)
    if head.startswith(b"#Table1"):
        df = parse_skyserver_csv(body)
        return [
            Record(
                "sdss",
                "catalog",
                f"sdss-obj-{r['objid']}",
                {k: v for k, v in r.items() if k != "objid"} | {"objid": str(r["objid"])},
                {"coord": np.asarray([r["ra"], r["dec"]], np.float64)},
                source,
                {"coord": "deg"},
            )
            for r in df.to_dict("records")
        ]
    if name.endswith(".json"):
        doc = json.loads(body)
        if isinstance(doc, dict) and "metadata" in doc and "data" in doc:
            return gaia.table_records(gaia.read_table(body, "json"), source)
        if isinstance(doc, dict) and "fields" in doc and "data" in doc:
            return parse_tic_json(body, source)
        raise StellarDataError(f"unsupported: JSON with keys {sorted(doc)[:8] if isinstance(doc, dict) else type(doc)}")
    if name.endswith((".vot", ".xml", ".ecsv")):
        df = gaia.read_table(body, "ecsv" if name.endswith(".ecsv") else "votable")
        if "source_id" in df.columns:
            return gaia.table_records(df, source)
        if "main_id" in df.columns:
            return simbad.answer_records(simbad.read_answer(body), source)
        raise StellarDataError(f"unsupported: table with columns {list(df.columns)[:8]}")
    if name.endswith(".csv") and b"2MASS" in head and b"Jmag" in head:
        return parse_xmatch_2mass(body, source)
    raise StellarDataError(
        f"unsupported: {urls.basename(path)} is none of the recognised formats (see stellar.data.ingest.formats)"
    )
