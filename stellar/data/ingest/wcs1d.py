"""One-dimensional FITS spectra with a linear or log-linear WCS, as stellar libraries (MILES, ELODIE, …) and IRAF
``onedspec`` write them: the flux is the primary image, the wavelength of each pixel comes from the header.

Wavelength of pixel ``p`` (0-based), with ``Δ`` = ``CD1_1`` or else ``CDELT1``, ``CRPIX1`` 0 when absent (the
FITS default, as astropy.wcs) and the numbers in the unit of ``CUNIT1`` (else the ``units=`` of IRAF's
``WAT1_001``, else Å):

- linear (``CTYPE1`` absent, ``LINEAR``, ``WAVE`` or ``AWAV``): ``CRVAL1 + (p + 1 − CRPIX1) Δ``;
- IRAF log-linear (``DC-FLAG = 1``): the same expression is log10 λ;
- FITS log (``CTYPE1`` = ``WAVE-LOG`` / ``AWAV-LOG``, Greisen et al. 2006): ``CRVAL1 exp((p + 1 − CRPIX1) Δ / CRVAL1)``,
  constant steps in ln λ.

astropy.wcs evaluates the linear and ``-LOG`` forms (``CUNIT1`` is taken off its copy of the header so that it
works in the file's numbers; the unit is applied here). Air or vacuum: ``AIRORVAC`` (``air``/``vac``), else
``VACUUM`` (T/F), else ``CTYPE1`` (``AWAV`` air, ``WAVE`` vacuum, the FITS meaning), else the caller's default
(``wcs1d_medium`` in ``conf/ingest.yaml``: air, as MILES and most ground-based libraries). Air wavelengths become
vacuum with :func:`stellar.data.preprocess.spectra.air_to_vacuum`, so that the record's ``loglam`` is log10 of the
vacuum wavelength in Å, like every other spectrum in the store; the pixels are kept as the file samples them
(the datamodule's :class:`~stellar.data.preprocess.spectra.SpectrumPreprocessing` resamples them onto its grid).
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from stellar.data.ingest.records import Record
from stellar.data.preprocess.spectra import air_to_vacuum
from stellar.errors import StellarConfigError, StellarDataError

log = logging.getLogger(__name__)

#: What ``wcs1d_medium`` may say.
MEDIA = ("air", "vacuum")
#: ``CTYPE1`` values of a wavelength axis this reader evaluates ("" = absent).
WAVE_CTYPES = ("", "LINEAR", "WAVE", "AWAV", "WAVE-LOG", "AWAV-LOG")
#: Wavelengths outside this range (Å) mean a misread header (e.g. log10 λ without ``DC-FLAG = 1``).
PLAUSIBLE_AA = (100.0, 1e6)
_WAT_UNITS = re.compile(r"\bunits=(\S+)")


def claims(header: fits.Header) -> bool:
    """Whether a primary header describes a WCS spectrum this reader owns: a wavelength ``CTYPE1`` (absent,
    ``LINEAR``, ``WAVE``, ``AWAV`` or their ``-LOG`` forms), an image, and one of ``CRVAL1``/``CDELT1``/``CD1_1``."""
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    has_wcs = any(k in header for k in ("CRVAL1", "CDELT1", "CD1_1"))
    return ctype in WAVE_CTYPES and has_wcs and int(header.get("NAXIS", 0)) > 0


def _unit(header: fits.Header, source: str) -> u.UnitBase:
    if "CUNIT1" in header:
        key, text = "CUNIT1", str(header["CUNIT1"]).strip()
    else:
        m = _WAT_UNITS.search(str(header.get("WAT1_001", "")))
        key, text = ("WAT1_001", m.group(1)) if m else ("", "Angstrom")
    if not key:
        log.info("%s: no CUNIT1 (nor IRAF WAT1_001 units); wavelengths taken to be in Å", source)
    unit = None
    for candidate in dict.fromkeys((text, text.lower(), text.lower().removesuffix("s"))):  # ANGSTROM, angstroms
        try:
            unit = u.Unit(candidate)
            break
        except ValueError:
            continue
    if unit is None or unit.physical_type != "length":
        raise StellarDataError(f"{source}: {key} {text!r} is not a length unit; a wavelength axis needs one")
    return unit


def wavelength(header: fits.Header, n_pix: int, source: str = "header") -> tuple[np.ndarray, str]:
    """Wavelength of each pixel as the header gives it, in Å (air or vacuum, as written), and the dispersion
    (``linear``, ``log10`` or ``ln``).

    Parameters
    ----------
    header : astropy.io.fits.Header
        Primary header of a 1-D spectrum.
    n_pix : int
        Number of pixels.
    source : str
        Named in errors.

    Returns
    -------
    (numpy.ndarray, str)
        ``(n_pix,)`` float64 wavelengths, Å, strictly increasing; the dispersion.

    Raises
    ------
    StellarDataError
        ``CRVAL1`` or both ``CDELT1``/``CD1_1`` missing, a non-positive step, a unit that is not a length,
        ``-LOG`` with ``DC-FLAG = 1``, wavelengths that do not increase or lie outside :data:`PLAUSIBLE_AA`.
    """
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    if "CRVAL1" not in header:
        raise StellarDataError(f"{source}: 1-D WCS spectrum without CRVAL1 (the wavelength at pixel CRPIX1)")
    step_key = "CD1_1" if "CD1_1" in header else "CDELT1" if "CDELT1" in header else None
    if step_key is None:
        raise StellarDataError(f"{source}: 1-D WCS spectrum with neither CDELT1 nor CD1_1 (the wavelength step)")
    step = float(header[step_key])
    if not step > 0:
        raise StellarDataError(f"{source}: {step_key} = {step}; the wavelength step must be > 0")
    dc_flag = int(header.get("DC-FLAG", 0))
    if dc_flag not in (-1, 0, 1):
        raise StellarDataError(f"{source}: DC-FLAG = {dc_flag}; allowed: -1 or 0 (linear), 1 (log10 λ)")
    if dc_flag == 1 and ctype.endswith("-LOG"):
        raise StellarDataError(f"{source}: CTYPE1 {ctype!r} and DC-FLAG = 1 both say log, in different conventions")
    if "CRPIX1" not in header:
        log.info("%s: no CRPIX1; the FITS default 0 is used (pixel 1 is at CRVAL1 + %s)", source, step_key)
    unit = _unit(header, source)
    wcs_header = header.copy()
    wcs_header.remove("CUNIT1", ignore_missing=True)  # wcslib would turn the numbers into metres
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        world = np.asarray(WCS(wcs_header, naxis=1).pixel_to_world_values(np.arange(n_pix)), dtype=np.float64)
    dispersion = "log10" if dc_flag == 1 else "ln" if ctype.endswith("-LOG") else "linear"
    if dispersion == "log10":
        world = 10.0**world
    wave = (world * unit).to_value(u.AA)
    if np.any(np.diff(wave) <= 0):
        raise StellarDataError(f"{source}: the WCS wavelengths do not increase along the pixels (see PC1_1)")
    lo, hi = PLAUSIBLE_AA
    if not (np.all(np.isfinite(wave)) and wave[0] >= lo and wave[-1] <= hi):
        raise StellarDataError(
            f"{source}: wavelengths {wave[0]:.6g}–{wave[-1]:.6g} Å from CRVAL1 = {header['CRVAL1']}, "
            f"{step_key} = {step} ({dispersion}, {unit}) are outside {lo:g}–{hi:g} Å; if CRVAL1 and {step_key} "
            "are log10 λ, the header needs DC-FLAG = 1"
        )
    return wave, dispersion


def medium(header: fits.Header, default: str, source: str = "header") -> tuple[str, str]:
    """``("air" | "vacuum", where it was read)``: ``AIRORVAC``, ``VACUUM``, ``CTYPE1`` or ``config`` (``default``).

    Raises
    ------
    StellarConfigError
        ``default`` is not one of :data:`MEDIA`.
    StellarDataError
        ``AIRORVAC`` says neither air nor vac.
    """
    if default not in MEDIA:
        raise StellarConfigError(f"wcs1d_medium must be one of {MEDIA}; got {default!r}")
    if "AIRORVAC" in header:
        said = str(header["AIRORVAC"]).strip().lower()
        if said not in ("air", "vac", "vacuum"):
            raise StellarDataError(f"{source}: AIRORVAC = {said!r}; allowed: 'air', 'vac'")
        return ("air" if said == "air" else "vacuum"), "AIRORVAC"
    if "VACUUM" in header:
        return ("vacuum" if bool(header["VACUUM"]) else "air"), "VACUUM"
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    if ctype.startswith(("AWAV", "WAVE")):
        return ("air" if ctype.startswith("AWAV") else "vacuum"), "CTYPE1"
    return default, "config"


def _position(header: fits.Header, source: str) -> dict[str, float]:
    """``ra``/``dec`` in deg: numbers are degrees, strings sexagesimal (RA in hours); NaN when absent."""
    ra, dec = header.get("RA"), header.get("DEC")
    if isinstance(ra, int | float) and isinstance(dec, int | float):
        return {"ra": float(ra), "dec": float(dec)}
    if isinstance(ra, str) and isinstance(dec, str):
        try:
            c = SkyCoord(ra, dec, unit=(u.hourangle, u.deg))
            return {"ra": float(c.ra.deg), "dec": float(c.dec.deg)}
        except ValueError:
            pass
    log.info("%s: no usable RA/DEC in the header; the position is unknown (NaN)", source)
    return {"ra": np.nan, "dec": np.nan}


def _stem(source: str) -> str:
    name = Path(source).name
    for suffix in (".gz", ".fits", ".fit", ".fts"):
        name = name.removesuffix(suffix)
    return name


def parse_wcs1d(body: bytes, source: str, default_medium: str = "air") -> Record:
    """A 1-D WCS FITS spectrum as a ``spectra`` record: ``loglam`` (log10 vacuum λ/Å) and ``flux``.

    The survey is the header's ``TPLLIB`` (a template library such as MILES) in lower case, else ``wcs1d``; the
    object id is ``<survey>-<file name without .fits>``. Non-finite flux is kept as NaN, counted and logged
    here, and masked by the store (:func:`~stellar.data.ingest.records.to_write_kwargs`).

    Parameters
    ----------
    body : bytes
        The FITS file.
    source : str
        Its path, named in the record and in errors.
    default_medium : {"air", "vacuum"}
        The medium of the wavelengths when the header does not say (see :func:`medium`).

    Raises
    ------
    StellarDataError
        Not a 1-D image of at least 2 pixels, data shorter than ``NAXIS1``, or a WCS :func:`wavelength` refuses.
    """
    with fits.open(io.BytesIO(body), memmap=False) as h:
        header = h[0].header.copy()
        try:
            data = h[0].data
        except (TypeError, ValueError) as err:  # astropy: "buffer is too small for requested array"
            raise StellarDataError(
                f"{source}: the header promises NAXIS1 = {header.get('NAXIS1')} pixels but the file holds fewer "
                f"(truncated?): {err}"
            ) from err
        shape = None if data is None else data.shape
        if data is None or data.ndim != 1 or data.size < 2:
            raise StellarDataError(
                f"{source}: a 1-D WCS spectrum needs a one-dimensional primary image of >= 2 pixels; it is {shape} "
                f"(NAXIS = {header.get('NAXIS')}); extract the spectrum first"
            )
        flux = np.asarray(data, dtype=np.float32)
    wave, dispersion = wavelength(header, flux.size, source)
    med, med_from = medium(header, default_medium, source)
    vac = air_to_vacuum(wave) if med == "air" else wave
    bad = ~np.isfinite(flux)
    if bad.any():
        log.info("%s: %d of %d flux pixels are not finite; masked in the store", source, int(bad.sum()), flux.size)
    survey = re.sub(r"\W+", "_", str(header.get("TPLLIB", "")).strip().lower()) or "wcs1d"
    meta: dict[str, Any] = {
        "object": str(header.get("OBJECT", "")).strip(),
        **_position(header, source),
        "medium": med,
        "medium_from": med_from,
        "dispersion": dispersion,
    }
    units = {"loglam": "dex(Angstrom)", "flux": str(header.get("BUNIT", "")).strip()}
    arrays = {"loglam": np.log10(vac), "flux": flux}
    return Record(survey, "spectra", f"{survey}-{_stem(source)}", meta, arrays, source, units, "flux")
