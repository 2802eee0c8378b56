"""Tests for stellar.data.preprocess.lightcurve (fast, offline, seeded)."""

from __future__ import annotations

import logging
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.timeseries import LombScargle
from scipy.signal import savgol_filter

from stellar.data.preprocess import lightcurve as lc
from stellar.errors import StellarValueError

HERE = Path(__file__).parent / "lightcurves"
KEPLER = HERE / "kplr011442793-2010009091648_llc.fits"
SESAR = HERE / "sesar_rrlyrae_4099.csv"
SESAR_PERIOD = 0.641754351271  # d, Sesar+2010 periods.csv


def _kepler_like(seed: int = 0, n: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n) * 0.02043  # Kepler long cadence, d
    f = 1.0 + 0.003 * np.sin(2 * np.pi * t / 10.0) + rng.normal(0, 2e-4, n)  # slow 0.3 % trend
    return t, f, np.full(n, 2e-4)


def test_quality_mask_uses_lightkurve_default() -> None:
    from lightkurve.utils import KeplerQualityFlags, TessQualityFlags

    q = np.array([0, 1, 2, 4, 1024, 2**20, 0])
    bad = lc.quality_mask(q)
    assert bad.tolist() == [bool(x & KeplerQualityFlags.DEFAULT_BITMASK) for x in q]
    assert not lc.quality_mask(q, bitmask="none").any()
    tess = lc.quality_mask(q.reshape(1, -1), mission="tess")
    assert tess.shape == (1, 7) and tess[0].tolist() == [bool(x & TessQualityFlags.DEFAULT_BITMASK) for x in q]
    with pytest.raises(StellarValueError, match="bitmask"):
        lc.quality_mask(q, bitmask="strict")
    with pytest.raises(StellarValueError, match="mission"):
        lc.quality_mask(q, mission="corot")  # type: ignore[arg-type]


def test_sigma_clip_robust_batch_and_no_mutation(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(1)
    f = rng.normal(1, 0.01, (3, 200))
    f[0, 10], f[1, 50], f[2, :100] = 2.0, -5.0, np.nan
    mask = np.zeros_like(f, dtype=bool)
    mask[1, -20:] = True
    f0, m0 = f.copy(), mask.copy()
    with caplog.at_level(logging.INFO):
        out = lc.sigma_clip(f, mask, sigma=5)
    np.testing.assert_array_equal(f, f0)
    np.testing.assert_array_equal(mask, m0)
    assert out[0, 10] and out[1, 50] and out[2, :100].all() and out[1, -20:].all()
    assert out.sum() < 130  # only the outliers, the NaNs and the given mask
    assert "masked" in caplog.text


def test_sigma_clip_batch_equals_rows_when_rows_need_different_passes() -> None:
    """Only rows whose mask changed are clipped again: the batch answer is each row's own, pass for pass."""
    rng = np.random.default_rng(3)
    heavy = rng.standard_t(1.5, (3, 500))  # heavy tails: each pass moves the MAD and clips more
    calm = rng.normal(0, 1, (3, 500))
    f = np.concatenate([heavy, calm])[[0, 3, 1, 4, 2, 5]]
    for max_iter in (1, 2, 5, 20):
        batch = lc.sigma_clip(f, sigma=3, max_iter=max_iter)
        rows = np.stack([lc.sigma_clip(r, sigma=3, max_iter=max_iter) for r in f])
        np.testing.assert_array_equal(batch, rows)
    assert lc.sigma_clip(f, sigma=3, max_iter=20)[0].sum() > lc.sigma_clip(f, sigma=3, max_iter=1)[0].sum()


def test_normalise_by_median() -> None:
    f = np.array([[2.0, 4.0, 6.0, 100.0], [-1.0, -1.0, -1.0, -1.0]])
    e = np.ones_like(f)
    mask = np.array([[False, False, False, True], [False] * 4])
    nf, ne, m = lc.normalise(f, e, mask)
    np.testing.assert_allclose(nf[0, :3], [0.5, 1.0, 1.5])
    np.testing.assert_allclose(ne[0], 0.25)
    assert m[1].all() and m[0].tolist() == [False, False, False, True]


def test_detrend_keeps_transit_depth_where_savgol_eats_it() -> None:
    t, f, _ = _kepler_like()
    depth, dur = 0.005, 0.25  # d
    in_tr = np.abs(((t - 3.0 + 2.5) % 5.0) - 2.5) < dur / 2  # transits every 5 d
    f = f * np.where(in_tr, 1 - depth, 1.0)
    window = 3 * dur
    flat, _trend, m = lc.detrend_biweight(t * u.day, f, None, window=window * u.day)
    assert not m.any() and np.isfinite(flat).all()
    bw_depth = 1 - np.median(flat[in_tr]) / np.median(flat[~in_tr])
    assert abs(bw_depth / depth - 1) < 0.05
    assert np.std(flat[~in_tr]) < 3e-4  # the sinusoid is gone

    n_win = round(window / 0.02043) | 1
    sg = f / savgol_filter(f, n_win, 2)
    sg_depth = 1 - np.median(sg[in_tr]) / np.median(sg[~in_tr])
    assert sg_depth < 0.8 * depth  # a polynomial filter of the same width follows the transit in


def test_detrend_gap_aware_and_masks_isolated_points() -> None:
    t = np.concatenate([np.arange(0, 5, 0.02), [7.0], np.arange(10, 15, 0.02)])
    f = np.concatenate([np.full(250, 1.0), [1.0], np.full(250, 2.0)])
    flat, trend, m = lc.detrend_biweight(t, f, window=1.0, min_points=5)
    assert m[250] and np.isnan(trend[250])  # alone in its window
    np.testing.assert_allclose(trend[:250], 1.0)
    np.testing.assert_allclose(trend[251:], 2.0)  # no leakage across the gap
    np.testing.assert_allclose(flat[~m], 1.0)


def test_detrend_batch_matches_rows_and_is_fast() -> None:
    import time

    t, f, _ = _kepler_like()
    f2 = np.stack([f, f[::-1]])
    mask = np.zeros_like(f2, dtype=bool)
    mask[1, 100:300] = True
    flat, _trend, m = lc.detrend_biweight(np.stack([t, t]), f2, mask, window=0.75)
    single, _, _ = lc.detrend_biweight(t, f, window=0.75)
    np.testing.assert_allclose(flat[0], single)
    assert m[1, 100:300].all()
    start = time.perf_counter()
    lc.detrend_biweight(t, f, window=0.75)
    assert time.perf_counter() - start < 0.5  # ~35 ms on a laptop core; loose bound for CI


def test_frequency_grid_units() -> None:
    t = np.linspace(0, 100, 300)
    g = lc.frequency_grid(t * u.day, min_period=2 * u.hour, max_period=10, oversampling=5)
    assert g[0] == pytest.approx(0.1) and g[-1] == pytest.approx(12.0)
    np.testing.assert_allclose(np.diff(g), np.diff(g)[0])
    assert np.diff(g)[0] <= 1 / (5 * 100) + 1e-12
    with pytest.raises(StellarValueError, match="min_period"):
        lc.frequency_grid(t, min_period=10, max_period=1)


def test_lomb_scargle_matches_astropy_and_recovers_period() -> None:
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 60, 500))
    y = 0.3 * np.sin(2 * np.pi * t / 2.7 + 0.4) + rng.normal(0, 0.1, t.size)
    dy = rng.uniform(0.05, 0.15, t.size)
    g = lc.frequency_grid(t, 0.2, 30, 10)
    p = lc.lomb_scargle(t, y, dy, g / u.day)
    ref = LombScargle(t, y, dy).power(g, method="cython")
    np.testing.assert_allclose(p, ref, atol=1e-6)
    assert 1 / g[np.argmax(p)] == pytest.approx(2.7, rel=1e-3)
    # batch with a padded second row
    tb = np.stack([t, t])
    mask = np.zeros(tb.shape, dtype=bool)
    mask[1, 250:] = True
    pb = lc.lomb_scargle(tb, np.stack([y, y]), np.stack([dy, dy]), (g / u.d).to(1 / u.hour), mask=mask)
    np.testing.assert_allclose(pb[0], p)
    np.testing.assert_allclose(pb[1], LombScargle(t[:250], y[:250], dy[:250]).power(g, method="cython"), atol=1e-6)


def test_multiband_sesar_rrlyrae_period() -> None:
    d = pd.read_csv(SESAR)
    g = lc.frequency_grid(d["time"].to_numpy(), min_period=0.2, max_period=1.2, oversampling=5)
    p = lc.multiband_lomb_scargle(d["time"], d["mag"], d["magerr"], d["band"], g)
    best = 1 / g[np.argmax(p)]
    assert best == pytest.approx(SESAR_PERIOD, rel=1e-3)


def test_phase_fold() -> None:
    ph = lc.phase_fold(np.array([[0.0, 1.5, 3.25]]), np.array([1.0]), t0=0.5)
    np.testing.assert_allclose(ph, [[0.5, 0.0, 0.75]])
    with pytest.raises(StellarValueError, match="period"):
        lc.phase_fold([0.0, 1.0], 0.0)


def test_features_batch_and_values() -> None:
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 50, 400))
    sin = np.sin(2 * np.pi * t / 3.3)
    noise = rng.normal(0, 1, t.size)
    x = np.stack([10 + sin + 0.05 * noise, 10 + 0.05 * noise])
    e = np.full_like(x, 0.05)
    mask = np.zeros_like(x, dtype=bool)
    mask[1, 300:] = True
    feats = lc.features(np.stack([t, t]), x, e, mask, min_period=0.5, max_period=20)
    assert feats["period"][0] == pytest.approx(3.3, rel=1e-2)
    assert feats["amplitude"][0] == pytest.approx(np.sin(np.pi * 0.45), rel=0.05)  # half the 5–95 % range
    assert feats["eta"][0] < 0.5 < feats["eta"][1]  # smooth variation vs white noise (~2)
    assert feats["stetson_k"][1] == pytest.approx(np.sqrt(2 / np.pi), abs=0.05)
    assert feats["mad_std"][1] == pytest.approx(0.05, rel=0.15)
    assert abs(feats["skewness"][1]) < 0.3 and feats["kurtosis"][0] < -1  # a sinusoid is platykurtic (−1.5)
    assert feats["beyond_1std"][1] == pytest.approx(0.317, abs=0.06)
    assert feats["n_points"].tolist() == [400, 300]


def test_to_fixed_length_pads_and_truncates() -> None:
    t = np.array([[3.0, 1.0, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    f = t * 10
    mask = np.array([[False, False, True, False], [False, True, True, True]])
    tt, ff, mm = lc.to_fixed_length(t, f, mask, n=2)
    np.testing.assert_allclose(tt, [[1.0, 3.0], [1.0, 0.0]])
    np.testing.assert_allclose(ff, [[10.0, 30.0], [10.0, 0.0]])
    assert mm.tolist() == [[False, False], [False, True]]
    tt, ff, ee, mm = lc.to_fixed_length(t, f, mask, n=6, flux_err=np.ones_like(f))
    assert tt.shape == (2, 6) and mm[0].tolist() == [False] * 3 + [True] * 3 and ee[0, :3].tolist() == [1.0] * 3


def test_real_kepler_pipeline() -> None:
    import lightkurve

    curve = lightkurve.read(KEPLER, quality_bitmask="none")
    time, flux, err, quality = lc.from_lightkurve(curve)
    assert time.shape == flux.shape == quality.shape == (1021,)
    mask = lc.quality_mask(quality, mission="kepler")
    nf, ne, mask = lc.normalise(flux, err, mask)
    flat, _trend, mask = lc.detrend_biweight(time, nf, mask, window=1.0)
    mask = lc.sigma_clip(flat, mask, sigma=5)
    assert 0.8 < (~mask).mean() < 1.0
    assert np.nanstd(flat[~mask]) < np.nanstd(nf[~mask])
    feats = lc.features(time, flat, ne, mask, min_period=0.1, max_period=10)
    assert all(np.isfinite(v) for v in feats.values())


def test_lomb_scargle_falls_back_to_astropy(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    rng = np.random.default_rng(4)
    t = np.sort(rng.uniform(0, 40, 300))
    y = np.sin(2 * np.pi * t / 1.7) + rng.normal(0, 0.2, t.size)
    g = lc.frequency_grid(t, 0.3, 10, 5)
    monkeypatch.setitem(sys.modules, "nifty_ls", None)  # import now raises ImportError
    p = lc.lomb_scargle(t, y, None, g)
    assert 1 / g[np.argmax(p)] == pytest.approx(1.7, rel=1e-2)
    np.testing.assert_allclose(p, LombScargle(t, y).power(g, method="cython"), atol=1e-2)


def test_features_rejects_unknown_period_method() -> None:
    t = np.arange(6.0)
    with pytest.raises(StellarValueError, match="period_method"):
        lc.features(t, t, np.ones(6), period_method="bls")  # type: ignore[arg-type]


def test_quantiles_by_sort_match_numpy() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 31))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[3], x[4, 1:] = np.nan, np.nan  # all-NaN and single-value rows
    with pytest.warns(RuntimeWarning):
        ref = np.nanmedian(x, axis=1)
    np.testing.assert_array_equal(lc._nanmedian_rows(x), ref)
    a, n = lc._sorted_rows(x)
    for q in (0.0, 0.05, 0.95, 1.0):
        with pytest.warns(RuntimeWarning):
            ref = np.nanquantile(x, q, axis=1)
        np.testing.assert_allclose(lc._quantile_sorted(a, n, q), ref, rtol=1e-12, atol=1e-15)


def test_detrend_knots_as_accurate_as_every_point() -> None:
    """4 knots per window and a cubic between them follow a smooth trend as closely as the biweight evaluated at
    every point (the estimator's own noise and lag dominate), and no worse than 20 knots per window."""
    t = np.arange(4000) * 0.02043
    rng = np.random.default_rng(7)
    for period, amp in ((1.5, 0.01), (3.0, 0.01), (10.0, 0.003)):
        truth = 1 + amp * np.sin(2 * np.pi * t / period)
        f = truth + rng.normal(0, 2e-4, t.size)

        def rms(knot_spacing: float | None, truth: np.ndarray = truth, f: np.ndarray = f) -> float:
            trend = lc.detrend_biweight(t, f, window=0.75, knot_spacing=knot_spacing)[1]
            return float(np.sqrt(np.mean((trend / truth - 1)[50:-50] ** 2)))

        every, fine, default = rms(None), rms(0.05), rms(0.25)
        assert default < 1.1 * every and default < 1.1 * fine, (period, every, fine, default)


def test_detrend_keeps_eclipses_of_a_variable_in_a_batch_with_gaps() -> None:
    """A 2 % eclipse on a spotted star survives within 5 %, in a batch whose other rows and gaps do not leak in."""
    t, f, _ = _kepler_like(seed=8)
    f = f * (1 + 0.004 * np.sin(2 * np.pi * t / 4.3))  # rotational modulation, slower than the window
    in_ecl = np.abs(((t - 1.3 + 1.6) % 3.2) - 1.6) < 0.1  # 0.2 d eclipses every 3.2 d
    depth = 0.02
    f = f * np.where(in_ecl, 1 - depth, 1.0)
    mask = np.zeros((3, t.size), dtype=bool)
    mask[0, 1500:1700] = True  # a 4-day gap
    other = np.stack([f, 3.0 + 0 * f, f[::-1] * 1.5])
    flat, _trend, m = lc.detrend_biweight(np.stack([t, t, t]), other, mask, window=0.6)
    threaded, _, _ = lc.detrend_biweight(np.stack([t, t, t]), other, mask, window=0.6, workers=2)
    np.testing.assert_array_equal(threaded, flat)
    single, _, _ = lc.detrend_biweight(t[~mask[0]], f[~mask[0]], window=0.6)
    np.testing.assert_allclose(flat[0, ~mask[0]], single, rtol=1e-12)
    ok = ~m[0] & ~mask[0]
    got = 1 - np.median(flat[0, ok & in_ecl]) / np.median(flat[0, ok & ~in_ecl])
    assert abs(got / depth - 1) < 0.05
    assert np.std(flat[0, ok & ~in_ecl]) < 3e-4  # the modulation is gone
    np.testing.assert_allclose(flat[1], 1.0)


def test_detrend_and_features_do_not_depend_on_the_order_of_the_points() -> None:
    """Rows in time order take the packing fast path; a shuffled copy of the same points (with masked points
    among them) takes the argsort path: same trend and features, point for point."""
    t, f, e = _kepler_like(seed=5, n=1500)
    f = f * (1 + 0.01 * np.sin(2 * np.pi * t / 0.61))
    mask = np.zeros(t.size, dtype=bool)
    mask[[10, 400, 401, 977]] = True
    perm = np.random.default_rng(0).permutation(t.size)
    flat, trend, m = lc.detrend_biweight(t, f, mask, window=0.75)
    s_flat, s_trend, s_m = lc.detrend_biweight(t[perm], f[perm], mask[perm], window=0.75)
    np.testing.assert_array_equal(s_m, m[perm])
    np.testing.assert_array_equal(s_trend, trend[perm])
    feats = lc.features(t, flat, e, m, min_period=0.1, max_period=5)
    s_feats = lc.features(t[perm], s_flat, e[perm], s_m, min_period=0.1, max_period=5)
    assert feats["period"] == pytest.approx(0.61, rel=5e-3)  # the 30-d grid: steps of 0.4 %
    for name, value in feats.items():
        assert s_feats[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name


def test_batched_periodogram_matches_astropy_on_each_row_grid() -> None:
    """The shared-plan nifty-ls path: each row on its own grid (sizes differ), every normalisation."""
    from stellar.data.preprocess import _nifty

    rng = np.random.default_rng(9)
    rows, grids = [], []
    for n, span in ((300, 40.0), (120, 900.0), (50, 35.0)):
        t = np.sort(rng.uniform(0, span, n)) + 5e4  # MJD-like offsets
        y = np.sin(2 * np.pi * t / 1.9) + rng.normal(0, 0.3, n)
        rows.append((t, y, rng.uniform(0.2, 0.4, n)))
        grids.append(lc.frequency_grid(t, 0.3, 20, 5))
    fmin = np.array([g[0] for g in grids])
    df = np.array([g[1] - g[0] for g in grids])
    nf = np.array([g.size for g in grids])
    for norm in ("standard", "model", "log", "psd"):
        got = _nifty.power_rows(rows, fmin, df, nf, norm)
        for (t, y, dy), g, p in zip(rows, grids, got, strict=True):
            ref = LombScargle(t, y, dy, normalization=norm).power(g, method="cython")
            np.testing.assert_allclose(p, ref, rtol=1e-6, atol=1e-7 * np.abs(ref).max())
    feats = lc.features(np.stack([r[0][:50] for r in rows]), np.stack([r[1][:50] for r in rows]),
                        np.stack([r[2][:50] for r in rows]), min_period=0.3, max_period=20)  # fmt: skip
    for i, (t, y, dy) in enumerate(rows):
        g = lc.frequency_grid(t[:50], 0.3, 20, 5)
        ref = LombScargle(t[:50], y[:50], dy[:50]).power(g, method="cython")
        assert feats["period"][i] == pytest.approx(1 / g[np.argmax(ref)], rel=1e-9)
    # peak_period: rows of different lengths (padded), two threads, no errors
    t = np.full((3, 300), np.nan)
    y = np.zeros((3, 300))
    for i, (ti, yi, _) in enumerate(rows):
        t[i, : ti.size], y[i, : ti.size] = ti, yi
    periods = lc.peak_period(t, y, None, np.isnan(t), min_period=0.3, max_period=20, workers=2)
    for i, (ti, yi, _) in enumerate(rows):
        g = lc.frequency_grid(ti, 0.3, 20, 5)
        assert periods[i] == pytest.approx(1 / g[np.argmax(LombScargle(ti, yi).power(g, method="cython"))], rel=1e-9)


def test_periodogram_inputs_and_direct_finufft_calls_match_the_library_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy inputs equal nifty-ls's compiled helper's, and the direct C calls of finufft give the power of
    the public ``Plan.setpts``/``execute`` bit for bit."""
    from nifty_ls import cpu_helpers

    from stellar.data.preprocess import _nifty

    rng = np.random.default_rng(4)
    t = np.sort(rng.uniform(0, 82, 3000)) + 5e4
    y = 1 + 1e-3 * np.sin(2 * np.pi * t / 0.37) + rng.normal(0, 2e-4, t.size)
    dy = rng.uniform(1e-4, 3e-4, t.size)
    fmin, df, n_modes = 0.1, 1 / (5 * 82.0), 8000
    for e, psd in ((dy, False), (None, False), (dy, True)):
        n = t.size
        t1, t2, norm = np.empty(n), np.empty(n), np.empty(1)
        yw_w, w2 = np.empty((2, n), complex), np.empty((1, n), complex)
        helper_dy = np.ones((1, 1)) if e is None else e.reshape(1, n)
        cpu_helpers.process_finufft_inputs(t1, t2, yw_w[:1], yw_w[1:], w2, norm, t - t.min(), y.reshape(1, n),
                                           helper_dy, fmin, df, n_modes, True, True, psd, 1)  # fmt: skip
        x, strength, strength2, our_norm = _nifty._inputs(t, y, e, fmin, df, n_modes, psd)
        np.testing.assert_array_equal(x, t1)
        for ours, theirs in ((strength, yw_w), (strength2, w2), (our_norm, norm)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-11 * np.abs(theirs).max())
    rows = [(t, y, dy), (t[:500], y[:500], None)]
    args = (np.array([0.1, 0.2]), np.array([df, 2 * df]), np.array([8000, 3000]))
    direct = _nifty.power_rows(rows, *args)
    assert _nifty._c_api() is not None  # the fast path is the one tested above
    monkeypatch.setattr(_nifty, "_C_API", {})  # finufft's public methods
    for a, b in zip(direct, _nifty.power_rows(rows, *args), strict=True):
        np.testing.assert_array_equal(a, b)


def test_single_precision_search_finds_the_double_precision_grid_maximum() -> None:
    """Dense light curves are searched with single-precision transforms: the power stays within its stated
    error bound, and every period equals the double-precision grid maximum, near-ties and flat spectra too."""
    from stellar.data.preprocess import _nifty
    from stellar.data.simulate.lightcurve import LightCurveSimulator

    classes = ("rr_lyrae_ab", "rr_lyrae_c", "delta_scuti", "eclipsing_contact", "eclipsing_detached", "rotational",
               "non_variable", "flare")  # fmt: skip
    lcs = LightCurveSimulator(cadence="kepler", n_points=3000, bands=("kepler",), classes=classes).simulate(21, seed=3)
    rows = [(lcs.time[i, ~lcs.mask[i]], lcs.flux[i, ~lcs.mask[i]], lcs.flux_err[i, ~lcs.mask[i]]) for i in range(21)]
    fmin, df, nf = lc._grid_params(np.array([np.ptp(r[0]) for r in rows]), 0.05, 10.0, 5.0)
    double = _nifty.power_rows(rows, fmin, df, nf)
    single = _nifty.power_rows(rows, fmin, df, nf, single=True)
    for (t, _, _), p64, p32, f0, step, n in zip(rows, double, single, fmin, df, nf, strict=True):
        assert _nifty.single_is_safe(t, f0, f0 + step * (n - 1))
        assert np.max(np.abs(p32 - p64)) <= _nifty.single_error(n)
    expected = 1 / (fmin + df * np.array([np.argmax(p) for p in double]))
    np.testing.assert_array_equal(lc._peak_periods(rows, 0.05, 10.0, 5.0), expected)
    # a near-tie in the single-precision power goes to direct sums; a flat one to double-precision transforms
    row, p64 = rows[0], double[0]
    top = int(np.argmax(p64))
    other = int(np.argmax(np.where(np.abs(np.arange(p64.size) - top) > 50, p64, 0)))
    tied = p64.copy()
    tied[other] = tied[top] + 1e-4  # higher in single precision, within its error
    assert lc._best_of_single(row, tied, fmin[0], df[0]) == top
    assert lc._best_of_single(row, np.ones_like(p64), fmin[0], df[0]) == top
    # ill-conditioned grids (a 30-min cadence searched up to its sampling rate) stay in double precision
    assert not _nifty.single_is_safe(row[0], 0.5, 48.0)
    assert not _nifty.single_is_safe(row[0], 1 / np.ptp(row[0]), 10.0)


def test_peak_period_coarse_search_finds_the_grid_maximum_of_sparse_curves() -> None:
    """Sparse rows go through the coarse-then-exact search: the result is astropy's highest point on the full
    grid for every row, including noisy ones whose highest peak is an alias."""
    from stellar.data.simulate.lightcurve import LightCurveSimulator

    sim = LightCurveSimulator(cadence="ground", n_points=60, bands=("eros_r",), baseline=600.0, min_fill=0.9)
    lcs = sim.simulate(16, seed=11)
    t, y, e, m = lcs.time, lcs.mag, lcs.mag_err, lcs.mask
    y = y + np.random.default_rng(12).normal(0, 0.15, y.shape)  # make some rows ambiguous
    got = lc.peak_period(t, y, e, m, min_period=0.2, max_period=50)
    for i in range(len(got)):
        ok = ~m[i]
        g = lc.frequency_grid(t[i, ok], 0.2, 50, 5)
        assert g.size > 10 * ok.sum()  # the coarse path
        ref = LombScargle(t[i, ok], y[i, ok], e[i, ok]).power(g, method="cython")
        assert got[i] == pytest.approx(1 / g[np.argmax(ref)], rel=1e-12), i


def test_detrend_biweight_iterations_converge() -> None:
    """The default stopping rule lands within ~ftol of the fully converged biweight, even on a pulsator whose
    windows are far from Gaussian (where plain reweighting converges slowly)."""
    t, f, _ = _kepler_like(seed=10)
    f = f * (1 + 0.2 * np.abs(np.sin(np.pi * t / 0.55)) ** 3)  # RRab-like spikes
    _, trend, _ = lc.detrend_biweight(t, f, window=1.0)
    _, converged, _ = lc.detrend_biweight(t, f, window=1.0, n_iter=500, ftol=1e-12)
    err = np.abs(trend / converged - 1)
    assert np.median(err) < 1e-7 and np.quantile(err, 0.99) < 1e-5


def test_workers_must_be_a_positive_int() -> None:
    t = np.arange(20.0)
    for bad in (0, 1.5):
        with pytest.raises(StellarValueError, match="workers"):
            lc.detrend_biweight(t, 1 + 0 * t, window=5.0, workers=bad)  # type: ignore[arg-type]
        with pytest.raises(StellarValueError, match="workers"):
            lc.peak_period(t, np.sin(t), min_period=0.5, workers=bad)  # type: ignore[arg-type]
    assert np.isfinite(lc.peak_period(t, np.sin(t), min_period=0.5, workers=np.int64(2)))


def test_peak_period_without_the_shared_plan_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """An untested nifty-ls version (or none) falls back to one nifty-ls/astropy call per row: same periods."""
    from stellar.data.preprocess import _nifty

    rng = np.random.default_rng(13)
    t = np.sort(rng.uniform(0, 300, (3, 90)), axis=1)
    y = np.sin(2 * np.pi * t / np.array([[0.7], [3.1], [11.0]])) + rng.normal(0, 0.3, t.shape)
    fast = lc.peak_period(t, y, None, min_period=0.2, max_period=50)
    monkeypatch.setattr(_nifty, "_HELPER_VERSIONS", ("0.0.",))
    assert not _nifty.available()
    np.testing.assert_allclose(lc.peak_period(t, y, None, min_period=0.2, max_period=50), fast, rtol=1e-12)
