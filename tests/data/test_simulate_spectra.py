"""Physics and contract tests of the stellar spectrum simulator (fast, offline, seeded)."""

from __future__ import annotations

import numpy as np
import pytest

from stellar.data.labels import MK_CLASSES, mk_letter_from_teff
from stellar.data.simulate import linelist as ll
from stellar.data.simulate.spectra import SimulatedSpectra, SpectrumSimulator, line_strengths, simulate_spectra
from stellar.errors import StellarValueError

WIEN_AA_K = 2.897771955e7
NOISELESS = SpectrumSimulator(noise=False, keep_continuum=True)
_NAMES = [line.name for line in ll.LINES]


def _line_wave(name: str) -> float:
    return float(ll.LINE_WAVE_VAC[_NAMES.index(name)])


def _equivalent_width(out: SimulatedSpectra, centre: float, half_width: float) -> np.ndarray:
    """EW (Å) of each noiseless spectrum against its true continuum, over centre ± half_width."""
    wave = 10.0**out.log_wave
    sel = np.abs(wave - centre) < half_width
    depth = 1.0 - out.flux[:, sel] / out.continuum[:, sel]
    return (depth * np.gradient(wave)[sel]).sum(axis=1)


def test_wien_peak_of_continuum_follows_teff() -> None:
    teff = np.array([4500.0, 5000.0, 6000.0, 7000.0])
    out = NOISELESS.render(teff, 4.5)
    wave = 10.0**out.log_wave
    peak = wave[np.argmax(out.continuum, axis=1)]
    np.testing.assert_allclose(peak * teff, WIEN_AA_K, rtol=0.01)
    # beyond the grid the peak sits at an end, still ordered: hotter stars are bluer
    hot_cool = NOISELESS.render(np.array([3000.0, 20000.0]), 4.0)
    assert np.argmax(hot_cool.continuum[0]) == wave.size - 1
    assert np.argmax(hot_cool.continuum[1]) == 0


def test_balmer_strength_peaks_between_9_and_10_kilokelvin() -> None:
    teff = np.arange(6000.0, 16001.0, 250.0)
    out = NOISELESS.render(teff, 4.0, -1.0)  # metal-poor: no metal lines blended into the window
    for line in ("Hgamma", "Hdelta"):
        ew = _equivalent_width(out, _line_wave(line), 40.0)
        assert 9000.0 <= teff[np.argmax(ew)] <= 10000.0, line
        assert ew.max() > 3 * ew[0] and ew.max() > 1.5 * ew[-1]


def test_balmer_wings_widen_with_gravity() -> None:
    logg = np.array([2.0, 3.0, 4.0, 4.5, 5.0])
    out = NOISELESS.render(9500.0, logg)
    wave = 10.0**out.log_wave
    centre = _line_wave("Hdelta")
    sel = np.abs(wave - centre) < 80.0
    widths = []
    for flux, cont in zip(out.flux[:, sel], out.continuum[:, sel], strict=True):
        below = wave[sel][flux / cont < 0.9]  # full width at 90 % of the continuum
        widths.append(below.max() - below.min())
    assert np.all(np.diff(widths) > 0), widths
    ew = _equivalent_width(out, centre, 60.0)
    assert np.all(np.diff(ew) > 0)


def test_metal_lines_grow_with_metallicity_and_saturate() -> None:
    feh = np.array([-2.0, -1.0, -0.5, 0.0, 0.5])
    out = NOISELESS.render(5000.0, 4.5, feh)
    for line in ("MgI_b1", "FeI_5270", "CaI_4227", "NaI_D2"):
        ew = _equivalent_width(out, _line_wave(line), 3.0)
        assert np.all(np.diff(ew) > 0), line
        # curve of growth: a weak line grows ∝ abundance, a strong one more slowly
        assert ew[1] / ew[0] > 5.0 and ew[4] / ew[3] < 10**0.5, line


def test_helium_lines_mark_o_and_b_stars() -> None:
    teff = np.array([8000.0, 18000.0, 36000.0])
    out = NOISELESS.render(teff, 4.0)
    he1 = _equivalent_width(out, _line_wave("HeI_4471"), 4.0)
    he2 = _equivalent_width(out, _line_wave("HeII_4686"), 4.0)
    assert he1[1] > 0.5 and he1[1] > 5 * he1[0] and he1[1] > 3 * he1[2]
    assert he2[2] > 0.5 and he2[2] > 20 * max(he2[0], he2[1], 1e-3)


def test_calcium_k_strongest_in_cool_stars() -> None:
    out = NOISELESS.render(np.array([5000.0, 9500.0, 25000.0]), 4.2)
    ew = _equivalent_width(out, _line_wave("CaII_K"), 15.0)
    assert ew[0] > 3 * ew[1] > 3 * ew[2]


def test_tio_bands_only_in_cool_stars() -> None:
    teff = np.array([3000.0, 3300.0, 3600.0, 3900.0, 4500.0, 6000.0, 20000.0])
    out = NOISELESS.render(teff, 4.8)
    wave = 10.0**out.log_wave
    norm = out.flux / out.continuum
    head = float(ll.TIO_HEADS_VAC[-1])  # the 7054 Å band
    red = (wave > head + 5) & (wave < head + 45)
    blue = (wave > head - 45) & (wave < head - 5)
    ratio = norm[:, red].mean(axis=1) / norm[:, blue].mean(axis=1)
    assert ratio[0] < 0.5 and np.all(np.diff(ratio) > -1e-6)
    assert np.all(ratio[teff >= 4500] > 0.99)


def test_radial_velocity_shifts_lines_by_whole_pixels() -> None:
    # a Doppler factor of 10^(4 dloglam) moves the spectrum by exactly four log-λ pixels
    factor2 = 10.0 ** (2 * 4 * NOISELESS.dloglam)
    rv = 299_792.458 * (factor2 - 1.0) / (factor2 + 1.0)
    out = NOISELESS.render(np.array([5800.0, 5800.0]), 4.4, 0.0, np.array([0.0, rv]))
    norm = out.flux / out.continuum
    assert norm[0].min() < 0.5
    np.testing.assert_allclose(norm[1, 4:], norm[0, :-4], atol=2e-5)


def test_reproducible_from_seed() -> None:
    sim = SpectrumSimulator(wave_min=4000.0, wave_max=5000.0)
    a, b, c = sim.simulate(40, seed=7), sim.simulate(40, seed=7), sim.simulate(40, seed=8)
    for name in ("flux", "ivar", "mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.labels.equals(b.labels)
    assert not np.array_equal(a.flux, c.flux)
    assert not a.labels.equals(c.labels)


def test_noise_matches_requested_snr() -> None:
    sim = SpectrumSimulator(bad_pixel_fraction=0.0, bad_run_probability=0.0)
    teff = np.array([3500.0, 5800.0, 9500.0, 30000.0])
    snr = np.array([10.0, 20.0, 50.0, 80.0])
    noisy = sim.render(teff, 4.3, 0.0, 0.0, snr, seed=4)
    true = SpectrumSimulator(noise=False).render(teff, 4.3, 0.0, 0.0, snr, seed=4)
    np.testing.assert_array_equal(noisy.ivar, true.ivar)
    np.testing.assert_allclose(np.median(true.flux * np.sqrt(true.ivar), axis=1), snr, rtol=0.01)
    pulls = (noisy.flux - true.flux) * np.sqrt(noisy.ivar)
    np.testing.assert_allclose(pulls.std(axis=1), 1.0, atol=0.05)
    assert np.abs(pulls.mean(axis=1)).max() < 0.06


def test_mask_and_ivar_are_consistent() -> None:
    out = simulate_spectra(200, seed=1, bad_pixel_fraction=0.01, bad_run_probability=0.5)
    assert out.flux.dtype == np.float32 and out.ivar.dtype == np.float32 and out.mask.dtype == bool
    assert out.flux.shape == out.ivar.shape == out.mask.shape == (200, out.log_wave.size)
    assert np.isfinite(out.flux).all() and np.isfinite(out.ivar).all()
    assert np.all(out.ivar[out.mask] == 0) and np.all(out.ivar[~out.mask] > 0)
    assert 0.01 < out.mask.mean() < 0.03
    assert out.mask.any(axis=1).mean() > 0.9
    clean = simulate_spectra(5, seed=1, noise=False)
    assert not clean.mask.any()


def test_labels_and_priors() -> None:
    out = simulate_spectra(3000, seed=2, wave_min=6000.0, wave_max=6100.0)
    labels = out.labels
    assert list(labels.columns) == ["teff", "logg", "feh", "rv", "snr", "mk_class"]
    expected = np.asarray(MK_CLASSES)[mk_letter_from_teff(labels["teff"])]
    np.testing.assert_array_equal(labels["mk_class"].to_numpy(), expected)
    freq = labels["mk_class"].value_counts(normalize=True)
    assert set(freq.index) == set(MK_CLASSES) and freq.min() > 0.1
    assert labels["teff"].between(3000, 40000).all() and labels["feh"].between(-2.5, 0.5).all()
    assert labels["rv"].between(-300, 300).all() and labels["snr"].between(10, 100).all()
    cool = labels[labels["teff"] < 5000]
    assert (cool["logg"] > 4.2).mean() > 0.5 and (cool["logg"] < 3.5).mean() > 0.1  # dwarfs and giants
    assert labels.loc[labels["mk_class"] == "O", "logg"].between(2.5, 4.5).all()


def test_line_strengths_follow_saha_boltzmann() -> None:
    teff = np.array([5000.0, 9500.0, 20000.0, 38000.0])
    ew = line_strengths(teff, np.full(4, 4.0), np.zeros(4))
    assert ew.shape == (len(ll.LINES), 4) and np.all(ew >= 0)
    best = {name: int(np.argmax(ew[_NAMES.index(name)])) for name in ("Hdelta", "HeI_4471", "HeII_4686", "CaII_K")}
    assert best == {"Hdelta": 1, "HeI_4471": 2, "HeII_4686": 3, "CaII_K": 0}


def test_lines_are_in_vacuum() -> None:
    assert _line_wave("Halpha") == pytest.approx(6564.61, abs=0.02)
    assert _line_wave("CaII_K") == pytest.approx(3934.78, abs=0.02)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"snr_range": (50.0, 10.0)},
        {"teff_range": (100.0, 5000.0)},
        {"bad_pixel_fraction": 1.5},
        {"resolution": 0.0},
        {"wave_min": 7000.0, "wave_max": 6000.0},
        {"chunk_size": 0},
    ],
)
def test_invalid_configuration_raises(kwargs: dict) -> None:
    with pytest.raises(StellarValueError):
        SpectrumSimulator(**kwargs)


def test_to_dict_and_chunking_do_not_change_output() -> None:
    sim = SpectrumSimulator(wave_min=5000.0, wave_max=5600.0, chunk_size=7)
    params = sim.to_dict()
    assert params["_target_"].endswith("SpectrumSimulator") and params["snr_range"] == [10.0, 100.0]
    rebuilt = SpectrumSimulator(**{k: v for k, v in params.items() if k != "_target_"} | {"chunk_size": 512})
    np.testing.assert_array_equal(sim.simulate(20, seed=5).labels["teff"], rebuilt.simulate(20, seed=5).labels["teff"])
    a = SpectrumSimulator(wave_min=5000.0, wave_max=5600.0, noise=False, chunk_size=7).simulate(20, seed=5)
    b = SpectrumSimulator(wave_min=5000.0, wave_max=5600.0, noise=False, chunk_size=512).simulate(20, seed=5)
    np.testing.assert_allclose(a.flux, b.flux, rtol=1e-6)
