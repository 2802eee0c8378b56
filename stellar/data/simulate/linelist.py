"""Line list of the spectrum simulator: real optical lines and molecular bands of OBAFGKM stars.

Wavelengths are laboratory air values (Å, NIST / Moore's multiplet table, rounded to 0.01 Å), converted once to
vacuum with :func:`stellar.data.preprocess.spectra.air_to_vacuum`. Each line carries the species and ionisation
stage whose Saha–Boltzmann population sets its temperature dependence, the lower-level excitation energy, a
strength and a damping width:

- ``strength`` (Å) is the line's equivalent width in the weak-line limit (the area of its optical-depth
  profile) at the temperature where the line peaks, for solar abundances and log g = 4. Stronger lines
  saturate through ``exp(-τ)`` and then grow through their damping wings (a curve of growth).
- ``gamma`` (Å) is the half width at half maximum of the Lorentzian (pressure) part at log g = 4.44
  (Stark broadening for H, van der Waals for metals); it grows with gravity.

The numbers are rounded literature-like values chosen for realistic equivalent widths at R ≈ 2000, not a
model-atmosphere fit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from stellar.data.preprocess.spectra import air_to_vacuum


class Species(NamedTuple):
    """Ionisation energies (eV, stage I→II, II→III, …) and partition functions (stage I, II, …)."""

    chi: tuple[float, ...]
    partition: tuple[float, ...]
    #: True for metals, whose lines weaken relative to the continuum once H bound-free opacity takes over (A/B).
    metal: bool = True


SPECIES: dict[str, Species] = {
    "H": Species((13.598,), (2.0, 1.0), metal=False),
    "He": Species((24.587, 54.418), (1.0, 2.0, 1.0), metal=False),
    "Na": Species((5.139, 47.29), (2.0, 1.0, 6.0)),
    "Mg": Species((7.646, 15.035), (1.0, 2.0, 1.0)),
    "Si": Species((8.152, 16.346, 33.493, 45.142), (9.0, 6.0, 1.0, 2.0, 1.0)),
    "Ca": Species((6.113, 11.872), (1.0, 2.0, 1.0)),
    "Ti": Species((6.828, 13.576), (30.0, 50.0, 20.0)),
    "Cr": Species((6.767, 16.486), (7.0, 6.0, 25.0)),
    "Mn": Species((7.434, 15.640), (6.0, 7.0, 10.0)),
    "Fe": Species((7.902, 16.199), (25.0, 40.0, 25.0)),
    "Sr": Species((5.695, 11.030), (1.0, 2.0, 1.0)),
    "Ba": Species((5.212, 10.004), (1.0, 2.0, 1.0)),
}


class Line(NamedTuple):
    """One absorption line (air wavelength in Å; converted to vacuum in :data:`LINES`)."""

    name: str
    species: str
    stage: int  # 0 = neutral (I), 1 = singly ionised (II), …
    wave_air: float
    chi_exc: float  # lower-level excitation energy, eV
    strength: float  # Å, weak-line equivalent width at the peak temperature
    gamma: float  # Å, Lorentzian HWHM at log g = 4.44


_BALMER = [
    ("Halpha", 6562.79, 30.0, 6.0),
    ("Hbeta", 4861.35, 26.0, 8.0),
    ("Hgamma", 4340.47, 24.0, 8.0),
    ("Hdelta", 4101.73, 23.0, 8.0),
    ("Hepsilon", 3970.08, 20.0, 7.0),
    ("H8", 3889.05, 17.0, 6.0),
    ("H9", 3835.38, 14.0, 5.0),
    ("H10", 3797.90, 12.0, 4.0),
    ("H11", 3770.63, 10.0, 3.5),
    ("H12", 3750.15, 8.0, 3.0),
]
_HE_I = [(4009.26, 0.3), (4026.19, 1.2), (4143.76, 0.4), (4387.93, 0.6), (4471.48, 1.3), (4713.14, 0.5)]
_HE_I += [(4921.93, 0.8), (5015.68, 0.6), (5875.62, 1.2), (6678.15, 0.9)]
_HE_II = [(4199.83, 0.4, 51.0), (4541.59, 0.6, 51.0), (4685.70, 1.2, 48.4), (5411.52, 0.8, 51.0)]
# (wavelength, chi_exc, strength) per neutral iron line: the Fe I blends that dominate G/K spectra
_FE_I = [
    (3719.94, 0.00, 2.5), (3734.86, 0.86, 2.0), (3737.13, 0.05, 2.0), (3745.56, 0.09, 1.5), (3749.49, 0.92, 2.0),
    (3758.23, 0.96, 1.5), (3820.43, 0.86, 2.0), (3825.88, 0.92, 1.6), (3827.82, 1.56, 1.0), (3859.91, 0.00, 2.0),
    (3886.28, 0.05, 1.5), (3899.71, 0.09, 1.0), (3922.91, 0.05, 1.0), (4045.81, 1.49, 1.5), (4063.59, 1.56, 1.0),
    (4071.74, 1.61, 0.9), (4132.06, 1.61, 0.6), (4143.87, 1.56, 0.6), (4202.03, 1.49, 0.6), (4250.79, 1.56, 0.5),
    (4260.47, 2.40, 0.6), (4271.76, 1.49, 0.9), (4325.76, 1.61, 0.9), (4383.55, 1.49, 1.2), (4404.75, 1.56, 1.0),
    (4415.12, 1.61, 0.7), (4528.61, 2.18, 0.4), (4890.76, 2.88, 0.3), (4891.49, 2.85, 0.4), (4920.50, 2.83, 0.5),
    (4957.60, 2.81, 0.5), (5227.19, 1.56, 0.5), (5232.94, 2.94, 0.4), (5269.54, 0.86, 0.8), (5328.04, 0.92, 0.7),
    (5371.49, 0.96, 0.5), (5397.13, 0.92, 0.4), (5405.77, 0.99, 0.4), (5429.70, 0.96, 0.4), (5446.92, 0.99, 0.4),
    (5455.61, 1.01, 0.3), (5615.64, 3.33, 0.3), (6136.62, 2.45, 0.2), (6191.56, 2.43, 0.2), (6230.72, 2.56, 0.2),
    (6252.56, 2.40, 0.2), (6393.60, 2.43, 0.2), (6400.00, 3.60, 0.2), (6494.98, 2.40, 0.25), (6677.99, 2.69, 0.2),
]  # fmt: skip
# (name, species, stage, wavelength, chi_exc, strength, gamma) for the other metals
_METALS = [
    ("CaII_K", "Ca", 1, 3933.66, 0.00, 100.0, 1.0),
    ("CaII_H", "Ca", 1, 3968.47, 0.00, 60.0, 1.0),
    ("CaI_4227", "Ca", 0, 4226.73, 0.00, 10.0, 0.5),
    ("CaI_4455", "Ca", 0, 4454.78, 1.90, 0.5, 0.3),
    ("CaI_5589", "Ca", 0, 5588.75, 2.52, 0.4, 0.3),
    ("CaI_6103", "Ca", 0, 6102.72, 1.88, 0.6, 0.3),
    ("CaI_6122", "Ca", 0, 6122.22, 1.89, 0.9, 0.3),
    ("CaI_6162", "Ca", 0, 6162.17, 1.90, 1.0, 0.3),
    ("CaI_6439", "Ca", 0, 6439.08, 2.52, 0.6, 0.3),
    ("MgI_3832", "Mg", 0, 3832.30, 2.71, 3.0, 0.5),
    ("MgI_3838", "Mg", 0, 3838.29, 2.72, 4.0, 0.5),
    ("MgI_4703", "Mg", 0, 4702.99, 4.33, 0.5, 0.3),
    ("MgI_b1", "Mg", 0, 5183.60, 2.72, 5.0, 0.6),
    ("MgI_b2", "Mg", 0, 5172.68, 2.71, 4.0, 0.6),
    ("MgI_b4", "Mg", 0, 5167.32, 2.71, 2.0, 0.5),
    ("MgI_5528", "Mg", 0, 5528.41, 4.34, 0.6, 0.3),
    ("MgII_4481", "Mg", 1, 4481.13, 8.86, 1.0, 0.3),
    ("NaI_D2", "Na", 0, 5889.95, 0.00, 15.0, 0.7),
    ("NaI_D1", "Na", 0, 5895.92, 0.00, 10.0, 0.7),
    ("FeII_4233", "Fe", 1, 4233.17, 2.58, 0.3, 0.2),
    ("FeII_4924", "Fe", 1, 4923.93, 2.89, 0.4, 0.2),
    ("FeII_5018", "Fe", 1, 5018.44, 2.89, 0.5, 0.2),
    ("FeII_5169", "Fe", 1, 5169.03, 2.89, 0.5, 0.2),
    ("FeII_5317", "Fe", 1, 5316.62, 3.15, 0.3, 0.2),
    ("CrI_4254", "Cr", 0, 4254.33, 0.00, 0.5, 0.3),
    ("CrI_4275", "Cr", 0, 4274.80, 0.00, 0.4, 0.3),
    ("CrI_5204", "Cr", 0, 5204.51, 0.94, 0.3, 0.3),
    ("CrI_5206", "Cr", 0, 5206.04, 0.94, 0.4, 0.3),
    ("CrI_5208", "Cr", 0, 5208.42, 0.94, 0.5, 0.3),
    ("MnI_4031", "Mn", 0, 4030.75, 0.00, 0.6, 0.3),
    ("MnI_4033", "Mn", 0, 4033.06, 0.00, 0.5, 0.3),
    ("MnI_4034", "Mn", 0, 4034.48, 0.00, 0.4, 0.3),
    ("SrII_4078", "Sr", 1, 4077.71, 0.00, 0.5, 0.3),
    ("SrII_4216", "Sr", 1, 4215.52, 0.00, 0.4, 0.3),
    ("BaII_4554", "Ba", 1, 4554.03, 0.00, 0.4, 0.3),
    ("BaII_6497", "Ba", 1, 6496.90, 0.60, 0.2, 0.3),
    ("TiII_4300", "Ti", 1, 4300.05, 1.18, 0.2, 0.2),
    ("TiII_4395", "Ti", 1, 4395.03, 1.08, 0.2, 0.2),
    ("TiII_4501", "Ti", 1, 4501.27, 1.12, 0.15, 0.2),
    ("TiI_4982", "Ti", 0, 4981.73, 0.85, 0.3, 0.3),
    ("TiI_4991", "Ti", 0, 4991.07, 0.84, 0.25, 0.3),
    ("SiII_4128", "Si", 1, 4128.05, 9.84, 0.3, 0.2),
    ("SiII_4131", "Si", 1, 4130.89, 9.84, 0.35, 0.2),
    ("SiII_6347", "Si", 1, 6347.11, 8.12, 0.4, 0.2),
    ("SiII_6371", "Si", 1, 6371.37, 8.12, 0.3, 0.2),
    ("SiIII_4553", "Si", 2, 4552.62, 19.02, 0.4, 0.2),
    ("SiIII_4568", "Si", 2, 4567.84, 19.02, 0.3, 0.2),
    ("SiIII_4575", "Si", 2, 4574.76, 19.02, 0.2, 0.2),
    ("SiIV_4089", "Si", 3, 4088.86, 24.05, 0.4, 0.2),
    ("SiIV_4116", "Si", 3, 4116.10, 24.05, 0.3, 0.2),
]


def _build() -> list[Line]:
    lines = [Line(n, "H", 0, w, 10.20, s, g) for n, w, s, g in _BALMER]
    lines += [Line(f"HeI_{w:.0f}", "He", 0, w, 20.96, s, 0.5) for w, s in _HE_I]
    lines += [Line(f"HeII_{w:.0f}", "He", 1, w, chi, s, 0.8) for w, s, chi in _HE_II]
    lines += [Line(f"FeI_{w:.0f}", "Fe", 0, w, chi, s, 0.3) for w, chi, s in _FE_I]
    lines += [Line(*row) for row in _METALS]
    return lines


#: All lines, sorted by wavelength.
LINES: tuple[Line, ...] = tuple(sorted(_build(), key=lambda line: line.wave_air))
#: Vacuum wavelengths of :data:`LINES`, Å.
LINE_WAVE_VAC: np.ndarray = air_to_vacuum(np.array([line.wave_air for line in LINES]))

#: TiO band heads (air, Å; the γ and α systems) and relative band strengths. Each band drops sharply at its
#: head and recovers slowly to the red.
TIO_HEADS_AIR: tuple[float, ...] = (4954.6, 5166.7, 5448.0, 5847.0, 6158.7, 6651.3, 7053.9)
TIO_RELATIVE_STRENGTH: tuple[float, ...] = (0.45, 0.55, 0.6, 0.7, 1.0, 0.9, 1.0)
TIO_HEADS_VAC: np.ndarray = air_to_vacuum(np.array(TIO_HEADS_AIR))
#: e-folding length (Å) of the redward recovery of each TiO band.
TIO_RECOVERY_AA = 120.0

#: The G band (CH A–X, around 4300 Å air): modelled as one broad Gaussian feature.
G_BAND_AIR, G_BAND_SIGMA_AA = 4305.0, 6.0
G_BAND_VAC: float = float(air_to_vacuum(G_BAND_AIR))

#: Dissociation energies (eV) that set how molecular bands grow towards cool temperatures.
D0_TIO_EV, D0_CH_EV = 6.87, 3.47

#: Balmer limit (vacuum, Å), below which the Balmer continuum absorbs in A stars.
BALMER_LIMIT_VAC = 3647.05
