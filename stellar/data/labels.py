"""The one taxonomy module: survey labels (MK types, SDSS classes, SIMBAD otypes…) to model class lists.

Class names travel with every model artifact; nothing downstream hard-codes them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import numpy as np

log = logging.getLogger(__name__)

#: MK spectral-type letters, hot to cool: the class list of the spectral models.
MK_CLASSES: tuple[str, ...] = ("O", "B", "A", "F", "G", "K", "M")

#: Lower Teff edge (K) of each MK letter on the main sequence, hot to cool (Pecaut & Mamajek 2013, rounded).
#: A star at or above an edge and below the previous one gets that letter; below the last edge it is M.
MK_TEFF_EDGES_K: tuple[float, ...] = (31_500.0, 10_000.0, 7_300.0, 5_950.0, 5_300.0, 3_900.0)

_MK_PATTERN = re.compile(r"(?<![A-Za-z])([OBAFGKM])(?=[0-9.\s:IViv/+\-]|$)")


def mk_letter_from_teff(teff: np.ndarray | Iterable[float]) -> np.ndarray:
    """MK letter (as an index into :data:`MK_CLASSES`) of each effective temperature.

    Parameters
    ----------
    teff : array-like of float, K
        Effective temperatures.

    Returns
    -------
    numpy.ndarray of int
        Index into ``MK_CLASSES``; 0 is O, 6 is M.

    Examples
    --------
    >>> [MK_CLASSES[i] for i in mk_letter_from_teff([40000, 9500, 5772, 3000])]
    ['O', 'A', 'G', 'M']
    """
    t = np.asarray(teff, dtype=float)
    edges = np.asarray(MK_TEFF_EDGES_K)
    # number of edges the star is colder than = its class index
    return (t[..., None] < edges).sum(axis=-1).astype(np.int64)


def mk_letter_from_sptype(sptype: str | None) -> str | None:
    """First MK letter found in a free-text spectral type, or ``None`` when there is none.

    Prefixes such as ``sd:``, ``sd``, ``d``, ``g`` and luminosity or peculiarity suffixes are ignored.

    Examples
    --------
    >>> [mk_letter_from_sptype(s) for s in ["G6V", "sd:F", "KIIvw", "B9.5Vn", "DA2", "", None]]
    ['G', 'F', 'K', 'B', None, None, None]
    """
    if sptype is None:
        return None
    text = str(sptype).strip()
    if not text or (text.upper().startswith(("D", "W", "C", "S ")) and not text.startswith(("sd", "d"))):
        # white dwarfs (DA…), Wolf–Rayet, carbon stars: outside the MK letter taxonomy
        return None
    text = re.sub(r"^(sd|esd|usd|d|g|c)[:]?", "", text)
    m = _MK_PATTERN.search(text)
    return m.group(1) if m else None


def mk_index(letters: Iterable[str | None]) -> np.ndarray:
    """Indices into :data:`MK_CLASSES` of MK letters; ``-1`` where a letter is missing or unknown."""
    lookup = {c: i for i, c in enumerate(MK_CLASSES)}
    return np.asarray([lookup.get(x, -1) if isinstance(x, str) else -1 for x in letters], dtype=np.int64)


# ---- variability classes ---------------------------------------------------------------------------------------
#: EROS-2 (RAMP variable-star challenge) ``type`` codes. The source does not name them; a cross-match with OGLE-III
#: (see shared/data/MANIFEST.md) suggests 2 = classical Cepheid, 3 = RR Lyrae, 4 = long-period variable, and 1 most
#: likely eclipsing binaries. The names follow that cross-match and say so in every model card via this table.
EROS_TYPES: dict[int, str] = {1: "eclipsing_binary", 2: "cepheid", 3: "rr_lyrae", 4: "lpv"}

#: Sesar et al. (2010) Stripe 82 RR Lyrae ``Type`` → class name.
RR_LYRAE_TYPES: dict[str, str] = {"ab": "rr_lyrae_ab", "c": "rr_lyrae_c"}


# --- SIMBAD object types (issue 7) -------------------------------------------------------------------------------
#: SIMBAD ``otype`` (short codes, https://simbad.cds.unistra.fr/guide/otypes.htx) → (class, variability).
#: ``class`` is the SDSS-style coarse class (STAR, GALAXY, QSO); ``variability`` is the variable-star class of
#: the light-curve models, or ``""`` when the type says nothing about variability. Candidates (``…?``, e.g.
#: ``EB?``), clusters, nebulae and other types outside these lists are *unmapped*: they are reported, not guessed.
#:
#: ========================================  ======  ====================
#: otype                                     class   variability
#: ========================================  ======  ====================
#: ``*`` ``MS*`` ``HB*`` ``RG*`` ``RGB*``     STAR
#: ``AB*`` ``C*`` ``S*`` ``BS*`` ``SG*``      STAR
#: ``s*r`` ``s*y`` ``s*b`` ``BD*`` ``LM*``    STAR
#: ``PM*`` ``HV*`` ``Em*`` ``Be*`` ``V*``     STAR
#: ``WD*``                                   STAR
#: ``**`` ``SB*``                            STAR
#: ``EB*``                                   STAR    eclipsing_binary
#: ``Ce*`` ``cC*`` ``WV*``                   STAR    cepheid
#: ``RR*``                                   STAR    rr_lyrae
#: ``LP*`` ``Mi*``                           STAR    lpv
#: ``dS*``                                   STAR    delta_scuti
#: ``Ro*``                                   STAR    rotational
#: ``Er*`` ``Fl*``                           STAR    eruptive
#: ``G`` ``GiC`` ``GiG`` ``GiP`` ``BiC``      GALAXY
#: ``SBG`` ``EmG`` ``H2G`` ``LSB`` ``rG``     GALAXY
#: ``Sy1`` ``Sy2`` ``SyG`` ``LIN`` ``AGN``    GALAXY
#: ``QSO`` ``Bla`` ``BLL``                   QSO
#: ========================================  ======  ====================
SIMBAD_OTYPES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        [
            "*",
            "MS*",
            "HB*",
            "RG*",
            "RGB*",
            "AB*",
            "C*",
            "S*",
            "BS*",
            "SG*",
            "s*r",
            "s*y",
            "s*b",
            "BD*",
            "LM*",
            "PM*",
            "HV*",
            "Em*",
            "Be*",
            "V*",
            "WD*",
            "**",
            "SB*",
        ],
        ("STAR", ""),
    ),
    "EB*": ("STAR", "eclipsing_binary"),
    **dict.fromkeys(("Ce*", "cC*", "WV*"), ("STAR", "cepheid")),
    "RR*": ("STAR", "rr_lyrae"),
    **dict.fromkeys(("LP*", "Mi*"), ("STAR", "lpv")),
    "dS*": ("STAR", "delta_scuti"),
    "Ro*": ("STAR", "rotational"),
    **dict.fromkeys(("Er*", "Fl*"), ("STAR", "eruptive")),
    **dict.fromkeys(
        ["G", "GiC", "GiG", "GiP", "BiC", "SBG", "EmG", "H2G", "LSB", "rG", "Sy1", "Sy2", "SyG", "LIN", "AGN"],
        ("GALAXY", ""),
    ),
    **dict.fromkeys(("QSO", "Bla", "BLL"), ("QSO", "")),
}


def simbad_otype_labels(otypes: Iterable[str]) -> list[tuple[str, str]]:
    """(class, variability) of each SIMBAD otype; ``("unmapped", "")`` for a type outside
    :data:`SIMBAD_OTYPES`. The unmapped types and their counts are logged at WARNING.

    Examples
    --------
    >>> simbad_otype_labels(["EB*", "QSO", "SNR"])
    [('STAR', 'eclipsing_binary'), ('QSO', ''), ('unmapped', '')]
    """
    out: list[tuple[str, str]] = []
    unmapped: dict[str, int] = {}
    for o in otypes:
        key = str(o).strip()
        if key in SIMBAD_OTYPES:
            out.append(SIMBAD_OTYPES[key])
        else:
            out.append(("unmapped", ""))
            unmapped[key] = unmapped.get(key, 0) + 1
    if unmapped:
        log.warning("SIMBAD otype(s) outside the taxonomy, left unmapped: %s", unmapped)
    return out
