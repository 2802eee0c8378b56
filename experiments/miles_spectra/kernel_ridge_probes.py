"""Probes behind the choices of ``spectral_kernel_ridge``, on the training and validation parts of the 5 folds.

Each probe fits the kernel ridge of ``conf/model/spectral_kernel_ridge.yaml`` (flux over median, no classifier) on the
training part of fold K (``split=group_kfold split.base.seed=7``), then:

- ``sigma``: shapes of the per-star σ (learned space), each with its scale left free: one σ per target; the Gaussian-
  process posterior (``gp``, what ``per_star_sigma`` does); a kernel smoother of the training leave-one-out
  log|residual| over the predicted log Teff (``teff``, bandwidth by leave-one-out on train); their product. Chosen by
  the validation Laplace log-likelihood (lower ``val_nll`` is better); the test coverage after a split-conformal
  factor fitted on val is printed beside it, as a check, never used to choose.
- ``mk``: classifiers of the MK letter on the same standardised flux over median: the linear logistic regression
  (C among 0.001 … 10), a logistic regression on the RBF kernel features of the training stars (γ = 1, the kernel of
  the ridge), the flux plus cubic features of the cross-fitted labels (leave-one-out Teff, logg, [Fe/H] on train,
  predictions elsewhere), and the labels alone. C chosen on val (accuracy, ties by smaller C); test printed beside.

Run from the repository root (``mk`` fits ~20 logistic regressions on 4,300 columns per fold: minutes)::

    PYTHONPATH=. python experiments/miles_spectra/kernel_ridge_probes.py sigma --data-dir ../shared/data/miles
    PYTHONPATH=. python experiments/miles_spectra/kernel_ridge_probes.py mk --data-dir ../shared/data/miles
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import PolynomialFeatures

from stellar.evaluation.calibration.intervals import conformal_quantile
from stellar.models.ridge import FluxOverMedian, RidgeEstimator

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("teff", "logg", "feh")
BANDWIDTHS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


def fold_parts(data_dir: str, fold: int) -> tuple[dict[str, dict[str, np.ndarray]], Any]:
    """The train / val / test arrays of one fold, as ``train.py`` splits them, and the composed model config."""
    over = ["experiment=miles_spectra", "split=group_kfold", "split.base.seed=7", f"split.fold={fold}",
            f"datamodule.data_dir={data_dir}"]  # fmt: skip
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=over)
    dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
    dm.setup("fit")
    return {p: dm.arrays(p) for p in ("train", "val", "test")}, cfg.model


def fit_ridge(parts: dict[str, dict[str, np.ndarray]], mcfg: Any) -> tuple[RidgeEstimator, dict[str, np.ndarray]]:
    """The config's kernel ridge on the flux over median (one block), and the training leave-one-out residuals."""
    model = RidgeEstimator(targets=TARGETS, log_targets=("teff",), representation=FluxOverMedian(),
                           alphas=list(mcfg.alphas), kernel_gammas=list(mcfg.kernel_gammas))  # fmt: skip
    loo: dict[str, np.ndarray] = {}
    fit_kernel = model._fit_kernel

    def keep(t: str, x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        resid, shape = fit_kernel(t, x, y, ok)
        loo[t] = resid
        return resid, shape

    model._fit_kernel = keep  # type: ignore[method-assign]
    model.fit(parts["train"], None)
    return model, loo


def nadaraya_watson(q: np.ndarray, x: np.ndarray, v: np.ndarray, h: float, leave_out: bool = False) -> np.ndarray:
    w = np.exp(-0.5 * ((q[:, None] - x[None, :]) / h) ** 2)
    if leave_out:
        np.fill_diagonal(w, 0.0)
    return (w @ v) / w.sum(1)


def sigma_probe(parts: dict[str, dict[str, np.ndarray]], mcfg: Any) -> dict[str, Any]:
    model, loo = fit_ridge(parts, mcfg)
    train_x = model.arrays_["train_x"].astype(np.float64)
    xs = {p: model._matrix(parts[p]) for p in ("val", "test")}
    teff_pred = {p: model._linear("teff", xs[p]) for p in xs}
    y_teff = model._learned("teff", parts["train"])
    ok_t = np.isfinite(y_teff)
    out: dict[str, Any] = {}
    for t in TARGETS:
        ok = np.isfinite(model._learned(t, parts["train"]))
        g, a = model.gamma[t], model.alpha[t]
        lam, vec = np.linalg.eigh(model._kernel(train_x[ok], train_x[ok], g))
        inv = (vec / (np.maximum(lam, 0.0) + a)) @ vec.T
        # the smoother's abscissa: leave-one-out log10 Teff on train (where known), the prediction elsewhere
        lt = model._linear("teff", train_x)
        lt[ok_t] = y_teff[ok_t] - loo["teff"]
        lr = np.log(np.abs(loo[t]) + 1e-6)
        h = min(BANDWIDTHS, key=lambda b: float(np.mean((nadaraya_watson(lt[ok], lt[ok], lr, b, True) - lr) ** 2)))

        def gp(p: str, t: str = t, ok: np.ndarray = ok, g: float = g, a: float = a, inv: np.ndarray = inv) -> Any:
            k = model._kernel(xs[p], train_x[ok], g)
            return 1.0 + a - np.einsum("ij,jk,ik->i", k, inv, k)

        def smooth(p: str, ok: np.ndarray = ok, lr: np.ndarray = lr, h: float = h, lt: np.ndarray = lt) -> Any:
            return np.exp(2.0 * nadaraya_watson(teff_pred[p], lt[ok], lr, h))

        shapes: dict[str, Callable[[str], np.ndarray]] = {
            "one": lambda p: np.ones(len(xs[p])), "gp": gp, "teff": smooth, "gp*teff": lambda p: gp(p) * smooth(p),
        }  # fmt: skip
        res: dict[str, Any] = {"teff_bandwidth": h}
        for name, shape in shapes.items():
            z = {}
            for p in ("val", "test"):
                y = model._learned(t, parts[p])
                okp = np.isfinite(y)
                z[p] = (np.abs(y - model._linear(t, xs[p])) / np.sqrt(shape(p)))[okp]
                if p == "val":
                    val_nll = float(np.mean(0.5 * np.log(shape(p)[okp])) + math.log(np.mean(z[p])))
            res[name] = {"val_nll": val_nll, **{f"test_coverage_{lv}": float(np.mean(z["test"] <= conformal_quantile(
                z["val"], level))) for lv, level in (("68", 0.6827), ("95", 0.95))}}  # fmt: skip
        out[t] = res
    return out


def mk_probe(parts: dict[str, dict[str, np.ndarray]], mcfg: Any) -> dict[str, Any]:
    model, loo = fit_ridge(parts, mcfg)
    xs = {p: model._matrix(parts[p]) for p in parts}
    labels = {p: np.stack([model._linear(t, xs[p]) for t in TARGETS], 1) for p in parts}
    for j, t in enumerate(TARGETS):  # cross-fitted on train: the leave-one-out prediction
        y = model._learned(t, parts["train"])
        ok = np.isfinite(y)
        labels["train"][ok, j] = y[ok] - loo[t]
    mu, sd = labels["train"].mean(0), labels["train"].std(0)
    poly = PolynomialFeatures(3, include_bias=False).fit((labels["train"] - mu) / sd)
    lab = {p: poly.transform((labels[p] - mu) / sd) for p in parts}
    train_x = model.arrays_["train_x"].astype(np.float64)
    width = math.sqrt(xs["train"].shape[1] / 100)  # the label columns' scale beside 4,300 standardised pixels
    features = {
        "linear logistic (flux)": {p: xs[p] for p in parts},
        "kernel logistic (gamma 1)": {p: model._kernel(xs[p], train_x, 1.0) for p in parts},
        "flux + cross-fitted labels": {p: np.hstack([xs[p], 3.0 * width * lab[p]]) for p in parts},
        "cross-fitted labels alone": lab,
    }
    y = {p: np.asarray(parts[p]["label"]) for p in parts}
    out: dict[str, Any] = {}
    for name, f in features.items():
        tried = []
        for c in (1e-3, 1e-2, 1e-1, 1.0, 10.0):
            clf = LogisticRegression(C=c, max_iter=3000).fit(f["train"][y["train"] >= 0], y["train"][y["train"] >= 0])
            acc = {p: float(np.mean(clf.predict(f[p][y[p] >= 0]) == y[p][y[p] >= 0])) for p in ("val", "test")}
            tried.append({"C": c, **acc})
        best = max(tried, key=lambda r: (r["val"], -r["C"]))
        out[name] = {"chosen_C": best["C"], "val_accuracy": best["val"], "test_accuracy": best["test"], "tried": tried}
        print(f"  {name}: C {best['C']}, val {best['val']:.3f}, test {best['test']:.3f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probe", choices=["sigma", "mk"])
    ap.add_argument("--data-dir", default="../shared/data/miles")
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", default=None, help="results JSON (default results/kernel_ridge_<probe>_probe.json)")
    args = ap.parse_args()
    probe = {"sigma": sigma_probe, "mk": mk_probe}[args.probe]
    out_path = Path(args.out or Path(__file__).parent / "results" / f"kernel_ridge_{args.probe}_probe.json")
    results: dict[str, Any] = {}
    for fold in args.folds:
        print(f"fold {fold}", flush=True)
        parts, mcfg = fold_parts(args.data_dir, fold)
        results[str(fold)] = probe(parts, mcfg)
        out_path.write_text(json.dumps(results, indent=1))
    if args.probe == "sigma":
        for t in TARGETS:
            for name in ("one", "gp", "teff", "gp*teff"):
                rows = [results[str(f)][t][name] for f in args.folds]
                print(f"{t} {name}: val_nll {np.mean([r['val_nll'] for r in rows]):.3f}; test coverage after "
                      f"68% {[round(r['test_coverage_68'], 2) for r in rows]} "
                      f"95% {[round(r['test_coverage_95'], 2) for r in rows]}")  # fmt: skip
    else:
        for name in results[str(args.folds[0])]:
            rows = [results[str(f)][name] for f in args.folds]
            print(f"{name}: val {np.mean([r['val_accuracy'] for r in rows]):.3f}, "
                  f"test {np.mean([r['test_accuracy'] for r in rows]):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
