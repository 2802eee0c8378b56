"""Late fusion: the presence-masked log-linear pool and Gaussian product (known answers), and :class:`LateFusion`
on per-object multi-modal arrays (an object with one modality gets that member's answer, save/load round trip)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from stellar.errors import StellarConfigError
from stellar.evaluation.calibration import softmax
from stellar.models.ensemble import gaussian_product, log_linear_pool
from stellar.models.estimators import XGBoostEstimator
from stellar.models.late_fusion import LateFusion


def test_log_linear_pool_is_the_renormalised_weighted_geometric_mean_over_present_members() -> None:
    p1 = np.array([[0.8, 0.2], [0.8, 0.2], [0.8, 0.2]])
    p2 = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    present = [np.array([True, False, False]), np.array([True, True, False])]
    out = log_linear_pool([p1, p2], [0.5, 0.5], present)
    # sqrt(0.8 * 0.5) : sqrt(0.2 * 0.5) = 0.6325 : 0.3162 -> 2/3, 1/3
    np.testing.assert_allclose(out[0], [2 / 3, 1 / 3], rtol=1e-12)
    np.testing.assert_allclose(out[1], p2[1])  # one member present: its answer
    assert np.isnan(out[2]).all()  # none present
    # weights 0.25 / 0.75: 0.8^0.25 0.5^0.75 : 0.2^0.25 0.5^0.75
    w = log_linear_pool([p1, p2], [0.25, 0.75])[0]
    assert w[0] / w[1] == pytest.approx((0.8 / 0.2) ** 0.25)
    # the only present member has weight 0: it is still that member's answer
    np.testing.assert_allclose(log_linear_pool([p1, p2], [0.0, 1.0], present)[0], [0.5, 0.5])
    np.testing.assert_allclose(log_linear_pool([p1, p2], [1.0, 0.0], present)[1], [0.5, 0.5])


def test_gaussian_product_weighs_means_by_precision_over_present_members() -> None:
    means = [np.array([1.0, 1.0, 1.0, 1.0]), np.array([3.0, 3.0, 3.0, 3.0])]
    logvars = [np.log(np.array([1.0, 1.0, 1.0, 1.0])), np.log(np.array([4.0, 1.0, 4.0, 4.0]))]
    present = [np.array([True, True, False, False]), np.array([True, True, True, False])]
    mean, logvar = gaussian_product(means, logvars, [0.5, 0.5], present)
    # precision 0.5/1 + 0.5/4 = 0.625: variance 1.6, mean (0.5 * 1 + 0.125 * 3) / 0.625 = 1.4
    assert mean[0] == pytest.approx(1.4) and np.exp(logvar[0]) == pytest.approx(1.6)
    assert mean[1] == pytest.approx(2.0) and np.exp(logvar[1]) == pytest.approx(1.0)
    assert mean[2] == pytest.approx(3.0) and np.exp(logvar[2]) == pytest.approx(4.0)  # one present: its Gaussian
    assert np.isnan(mean[3]) and np.isnan(logvar[3])
    with pytest.raises(StellarConfigError, match="present must be 2 masks of 4 objects"):
        gaussian_product(means, logvars, None, [present[0]])


def _objects(n: int, seed: int) -> dict:
    """Per-object arrays as the multi-modal datamodule gives them: modality ``a`` knows the class, ``b`` the target."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    t = rng.normal(0.0, 1.0, n)
    a = np.column_stack([label + rng.normal(0, 0.3, n), t + rng.normal(0, 1.0, n)]).astype(np.float32)
    b = np.column_stack([label + rng.normal(0, 1.5, n), t + rng.normal(0, 0.1, n)]).astype(np.float32)
    present = {"a": rng.random(n) < 0.8, "b": rng.random(n) < 0.6}
    return {"a": {"x": a}, "b": {"x": b}, "present": present, "label": label, "t": t.astype(np.float32),
            "index": np.arange(n)}  # fmt: skip


def _late(**kw) -> LateFusion:
    member = partial(XGBoostEstimator, inputs=["x"], targets=["t"], log_targets=[], num_boost_round=40,
                     early_stopping_rounds=None, n_jobs=1, params={"max_depth": 2})  # fmt: skip
    return LateFusion({"a": member, "b": member}, {"a": "a", "b": "b"}, class_names=["0", "1", "2"], **kw)


def test_late_fusion_pools_present_members_and_round_trips(tmp_path: Path) -> None:
    model = _late()
    assert model.inputs == ["present", "a", "b"]
    metrics = model.fit(_objects(400, 0), _objects(200, 1))
    # each head weighs the member that knows it: the class from a, the target from b
    assert model.weights["class"]["a_0"] > model.weights["class"]["b_0"]
    assert model.weights["t"]["b_0"] > model.weights["t"]["a_0"]
    assert metrics["val/acc"] > 0.8 and metrics["val/t_mae"] < 0.3
    test = _objects(100, 2)
    out = model.predict_outputs(test)
    only_a = test["present"]["a"] & ~test["present"]["b"]
    only_b = test["present"]["b"] & ~test["present"]["a"]
    none = ~test["present"]["a"] & ~test["present"]["b"]
    assert only_a.any() and only_b.any() and none.any()
    for key, rows in (("a_0", only_a), ("b_0", only_b)):  # one modality: that member's calibrated answer
        member, p = model._member_outputs(key, test)
        np.testing.assert_allclose(softmax(out["logits"][rows]), p[rows], rtol=1e-5)
        np.testing.assert_allclose(out["t_mean"][rows], member["t_mean"][rows], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["t_logvar"][rows], member["t_logvar"][rows], rtol=1e-4, atol=1e-5)
    # no modality: the training prior (class frequencies, target mean)
    np.testing.assert_allclose(softmax(out["logits"][none]), np.tile(model.prior["class"], (none.sum(), 1)), 1e-5)
    assert out["t_mean"][none] == pytest.approx(model.prior["t"][0], rel=1e-5)
    # both: the pool moves away from each member alone
    both = test["present"]["a"] & test["present"]["b"]
    assert not np.allclose(out["t_mean"][both], model._member_outputs("a_0", test)[0]["t_mean"][both])
    # save / load: the same answers
    path = model.save(tmp_path)
    again = _late().load(path)
    assert again.weights == model.weights and again.prior == model.prior
    for k, v in again.predict_outputs(test).items():
        np.testing.assert_allclose(v, out[k], rtol=1e-6, err_msg=k)


def test_weight_margin_keeps_a_mixture_only_when_it_clearly_beats_the_best_single_member() -> None:
    train, val = _objects(400, 0), _objects(200, 1)
    plain = _late()
    plain.fit(train, val)
    # with the lowest loss alone some head mixes the two members (neither weight 0 or 1)
    assert any(0.0 < w["a_0"] < 1.0 for w in plain.weights.values()), plain.weights
    # a margin no mixture can clear: every head goes to its best single member, the one that knows it
    strict = _late(weight_margin=1e6)
    strict.fit(train, val)
    assert strict.weights == {"class": {"a_0": 1.0, "b_0": 0.0}, "t": {"a_0": 0.0, "b_0": 1.0}}
    assert strict.hparams["weight_margin"] == 1e6
    with pytest.raises(StellarConfigError, match="weight_margin must be a non-negative number"):
        _late(weight_margin=-1.0)


def test_late_fusion_needs_the_modality_of_every_member() -> None:
    member = partial(XGBoostEstimator, inputs=["x"], targets=["t"], log_targets=[])
    with pytest.raises(StellarConfigError, match="modalities must name the modality of every member"):
        LateFusion({"a": member, "b": member}, {"a": "a"}, class_names=["0", "1"])
    model = _late()
    with pytest.raises(StellarConfigError, match="the data has no modality 'a'"):
        model.fit({"x": np.zeros((4, 2)), "label": np.zeros(4, int), "t": np.zeros(4), "present": {}})


def _joint_objects(n: int, seed: int) -> dict:
    """Per-object arrays whose target is the sum of a part that modality ``a`` knows and one that ``b`` knows."""
    rng = np.random.default_rng(seed)
    ta, tb = rng.normal(0.0, 1.0, n), rng.normal(0.0, 1.0, n)
    label = (ta + tb > 0).astype(int)
    present = {"a": rng.random(n) < 0.8, "b": rng.random(n) < 0.7}
    return {"a": {"xa": (ta + rng.normal(0, 0.05, n))[:, None].astype(np.float32)},
            "b": {"xb": (tb + rng.normal(0, 0.05, n))[:, None].astype(np.float32)},
            "present": present, "label": label, "t": (ta + tb).astype(np.float32), "index": np.arange(n)}  # fmt: skip


def test_a_joint_member_answers_only_where_all_its_modalities_are_and_carries_what_they_know_together(
    tmp_path: Path,
) -> None:
    """A member that needs [a, b] reads both modalities' fields side by side, is fitted and weighed on the objects
    that have both, and is ignored (weight renormalised away) for an object that lacks either: the target (a sum of
    what a and what b know) is known only to it, so it takes the target's weight and beats either member."""
    member = partial(XGBoostEstimator, targets=["t"], log_targets=[], num_boost_round=60, early_stopping_rounds=None,
                     n_jobs=1, params={"max_depth": 3})  # fmt: skip
    members = {"a": partial(member, inputs=["xa"]), "b": partial(member, inputs=["xb"]),
               "joint": partial(member, inputs=["xa", "xb"])}  # fmt: skip

    def late() -> LateFusion:
        return LateFusion(members, {"a": "a", "b": "b", "joint": ["a", "b"]}, class_names=["0", "1"])

    model = late()
    assert model.inputs == ["present", "a", "b"] and model.models["joint_0"].modality == "a+b"
    model.fit(_joint_objects(600, 0), _joint_objects(300, 1))
    assert model.weights["t"]["joint_0"] >= 0.7
    test = _joint_objects(300, 2)
    both = test["present"]["a"] & test["present"]["b"]
    np.testing.assert_array_equal(model.models["joint_0"].present(test), both)
    out = model.predict_outputs(test)
    err = np.abs(out["t_mean"] - test["t"])
    member_a = model._member_outputs("a_0", test)[0]["t_mean"]
    assert err[both].mean() < 0.3 < np.abs(member_a - test["t"])[both].mean()
    only_a = test["present"]["a"] & ~test["present"]["b"]
    np.testing.assert_allclose(out["t_mean"][only_a], member_a[only_a], rtol=1e-5, atol=1e-6)  # joint absent
    again = late().load(model.save(tmp_path))
    np.testing.assert_allclose(again.predict_outputs(test)["t_mean"], out["t_mean"], rtol=1e-6)
    clash = {**_joint_objects(10, 3), "b": {"xa": np.zeros((10, 1), np.float32)}}
    with pytest.raises(StellarConfigError, match="field 'xa' is in more than one of the modalities"):
        model.models["joint_0"].part(clash)


def _one_head(kind: str):
    """An XGBoost member with only the class head (``kind="class"``) or only the target ``t``."""

    def factory(**kw):
        if kind == "class":
            return XGBoostEstimator(inputs=["x"], targets=[], log_targets=[], num_boost_round=20,
                                    early_stopping_rounds=None, n_jobs=1, class_names=kw["class_names"],
                                    seed=kw["seed"], name=kw["name"])  # fmt: skip
        return XGBoostEstimator(inputs=["x"], targets=["t"], log_targets=[], num_boost_round=20,
                                early_stopping_rounds=None, n_jobs=1, seed=kw["seed"], name=kw["name"])  # fmt: skip

    return factory


def test_a_head_no_present_member_answers_falls_back_to_the_prior_not_nan() -> None:
    """Members with different heads: an object whose only present member has no class head (or no target) gets the
    training prior for that head, as an object with no modality does, never NaN."""
    members = {"a": _one_head("class"), "b": _one_head("t")}
    model = LateFusion(members, {"a": "a", "b": "b"}, class_names=["0", "1", "2"])
    metrics = model.fit(_objects(300, 0), _objects(200, 1))
    assert np.isfinite(metrics["val/class_mlogloss"]) and np.isfinite(metrics["val/t_mae"])
    test = _objects(100, 2)
    out = model.predict_outputs(test)
    assert all(np.isfinite(v).all() for v in out.values())
    only_a = test["present"]["a"] & ~test["present"]["b"]
    only_b = test["present"]["b"] & ~test["present"]["a"]
    assert only_a.any() and only_b.any()
    np.testing.assert_allclose(softmax(out["logits"][only_b]), np.tile(model.prior["class"], (only_b.sum(), 1)), 1e-5)
    assert out["t_mean"][only_a] == pytest.approx(model.prior["t"][0], rel=1e-5)
    # where the head's member is present, its answer
    _, p = model._member_outputs("a_0", test)
    np.testing.assert_allclose(softmax(out["logits"][only_a]), p[only_a], rtol=1e-5)


def test_weights_are_not_chosen_on_a_validation_part_where_no_object_has_two_members() -> None:
    """Where no validation object has both modalities every weight gives the same loss: the head keeps equal
    weights rather than the grid's first row (all weight on one member), which would drop a member on test."""
    val = _objects(200, 1)
    val["present"]["b"] = ~val["present"]["a"]
    model = _late()
    metrics = model.fit(_objects(300, 0), val)
    assert model.weights == {} and not any(k.startswith("val/weight.") for k in metrics)
    test = _objects(100, 2)
    both = test["present"]["a"] & test["present"]["b"]
    assert both.any()
    (oa, pa), (ob, pb) = model._member_outputs("a_0", test), model._member_outputs("b_0", test)
    expected = log_linear_pool([pa, pb], [0.5, 0.5])[both]
    np.testing.assert_allclose(softmax(model.predict_outputs(test)["logits"][both]), expected, rtol=1e-5)
    mean, _ = gaussian_product([oa["t_mean"], ob["t_mean"]], [oa["t_logvar"], ob["t_logvar"]], [0.5, 0.5])
    np.testing.assert_allclose(model.predict_outputs(test)["t_mean"][both], mean[both], rtol=1e-5)
