"""Per-summary drift checks against a saved training reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stellar.monitoring import TrainingReference, build_reference, check_batch
from stellar.monitoring.drift import feature_checks


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
    from stellar.monitoring import InputSketch

    rng = np.random.default_rng(2)
    cov = np.diag(np.linspace(3.0, 0.2, 12))
    ref, new = rng.multivariate_normal(np.zeros(12), cov, 4000), rng.multivariate_normal(np.zeros(12), cov, 20000)
    sketch = InputSketch.fit(ref, [f"c{j}" for j in range(12)], n_components=4, alpha=0.01, seed=0)
    t2, q = sketch.statistics(new)
    # each statistic alone flags about alpha; their union, the score, must too (it flagged ~2 alpha before)
    assert (sketch.ood_score(new) > 1.0).mean() == pytest.approx(0.01, abs=0.004)
    assert (t2 > sketch.t2_threshold).mean() < 0.01 and (q > sketch.q_threshold).mean() < 0.01
