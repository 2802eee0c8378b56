"""Tests of the spectrum preprocessing kernels (fast, offline, seeded)."""

from __future__ import annotations

import logging
import tracemalloc

import astropy.units as u
import numpy as np
import pytest

from stellar.data.preprocess.spectra import (
    SpectrumPreprocessing,
    air_to_vacuum,
    continuum_normalise,
    log_wavelength_grid,
    preprocess_spectra,
    resample_flux_conserving,
    to_rest_frame,
)
from stellar.data.simulate.spectra import SpectrumSimulator
from stellar.errors import StellarValueError

HC_K = 1.438777e8  # Å K


def planck(wave: np.ndarray, teff: float) -> np.ndarray:
    """B_λ normalised to 1 at 5500 Å."""
    return (5500.0 / wave) ** 5 * np.expm1(HC_K / (5500.0 * teff)) / np.expm1(HC_K / (wave * teff))


def lines(wave: np.ndarray) -> np.ndarray:
    """exp(-τ) of a few Gaussian absorption lines and a broad Balmer-like line."""
    tau = np.zeros_like(wave)
    for centre, depth, sigma in [(4102.9, 0.8, 8.0), (4300.0, 0.5, 1.2), (5175.0, 1.0, 1.0), (5894.0, 1.5, 1.1)]:
        tau += depth * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)
    return np.exp(-tau)


def sdss_like(n: int, rng: np.random.Generator, m: int = 3900) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row log-λ wavelengths starting at different pixels, a smooth spectrum and its ivar."""
    start = rng.integers(35_500, 35_800, n) * 1e-4
    wave = 10.0 ** (start[:, None] + 1e-4 * np.arange(m))
    flux = 10.0 * planck(wave, 6000.0) * (1.0 + 0.2 * np.sin(wave / 40.0))
    ivar = np.full_like(flux, 400.0)
    return wave, flux, ivar


def test_log_wavelength_grid() -> None:
    grid = log_wavelength_grid(3600.0, 7400.0, 1e-4)
    np.testing.assert_allclose(np.diff(grid), 1e-4, rtol=1e-9)
    assert 10 ** grid[0] >= 3600.0 and 10 ** grid[-1] <= 7400.0
    np.testing.assert_allclose(grid / 1e-4, np.round(grid / 1e-4), atol=1e-6)  # SDSS-like: on multiples
    np.testing.assert_array_equal(log_wavelength_grid(360.0 * u.nm, 0.74 * u.um), grid)
    with pytest.raises(StellarValueError, match="wave_min"):
        log_wavelength_grid(3600.0 * u.s)
    with pytest.raises(StellarValueError, match="dloglam"):
        log_wavelength_grid(dloglam=0.0)
    with pytest.raises(StellarValueError, match="wave_max"):
        log_wavelength_grid(7000.0, 6000.0)


def test_air_to_vacuum() -> None:
    air = np.array([6562.79, 5889.95, 3933.66, 1500.0])
    vac = air_to_vacuum(air)
    np.testing.assert_allclose(vac[:3], [6564.61, 5891.58, 3934.78], atol=0.02)
    assert vac[3] == 1500.0
    np.testing.assert_allclose(air_to_vacuum(air[:3] * u.AA), vac[:3])
    np.testing.assert_allclose(air_to_vacuum((air[:3] * u.AA).to(u.nm)), vac[:3])


def test_to_rest_frame() -> None:
    wave = np.array([4000.0, 5000.0, 6000.0])
    np.testing.assert_allclose(to_rest_frame(wave, redshift=0.1), wave / 1.1)
    rv = np.array([-150.0, 300.0])
    rest = to_rest_frame(wave * u.AA, rv=rv * u.km / u.s)
    assert rest.shape == (2, 3)
    np.testing.assert_allclose(rest[:, 0] / wave[0] - 1.0, -rv / 299_792.458, rtol=2e-3)
    np.testing.assert_allclose(to_rest_frame(wave, rv=300.0), to_rest_frame(wave, rv=0.3 * u.Mm / u.s))
    with pytest.raises(StellarValueError, match="redshift or rv"):
        to_rest_frame(wave, redshift=0.1, rv=10.0)
    with pytest.raises(StellarValueError, match="rv"):
        to_rest_frame(wave, rv=1.0 * u.AA)


def test_flux_conserving_resampling_conserves_flux() -> None:
    wave = np.linspace(3500.0, 7500.0, 8000)
    flux = 10.0 * planck(wave, 8000.0) * lines(wave)
    new_wave = 10.0 ** log_wavelength_grid()
    out, _, mask = resample_flux_conserving(wave, flux, new_wave)
    assert not mask.any()
    edges = np.concatenate([[1.5 * new_wave[0] - 0.5 * new_wave[1]], 0.5 * (new_wave[1:] + new_wave[:-1])])
    edges = np.append(edges, 1.5 * new_wave[-1] - 0.5 * new_wave[-2])
    for lo, hi in [(100, 600), (1000, 2500), (0, new_wave.size)]:
        after = np.sum(out[lo:hi] * np.diff(edges)[lo:hi])
        fine = np.linspace(edges[lo], edges[hi], 400_001)
        before = np.trapezoid(10.0 * planck(fine, 8000.0) * lines(fine), fine)
        assert after == pytest.approx(before, rel=1e-4)


def test_resampling_onto_the_same_grid_is_identity() -> None:
    rng = np.random.default_rng(0)
    wave = 10.0 ** log_wavelength_grid()
    flux = rng.normal(5.0, 1.0, (3, wave.size))
    ivar = rng.uniform(1.0, 4.0, flux.shape)
    out, out_ivar, mask = resample_flux_conserving(wave, flux, wave, ivar=ivar)
    np.testing.assert_allclose(out, flux, rtol=1e-10)
    np.testing.assert_allclose(out_ivar, ivar, rtol=1e-8)
    assert not mask.any()


def test_per_row_and_shared_wavelengths_agree() -> None:
    rng = np.random.default_rng(1)
    wave, flux, ivar = sdss_like(6, rng)
    mask = rng.random(flux.shape) < 0.02
    new_wave = 10.0 ** log_wavelength_grid()
    # identical rows given per row or shared
    shared = resample_flux_conserving(wave[0], flux, new_wave, ivar=ivar, mask=mask)
    tiled = resample_flux_conserving(np.tile(wave[0], (6, 1)), flux, new_wave, ivar=ivar, mask=mask)
    # different rows at once or one at a time
    batch = resample_flux_conserving(wave, flux, new_wave, ivar=ivar, mask=mask, chunk_size=4)
    for k in range(3):
        np.testing.assert_allclose(shared[k], tiled[k], rtol=1e-12, atol=1e-300)
    for i in range(6):
        single = resample_flux_conserving(wave[i], flux[i], new_wave, ivar=ivar[i], mask=mask[i])
        for k in range(3):
            np.testing.assert_allclose(batch[k][i], single[k], rtol=1e-12, atol=1e-300)


def test_masked_pixels_do_not_leak_and_coverage_is_masked() -> None:
    wave = 10.0 ** (3.62 + 1e-4 * np.arange(1500))  # 4169–5920 Å: part of the default grid
    clean = 5.0 + np.sin(wave / 30.0)
    dirty = clean.copy()
    bad = np.zeros(wave.size, dtype=bool)
    bad[500:503] = True
    bad[900] = True
    dirty[bad] = 1e6
    dirty[1200] = np.nan  # non-finite input counts as bad too
    new_wave = 10.0 ** log_wavelength_grid()
    out, out_ivar, mask = resample_flux_conserving(wave, dirty, new_wave, ivar=np.ones(wave.size), mask=bad)
    ref, _, ref_mask = resample_flux_conserving(wave, clean, new_wave, ivar=np.ones(wave.size))
    outside = (new_wave < wave[0]) | (new_wave > wave[-1])
    assert mask[outside].all() and np.all(out_ivar[outside] == 0)
    far_outside = (new_wave < wave[0] - 3.0) | (new_wave > wave[-1] + 3.0)
    assert np.isnan(out[far_outside]).all()
    good = ~mask
    assert good.sum() > 1400 and np.all(out[good] < 10.0)  # the 1e6 spikes reach no good pixel
    assert mask.sum() - ref_mask.sum() == 5  # three adjacent bad pixels, one alone, one NaN
    np.testing.assert_allclose(out[good & ~ref_mask], ref[good & ~ref_mask], rtol=0.01)


def test_inverse_variance_is_propagated() -> None:
    rng = np.random.default_rng(2)
    wave = np.linspace(4000.0, 6000.0, 3000)
    sigma = rng.uniform(0.5, 2.0, wave.size)
    flux = 3.0 + sigma * rng.standard_normal((2000, wave.size))
    new_wave = np.linspace(4100.0, 5900.0, 1100)
    out, out_ivar, _ = resample_flux_conserving(wave, flux, new_wave, ivar=np.broadcast_to(sigma**-2, flux.shape))
    np.testing.assert_allclose(out.var(axis=0) * out_ivar[0], 1.0, atol=0.15)
    assert np.mean(out.var(axis=0) * out_ivar[0]) == pytest.approx(1.0, abs=0.01)


def test_agrees_with_specutils() -> None:
    specutils = pytest.importorskip("specutils")
    from astropy.nddata import InverseVariance
    from specutils.manipulation import FluxConservingResampler

    rng = np.random.default_rng(3)
    wave = 10.0 ** (3.5565 + 1e-4 * np.arange(3900))
    flux = 10.0 * planck(wave, 5000.0) * lines(wave) + rng.normal(0.0, 0.1, wave.size)
    ivar = rng.uniform(50.0, 150.0, wave.size)
    new_wave = 10.0 ** log_wavelength_grid()
    spec = specutils.Spectrum(flux=flux * u.Jy, spectral_axis=wave * u.AA, uncertainty=InverseVariance(ivar / u.Jy**2))
    ref = FluxConservingResampler()(spec, new_wave * u.AA)
    out, out_ivar, mask = resample_flux_conserving(wave, flux, new_wave, ivar=ivar)
    interior = slice(5, -5)
    assert not mask[interior].any()
    np.testing.assert_allclose(out[interior], ref.flux.value[interior], rtol=1e-6)
    np.testing.assert_allclose(out_ivar[interior], ref.uncertainty.array[interior], rtol=1e-6)


@pytest.mark.parametrize("teff", [3500.0, 6000.0, 30000.0])
def test_continuum_normalisation_recovers_known_continuum(teff: float) -> None:
    rng = np.random.default_rng(4)
    wave = 10.0 ** log_wavelength_grid()
    truth = lines(wave)
    line_free = truth > 0.999
    continuum = 20.0 * planck(wave, teff)
    noiseless = continuum * truth
    sigma = 0.01 * continuum  # S/N 100 on the continuum
    noisy = noiseless + sigma * rng.standard_normal((20, wave.size))
    ivar = np.broadcast_to(sigma**-2, noisy.shape)
    norm, _, fitted = continuum_normalise(wave, noiseless)
    np.testing.assert_allclose(norm[line_free], 1.0, atol=0.01)
    np.testing.assert_allclose(fitted, continuum, rtol=0.01)
    norm, norm_ivar, fitted = continuum_normalise(wave, noisy, ivar)
    np.testing.assert_allclose(np.median(fitted / continuum, axis=0)[line_free], 1.0, atol=0.01)
    np.testing.assert_allclose(norm_ivar, ivar * fitted**2)


def test_continuum_normalisation_of_simulated_stars() -> None:
    teff = np.array([3900.0, 4500.0, 5800.0, 7500.0, 9500.0, 15000.0, 35000.0])
    sim = SpectrumSimulator(noise=False, keep_continuum=True)
    out = sim.render(teff, 4.3, 0.0, np.linspace(-250.0, 250.0, teff.size), snr=50.0)
    wave = 10.0**out.log_wave
    result = preprocess_spectra(wave, out.flux, out.ivar, out.mask, rv=out.labels["rv"].to_numpy())
    truth = SpectrumSimulator(noise=False, keep_continuum=True).render(teff, 4.3, 0.0, 0.0, snr=50.0)
    true_norm = truth.flux / truth.continuum
    line_free = (true_norm > 0.995) & (wave > 3800.0) & ~result["mask"]
    assert line_free.sum(axis=1).min() > 500
    np.testing.assert_allclose(result["flux"][line_free], 1.0, atol=0.02)
    assert np.median(np.abs(result["flux"][line_free] - 1.0)) < 0.005


def test_bad_rows_give_finite_masked_output(caplog: pytest.LogCaptureFixture) -> None:
    wave = np.linspace(3500.0, 7500.0, 4000)
    flux = np.vstack([5.0 * planck(wave, 6000.0), np.full(4000, np.nan), -np.ones(4000), np.ones(4000)])
    mask = np.zeros(flux.shape, dtype=bool)
    mask[3] = True
    with caplog.at_level(logging.INFO, logger="stellar.data.preprocess.spectra"):
        out = preprocess_spectra(wave, flux, mask=mask)
    assert out["flux"].dtype == np.float32 and out["ivar"].dtype == np.float32 and out["mask"].dtype == bool
    assert all(np.isfinite(out[k]).all() for k in ("flux", "ivar"))
    assert not out["mask"][0].any() and out["mask"][1:].all()
    assert np.all(out["ivar"][1:] == 0) and np.all(out["flux"][1:] == 1.0)
    assert "3 spectra fully masked" in caplog.text
    norm, norm_ivar, cont = continuum_normalise(wave, flux, np.ones_like(flux), mask)
    assert np.isfinite(norm).all() and np.isfinite(norm_ivar).all() and np.isfinite(cont).all()
    assert np.all(norm_ivar[1:] == 0)
    raw = preprocess_spectra(wave, flux, mask=mask, normalise=False)
    assert np.isfinite(raw["flux"]).all() and np.all(raw["flux"][[1, 3]] == 0.0)
    assert not raw["mask"][2].any() and np.allclose(raw["flux"][2], -1.0)  # negative flux is data, not bad


def test_inputs_are_not_mutated() -> None:
    rng = np.random.default_rng(5)
    wave, flux, ivar = sdss_like(3, rng)
    flux[0, 10] = np.nan
    ivar[1, 20] = 0.0
    mask = rng.random(flux.shape) < 0.05
    copies = [a.copy() for a in (wave, flux, ivar, mask)]
    new_wave = 10.0 ** log_wavelength_grid()
    resample_flux_conserving(wave, flux, new_wave, ivar=ivar, mask=mask)
    continuum_normalise(wave, flux, ivar, mask)
    preprocess_spectra(wave, flux, ivar, mask, air=True, redshift=np.array([0.001, 0.0, -0.001]))
    air_to_vacuum(wave)
    to_rest_frame(wave, redshift=0.01)
    for before, after in zip(copies, (wave, flux, ivar, mask), strict=True):
        np.testing.assert_array_equal(before, after)


def test_quantities_and_units() -> None:
    rng = np.random.default_rng(6)
    wave, flux, ivar = sdss_like(2, rng)
    in_aa = preprocess_spectra(wave * u.AA, flux, ivar)
    in_nm = preprocess_spectra((wave * u.AA).to(u.nm), flux, ivar)
    for key in ("flux", "ivar", "mask"):
        np.testing.assert_allclose(in_aa[key], in_nm[key], rtol=1e-5)
    with pytest.raises(StellarValueError, match="wave"):
        preprocess_spectra(wave * u.km / u.s, flux)
    with pytest.raises(StellarValueError, match="new_wave"):
        resample_flux_conserving(wave[0], flux[0], wave[0] * u.Hz)
    with pytest.raises(StellarValueError, match="grid"):
        preprocess_spectra(wave, flux, grid=log_wavelength_grid() * u.AA)
    with pytest.raises(StellarValueError, match="increase"):
        preprocess_spectra(wave[:, ::-1], flux)
    late = wave.copy()
    late[1, 5] = late[1, 4]  # rows are checked chunk by chunk: one in the last chunk fails too
    with pytest.raises(StellarValueError, match="increase"):
        preprocess_spectra(late, flux, chunk_size=1)
    with pytest.raises(StellarValueError, match="ivar"):
        preprocess_spectra(wave, flux, ivar[:, :10])


def test_memory_follows_the_chunk_not_n() -> None:
    rng = np.random.default_rng(9)
    n, m, chunk = 2000, 500, 128
    wave = 10.0 ** (rng.integers(36_000, 36_050, n)[:, None] * 1e-4 + 1e-4 * np.arange(m))
    flux = (5.0 + rng.normal(0.0, 0.2, (n, m))).astype(np.float32)
    ivar = np.full((n, m), 25.0, dtype=np.float32)
    mask = rng.random((n, m)) < 0.01
    grid = log_wavelength_grid(4000.0, 4500.0)
    z = rng.uniform(-1e-3, 1e-3, n)  # per-row shifts: the costliest path (per-row wavelengths)
    tracemalloc.start()
    try:
        out = preprocess_spectra(wave, flux, ivar, mask, grid=grid, redshift=z, chunk_size=chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # A chunk's working set is ~32 float64 (chunk, M) arrays; float64 copies of the whole flux and ivar alone
    # would add 2·N/chunk ≈ 31 more (whole-input work before the chunk loop peaked at ~78).
    assert peak < sum(a.nbytes for a in out.values()) + 48 * chunk * m * 8
    # float32 input is converted chunk by chunk, to just what float64 input gives (same chunk: the float32
    # continuum fit may sum in an order that depends on the chunk's shape)
    rows = slice(0, chunk)
    as64 = preprocess_spectra(
        wave[rows],
        flux[rows].astype(np.float64),
        ivar[rows].astype(np.float64),
        mask[rows],
        grid=grid,
        redshift=z[rows],
        chunk_size=chunk,
    )
    for key, value in as64.items():
        np.testing.assert_array_equal(out[key][rows], value)


def test_preprocess_contract_and_rest_frame() -> None:
    wave = 10.0 ** (3.55 + 1e-4 * np.arange(4000))
    z = np.array([0.0, 0.0005, -0.0008])
    rest_wave = wave / (1.0 + z[:, None])
    broad = 1.0 - 0.5 * np.exp(-0.5 * ((rest_wave - 4862.7) / 6.0) ** 2)  # a line broad enough to resample well
    flux = 6.0 * planck(rest_wave, 7000.0) * broad
    out = preprocess_spectra(wave, flux, np.full(flux.shape, 1e4), redshift=z)
    assert out["flux"].shape == (3, log_wavelength_grid().size)
    good = ~out["mask"].any(axis=0)
    np.testing.assert_allclose(out["flux"][1:, good], np.broadcast_to(out["flux"][0, good], (2, good.sum())), atol=5e-3)
    line = np.argmin(out["flux"][0])
    assert 10 ** log_wavelength_grid()[line] == pytest.approx(4862.7, abs=1.0)
    single = preprocess_spectra(wave, flux[0])
    assert single["flux"].shape == (1, log_wavelength_grid().size)
    assert np.all(single["ivar"][~single["mask"]] == 1.0)  # unit weights without ivar


def test_spectrum_preprocessing_object() -> None:
    rng = np.random.default_rng(8)
    wave, flux, ivar = sdss_like(2, rng)
    prep = SpectrumPreprocessing(wave_min=4000.0, wave_max=6000.0, degree=5)
    params = prep.to_dict()
    assert params["_target_"] == "stellar.data.preprocess.spectra.SpectrumPreprocessing"
    assert SpectrumPreprocessing.from_dict(params) == prep
    np.testing.assert_array_equal(prep.grid, log_wavelength_grid(4000.0, 6000.0))
    direct = preprocess_spectra(wave, flux, ivar, grid=prep.grid, degree=5)
    for key, value in prep(wave, flux, ivar).items():
        np.testing.assert_array_equal(value, direct[key])
    with pytest.raises(StellarValueError, match="unknown"):
        SpectrumPreprocessing.from_dict({"colour": "red"})
    with pytest.raises(StellarValueError, match="degree"):
        SpectrumPreprocessing(degree=-1)
