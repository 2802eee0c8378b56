"""The late fusion's cascade: the physical luminosity and log g (known answers, bad input gives NaN), the exact
leave-one-out predictions of the kernel ridge, no leakage into the cascaded member's training rows, the save/load
round trip and the configuration errors."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from stellar.errors import StellarConfigError
from stellar.models.estimators import XGBoostEstimator
from stellar.models.late_fusion import CascadeMember, LateFusion
from stellar.models.luminosity import bc_v, log_luminosity, logg_from_parallax
from stellar.models.ridge import Fields, RidgeEstimator

CLASSES = ["0", "1", "2"]


def test_the_sun_at_10_pc_has_its_bolometric_correction_luminosity_and_log_g() -> None:
    # the Sun: M_V = 4.81, so V = 4.81 at 10 pc (parallax 100 mas); BC_V(5772 K) = -0.08 on Flower/Torres' scale
    assert float(bc_v(5772.0)) == pytest.approx(-0.08, abs=0.01)
    assert float(log_luminosity(4.81, 100.0, np.log10(5772.0))) == pytest.approx(0.0, abs=0.01)
    assert float(logg_from_parallax(4.81, 100.0, 5772.0)) == pytest.approx(4.44, abs=0.01)
    # ten times farther and 5 mag fainter: the same star
    assert float(logg_from_parallax(9.81, 10.0, 5772.0)) == pytest.approx(4.44, abs=0.01)
    # a 100 times brighter star of the same Teff (5 mag): log L = 2, log g = 4.438 - 0.75 * 2
    assert float(logg_from_parallax(-0.19, 100.0, 5772.0)) == pytest.approx(4.438 - 1.5, abs=0.01)


def test_bad_input_gives_nan_not_an_error() -> None:
    v = np.array([5.0, 5.0, 5.0, np.nan, 5.0, 5.0])
    plx = np.array([0.0, -3.0, np.nan, 10.0, 10.0, 10.0])
    teff = np.array([5000.0, 5000.0, 5000.0, 5000.0, 0.0, np.nan])
    with np.errstate(all="raise"):  # no warning either
        out = logg_from_parallax(v, plx, teff)
    assert np.isnan(out).all()


def _objects(n: int, seed: int) -> dict:
    """Per-object arrays: a "spectrum" (flux that knows Teff and log g) on every object, an SED on ~70% with V, a
    parallax consistent with the physical log g, and a noisy colour."""
    rng = np.random.default_rng(seed)
    teff = 10 ** rng.uniform(3.6, 3.9, n)
    logg = rng.uniform(1.5, 4.6, n)
    feh = rng.normal(0.0, 0.3, n)
    lt = np.log10(teff)
    basis = rng.normal(size=(3, 12))
    flux = np.column_stack([lt - 3.75, (logg - 3) / 2, feh]) @ basis + rng.normal(0, 0.02, (n, 12))
    # the luminosity that log g and Teff imply (M = L^0.25): log L = (4.438 + 4 (lt - log 5772) - logg) / 0.75
    log_l = (4.438 + 4 * (lt - np.log10(5772.0)) - logg) / 0.75
    m_v = 4.73 - 2.5 * log_l - np.asarray(bc_v(teff))
    plx = 10 ** rng.uniform(0.5, 2.0, n)
    v = m_v - 5 - 5 * np.log10(plx / 1000)
    colour = (3.9 - lt) * 3 + rng.normal(0, 0.1, n)
    # U, B, V, I, U-B, B-V, V-I, M_V, parallax, parallax error (datamodule=miles_paired's order)
    features = np.column_stack([v, v, v, v, colour, colour, colour, m_v, plx, 0.05 * plx]).astype(np.float32)
    features[0, 8] = -1.0  # a bad parallax: NaN features, no crash
    label = np.digitize(lt, [3.7, 3.8])
    present = {"spectrum": np.ones(n, bool), "sed": rng.random(n) < 0.7}
    present["sed"][0] = True
    return {"spectrum": {"flux": flux.astype(np.float32)}, "sed": {"features": features}, "present": present,
            "label": label, "teff": teff.astype(np.float32), "logg": logg.astype(np.float32),
            "feh": feh.astype(np.float32), "index": np.arange(n)}  # fmt: skip


def _ridge(**kw):
    return RidgeEstimator(representation=Fields(["flux"]), targets=["teff", "logg", "feh"], log_targets=["teff"],
                          alphas=[1e-2, 1e-1], kernel_gammas=[0.3, 1.0], per_star_sigma=True, **kw)  # fmt: skip


def _late(**cascade) -> LateFusion:
    xgb = partial(XGBoostEstimator, inputs=["features"], targets=["teff", "logg", "feh"], log_targets=["teff"],
                  num_boost_round=60, early_stopping_rounds=None, n_jobs=1, params={"max_depth": 3})  # fmt: skip
    spec = {"member": "cascade", "source": "spectrum", **cascade}
    return LateFusion({"sed": xgb, "spectrum": _ridge, "cascade": xgb},
                      {"sed": "sed", "spectrum": "spectrum", "cascade": ["spectrum", "sed"]},
                      class_names=CLASSES, cascade=spec)  # fmt: skip


def test_leave_one_out_predictions_are_exact_refits_without_the_row() -> None:
    part = _objects(60, 0)
    part = {"flux": part["spectrum"]["flux"], "label": part["label"], "teff": part["teff"], "logg": part["logg"],
            "feh": part["feh"]}  # fmt: skip
    part["logg"][3] = np.nan  # a row without this target: its in-sample prediction (its value was never used)
    model = _ridge(class_names=CLASSES)
    model.fit(part, None)
    loo = model.loo_predictions(part, ["logg"])["logg"]
    xs = model.arrays_["train_x"].astype(np.float64)
    y = model._learned("logg", part)
    ok = np.isfinite(y)
    c = float(model.arrays_["intercept_logg"])
    g, a = model.gamma["logg"], model.alpha["logg"]
    for i in (0, 7, 31):  # refit on the other known rows (same width, penalty and centre as the ridge's own search)
        rest = ok.copy()
        rest[i] = False
        k = model._kernel(xs[rest], xs[rest], g)
        dual = np.linalg.solve(k + a * np.eye(int(rest.sum())), y[rest] - c)
        assert loo[i] == pytest.approx(c + float((model._kernel(xs[i : i + 1], xs[rest], g) @ dual)[0]), abs=1e-8)
    assert loo[3] == pytest.approx(float(model._linear("logg", xs[3:4])[0]), abs=1e-12)


@pytest.fixture(scope="module")
def fitted() -> LateFusion:
    model = _late()
    model.fit(_objects(300, 1), _objects(120, 2))
    return model


def test_the_cascaded_members_training_rows_get_out_of_sample_source_predictions(fitted: LateFusion) -> None:
    assert next(iter(fitted.models)) == "spectrum_0"  # the source is fitted first
    member = fitted.models["cascade_0"]
    assert isinstance(member, CascadeMember)
    assert member.columns == ["teff", "logg", "feh", "log_l", "logg_phys"]
    train = _objects(300, 1)
    oos, fitted_rows = member.part(train, training=True)["cascade"], member.part(train)["cascade"]
    assert oos.shape == fitted_rows.shape == (int(member.present(train).sum()), 5)
    # the leave-one-out values differ from the in-sample fitted ones, and are further from the truth
    assert np.all(np.abs(oos[:, 1] - fitted_rows[:, 1]) > 1e-6)
    truth = member.part(train)["logg"]
    assert np.mean(np.abs(oos[:, 1] - truth)) > np.mean(np.abs(fitted_rows[:, 1] - truth))
    # they are the source's own leave-one-out predictions of those objects
    source = fitted.models["spectrum_0"]
    loo = source.model.loo_predictions(source.part(train), ["logg"])["logg"]
    np.testing.assert_allclose(oos[:, 1], loo[member.present(train)[source.present(train)]], rtol=1e-6)
    # the physical features follow from them; the bad parallax of object 0 gives NaN there
    keep = member.present(train)
    assert keep[0] and np.isnan(oos[0, 3:]).all() and np.isfinite(oos[1:, 3:]).all()
    # the physical log g recovers the truth from the leave-one-out Teff (mass guess exact here)
    assert np.median(np.abs(oos[1:, 4] - truth[1:])) < 0.1


def test_cascade_round_trips_and_answers_every_modality_subset(fitted: LateFusion, tmp_path: Path) -> None:
    test = _objects(80, 3)
    out = fitted.predict_outputs(test)
    fitted.save(tmp_path)
    loaded = _late().load(tmp_path)
    again = loaded.predict_outputs(test)
    for k, v in out.items():
        np.testing.assert_allclose(again[k], v, rtol=1e-6, atol=1e-6)
    # the SED alone (spectrum masked): the plain SED member answers; the cascade member is absent, no NaN
    sed_only = {**test, "present": {"spectrum": np.zeros(80, bool), "sed": test["present"]["sed"]}}
    res = fitted.predict_outputs(sed_only)
    assert all(np.isfinite(v).all() for v in res.values())
    # another config's cascade cannot load it
    with pytest.raises(StellarConfigError, match="saved cascade"):
        _late(physical=False).load(tmp_path)


def test_crossfit_gives_out_of_sample_predictions_too() -> None:
    model = _late(out_of_sample="crossfit", crossfit_folds=3, physical=False, targets=["logg"])
    model.fit(_objects(150, 4), _objects(60, 5))
    member = model.models["cascade_0"]
    train = _objects(150, 4)
    oos, ins = member.part(train, training=True)["cascade"], member.part(train)["cascade"]
    assert oos.shape[1] == 1 and np.all(np.abs(oos - ins) > 1e-6)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"colour": 1}, "cascade.colour"),
        ({"member": "nope"}, "cascade.member"),
        ({"source": "cascade"}, "cascade.member and cascade.source"),
        ({"out_of_sample": "magic"}, "cascade.out_of_sample"),
        ({"v_column": -1}, "cascade.v_column"),
        ({"targets": ["logg"]}, "cascade.physical"),
        ({"targets": ["mass"]}, "cascade.targets"),
    ],
)
def test_cascade_config_errors_name_the_key(spec: dict, match: str) -> None:
    with pytest.raises(StellarConfigError, match=match):
        _late(**spec)
