"""spectral_ridge: a known linear answer (coefficients, residual σ, coverage, classes), its representations,
persistence without pickle and bad input (its train.py run is in tests/pipelines/test_ridge_train.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stellar.errors import StellarConfigError, StellarDataError
from stellar.models.ridge import Columns, Fields, FluxOverMedian, RidgeEstimator, Stacked

N_PIX = 40
CLASSES = ["hot", "warm", "cool"]
#: per target: intercept, coefficient scale and noise σ, in learned space (log10 Teff)
TRUTH = {"teff": (3.8, 0.02, 0.005), "logg": (3.0, 0.3, 0.05)}


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {t: rng.normal(size=N_PIX) * TRUTH[t][1] for t in TRUTH}


def _part(n: int, seed: int) -> dict[str, np.ndarray]:
    """Standard-normal pixels; log10 Teff and logg linear in them plus Gaussian noise; the class from Teff."""
    rng = np.random.default_rng(seed)
    w = _weights()
    x = rng.normal(size=(n, N_PIX))
    out: dict[str, np.ndarray] = {"flux": x.astype(np.float32), "index": np.arange(n)}
    for t, (c, _, noise) in TRUTH.items():
        y = c + x @ w[t] + rng.normal(size=n) * noise
        out[t] = (10.0**y if t == "teff" else y).astype(np.float64)
    z = (np.log10(out["teff"]) - 3.8) / np.std(x @ w["teff"])
    out["label"] = 2 - np.digitize(z, [-0.5, 0.5])
    return out


def _model(**kw: object) -> RidgeEstimator:
    return RidgeEstimator(class_names=CLASSES, targets=list(TRUTH), representation=Fields(["flux"]), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fitted() -> RidgeEstimator:
    model = _model()
    model.fit(_part(1500, 1), _part(600, 2))
    return model


def test_ridge_recovers_a_linear_truth_its_noise_and_the_classes(fitted):
    w = _weights()
    for t, (_, _, noise) in TRUTH.items():
        # back from standardised columns to the pixels' own units (their std is ~1, mean ~0)
        coef = fitted.arrays_[f"coef_{t}"] / fitted.arrays_["x_scale"]
        assert np.allclose(coef, w[t], atol=4 * noise / np.sqrt(1500) * 3)
        assert fitted.sigma[t] == pytest.approx(noise, rel=0.1)  # the validation residual σ is the label noise
    test = _part(2000, 3)
    out = fitted.predict_outputs(test)
    assert set(out) == {"logits", "teff_mean", "teff_logvar", "logg_mean", "logg_logvar"}
    err = np.log10(out["teff_mean"]) - np.log10(test["teff"])
    assert np.sqrt(np.mean(err**2)) == pytest.approx(TRUTH["teff"][2], rel=0.1)
    # the delta method: σ in K is σ(log10 Teff) · Teff · ln 10, so ±σ covers ~68% of the truths
    sd = np.exp(0.5 * out["teff_logvar"])
    assert np.allclose(sd / out["teff_mean"], fitted.sigma["teff"] * np.log(10.0), rtol=1e-5)
    assert np.mean(np.abs(out["teff_mean"] - test["teff"]) <= sd) == pytest.approx(0.683, abs=0.04)
    assert np.mean(np.abs(out["logg_mean"] - test["logg"]) <= np.exp(0.5 * out["logg_logvar"])) == pytest.approx(
        0.683, abs=0.04
    )
    assert np.allclose(np.exp(out["logits"]).sum(1), 1.0, atol=1e-5)
    assert np.mean(out["logits"].argmax(1) == test["label"]) > 0.9
    assert fitted.mk_c in fitted.mk_cs


def test_ridge_round_trips_through_npz_and_json_without_pickle(fitted, tmp_path):
    path = fitted.save(tmp_path, prefix="r.")
    assert {p.name for p in tmp_path.iterdir()} == {"r.estimator.json", "r.ridge.npz"}
    meta = json.loads(path.read_text())
    assert meta["type"] == "RidgeEstimator" and meta["inputs"] == ["flux"] and meta["n_features"] == N_PIX
    loaded = _model().load(path)
    test = _part(50, 4)
    a, b = fitted.predict_outputs(test), loaded.predict_outputs(test)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(StellarConfigError, match="targets"):
        RidgeEstimator(class_names=CLASSES, targets=["teff"], representation=Fields(["flux"])).load(path)
    with pytest.raises(StellarDataError, match="columns"):
        loaded.predict_outputs({"flux": np.zeros((3, N_PIX + 1), np.float32)})


def test_flux_over_median_restores_the_calibrated_spectrum_over_its_median():
    norm = np.array([[1.0, 0.5, 1.0, 1.0], [0.9, 1.0, 1.1, 1.0]])
    cont = np.log(np.array([[1.0, 2.0, 4.0, 8.0], [1.0, 1.0, 1.0, 1.0]]))
    mask = np.array([[False, False, False, True], [False, False, False, False]])
    x = FluxOverMedian()({"flux": norm, "continuum": cont, "mask": mask})
    # star 0: calibrated flux [1, 1, 4, (8, masked)], median of the good pixels 1
    assert np.allclose(x[0, :3], [1.0, 1.0, 4.0]) and np.isnan(x[0, 3])
    assert np.allclose(x[1], norm[1] / 1.0)
    logged = FluxOverMedian(log=True)({"flux": norm, "continuum": cont, "mask": mask})
    assert np.allclose(logged[0, :3], np.log([1.0, 1.0, 4.0]))
    with pytest.raises(StellarConfigError, match="continuum_channel"):
        FluxOverMedian()({"flux": norm, "mask": mask})


def test_ridge_refuses_bad_configuration_and_data():
    with pytest.raises(StellarConfigError, match="neither"):
        RidgeEstimator(class_names=None, targets=[])
    with pytest.raises(StellarConfigError, match="alphas"):
        _model(alphas=[0.0, 1.0])
    with pytest.raises(StellarConfigError, match="not fitted"):
        _model().predict_outputs(_part(5, 0))
    with pytest.raises(StellarConfigError, match="not fitted"):
        _model().save("unused")
    bad = _part(50, 0)
    bad["logg"][:] = np.nan
    with pytest.raises(StellarDataError, match="'logg' has 0 known"):
        _model().fit(bad)
    one_class = _part(50, 0)
    one_class["label"][:] = 1
    with pytest.raises(StellarDataError, match="1 labelled class"):
        _model().fit(one_class)


def test_kernel_ridge_follows_a_non_linear_truth_that_the_linear_ridge_cannot(tmp_path):
    rng = np.random.default_rng(5)

    def part(n: int) -> dict[str, np.ndarray]:
        x = rng.normal(size=(n, 4))
        y = np.sin(1.5 * x[:, 0]) + 0.5 * x[:, 1] ** 2 + rng.normal(size=n) * 0.05
        return {"flux": x.astype(np.float32), "logg": y, "label": np.full(n, -1), "index": np.arange(n)}

    train, val, test = part(400), part(200), part(400)
    kw = {"class_names": [], "targets": ["logg"], "representation": Fields(["flux"])}
    linear = RidgeEstimator(**kw)  # type: ignore[arg-type]
    kernel = RidgeEstimator(**kw, alphas=[1e-3, 1e-2, 1e-1], kernel_gammas=[0.1, 1.0, 10.0])  # type: ignore[arg-type]
    linear.fit(train, val)
    kernel.fit(train, val)
    rmse = {m: float(np.sqrt(np.mean((m.predict_outputs(test)["logg_mean"] - test["logg"]) ** 2)))
            for m in (linear, kernel)}  # fmt: skip
    assert rmse[linear] > 0.6 and rmse[kernel] < 0.25  # the noise is 0.05; the linear misfit ~0.8
    assert kernel.gamma["logg"] in (0.1, 1.0, 10.0) and kernel.sigma["logg"] == pytest.approx(rmse[kernel], rel=0.3)
    loaded = RidgeEstimator(**kw, kernel_gammas=[0.1]).load(kernel.save(tmp_path))  # type: ignore[arg-type]
    assert np.array_equal(loaded.predict_outputs(test)["logg_mean"], kernel.predict_outputs(test)["logg_mean"])
    with pytest.raises(StellarConfigError, match="kernel_gammas"):
        RidgeEstimator(**kw, kernel_gammas=[0.0])  # type: ignore[arg-type]


def test_per_star_sigma_is_the_gaussian_process_posterior_of_the_same_kernel(tmp_path):
    """Known answer: sklearn's GaussianProcessRegressor with the kernel s²·RBF + s²α·White, fixed, gives the same
    mean and predictive σ; far from every training star σ grows to s·sqrt(1 + α); ±σ covers ~68% of new truths."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    rng = np.random.default_rng(7)

    def part(n: int, spread: float = 1.0) -> dict[str, np.ndarray]:
        x = rng.normal(size=(n, 3)) * spread
        y = np.sin(1.5 * x[:, 0]) + 0.3 * x[:, 1] + rng.normal(size=n) * 0.1
        return {"flux": x.astype(np.float32), "logg": y, "label": np.full(n, -1), "index": np.arange(n)}

    kw = {"class_names": [], "targets": ["logg"], "representation": Fields(["flux"])}
    model = RidgeEstimator(**kw, alphas=[1e-2, 1e-1], kernel_gammas=[0.3, 1.0], per_star_sigma=True)  # type: ignore[arg-type]
    train, val, test = part(300), part(300), part(2000)
    model.fit(train, val)
    g, a, s = model.gamma["logg"], model.alpha["logg"], model.sigma["logg"]
    xs = {p: model._matrix(d) for p, d in (("train", train), ("test", test))}
    center = float(np.mean(train["logg"]))
    kernel = ConstantKernel(s**2, "fixed") * RBF(np.sqrt(3 / (2 * g)), "fixed") + WhiteKernel(s**2 * a, "fixed")
    gp = GaussianProcessRegressor(kernel, optimizer=None).fit(xs["train"], train["logg"] - center)
    mean, sd = gp.predict(xs["test"], return_std=True)
    out = model.predict_outputs(test)
    assert np.allclose(out["logg_mean"], mean + center, atol=1e-4)
    assert np.allclose(np.exp(0.5 * out["logg_logvar"]), sd, rtol=1e-3)
    assert np.std(np.log(sd)) > 0.05  # σ differs from star to star
    assert np.mean(np.abs(out["logg_mean"] - test["logg"]) <= sd) == pytest.approx(0.683, abs=0.05)
    far = model.predict_outputs({**part(5), "flux": np.full((5, 3), 40.0, np.float32)})
    assert np.allclose(np.exp(0.5 * far["logg_logvar"]), s * np.sqrt(1 + a), rtol=1e-4)
    # saved and reloaded, the same per-star σ; a run saved without per_star_sigma keeps one σ per target
    loaded = RidgeEstimator(**kw, kernel_gammas=[0.3]).load(model.save(tmp_path / "gp"))  # type: ignore[arg-type]
    assert loaded.per_star_sigma and np.array_equal(loaded.predict_outputs(test)["logg_logvar"], out["logg_logvar"])
    plain = RidgeEstimator(**kw, alphas=[1e-2, 1e-1], kernel_gammas=[0.3, 1.0])  # type: ignore[arg-type]
    plain.fit(train, val)
    assert len(np.unique(plain.predict_outputs(test)["logg_logvar"])) == 1
    old_run = plain.save(tmp_path / "old")  # as saved before per_star_sigma existed: no such key
    old_run.write_text(json.dumps({k: v for k, v in json.loads(old_run.read_text()).items() if k != "per_star_sigma"}))
    reloaded = RidgeEstimator(**kw, kernel_gammas=[0.3], per_star_sigma=True).load(old_run)  # type: ignore[arg-type]
    assert np.array_equal(reloaded.predict_outputs(test)["logg_logvar"], plain.predict_outputs(test)["logg_logvar"])
    with pytest.raises(StellarConfigError, match="per_star_sigma"):
        RidgeEstimator(**kw, per_star_sigma=True)  # type: ignore[arg-type]


def test_a_sum_of_kernels_over_two_blocks_finds_the_block_that_carries_the_target(tmp_path):
    """logg depends on the second block only: leave-one-out picks its kernel (w = 0) and beats the first block's;
    the kernel is w·exp(-γ d₁²/F₁) + (1 - w)·exp(-γ d₂²/F₂); the classifier reads the first block."""
    rng = np.random.default_rng(3)

    def part(n: int) -> dict[str, np.ndarray]:
        a, b = rng.normal(size=(n, 6)), rng.normal(size=(n, 2))
        y = np.sin(1.5 * b[:, 0]) + 0.5 * b[:, 1] ** 2 + rng.normal(size=n) * 0.05
        lab = (a[:, 0] > 0).astype(int)
        return {"a": a.astype(np.float32), "b": b.astype(np.float32), "logg": y, "label": lab, "index": np.arange(n)}

    rep = Stacked([Fields(["a"]), Fields(["b"])])
    assert rep.inputs == ["a", "b"] and rep(part(4)).shape == (4, 8)
    kw = {"class_names": ["x", "y"], "targets": ["logg"], "representation": rep, "alphas": [1e-3, 1e-2, 1e-1],
          "kernel_gammas": [0.3, 1.0, 3.0], "mk_cs": [1.0]}  # fmt: skip
    train, test = part(300), part(300)
    first = RidgeEstimator(**kw)  # type: ignore[arg-type]
    both = RidgeEstimator(**kw, kernel_weights={"logg": [1.0, 0.5, 0.0]})  # type: ignore[arg-type]
    first.fit(train)
    both.fit(train)
    assert first.weight == {"logg": 1.0} and both.weight == {"logg": 0.0}
    rmse = {m: float(np.sqrt(np.mean((m.predict_outputs(test)["logg_mean"] - test["logg"]) ** 2)))
            for m in (first, both)}  # fmt: skip
    assert rmse[first] > 0.4 and rmse[both] < 0.15
    x = both._matrix(test)[:5]
    d1 = ((x[:, None, :6] - x[None, :, :6]) ** 2).sum(-1) / 6
    d2 = ((x[:, None, 6:] - x[None, :, 6:]) ** 2).sum(-1) / 2
    assert np.allclose(both._kernel(x, x, 1.0, 0.25), 0.25 * np.exp(-d1) + 0.75 * np.exp(-d2))
    assert both.arrays_["clf_coef"].shape[1] == 6  # the first block's columns
    assert np.mean(both.predict_outputs(test)["logits"].argmax(1) == test["label"]) > 0.9
    loaded = RidgeEstimator(**kw).load(both.save(tmp_path))  # type: ignore[arg-type]
    assert loaded.weight == {"logg": 0.0}
    assert np.array_equal(loaded.predict_outputs(test)["logg_mean"], both.predict_outputs(test)["logg_mean"])
    with pytest.raises(StellarConfigError, match="Stacked"):
        RidgeEstimator(**{**kw, "representation": Fields(["a"])}, kernel_weights={"logg": [0.5]}).fit(train)  # type: ignore[arg-type]
    with pytest.raises(StellarConfigError, match="kernel_weights"):
        RidgeEstimator(**kw, kernel_weights={"feh": [0.5]})  # type: ignore[arg-type]
    with pytest.raises(StellarConfigError, match="kernel_weights"):
        RidgeEstimator(**kw, kernel_weights={"logg": [1.5]})  # type: ignore[arg-type]
    with pytest.raises(StellarConfigError, match="parts"):
        Stacked([])


def test_sigma_by_follows_a_noise_that_changes_with_the_prediction(tmp_path):
    """Known answer: label noise 0.03 where the target is below 0 and 0.3 above. With ``sigma_by`` the σ of the
    two halves differ by ~10 and ±σ covers ~68% of each half; one σ for all over-covers one half, under-covers the
    other. Saved and reloaded, the same σ."""
    rng = np.random.default_rng(11)

    def part(n: int) -> dict[str, np.ndarray]:
        x = rng.normal(size=(n, 2))
        clean = 2.0 * np.tanh(x[:, 0])
        y = clean + rng.normal(size=n) * np.where(clean < 0, 0.03, 0.3)
        return {"flux": x.astype(np.float32), "logg": y, "clean": clean, "label": np.full(n, -1), "index": np.arange(n)}

    kw = {"class_names": [], "targets": ["logg"], "representation": Fields(["flux"]), "alphas": [1e-2, 1e-1, 1.0],
          "kernel_gammas": [0.3, 1.0]}  # fmt: skip
    train, val, test = part(500), part(300), part(3000)
    low = test["clean"] < 0
    coverage = {}
    for by in (None, "logg"):
        model = RidgeEstimator(**kw, per_star_sigma=True, sigma_by=by)  # type: ignore[arg-type]
        model.fit(train, val)
        out = model.predict_outputs(test)
        sd = np.exp(0.5 * out["logg_logvar"])
        inside = np.abs(out["logg_mean"] - test["logg"]) <= sd
        coverage[by] = (float(inside[low].mean()), float(inside[~low].mean()))
        if by is not None:
            assert np.median(sd[~low]) / np.median(sd[low]) > 5 and 0.1 < model.bandwidth["logg"] < 10
            loaded = RidgeEstimator(**kw).load(model.save(tmp_path))  # type: ignore[arg-type]
            assert loaded.sigma_by == "logg" and np.array_equal(loaded.predict_outputs(test)["logg_logvar"],
                                                                 out["logg_logvar"])  # fmt: skip
    assert coverage[None][0] > 0.9 and coverage[None][1] < 0.6
    assert coverage["logg"] == pytest.approx((0.683, 0.683), abs=0.08)
    with pytest.raises(StellarConfigError, match="sigma_by"):
        RidgeEstimator(**kw, sigma_by="teff")  # type: ignore[arg-type]


def test_a_joint_representation_carries_a_target_and_a_class_that_only_both_blocks_know(tmp_path):
    """The target is a sum of a function of the "spectrum" and one of the "SED" columns (:class:`Columns`), so
    neither block alone knows it: the kernel over both (w < 1) beats the first block's; the class is carried by an
    SED column only, which the classifier reads with ``classifier_blocks: [0, 1]`` and not by default."""
    rng = np.random.default_rng(5)

    def part(n: int) -> dict[str, np.ndarray]:
        flux, feats = rng.normal(size=(n, 6)), rng.normal(size=(n, 4))
        y = np.sin(1.5 * flux[:, 0]) + feats[:, 2] + rng.normal(size=n) * 0.05
        lab = (feats[:, 1] > 0).astype(int)
        return {"flux": flux.astype(np.float32), "features": feats.astype(np.float32), "logg": y, "label": lab,
                "index": np.arange(n)}  # fmt: skip

    rep = Stacked([Fields(["flux"]), Columns("features", [1, 2])])
    assert rep.inputs == ["flux", "features"] and rep(part(3)).shape == (3, 8)
    kw = {"class_names": ["x", "y"], "targets": ["logg"], "representation": rep, "alphas": [1e-3, 1e-2, 1e-1],
          "kernel_gammas": [0.3, 1.0, 3.0], "mk_cs": [1.0]}  # fmt: skip
    train, val, test = part(300), part(150), part(300)
    spectrum = RidgeEstimator(**kw)  # type: ignore[arg-type]
    joint = RidgeEstimator(**kw, kernel_weights={"logg": [1.0, 0.5, 0.25]}, classifier_blocks=[0, 1])  # type: ignore[arg-type]
    spectrum.fit(train, val)
    joint.fit(train, val)
    assert spectrum.weight == {"logg": 1.0} and joint.weight["logg"] < 1.0
    mae = {m: float(np.mean(np.abs(m.predict_outputs(test)["logg_mean"] - test["logg"]))) for m in (spectrum, joint)}
    assert mae[spectrum] > 0.6 and mae[joint] < 0.3
    acc = {m: float(np.mean(m.predict_outputs(test)["logits"].argmax(1) == test["label"])) for m in (spectrum, joint)}
    assert acc[spectrum] < 0.65 and acc[joint] > 0.9
    assert spectrum.arrays_["clf_coef"].shape[1] == 6 and joint.arrays_["clf_coef"].shape[1] == 8
    loaded = RidgeEstimator(**kw).load(joint.save(tmp_path))  # type: ignore[arg-type]
    assert loaded.classifier_blocks == [0, 1]
    assert np.array_equal(loaded.predict_outputs(test)["logits"], joint.predict_outputs(test)["logits"])
    with pytest.raises(StellarConfigError, match="classifier_blocks"):
        RidgeEstimator(**kw, classifier_blocks=[2])  # type: ignore[arg-type]
    with pytest.raises(StellarConfigError, match="columns"):
        Columns("features", [])
    with pytest.raises(StellarDataError, match="columns \\[1, 9\\] of field 'features'"):
        Columns("features", [1, 9])(part(3))
