"""The two-sample tests, the Holm correction and their verdicts, against known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stellar.monitoring import InputSketch, TrainingReference, build_reference, check_batch
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


def test_identical_summaries_have_no_ks_distance_after_the_reference_is_saved_in_float32(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    # a constant column (the blue edge of a spectral grid, Å) and a tied one (magnitudes to 0.01 mag)
    summaries = pd.DataFrame({"wave_blue": np.full(n, 3600.8289), "mag": np.round(rng.normal(8.0, 1.0, n), 2)})
    checks = {c.name: c for c in feature_checks(summaries.astype(np.float32).astype(float), summaries, 0.1)}
    assert checks["wave_blue"].effect == 0.0 and checks["mag"].effect == 0.0

    arrays = {"features": summaries.to_numpy(), "mag": summaries[["mag"]].to_numpy()}
    ref = build_reference(arrays, n_components=2)
    ref.save(tmp_path)
    loaded = TrainingReference.load(tmp_path)
    report = check_batch(loaded, ref.summaries)  # the very objects of the reference, in float64
    ks = [c for c in report["data_drift"]["checks"] if c["test"] == "ks"]
    assert ks and all(c["effect"] == 0.0 and not c["alert"] for c in ks)
    assert not report["alert"]


def test_confidences_of_the_reference_objects_do_not_drift_from_their_saved_copy(tmp_path):
    rng = np.random.default_rng(1)
    n = 500
    # a confident classifier: many probabilities within float32 round-off of 1
    logits = np.stack([rng.normal(0.0, 1.0, n), rng.normal(18.0, 3.0, n)], axis=1)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    assert (probs.max(axis=1).astype(np.float32) == 1.0).mean() > 0.1
    arrays = {"features": rng.normal(size=(n, 2)), "mag": rng.normal(size=(n, 1))}
    build_reference(arrays, probs=probs, class_names=["a", "b"], n_components=2).save(tmp_path)
    loaded = TrainingReference.load(tmp_path)
    report = check_batch(loaded, loaded.summaries, probs=probs)
    conf = next(c for c in report["prediction_drift"]["checks"] if c["name"] == "confidence")
    assert conf["effect"] == 0.0 and not conf["alert"]


def test_the_ood_flag_rate_of_new_in_distribution_objects_is_alpha_not_twice_alpha():
    rng = np.random.default_rng(2)
    cov = np.diag(np.linspace(3.0, 0.2, 12))
    ref, new = rng.multivariate_normal(np.zeros(12), cov, 4000), rng.multivariate_normal(np.zeros(12), cov, 20000)
    sketch = InputSketch.fit(ref, [f"c{j}" for j in range(12)], n_components=4, alpha=0.01, seed=0)
    t2, q = sketch.statistics(new)
    # each statistic alone flags about alpha; their union, the score, must too (it flagged ~2 alpha before)
    assert (sketch.ood_score(new) > 1.0).mean() == pytest.approx(0.01, abs=0.004)
    assert (t2 > sketch.t2_threshold).mean() < 0.01 and (q > sketch.q_threshold).mean() < 0.01


def test_flagged_excess_carries_the_uncertainty_of_a_threshold_set_on_few_rows() -> None:
    from stellar.monitoring.drift import flagged_excess

    # 6 of 100 batch objects beyond a threshold that 1 of 59 reference rows passed: not evidence of a shift
    few = flagged_excess("ood", 6, 100, 1, 59, 0.02)
    assert few is not None and few.p_value > 0.1
    # the same 6% against a threshold set on 1,000 rows (10 passed): a shift
    many = flagged_excess("ood", 60, 1000, 10, 1000, 0.02)
    assert many is not None and many.p_value < 1e-8 and many.effect == pytest.approx(0.05)


def test_the_sketch_keeps_its_held_out_counts_through_the_file(tmp_path) -> None:
    rng = np.random.default_rng(4)
    arrays = {"features": rng.normal(size=(400, 3)), "mag": rng.normal(size=(400, 3))}
    ref = build_reference(arrays, ood_alpha=0.05)
    assert ref.sketch.n_held == 200 and 5 <= ref.sketch.held_flagged <= 15
    ref.save(tmp_path)
    back = TrainingReference.load(tmp_path).sketch
    assert (back.n_held, back.held_flagged) == (ref.sketch.n_held, ref.sketch.held_flagged)
    report = check_batch(TrainingReference.load(tmp_path), ref.summaries, arrays=arrays)
    ood = next(c for c in report["data_drift"]["checks"] if c["name"] == "ood_fraction")
    assert ood["test"] == "fisher" and ood["n_reference"] == 200
