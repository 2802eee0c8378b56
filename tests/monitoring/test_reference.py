"""The training reference: built from real inputs, round trip through reference.npz, OOD flags at their rate."""

from __future__ import annotations

import numpy as np
import pytest

from stellar.errors import StellarDataError, StellarValueError
from stellar.monitoring import TrainingReference, build_reference, check_batch, summarize


def _sed_arrays(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    mag = rng.normal(10.0, 1.0, size=(n, 3)) + shift
    return {"mag": mag, "features": np.hstack([mag, mag[:, :2] - mag[:, 1:]])}


def _spectra(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Spectra of 256 pixels whose pixels vary less and less (a PCA basis of them leaves much outside)."""
    flux = 1.0 + rng.normal(size=(n, 256)) * (0.2 / np.sqrt(np.arange(1, 257)))
    return {"flux": flux, "ivar": np.full((n, 256), 400.0), "mask": np.zeros((n, 256), bool)}


def test_spectrum_snr_median_leaves_out_nan_as_nanmedian_does() -> None:
    # zero flux where ivar is infinite: |flux|·sqrt(ivar) is NaN on a pixel that has data and noise
    flux = np.array([[0.0, 1.0, 2.0, 3.0]])
    ivar = np.array([[np.inf, 1.0, 1.0, 1.0]])
    t = summarize({"flux": flux, "ivar": ivar, "mask": np.zeros((1, 4), bool)})
    assert t["snr_median"].tolist() == [2.0]  # np.nanmedian([nan, 1, 2, 3])


def test_summaries_of_photometry_count_bands() -> None:
    mag = np.array([[10.0, 11.0], [10.0, np.nan]])
    t = summarize({"mag": mag, "features": mag})
    assert t["n_bands"].tolist() == [2.0, 1.0]
    assert t["band_present_1"].tolist() == [1.0, 0.0]
    with pytest.raises(StellarValueError, match="cannot summarise"):
        summarize({"weird": mag})


def test_summaries_of_spectra_and_light_curves() -> None:
    flux = np.ones((2, 100))
    ivar = np.full((2, 100), 100.0)  # S/N 10 per pixel
    mask = np.zeros((2, 100), bool)
    mask[1, :50] = True
    t = summarize({"flux": flux, "ivar": ivar, "mask": mask})
    assert t["snr_median"].tolist() == pytest.approx([10.0, 10.0])
    assert t["valid_fraction"].tolist() == pytest.approx([1.0, 0.5])
    time = np.array([[0.0, 1.0, 2.0, 10.0, 0.0]])
    lc = summarize({"time": time, "flux": np.zeros((1, 5)), "mask": np.array([[0, 0, 0, 0, 1]], bool)})
    assert lc["n_epochs"].item() == 4 and lc["baseline_days"].item() == 10.0 and lc["cadence_days"].item() == 1.0


def test_reference_round_trip_and_ood_rate(tmp_path) -> None:
    rng = np.random.default_rng(0)
    arrays = _sed_arrays(rng, 1500)
    probs = rng.dirichlet(np.ones(3), size=1500)
    ref = build_reference(arrays, probs=probs, class_names=["a", "b", "c"], ood_alpha=0.05, max_rows=800)
    assert len(ref.summaries) == 800 and ref.meta["n_objects"] == 1500
    path = ref.save(tmp_path)
    back = TrainingReference.load(tmp_path)
    assert path.stat().st_size < 200_000
    assert list(back.summaries.columns) == list(ref.summaries.columns)
    new = _sed_arrays(rng, 2000)
    score, flag = back.ood(new)
    assert np.allclose(score, ref.ood(new)[0], rtol=1e-5)
    assert flag.mean() == pytest.approx(0.05, abs=0.02)  # thresholds set on held-out reference rows
    far = _sed_arrays(rng, 200, shift=5.0)
    assert back.ood(far)[1].mean() > 0.9
    with pytest.raises(StellarDataError, match=r"no reference\.npz"):
        TrainingReference.load(tmp_path / "nowhere")


def test_check_batch_alerts_on_a_shift_and_not_on_the_same_distribution() -> None:
    rng = np.random.default_rng(3)
    ref = build_reference(_sed_arrays(rng, 1500), probs=rng.dirichlet(np.ones(3), 1500), class_names=["a", "b", "c"])
    same = _sed_arrays(rng, 500)
    quiet = check_batch(ref, summarize(same), arrays=same, probs=rng.dirichlet(np.ones(3), 500))
    assert quiet["alert"] is False, quiet["alerts"]
    moved = _sed_arrays(rng, 500, shift=0.5)
    loud = check_batch(ref, summarize(moved), arrays=moved, probs=rng.dirichlet(np.ones(3), 500))
    assert loud["alert"] is True
    assert {"feature_0", "input_sketch"} <= set(loud["alerts"])
    assert loud["performance_estimate"]["n"] == 500


def test_confidence_of_a_confident_model_does_not_drift_through_a_saved_reference(tmp_path) -> None:
    # the reference keeps probabilities in float32: 1 - 1e-9 is stored as 1.0, so a float64 batch of the very same
    # confidences sat entirely below the reference's and the KS distance was 1 on every in-distribution batch
    rng = np.random.default_rng(4)

    def confident(n: int) -> np.ndarray:
        logits = rng.normal(size=(n, 3))
        logits[np.arange(n), rng.integers(0, 3, n)] += 25.0
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    arrays = _sed_arrays(rng, 600)
    ref = build_reference(arrays, probs=confident(600), class_names=["a", "b", "c"])
    ref.save(tmp_path)
    back = TrainingReference.load(tmp_path)
    batch = _sed_arrays(rng, 600)
    report = check_batch(back, summarize(batch), probs=confident(600))
    conf = next(c for c in report["prediction_drift"]["checks"] if c["name"] == "confidence")
    assert conf["effect"] < 0.1 and not conf["alert"]


def test_the_sketch_mmd_is_quiet_on_in_distribution_spectra() -> None:
    # the reference's sketch coordinates must come from rows the PCA basis was not fitted on: the fitted rows
    # spread more along their own components than any new object does, and with 256 flux pixels the MMD then
    # found every in-distribution batch "different" (p at its floor)
    rng = np.random.default_rng(5)

    ref = build_reference(_spectra(rng, 1000), n_components=16)
    assert ref.sketch_coords is not None and len(ref.sketch_coords) < len(ref.summaries)  # the held-out half only
    p = []
    for _ in range(3):
        batch = _spectra(rng, 400)
        report = check_batch(ref, summarize(batch), arrays=batch, cfg={"mmd": {"n_permutations": 199}})
        p.append(next(c["p_value"] for c in report["data_drift"]["checks"] if c["name"] == "input_sketch"))
    assert min(p) > 0.01, p


def test_the_mmd_can_alert_beside_many_summary_checks() -> None:
    # a shift no single summary shows (two features' correlation flips): only the MMD sees it, and its permutation
    # p-value, at least 1/(n_permutations + 1), must clear Holm's first step over every check of the run; with
    # 500 permutations and 26 checks or more (a light-curve model's features) it never could
    rng = np.random.default_rng(6)

    def arrays(n: int, rho: float) -> dict[str, np.ndarray]:
        a = rng.normal(size=n)
        pair = np.stack([a, rho * a + np.sqrt(1 - rho**2) * rng.normal(size=n)], axis=1)
        return {"features": np.hstack([pair, rng.normal(size=(n, 38))])}

    ref = build_reference(arrays(1200, 0.95), n_components=8)
    batch = arrays(300, -0.95)
    report = check_batch(ref, summarize(batch), arrays=batch)
    checks = {c["name"]: c for c in report["data_drift"]["checks"]}
    assert len(checks) >= 40
    assert not any(checks[f"feature_{j}"]["alert"] for j in range(40))  # the marginals did not move
    assert checks["input_sketch"]["alert"], checks["input_sketch"]


def test_an_empty_batch_gives_a_quiet_report_in_strict_json() -> None:
    # e.g. a request log whose rows all lack an OOD score: nothing to test, and no NaN (invalid JSON) in monitor.json
    import json
    import warnings

    rng = np.random.default_rng(7)
    ref = build_reference(_sed_arrays(rng, 300), probs=rng.dirichlet(np.ones(3), 300), class_names=["a", "b", "c"])
    empty = _sed_arrays(rng, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = check_batch(ref, summarize(empty), arrays=empty, probs=np.zeros((0, 3)))
    assert report["alert"] is False and report["ood"]["flagged"] == 0
    json.dumps(report, allow_nan=False)


def test_ood_flags_in_distribution_spectra_at_the_reference_rate() -> None:
    # an object is flagged when T² or Q exceeds its threshold: each at its own 1 - alpha quantile, the union flagged
    # about 2 alpha of in-distribution spectra (Q is not round-off there), and the OOD-fraction test assumes alpha
    rng = np.random.default_rng(8)

    ref = build_reference(_spectra(rng, 2000), n_components=16, ood_alpha=0.05)
    _, flag = ref.ood(_spectra(rng, 4000))
    assert flag.mean() == pytest.approx(0.05, abs=0.02)


def test_an_empty_batch_of_spectra_is_scored() -> None:
    rng = np.random.default_rng(9)

    def spectra(n: int) -> dict[str, np.ndarray]:
        return {"flux": 1.0 + 0.1 * rng.normal(size=(n, 300)), "ivar": np.full((n, 300), 100.0)}

    ref = build_reference(spectra(100))
    score, flag = ref.ood(spectra(0))
    assert score.shape == flag.shape == (0,)
    assert check_batch(ref, summarize(spectra(0)), arrays=spectra(0))["alert"] is False
