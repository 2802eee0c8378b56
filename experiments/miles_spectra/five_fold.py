"""Every MILES method on the same 5 grouped folds: one table (mean ± std over folds) of all the columns of issue 15.

Folds: ``split=group_kfold split.fold=K split.base.seed=7`` (fold K is test, K+1 validation, the other three
train: 468 / 156 / 156 stars; every star is once in a test fold), the continuum channel on, as in the README's
other sections. Rows:

- ``ridge normalised`` / ``ridge flux/median``: the issue's baselines as ``ridge_continuum.py`` fits them: RidgeCV
  (alpha by leave-one-out) on standardised pixels, fitted on train + val (a ridge needs no validation part); MK by a
  logistic regression whose C is chosen on val among 1e-3, 1e-2, 1e-1, then refitted on train + val. No intervals;
  ECE of the raw probabilities (no part is left to calibrate them on).
- ``CNN 4-px binned (StarNet)``: the issue's small CNN as the field publishes it, fixed a priori: StarNet (Fabbro et al.
  2018; the project's :class:`~stellar.models.components.encoders.SpectralStarNet` on the continuum-normalised flux
  alone, binned by 4 pixels: conv 4×k8 → conv 16×k8 → max-pool 4 → dense 256 → dense 128, ReLU) with one linear
  output layer (MK logits and standardised log10 Teff, logg, [Fe/H]; cross-entropy + MSE), Adam at 7e-4, batches of
  64, trained on train, the epoch of lowest validation loss kept (at most 60, stopping after 15 without
  improvement); seeds 0, 1, 2, each scored, the mean of the three per fold. No intervals; ECE after temperature
  scaling on val.
- ``spectral_cannon``, ``spectral_ridge``, ``spectral_kernel_ridge``: ``train.run`` exactly as ``python train.py
  experiment=miles_spectra model=<m> ...`` (MK ECE after the run's temperature scaling, coverage after its
  conformal interval calibrator, both fitted on val).
- ``best neural`` and ``ensemble: neural + kernel ridge``: ``train.run`` as ``python train.py experiment=miles_spectra
  model=spectral_starnet_kernel_ridge ...`` (the row of the combination), and the seed ensemble inside it (the
  ``spectral_starnet_ensemble`` member: 5 StarNets with the continuum channel, seeds 7–11, each calibrated on val),
  calibrated on val and scored on test as ``train.run`` does, which is what ``model=spectral_starnet_ensemble`` fits
  (same seeds and parts), without training the five networks twice. The model was chosen on the validation parts
  only (``select_neural.py``).
- ``miles_spectra (neural)`` (a full run only, not ``--rows``): the runs of ``python train.py -m
  experiment=miles_spectra model=spectral_multitask ... seed=7,8`` read from ``--neural-dir`` (their ``metrics.json``),
  the mean of the two seeds per fold; ``ensemble``: those two seeds and ``spectral_kernel_ridge`` combined as
  :class:`stellar.models.ensemble.Ensemble` does with ``calibrate_members`` (each member temperature- and
  variance-scaled on val; mean probability; Gaussian mixture of the regression outputs), then temperature scaling and
  conformal intervals on val, as the pipeline does.

``--rows NAME ...`` recomputes only the named rows on ``--folds`` and merges them into ``--out`` (the other rows kept;
``--drop NAME ...`` removes stale rows).

Coverage columns: the fraction of test truths inside the calibrated 68% and 95% intervals, averaged over Teff, logg
and [Fe/H]. Nothing here is tuned on a test fold. Run from the repository root::

    PYTHONPATH=. python experiments/miles_spectra/five_fold.py --data-dir ../shared/data/miles \\
        --neural-dir outputs/five_fold/neural
    PYTHONPATH=. python experiments/miles_spectra/five_fold.py --data-dir ../shared/data/miles \\
        --rows "CNN 4-px binned (StarNet, 3 seeds, mean)"
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.preprocessing import StandardScaler
from torch import nn

from stellar.evaluation.calibration import (
    ConformalIntervals,
    TemperatureScaler,
    VarianceScaler,
    calibrated_probs,
    expected_calibration_error,
)
from stellar.models.components.encoders import SpectralStarNet
from stellar.models.ensemble import gaussian_mixture
from stellar.models.ridge import FluxOverMedian
from stellar.pipelines.common import (
    build_interval_calibrator,
    checkpoint_hparams,
    fit_calibrator,
    fit_interval_calibrator,
    labels_of,
    load_weights,
    predict,
    score_outputs,
)
from stellar.pipelines.evaluate import best_checkpoint
from stellar.pipelines.train import run

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("teff", "logg", "feh")
COLUMNS = ["logg_mae", "teff_median_ae", "teff_mae", "feh_mae", "mk_accuracy", "mk_ece", "coverage_68", "coverage_95"]
ESTIMATORS = ["spectral_cannon", "spectral_ridge", "spectral_kernel_ridge"]
CNN_ROW = "CNN 4-px binned (StarNet, 3 seeds, mean)"
#: the best neural model (chosen on the validation parts: select_neural.py) and its combination with the kernel ridge
NEURAL_MODEL, COMBINED_MODEL = "spectral_starnet_ensemble", "spectral_starnet_kernel_ridge"
NEURAL_ROW = f"best neural: {NEURAL_MODEL} (seed ensemble)"
COMBINED_ROW = f"ensemble: neural + kernel ridge ({COMBINED_MODEL})"
#: the rows --rows can name (the spectral_multitask rows need --neural-dir and are made only by a full run)
ROWS = [*ESTIMATORS, "ridge normalised", "ridge flux/median", CNN_ROW, NEURAL_ROW, COMBINED_ROW]
BASE = ["experiment=miles_spectra", "split=group_kfold", "split.base.seed=7",
        "datamodule.preprocessing.continuum_channel=true"]  # fmt: skip


def _cfg(overrides: list[str]) -> Any:
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose("train", overrides=overrides)


def _row(summary: dict[str, Any]) -> dict[str, float]:
    """The table's columns from a pipeline test summary."""
    reg, cls = summary["regression"], summary["classification"]
    return {"logg_mae": reg["logg"]["mae"], "teff_median_ae": reg["teff"]["median_ae"], "teff_mae": reg["teff"]["mae"],
            "feh_mae": reg["feh"]["mae"], "mk_accuracy": cls["accuracy"], "mk_ece": cls["ece_after"],
            "coverage_68": float(np.mean([reg[t]["coverage_68_after"] for t in TARGETS])),
            "coverage_95": float(np.mean([reg[t]["coverage_95_after"] for t in TARGETS]))}  # fmt: skip


def _plain_row(pred: dict[str, np.ndarray], probs: np.ndarray, test: dict[str, np.ndarray]) -> dict[str, float]:
    """Columns for a model without intervals: point errors, accuracy and ECE of ``probs``."""
    out: dict[str, float] = {}
    for t in TARGETS:
        ok = np.isfinite(test[t])
        err = np.abs(pred[t][ok] - test[t][ok])
        out[f"{t}_mae"] = float(err.mean())
        if t == "teff":
            out["teff_median_ae"] = float(np.median(err))
    lab = test["label"] >= 0
    out["mk_accuracy"] = float(np.mean(probs[lab].argmax(1) == test["label"][lab]))
    out["mk_ece"] = float(expected_calibration_error(probs[lab], test["label"][lab]))
    return out


# ---- the linear baselines (as ridge_continuum.py) ----------------------------------------------------------
def ridge_baseline(parts: dict[str, dict[str, np.ndarray]], kind: str, n_classes: int) -> dict[str, float]:
    rep = FluxOverMedian() if kind == "flux/median" else (lambda a: a["flux"])
    fit = {k: np.concatenate([parts["train"][k], parts["val"][k]]) for k in parts["train"]}
    scaler = StandardScaler().fit(np.nan_to_num(rep(fit)))
    x = {p: np.nan_to_num(scaler.transform(np.nan_to_num(rep(a)))) for p, a in {**parts, "fit": fit}.items()}
    pred = {}
    for t in TARGETS:
        y = np.log10(fit[t]) if t == "teff" else fit[t].astype(float)
        ok = np.isfinite(y)
        p = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(x["fit"][ok], y[ok]).predict(x["test"])
        pred[t] = 10.0**p if t == "teff" else p
    ltr, lva = parts["train"]["label"], parts["val"]["label"]
    accs = {c: float(np.mean(LogisticRegression(C=c, max_iter=2000).fit(x["train"][ltr >= 0], ltr[ltr >= 0])
                             .predict(x["val"][lva >= 0]) == lva[lva >= 0])) for c in (1e-3, 1e-2, 1e-1)}  # fmt: skip
    lab = fit["label"] >= 0
    clf = LogisticRegression(C=max(accs, key=accs.__getitem__), max_iter=2000).fit(x["fit"][lab], fit["label"][lab])
    probs = np.zeros((len(x["test"]), n_classes))
    probs[:, clf.classes_] = clf.predict_proba(x["test"])
    return _plain_row(pred, probs, parts["test"])


# ---- the field's small spectral CNN (StarNet) on 4-px-binned continuum-normalised spectra --------------------------
class StarNetBaseline(nn.Module):
    """StarNet (Fabbro et al. 2018) as the issue's baseline: the project's :class:`SpectralStarNet` encoder on the
    continuum-normalised flux alone (4-px bins, conv 4×k8 → conv 16×k8 → max-pool 4 → dense 256 → dense 128, ReLU)
    and one linear output layer for the MK logits and the three standardised targets."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.encoder = SpectralStarNet(continuum_channel=False)
        self.cls, self.reg = nn.Linear(self.encoder.out_dim, n_classes), nn.Linear(self.encoder.out_dim, len(TARGETS))

    def forward(self, flux: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(flux, mask)
        return self.cls(h), self.reg(h)


def cnn_baseline(
    parts: dict[str, dict[str, np.ndarray]], n_classes: int, seed: int, epochs: int = 60, patience: int = 15
) -> dict[str, float]:
    """StarNet's published recipe, fixed before any fold was scored: Adam at 7e-4, batches of 64, MSE on the
    standardised log10 Teff, logg and [Fe/H] plus the MK cross-entropy; the epoch of lowest validation loss is kept,
    training stops after ``patience`` epochs without improvement. MK ECE after temperature scaling on val."""

    def learned(a: dict[str, np.ndarray]) -> np.ndarray:
        return np.stack([np.log10(a[t]) if t == "teff" else a[t] for t in TARGETS], 1).astype(float)

    ytr = learned(parts["train"])
    mu, sd = np.nanmean(ytr, 0), np.nanstd(ytr, 0)
    data = {p: (torch.from_numpy(a["flux"]).float(), torch.from_numpy(a["mask"]).bool(),
                torch.from_numpy(a["label"]).long(), torch.from_numpy((learned(a) - mu) / sd).float())
            for p, a in parts.items()}  # fmt: skip
    torch.manual_seed(seed)
    net = StarNetBaseline(n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=7e-4)

    def loss_of(x: torch.Tensor, m: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        logits, reg = net(x, m)
        ok = torch.isfinite(r)
        return nn.functional.cross_entropy(logits[y >= 0], y[y >= 0]) + ((reg - torch.nan_to_num(r))[ok] ** 2).mean()

    best, state, since = np.inf, None, 0
    xtr, mtr, ltr, rtr = data["train"]
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(xtr)).split(64):
            opt.zero_grad()
            loss_of(xtr[idx], mtr[idx], ltr[idx], rtr[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = float(loss_of(*data["val"]))
        if v < best:
            best, state, since = v, {k: t.clone() for k, t in net.state_dict().items()}, 0
        else:
            since += 1
            if since >= patience:
                break
    assert state is not None
    net.load_state_dict(state)
    with torch.no_grad():
        lv, _ = net(*data["val"][:2])
        lt, rt = net(*data["test"][:2])
    yv = parts["val"]["label"]
    temp = TemperatureScaler().fit(lv.numpy()[yv >= 0], yv[yv >= 0])
    r = rt.numpy() * sd + mu
    pred = {t: 10.0 ** r[:, i] if t == "teff" else r[:, i] for i, t in enumerate(TARGETS)}
    return _plain_row(pred, calibrated_probs(temp, lt.numpy()), parts["test"])


# ---- the neural runs, and the ensemble of neural seeds with the kernel ridge -------------------------------------
def neural_outputs(run_dir: Path, dm: Any) -> dict[str, dict[str, np.ndarray]]:
    """Validation and test outputs of a finished neural run, from its best checkpoint."""
    import lightning as L

    cfg = OmegaConf.load(run_dir / "config.yaml")
    ckpt = best_checkpoint(run_dir)
    model = instantiate(cfg.model, class_names=dm.class_names, target_stats=checkpoint_hparams(ckpt)["target_stats"])
    load_weights(model, ckpt)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False)  # fmt: skip
    return {p: predict(trainer, model, dm, p) for p in ("val", "test")}


def ensemble_row(members: list[dict[str, dict[str, np.ndarray]]], dm: Any) -> dict[str, float]:
    """Members calibrated on val, averaged (probabilities) and mixed (regression), then calibrated as the pipeline."""
    val_lab = dm.meta["label"].to_numpy()[members[0]["val"]["index"]]
    truths = {t: dm.meta[t].to_numpy(dtype=float)[members[0]["val"]["index"]] for t in TARGETS}
    combined: dict[str, dict[str, np.ndarray]] = {}
    cals = []
    for m in members:
        ok = val_lab >= 0
        cals.append((TemperatureScaler().fit(m["val"]["logits"][ok], val_lab[ok]),
                     VarianceScaler().fit(m["val"], truths, log_targets=["teff"])))  # fmt: skip
    for part in ("val", "test"):
        outs = [iv.transform(m[part]) for m, (_, iv) in zip(members, cals, strict=True)]
        probs = np.mean([calibrated_probs(tp, o["logits"]) for o, (tp, _) in zip(outs, cals, strict=True)], axis=0)
        res: dict[str, np.ndarray] = {"logits": np.log(np.clip(probs, 1e-12, 1)), "index": outs[0]["index"]}
        for t in TARGETS:
            res[f"{t}_mean"], res[f"{t}_logvar"] = gaussian_mixture([o[f"{t}_mean"] for o in outs],
                                                                    [o[f"{t}_logvar"] for o in outs])  # fmt: skip
        combined[part] = res
    ok = val_lab >= 0
    temp = TemperatureScaler().fit(combined["val"]["logits"][ok], val_lab[ok])
    intervals = ConformalIntervals().fit(combined["val"], truths, log_targets=["teff"])
    model = SimpleNamespace(targets=list(TARGETS), log_targets=["teff"])
    return _row(score_outputs(combined["test"], dm, dm.class_names, model.targets, temp, intervals))


def neural_runs(multirun: Path, fold: int, n: int, wait_s: float = 1800.0) -> list[Path]:
    """The finished neural runs of ``fold`` in a multirun folder, waiting (up to ``wait_s``) until there are ``n``
    (the multirun may still be running)."""
    import time

    start = time.monotonic()
    while True:
        runs = []
        for job in sorted(multirun.glob("*/metrics.json")):
            ovr = OmegaConf.load(job.parent / ".hydra" / "overrides.yaml")
            if f"split.fold={fold}" in ovr:
                runs.append(job.parent)
        if len(runs) >= n or time.monotonic() - start > wait_s:
            return runs
        time.sleep(20)


def estimator_summary(model: Any, dm: Any, cfg: Any) -> dict[str, Any]:
    """A fitted estimator calibrated on val and scored on test as ``train.run`` does (its calibrator configs)."""
    val_out = predict(None, model, dm, "val")
    calibrator = fit_calibrator(instantiate(cfg.calibrator), val_out, labels_of(val_out, dm))
    intervals = fit_interval_calibrator(build_interval_calibrator(cfg.interval_calibrator, dm), val_out, dm, model)
    return score_outputs(predict(None, model, dm, "test"), dm, model.class_names, model.targets, calibrator, intervals)


#: per fold, the combination's per-head member weights chosen on val (kept in --out beside the rows)
WEIGHTS: dict[str, dict[str, dict[str, float]]] = {}


def fold_rows(names: list[str], fold: int, args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, float]]:
    """The named rows on one fold (``None`` names: every row, the neural multirun's too)."""
    common = [
        *BASE,
        f"datamodule.data_dir={args.data_dir}",
        f"split.fold={fold}",
        f"paths.log_dir={tmp}",
        "logger=none",
    ]
    out: dict[str, dict[str, float]] = {}
    est_out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    dm = None
    for name in [n for n in ESTIMATORS if n in names]:
        metrics, objs = run(_cfg([*common, f"model={name}", f"paths.output_dir={tmp / f'{name}_{fold}'}"]))
        out[name] = _row(metrics["test_summary"])
        dm = objs["datamodule"]
        est_out[name] = {p: predict(None, objs["model"], dm, p) for p in ("val", "test")}
    if NEURAL_ROW in names or COMBINED_ROW in names:
        cfg = _cfg([*common, f"model={COMBINED_MODEL}", f"paths.output_dir={tmp / f'{COMBINED_MODEL}_{fold}'}"])
        metrics, objs = run(cfg)
        dm = objs["datamodule"]
        out[COMBINED_ROW] = _row(metrics["test_summary"])
        WEIGHTS[str(fold)] = objs["model"].weights
        print(f"fold {fold}: weights chosen on val {json.dumps(WEIGHTS[str(fold)])}", flush=True)
        # the seed ensemble inside the combination: the members `train.py model=<NEURAL_MODEL>` fits (same seeds)
        out[NEURAL_ROW] = _row(estimator_summary(objs["model"].models["net_0"], dm, cfg))
    if dm is None:
        cfg = _cfg([*common, f"paths.output_dir={tmp / f'data_{fold}'}"])
        dm = instantiate(cfg.datamodule, split=instantiate(cfg.split))
        dm.setup("fit")
    parts = {p: dm.arrays(p) for p in ("train", "val", "test")}
    k = len(dm.class_names)
    for kind in ("normalised", "flux/median"):
        if f"ridge {kind}" in names:
            out[f"ridge {kind}"] = ridge_baseline(parts, kind, k)
    if CNN_ROW in names:
        cnn = [cnn_baseline(parts, k, seed) for seed in (0, 1, 2)]
        out[CNN_ROW] = {c: float(np.mean([r[c] for r in cnn])) for c in cnn[0]}
    if args.rows is None:  # the spectral_multitask multirun, and its ensemble with the kernel ridge
        runs = neural_runs(Path(args.neural_dir), fold, args.neural_seeds)
        if runs:
            summaries = [_row(json.loads((r / "metrics.json").read_text())["test_summary"]) for r in runs]
            out[f"miles_spectra neural ({len(runs)} seeds, mean)"] = {
                c: float(np.mean([s[c] for s in summaries])) for c in summaries[0]
            }
            members = [neural_outputs(r, dm) for r in runs] + [est_out["spectral_kernel_ridge"]]
            out[f"ensemble: {len(runs)} neural seeds + spectral_kernel_ridge"] = ensemble_row(members, dm)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data/miles")
    ap.add_argument("--neural-dir", default="outputs/five_fold/neural", help="the multirun folder of the neural runs")
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--neural-seeds", type=int, default=2, help="finished neural runs to wait for per fold")
    ap.add_argument(
        "--rows", nargs="+", choices=ROWS, metavar="NAME", help=f"recompute only these, merged into --out: {ROWS}"
    )
    ap.add_argument("--drop", nargs="+", default=[], metavar="NAME", help="rows to remove from --out when merging")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "five_fold.json"))
    ap.add_argument("--table-only", action="store_true", help="print the table of --out without running anything")
    args = ap.parse_args()
    out = Path(args.out)
    if args.table_only:
        saved = json.loads(out.read_text())
        print(f"folds {saved['folds']}")
        print_table(saved["rows"])
        return

    def saved() -> dict[str, Any]:  # read again before merging: another --rows run may have merged meanwhile
        old = (
            json.loads(out.read_text()) if args.rows is not None and out.exists() else {"folds": args.folds, "rows": {}}
        )
        if old["folds"] != args.folds:
            raise SystemExit(f"--folds {args.folds} differ from the folds {old['folds']} of {out}: rows cannot merge")
        return old

    saved()
    tmp = Path(tempfile.mkdtemp())
    rows: dict[str, list[dict[str, float]]] = {}
    partial = out.with_suffix(f".partial{os.getpid()}.json")
    for fold in args.folds:
        for name, row in fold_rows(args.rows or ROWS, fold, args, tmp).items():
            rows.setdefault(name, []).append(row)
        print(f"fold {fold}: " + json.dumps({n: r[-1] for n, r in rows.items()}), flush=True)
        partial.write_text(json.dumps({"folds": args.folds[: args.folds.index(fold) + 1], "rows": rows}, indent=1))
    merged = {n: r for n, r in saved()["rows"].items() if n not in args.drop}
    merged.update(rows)
    result: dict[str, Any] = {"folds": args.folds, "rows": merged}
    weights = {**saved().get("weights", {}), **WEIGHTS}
    if weights:
        result["weights"] = weights
    out.write_text(json.dumps(result, indent=1))
    partial.unlink()
    print_table(merged)


def print_table(rows: dict[str, list[dict[str, float]]]) -> None:
    fmt = {"logg_mae": "{:.3f}", "teff_median_ae": "{:.0f}", "teff_mae": "{:.0f}", "feh_mae": "{:.3f}",
           "mk_accuracy": "{:.3f}", "mk_ece": "{:.3f}", "coverage_68": "{:.2f}", "coverage_95": "{:.2f}"}  # fmt: skip
    print("| method | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, per_fold in rows.items():
        cells = []
        for c in COLUMNS:
            v = np.array([r.get(c, np.nan) for r in per_fold], dtype=float)
            cells.append("—" if np.isnan(v).all() else f"{fmt[c].format(v.mean())} ± {fmt[c].format(v.std())}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
