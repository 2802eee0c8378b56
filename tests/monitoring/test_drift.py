"""The two-sample tests, the Holm correction and their verdicts, against known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stellar.monitoring.drift import Check, binomial_excess, chi2_counts, feature_checks, holm, ks_check, mmd_check


def _check(name: str, p: float, effect: float = 1.0) -> Check:
    return Check(name, "ks", 0.0, p, effect, 0.1, 10, 10)


def test_holm_matches_the_step_down_formula() -> None:
    checks = [_check("a", 0.01), _check("b", 0.04), _check("c", 0.03), _check("d", 0.5)]
    holm(checks, alpha=0.05)
    # sorted p: 0.01, 0.03, 0.04, 0.5 -> 4*0.01, max(0.04, 3*0.03), max(0.09, 2*0.04), max(0.09, 0.5)
    assert [c.p_adjusted for c in checks] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert [c.alert for c in checks] == [True, False, False, False]


def test_a_significant_but_tiny_effect_does_not_alert() -> None:
    checks = [_check("big", 1e-6, effect=0.3), _check("tiny", 1e-6, effect=0.01)]
    holm(checks, alpha=0.05)
    assert [c.alert for c in checks] == [True, False]


def test_ks_check_is_scipys_ks_and_finds_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref, same, moved = rng.normal(size=2000), rng.normal(size=500), rng.normal(0.5, 1.0, size=500)
    c = ks_check("x", ref, same, 0.1)
    assert c is not None and c.statistic == pytest.approx(stats.ks_2samp(ref, same).statistic)
    assert c.p_value > 0.01
    shifted = ks_check("x", ref, moved, 0.1)
    assert shifted is not None and shifted.p_value < 1e-10 and shifted.effect > 0.15
    assert shifted.extra["wasserstein_over_std"] == pytest.approx(0.5, abs=0.1)
    assert ks_check("x", ref, np.array([1.0, np.nan]), 0.1) is None  # too few finite values


def test_chi2_counts_effect_is_the_total_variation_distance() -> None:
    c = chi2_counts("cls", np.array([500, 500, 0]), np.array([100, 300, 0]), 0.1, ["a", "b", "c"])
    assert c is not None
    assert c.effect == pytest.approx(0.25)  # |0.5-0.25| + |0.5-0.75| over 2
    assert c.extra["categories"] == ["a", "b"]  # empty on both sides: dropped
    assert c.p_value < 1e-10
    assert chi2_counts("cls", np.array([10, 0]), np.array([10, 0]), 0.1) is None  # one category: nothing to test


def test_feature_checks_pick_the_test_by_kind_and_test_missing_values() -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"band_present_u": np.ones(400), "mag_u": rng.normal(size=400)})
    mag = rng.normal(size=400)
    mag[:200] = np.nan  # half the batch lost the band
    batch = pd.DataFrame({"band_present_u": np.isfinite(mag).astype(float), "mag_u": mag})
    checks = {c.name: c for c in feature_checks(ref, batch, 0.1)}
    assert checks["band_present_u"].test == "chi2" and checks["band_present_u"].effect == pytest.approx(0.5)
    assert checks["mag_u:missing"].effect == pytest.approx(0.5)
    assert checks["mag_u"].test == "ks" and checks["mag_u"].n_batch == 200


def test_mmd_permutation_p_value_is_calibrated_and_powerful() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(300, 4))
    p_null = [mmd_check("e", ref, rng.normal(size=(100, 4)), 0.0, 99, seed=s).p_value for s in range(30)]  # type: ignore[union-attr]
    assert 0.02 < np.mean(np.array(p_null) < 0.2) < 0.45  # about 20% below 0.2 under the null
    moved = rng.normal(size=(100, 4))
    moved[:, 0] += 0.6
    c = mmd_check("e", ref, moved, 0.0, 199)
    assert c is not None and c.p_value == pytest.approx(1 / 200)


def test_binomial_excess() -> None:
    assert binomial_excess("ood", 10, 1000, 0.01, 0.02).p_value > 0.4  # type: ignore[union-attr]
    c = binomial_excess("ood", 60, 1000, 0.01, 0.02)
    assert c is not None and c.p_value < 1e-10 and c.effect == pytest.approx(0.05)


def test_mmd_draws_at_most_max_batch_rows_of_a_large_batch() -> None:
    # the kernel matrix is (reference + batch)²: a whole-folder batch of 100,000 objects would need 80 GB
    rng = np.random.default_rng(3)
    ref, batch = rng.normal(size=(300, 4)), rng.normal(size=(5000, 4))
    c = mmd_check("e", ref, batch, 0.0, 99, max_reference=200, max_batch=400)
    assert c is not None and (c.n_reference, c.n_batch) == (200, 400)
    assert c.extra["batch_rows"] == 5000 and c.p_value > 0.01
    moved = batch + np.array([0.5, 0.0, 0.0, 0.0])
    assert mmd_check("e", ref, moved, 0.0, 99, max_reference=200, max_batch=400).p_value == pytest.approx(0.01)  # type: ignore[union-attr]
