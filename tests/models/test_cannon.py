"""The Cannon: a known synthetic answer (θ, s and labels within their curvature errors), masks, persistence and bad
input (its train.py run is in tests/pipelines/test_cannon_train.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stellar.errors import StellarConfigError, StellarDataError
from stellar.models.cannon import CannonEstimator
from stellar.models.cannon_fit import label_vector, label_vector_jacobian, n_terms

TARGETS = ["teff", "logg", "feh"]
#: (mean, std) of the synthetic labels in learned space (log10 Teff, logg, [Fe/H])
STATS = {"teff": (3.75, 0.06), "logg": (3.5, 0.8), "feh": (-0.5, 0.4)}
N_PIX, SIGMA = 240, 0.01
CLASSES = ["hot", "warm", "cool"]


def _truth(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random quadratic θ (P, 10), continuum 1 plus features, and per-pixel scatter s in [0.01, 0.03]."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(N_PIX, n_terms(3, 2))) * np.array([0.0, 0.05, 0.05, 0.05, *[0.01] * 6])
    theta[:, 0] = 1.0 - np.abs(rng.normal(size=N_PIX)) * 0.1
    return theta, rng.uniform(0.01, 0.03, N_PIX)


def _stars(n: int, seed: int, theta: np.ndarray, s: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Spectra drawn from the model (noise √(s² + σ_n²), σ_n known through ivar), and their standardised labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    sigma = rng.uniform(0.5, 1.5, size=(n, 1)) * SIGMA
    flux = label_vector(x) @ theta.T + rng.normal(size=(n, N_PIX)) * np.sqrt(s**2 + sigma**2)
    phys = {t: STATS[t][0] + STATS[t][1] * x[:, i] for i, t in enumerate(TARGETS)}
    phys["teff"] = 10.0 ** phys["teff"]
    label = 2 - np.digitize(x[:, 0], [-0.5, 0.5])  # hot = high Teff
    arrays = {"flux": flux.astype(np.float32), "ivar": np.broadcast_to(sigma**-2, (n, N_PIX)).astype(np.float32),
              "mask": np.zeros((n, N_PIX), bool), "label": label, "index": np.arange(n),
              **{t: v.astype(np.float32) for t, v in phys.items()}}  # fmt: skip
    return arrays, x


def _model(**kw: object) -> CannonEstimator:
    return CannonEstimator(class_names=CLASSES, target_stats=STATS, **{"cv_folds": 3, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fitted() -> tuple[CannonEstimator, np.ndarray, np.ndarray]:
    theta, s = _truth()
    model = _model()
    model.fit(_stars(800, 1, theta, s)[0])
    return model, theta, s


def test_label_vector_and_its_jacobian_agree_with_finite_differences():
    x = np.array([0.3, -1.2, 0.7])
    assert np.allclose(label_vector(x[None])[0], [1, 0.3, -1.2, 0.7, 0.09, -0.36, 0.21, 1.44, -0.84, 0.49])
    eps = 1e-6
    numeric = np.stack([(label_vector((x + eps * e)[None])[0] - label_vector(x[None])[0]) / eps for e in np.eye(3)], 1)
    assert np.allclose(label_vector_jacobian(x), numeric, atol=1e-5)
    assert label_vector(x[None], order=1).shape == (1, 4) and n_terms(3, 1) == 4


def test_training_recovers_the_true_coefficients_and_scatter(fitted):
    model, theta, s = fitted
    assert model.use_ivar is True and model.fit_ is not None
    # 800 stars, noise ≤ 0.032: each coefficient is known to ~0.002; quadratic terms to ~0.0015
    assert np.abs(model.fit_.theta - theta).max() < 0.012
    assert np.median(np.abs(model.fit_.theta - theta)) < 0.002
    ratio = np.sqrt(model.fit_.s2) / s
    assert 0.95 < np.median(ratio) < 1.03 and np.mean(np.abs(ratio - 1) < 0.2) > 0.9


def test_test_labels_fall_within_their_curvature_errors_at_the_nominal_rate(fitted):
    model, theta, s = fitted
    arrays, _ = _stars(300, 2, theta, s)
    out = model.predict_outputs(arrays)
    for t in TARGETS:
        truth = arrays[t].astype(float)
        err = np.abs(out[f"{t}_mean"] - truth) / np.exp(0.5 * out[f"{t}_logvar"])
        assert 0.58 < np.mean(err < 1) < 0.78, t
        assert np.mean(err < 2) > 0.9, t
    # the errors themselves: a few hundredths of the label scatter
    assert np.median(np.abs(np.log10(out["teff_mean"]) - np.log10(arrays["teff"]))) < 0.1 * STATS["teff"][1]
    probs = np.exp(out["logits"])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.mean(probs.argmax(1) == arrays["label"]) > 0.85


def test_masked_pixels_are_ignored():
    theta, s = _truth(3)
    clean, _ = _stars(200, 4, theta, s)
    test, _ = _stars(20, 5, theta, s)
    rng = np.random.default_rng(6)
    dirty = {**clean, "mask": rng.uniform(size=clean["mask"].shape) < 0.2}
    test["mask"] = rng.uniform(size=test["mask"].shape) < 0.2
    garbage = {**dirty, "flux": np.where(dirty["mask"], 1e6, dirty["flux"])}
    garbage["ivar"] = np.where(dirty["mask"], -5.0, dirty["ivar"])
    test_garbage = {**test, "flux": np.where(test["mask"], np.nan, test["flux"])}
    a, b = _model(cv_folds=0), _model(cv_folds=0)
    a.fit(dirty)
    b.fit(garbage)
    assert a.fit_ is not None and b.fit_ is not None
    assert np.allclose(a.fit_.theta, b.fit_.theta) and np.allclose(a.fit_.s2, b.fit_.s2)
    out_a, out_b = a.predict_outputs(test), b.predict_outputs(test_garbage)
    assert all(np.allclose(out_a[k], out_b[k], rtol=1e-5) for k in out_a)
    # and the mask matters: the same garbage unmasked changes the fit
    c = _model(cv_folds=0)
    c.fit({**garbage, "mask": np.zeros_like(dirty["mask"]), "ivar": clean["ivar"]})
    assert c.fit_ is not None and not np.allclose(c.fit_.theta, a.fit_.theta)


def test_save_load_round_trip_gives_identical_predictions(fitted, tmp_path):
    model, theta, s = fitted
    path = model.save(tmp_path / "ckpt")
    meta = json.loads(path.read_text())
    assert meta["type"] == "CannonEstimator" and meta["target_stats"]["teff"] == list(STATS["teff"])
    loaded = CannonEstimator(class_names=CLASSES).load(tmp_path / "ckpt")  # target stats come from the file
    arrays, _ = _stars(30, 7, theta, s)
    a, b = model.predict_outputs(arrays), loaded.predict_outputs(arrays)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert loaded.hparams == model.hparams
    with pytest.raises(StellarConfigError, match="class_names"):
        CannonEstimator(class_names=["x", "y"]).load(path)


def test_bad_input_and_config_are_refused_with_the_argument_named(fitted):
    model, theta, s = fitted
    arrays, _ = _stars(5, 8, theta, s)
    with pytest.raises(StellarConfigError, match="not fitted"):
        _model().predict_outputs(arrays)
    with pytest.raises(StellarDataError, match="240"):
        model.predict_outputs({**arrays, "flux": arrays["flux"][:, :100]})
    with pytest.raises(StellarDataError, match="one shape"):
        model.predict_outputs({**arrays, "ivar": arrays["ivar"][:, :100]})
    with pytest.raises(StellarConfigError, match="ivar"):
        model.predict_outputs({"flux": arrays["flux"], "mask": arrays["mask"]})
    with pytest.raises(StellarDataError, match="at least 11"):
        _model().fit(_stars(8, 9, theta, s)[0])
    for bad in ({"order": 3}, {"cv_folds": 1}, {"inputs": []}, {"targets": []}, {"mk_c": 0.0}):
        with pytest.raises(StellarConfigError):
            CannonEstimator(**bad)  # type: ignore[arg-type]


def test_chi2_scale_widens_the_intervals_of_spectra_the_model_does_not_fit(fitted):
    model, theta, s = fitted
    arrays, _ = _stars(20, 10, theta, s)
    rng = np.random.default_rng(11)
    noisy = {**arrays, "flux": arrays["flux"] + rng.normal(size=arrays["flux"].shape).astype(np.float32) * 0.08}
    try:
        model.chi2_scale = False
        bare, bare_clean = model.predict_outputs(noisy), model.predict_outputs(arrays)
    finally:
        model.chi2_scale = True
    scaled, scaled_clean = model.predict_outputs(noisy), model.predict_outputs(arrays)
    # extra noise 0.08 on top of ~0.025: reduced χ² ≈ 10, so σ grows by ~3; well-fitted spectra keep theirs
    ratio = np.exp(0.5 * (scaled["logg_logvar"] - bare["logg_logvar"]))
    assert np.all(ratio > 2.0) and np.all(ratio < 5.0)
    assert np.allclose(scaled_clean["logg_logvar"], bare_clean["logg_logvar"], atol=0.25)
