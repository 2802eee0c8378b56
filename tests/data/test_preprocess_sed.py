"""Tests of the SED photometry kernels (fast, offline, seeded)."""

from __future__ import annotations

import logging
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from dust_extinction.parameter_averages import G23

from stellar.data.preprocess.sed import (
    AB_ZERO_POINT_JY,
    BAND_INFO,
    BANDS,
    colours,
    deredden,
    extinction_coefficients,
    flux_to_mag,
    mag_to_flux,
    merge_bands,
)
from stellar.errors import StellarValueError

SED_DIR = Path(__file__).resolve().parent / "sed"
SDSS_MAP = {f"sdss_{b}": ("sdss", b) for b in "ugriz"}
K = 0.4 * np.log(10.0)


def random_sed(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(10.0, 22.0, (n, len(BANDS))), rng.uniform(0.01, 0.2, (n, len(BANDS)))


# ---------------------------------------------------------------- bands


def test_band_table_is_complete_and_ordered() -> None:
    assert len(BANDS) == 13 and set(BANDS) <= set(BAND_INFO)
    assert {BAND_INFO[b].system for b in BANDS if b.startswith("sdss")} == {"AB"}
    assert {BAND_INFO[b].system for b in BANDS if not b.startswith("sdss")} == {"Vega"}
    waves = [BAND_INFO[b].wave_eff for b in ("sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z")]
    assert waves == sorted(waves)


# ---------------------------------------------------------------- merge_bands


def test_merge_bands_sentinels_and_missing_are_masked_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    sdss = {
        "g": np.array([20.0, -9999.0, 19.0, np.nan, 18.0, 17.0]),
        "g_err": np.array([0.02, 0.02, -0.1, 0.02, 0.0, np.inf]),
        "r": np.array([19.5, 99.99, 25.0, -99.99, np.inf, 17.5]),
    }
    twomass = pd.DataFrame({"J": [15.0, 14.0, 13.0, 12.0, 11.0, 10.0], "J_err": [0.03] * 6})
    with caplog.at_level(logging.INFO, logger="stellar.data.preprocess.sed"):
        mag, err, mask = merge_bands(
            {"sdss": sdss, "2mass": twomass},
            {"sdss_g": ("sdss", "g", "g_err"), "sdss_r": ("sdss", "r"), "2mass_j": ("2mass", "J", "J_err")},
            band_sentinels={"sdss_r": [25.0]},
        )
    assert mag.shape == err.shape == mask.shape == (6, 13)
    jg, jr, jj = BANDS.index("sdss_g"), BANDS.index("sdss_r"), BANDS.index("2mass_j")
    assert mask[:, jg].tolist() == [False, True, True, True, True, True]
    assert mask[:, jr].tolist() == [False, True, True, True, True, False]
    assert not mask[:, jj].any()
    assert mask[:, [j for j in range(13) if j not in (jg, jr, jj)]].all()
    # masked entries are never numbers
    assert np.isnan(mag[mask]).all() and np.isnan(err[mask]).all()
    assert np.isfinite(mag[~mask]).all()
    assert mag[0, jg] == 20.0 and err[0, jg] == 0.02 and mag[5, jr] == 17.5
    assert np.isnan(err[:, jr]).all()  # no error column: NaN error, magnitude kept
    # 10 missing bands x 6 rows + 5 g (1 sentinel, 1 NaN, 3 bad errors) + 4 r (3 sentinels, 1 inf)
    assert int(mask.sum()) == 69
    msg = caplog.text
    assert "masked 69 of 78" in msg
    assert "missing band: 60" in msg and "sentinel: 4" in msg and "non-finite: 2" in msg and "bad error: 3" in msg


def test_merge_bands_does_not_mutate_inputs() -> None:
    g = np.array([20.0, -9999.0])
    table = {"g": g, "g_err": np.array([0.1, 0.1])}
    before = {k: v.copy() for k, v in table.items()}
    merge_bands({"sdss": table}, {"sdss_g": ("sdss", "g", "g_err")})
    for k, v in table.items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize(
    ("tables", "column_map", "match"),
    [
        ({"a": {"x": [1.0]}}, {"johnson_r": ("a", "x")}, "unknown band"),
        ({"a": {"x": [1.0]}}, {"sdss_g": ("b", "x")}, "names table 'b'"),
        ({"a": {"x": [1.0]}}, {"sdss_g": ("a", "y")}, "no column 'y'"),
        ({"a": {"x": [1.0]}, "b": {"y": [1.0, 2.0]}}, {"sdss_g": ("a", "x")}, "same number of rows"),
        ({"a": {"x": [[1.0]]}}, {"sdss_g": ("a", "x")}, "must be 1-D"),
        ({}, {}, "at least one table"),
    ],
)
def test_merge_bands_bad_inputs_raise(tables: dict, column_map: dict, match: str) -> None:
    with pytest.raises(StellarValueError, match=match):
        merge_bands(tables, column_map)


def test_real_sdss17_rows_assemble() -> None:
    table = pd.read_csv(SED_DIR / "sdss17_rows.csv")
    before = table.copy()
    mag, err, mask = merge_bands({"sdss": table}, SDSS_MAP)
    pd.testing.assert_frame_equal(table, before)
    assert mag.shape == (len(table), 13)
    sdss_cols = [BANDS.index(f"sdss_{b}") for b in "ugriz"]
    assert not mask[:, sdss_cols].any()  # this cut has no sentinels
    assert mask[:, len(sdss_cols) :].all()  # no Gaia/2MASS/WISE columns in SDSS17
    np.testing.assert_array_equal(mag[:, sdss_cols], table[list("ugriz")].to_numpy())
    assert np.isnan(err).all()  # SDSS17 carries no errors
    # the same rows with the SDSS -9999 sentinel injected are masked there only
    bad = table.copy()
    bad.loc[3, "u"] = -9999.0
    _, _, mask2 = merge_bands({"sdss": bad}, SDSS_MAP)
    assert mask2[3, 0] and int(mask2[:, sdss_cols].sum()) == 1
    # g-r of real objects stays within a few mag: a sanity check that the columns are not shuffled
    c, _, cm = colours(mag, None, mask, [("sdss_g", "sdss_r")])
    assert not cm.any() and np.nanmedian(np.abs(c)) < 3.0


# ---------------------------------------------------------------- flux conversion


def test_mag_to_flux_known_values() -> None:
    f, e = mag_to_flux(np.array([0.0, 2.5]), np.array([0.1, 0.1]), "sdss_g")
    assert e is not None
    np.testing.assert_allclose(f, [AB_ZERO_POINT_JY, 363.1])
    np.testing.assert_allclose(e, [0.4 * np.log(10) * 3631.0 * 0.1, 0.4 * np.log(10) * 363.1 * 0.1])
    np.testing.assert_allclose(e[0], 334.4275, rtol=1e-6)  # hand value: 0.9210340 * 3631 * 0.1
    # SDSS u is 0.04 mag brighter in AB: u_AB = u_SDSS - 0.04
    fu, _ = mag_to_flux(0.0, band="sdss_u")
    np.testing.assert_allclose(fu, 3631.0 * 10 ** (0.016))
    # 2MASS Ks: m_AB = m_Vega + 1.85, so a Vega-zero star has 3631 * 10^-0.74 = 660.7 Jy; Cohen+2003 measured
    # 666.7 Jy, within the 0.01 mag to which Blanton & Roweis round the offset
    fk, _ = mag_to_flux(0.0, band="2mass_ks")
    np.testing.assert_allclose(fk, 3631.0 * 10**-0.74)
    np.testing.assert_allclose(fk, 666.7, rtol=1e-2)


def test_mag_to_flux_in_flambda() -> None:
    f_nu, _ = mag_to_flux(0.0, band="sdss_r")
    f_lam, _ = mag_to_flux(0.0, band="sdss_r", unit="erg / (s cm2 AA)")
    expected = (f_nu * u.Jy).to_value(u.erg / u.s / u.cm**2 / u.AA, u.spectral_density(6165.0 * u.AA))
    np.testing.assert_allclose(f_lam, expected)
    np.testing.assert_allclose(f_lam, 2.998e18 * 3631e-23 / 6165.0**2, rtol=1e-3)


def test_round_trip_mag_flux_mag() -> None:
    mag, err = random_sed(50)
    mag_c, err_c = mag.copy(), err.copy()
    for unit in ("Jy", "erg / (s cm2 AA)"):
        f, fe = mag_to_flux(mag, err, BANDS, unit=unit)
        m2, e2 = flux_to_mag(f, fe, BANDS, unit=unit)
        np.testing.assert_allclose(m2, mag, atol=1e-10)
        assert e2 is not None
        np.testing.assert_allclose(e2, err, rtol=1e-10)
        # a Quantity flux round-trips too, whatever its unit
        m3, _ = flux_to_mag(f * u.Unit(unit), band=BANDS)
        np.testing.assert_allclose(m3, mag, atol=1e-10)
    np.testing.assert_array_equal(mag, mag_c)
    np.testing.assert_array_equal(err, err_c)


def test_flux_to_mag_nonpositive_is_nan_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    flux = np.array([1.0, 0.0, -2.0, np.nan])
    with caplog.at_level(logging.INFO, logger="stellar.data.preprocess.sed"):
        m, e = flux_to_mag(flux, np.full(4, 0.01), "gaia_g")
    assert np.isfinite(m[0]) and np.isnan(m[1:]).all()
    assert e is not None and np.isnan(e[1:]).all()
    assert "3 of 4 fluxes" in caplog.text


def test_flux_bad_inputs_raise() -> None:
    with pytest.raises(StellarValueError, match="unknown band"):
        mag_to_flux(10.0, band="johnson_r")
    with pytest.raises(StellarValueError, match="last axis of length 13"):
        mag_to_flux(np.zeros((3, 5)))
    with pytest.raises(StellarValueError, match="shape of mag"):
        mag_to_flux(np.zeros(3), np.zeros(4), "sdss_g")
    with pytest.raises(StellarValueError, match="flux-density unit"):
        mag_to_flux(1.0, band="sdss_g", unit="km")
    with pytest.raises(StellarValueError, match="cannot be converted"):
        flux_to_mag(1.0 * u.km, band="sdss_g")


# ---------------------------------------------------------------- extinction


@pytest.mark.parametrize("law", ["G23", "F99"])
def test_extinction_decreases_with_wavelength(law: str) -> None:
    coeff = extinction_coefficients(r_v=3.1, law=law)
    order = np.argsort([BAND_INFO[b].wave_eff for b in BANDS])
    ok = np.isfinite(coeff[order])
    assert np.all(np.diff(coeff[order][ok]) < 0)  # A_u > A_g > ... > A_w2
    assert coeff[BANDS.index("sdss_u")] > 4.0  # A_u / E(B-V) ≈ 4.8 for R_V = 3.1


def test_extinction_matches_dust_extinction_directly() -> None:
    coeff = extinction_coefficients(["2mass_j"], r_v=3.1, law="G23")
    direct = 3.1 * float(G23(Rv=3.1)(12350.0 * u.AA))
    np.testing.assert_allclose(coeff, [direct])


def test_f99_masks_bands_outside_its_range(caplog: pytest.LogCaptureFixture) -> None:
    mag, _ = random_sed(4)
    with caplog.at_level(logging.INFO, logger="stellar.data.preprocess.sed"):
        out, _, mask = deredden(mag, 0.1, law="F99")
    w = [BANDS.index("wise_w1"), BANDS.index("wise_w2")]
    assert mask[:, w].all() and not np.delete(mask, w, axis=1).any()
    assert np.isnan(out[:, w]).all()
    assert "masked 8 entries" in caplog.text


def test_deredden_values_masks_and_errors() -> None:
    mag, err = random_sed(3, seed=1)
    mask = np.zeros_like(mag, dtype=bool)
    mask[1, 2] = True
    mag[1, 2] = np.nan
    inputs = (mag.copy(), err.copy(), mask.copy())
    ebv = np.array([0.0, 0.1, 0.5])
    out, out_err, out_mask = deredden(mag, ebv, mask=mask, mag_err=err, ebv_err=np.full(3, 0.02))
    coeff = extinction_coefficients()
    np.testing.assert_allclose(out[0], mag[0])
    np.testing.assert_allclose(out[2], mag[2] - 0.5 * coeff)
    assert np.isnan(out[1, 2]) and out_mask[1, 2] and int(out_mask.sum()) == 1
    assert out_err is not None
    np.testing.assert_allclose(out_err[2], np.sqrt(err[2] ** 2 + (0.02 * coeff) ** 2))
    # hand value: sigma_m = 0.1, sigma_E = 0.02, A_band/E(B-V) = 5 -> sqrt(0.01 + 0.01) = 0.141421
    _, e1, _ = deredden(np.array([[15.0]]), 0.1, mag_err=np.array([[0.1]]), ebv_err=0.02, bands=["sdss_u"])
    c_u = extinction_coefficients(["sdss_u"])[0]
    assert e1 is not None
    np.testing.assert_allclose(e1[0, 0], np.hypot(0.1, 0.02 * c_u))
    # A_V = R_V E(B-V): the same E(B-V) gives more extinction at higher R_V in the near-IR
    assert extinction_coefficients(["2mass_ks"], r_v=5.0)[0] > extinction_coefficients(["2mass_ks"], r_v=3.1)[0]
    for a, b in zip(inputs, (mag, err, mask), strict=True):
        np.testing.assert_array_equal(a, b)


def test_deredden_bad_inputs_raise() -> None:
    mag, _ = random_sed(2)
    with pytest.raises(StellarValueError, match="ebv must be finite and >= 0"):
        deredden(mag, np.array([0.1, -0.01]))
    with pytest.raises(StellarValueError, match=r"ebv must be a scalar or have shape \(2,\)"):
        deredden(mag, np.zeros(3))
    with pytest.raises(StellarValueError, match=r"mag must be \(N, 13\)"):
        deredden(mag[:, :5], 0.1)
    with pytest.raises(StellarValueError, match="law must be one of"):
        deredden(mag, 0.1, law="CCM89")
    with pytest.raises(StellarValueError, match="outside the range of law"):
        deredden(mag, 0.1, r_v=9.0)
    with pytest.raises(StellarValueError, match="unknown band"):
        deredden(mag[:, :1], 0.1, bands=["johnson_r"])


# ---------------------------------------------------------------- colours


def test_colours_values_errors_and_masks() -> None:
    mag = np.full((2, 13), 15.0)
    mag[:, 1] = 14.0  # g
    err = np.full((2, 13), 0.03)
    err[:, 1] = 0.04
    mask = np.zeros((2, 13), dtype=bool)
    mask[1, 2] = True  # r masked in row 1
    inputs = (mag.copy(), err.copy(), mask.copy())
    c, ce, cm = colours(mag, err, mask, [("sdss_g", "sdss_r"), ("sdss_u", "sdss_g")])
    np.testing.assert_allclose(c[0], [-1.0, 1.0])
    np.testing.assert_allclose(ce[0], [0.05, 0.05])  # 3-4-5 triangle
    assert cm.tolist() == [[False, False], [True, False]]
    assert np.isnan(c[1, 0]) and np.isnan(ce[1, 0])
    for a, b in zip(inputs, (mag, err, mask), strict=True):
        np.testing.assert_array_equal(a, b)


def test_colours_bad_inputs_raise() -> None:
    mag, err = random_sed(2)
    mask = np.zeros_like(mag, dtype=bool)
    with pytest.raises(StellarValueError, match="pairs must be"):
        colours(mag, err, mask, [("sdss_g", "johnson_v")])
    with pytest.raises(StellarValueError, match="pairs must be"):
        colours(mag, err, mask, [])
    with pytest.raises(StellarValueError, match="mask must have the shape"):
        colours(mag, err, mask[:, :3], [("sdss_g", "sdss_r")])
