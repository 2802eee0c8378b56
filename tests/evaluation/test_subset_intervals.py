"""Interval calibration per modality subset: two subsets with errors of different scale (a known answer), the
pooled fallback, the JSON round trip and the older single-scope format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stellar.errors import StellarValueError
from stellar.evaluation.calibration import (
    ONE_SIGMA,
    BaseIntervalCalibrator,
    ConformalIntervals,
    SubsetIntervalCalibrator,
    VarianceScaler,
    subset_key,
    subset_names,
)
from stellar.evaluation.metrics import regression_report

Z95 = 1.959963984540054
N = 4000


def _subsets(seed: int, n: int = N) -> dict[str, tuple[dict, dict]]:
    """Predicted σ = 1 everywhere; true errors σ = 0.5 with a spectrum, 2 with the SED alone, 0.4 with both."""
    rng = np.random.default_rng(seed)
    out = {"logg_mean": np.zeros(n), "logg_logvar": np.zeros(n)}
    return {
        name: (out, {"logg": rng.normal(0.0, scale, n)})
        for name, scale in (("spectrum", 0.5), ("sed", 2.0), ("spectrum+sed", 0.4))
    }


def _pooled(subsets: dict[str, tuple[dict, dict]]) -> tuple[dict, dict]:
    outs, truths = zip(*subsets.values(), strict=True)
    out = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    return out, {"logg": np.concatenate([t["logg"] for t in truths])}


def _coverage(cal: BaseIntervalCalibrator, out: dict, truth: np.ndarray, name: str, level: float) -> float:
    lo, hi = cal.interval(out, "logg", level, [name] * len(truth))
    return float(np.mean((truth >= lo) & (truth <= hi)))


@pytest.mark.parametrize("kind", [VarianceScaler, ConformalIntervals])
def test_only_the_per_subset_calibrator_covers_every_subset_at_nominal(kind):
    fit, test = _subsets(0), _subsets(1)
    pooled = kind().fit(*_pooled(fit))
    by_subset = SubsetIntervalCalibrator(kind(), min_rows=30).fit_subsets(*_pooled(fit), fit)
    for name, (out, truths) in test.items():
        for level in (ONE_SIGMA, 0.95):
            assert _coverage(by_subset, out, truths["logg"], name, level) == pytest.approx(level, abs=0.03)
    # one scale for all: the SED-only objects (σ 2) are under-covered, the spectrum ones over-covered
    sed_out, sed_truth = test["sed"]
    spec_out, spec_truth = test["spectrum"]
    assert _coverage(pooled, sed_out, sed_truth["logg"], "sed", ONE_SIGMA) < 0.55
    assert _coverage(pooled, spec_out, spec_truth["logg"], "spectrum", ONE_SIGMA) > 0.8
    # the variance scaler's known answer: each subset's own σ
    if kind is VarianceScaler:
        k = by_subset.factors("logg", ONE_SIGMA, 3, ["spectrum", "sed", "sed+spectrum"])  # any order of modalities
        np.testing.assert_allclose(k, [0.5, 2.0, 0.4], rtol=0.05)
    # without groups (a caller that knows no subsets) every row gets the pooled factor
    assert by_subset.factor("logg") == pytest.approx(pooled.factor("logg"))
    np.testing.assert_allclose(by_subset.factors("logg", 0.95, 4), pooled.factor("logg", 0.95))


def test_a_subset_with_too_few_rows_and_an_unseen_subset_fall_back_to_the_pooled_factor():
    fit = _subsets(0)
    fit["sed"] = (
        {k: v[:20] for k, v in fit["sed"][0].items()},
        {"logg": fit["sed"][1]["logg"][:20]},
    )  # 20 < min_rows
    cal = SubsetIntervalCalibrator(VarianceScaler(), min_rows=30).fit_subsets(*_pooled(fit), fit)
    assert sorted(cal.subsets_) == ["spectrum", "spectrum+sed"]
    k = cal.factors("logg", ONE_SIGMA, 4, ["sed", "lightcurve", "", "spectrum"])
    assert k[:3] == pytest.approx([cal.pooled.factor("logg")] * 3)
    assert k[3] == pytest.approx(0.5, rel=0.05)
    # a target a subset lacks enough truths for: pooled for that target only
    out, truths = fit["spectrum"]
    fit["spectrum"] = ({**out, "teff_mean": out["logg_mean"], "teff_logvar": out["logg_logvar"]},
                       {**truths, "teff": np.where(np.arange(N) < 10, truths["logg"], np.nan)})  # fmt: skip
    pooled_out, pooled_truth = _pooled({k: v for k, v in fit.items() if k != "spectrum"})
    pooled_out = {**pooled_out, "teff_mean": pooled_out["logg_mean"], "teff_logvar": pooled_out["logg_logvar"]}
    cal = SubsetIntervalCalibrator(VarianceScaler(), min_rows=30).fit_subsets(
        pooled_out, {**pooled_truth, "teff": pooled_truth["logg"]}, fit
    )
    assert cal.subsets_["spectrum"].targets == ["logg"]
    assert cal.factors("teff", ONE_SIGMA, 1, ["spectrum"])[0] == pytest.approx(cal.pooled.factor("teff"))


def test_round_trip_keeps_every_subset_factor_and_transform_uses_the_rows_subset():
    fit = _subsets(0)
    cal = SubsetIntervalCalibrator(ConformalIntervals(levels=[0.9]), min_rows=30).fit_subsets(*_pooled(fit), fit)
    payload = json.loads(json.dumps(cal.to_dict()))
    back = BaseIntervalCalibrator.from_dict(payload)
    assert isinstance(back, SubsetIntervalCalibrator) and back.min_rows == 30
    assert sorted(back.subsets_) == sorted(cal.subsets_)
    groups = ["spectrum", "sed", "spectrum+sed", "lightcurve"]
    for level in (ONE_SIGMA, 0.9, 0.95):
        np.testing.assert_allclose(back.factors("logg", level, 4, groups), cal.factors("logg", level, 4, groups))
    out = {"logg_mean": np.zeros(4), "logg_logvar": np.zeros(4)}
    sd = np.exp(0.5 * back.transform(out, groups)["logg_logvar"])
    np.testing.assert_allclose(sd, cal.factors("logg", ONE_SIGMA, 4, groups), rtol=1e-6)
    # per-row factors in the report: coverage after of the SED rows alone is the SED calibrator's
    out_s, truth_s = _subsets(1)["sed"]
    n = len(truth_s["logg"])
    factors = tuple(back.factors("logg", lv, n, ["sed"] * n) for lv in (ONE_SIGMA, 0.95))
    rep = regression_report(out_s["logg_mean"], out_s["logg_logvar"], truth_s["logg"], factors)
    assert rep["coverage_68_after"] == pytest.approx(ONE_SIGMA, abs=0.03)
    assert rep["coverage_95_after"] == pytest.approx(0.95, abs=0.02)
    assert rep["coverage_68"] < 0.45  # the model's own σ (1) is half the true 2


def test_an_older_single_scope_payload_loads_and_ignores_groups():
    out = {"logg_mean": np.zeros(3), "logg_logvar": np.zeros(3)}
    old = {"type": "variance", "log_targets": [], "targets": {"logg": {"n": 100, "scale": 1.5}}}
    cal = BaseIntervalCalibrator.from_dict(old)
    assert isinstance(cal, VarianceScaler)
    np.testing.assert_allclose(cal.factors("logg", 0.95, 3, ["sed", "spectrum", "x"]), 1.5 * Z95)
    np.testing.assert_allclose(np.exp(0.5 * cal.transform(out, ["sed"] * 3)["logg_logvar"]), 1.5, rtol=1e-6)


def test_bad_settings_and_payloads_are_refused_by_name():
    with pytest.raises(StellarValueError, match="min_rows"):
        SubsetIntervalCalibrator(VarianceScaler(), min_rows=1)
    with pytest.raises(StellarValueError, match="pooled"):
        SubsetIntervalCalibrator(SubsetIntervalCalibrator(VarianceScaler()))
    with pytest.raises(StellarValueError, match="malformed"):
        BaseIntervalCalibrator.from_dict({"type": "by_subset", "min_rows": 30})
    cal = SubsetIntervalCalibrator(VarianceScaler()).fit_subsets(*_pooled(_subsets(0)), _subsets(0))
    with pytest.raises(StellarValueError, match="one subset name per row"):
        cal.factors("logg", ONE_SIGMA, 3, ["sed"])


def test_subset_names_follow_the_presence_masks():
    names = subset_names({"spectrum": [True, False, True, False], "sed": [True, True, False, False]})
    assert list(names) == ["spectrum+sed", "sed", "spectrum", ""]
    assert subset_key("sed+spectrum") == subset_key("spectrum+sed")
