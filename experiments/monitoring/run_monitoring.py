"""Issue 17, items 1-3: false alarms and power of the monitor, and its label-free accuracy estimate.

For each model (SED: Hipparcos, SDSS17; spectra: simulator, MILES; light curves: simulator, EROS) the script trains
it once (``stellar.pipelines.train.run``, outputs under ``--out``), loads the run's training reference, runs the
model once on the held-out (test) part and once on each shifted version of it (:func:`batch_inputs`), then draws
batches by row and calls :func:`~stellar.monitoring.check_batch` on each with the thresholds of
``conf/monitor.yaml`` as they are. Shifts of the inputs are made on the raw data and put through the datamodule's
own preprocessing object (the one the server applies).

    PYTHONPATH=. python experiments/monitoring/run_monitoring.py            # the default run (~25 min, 2 cores)
    PYTHONPATH=. python experiments/monitoring/run_monitoring.py --quick    # smoke run: few batches

Writes ``experiments/monitoring/results/monitoring.json`` (``--quick``: ``monitoring_quick.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tqdm import tqdm

from stellar.data.datamodules.base import StellarDataModule, TensorDictDataset
from stellar.data.sources.lightcurve import ErosSource, pad_rows
from stellar.data.sources.spectra import MilesSource
from stellar.monitoring import TrainingReference, check_batch
from stellar.pipelines.monitor import batch_inputs, batch_rows
from stellar.pipelines.train import run as train_run

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
C_KMS = 299_792.458
log = logging.getLogger("monitoring")


@dataclasses.dataclass
class Model:
    """One model of the study: its train overrides and its in-distribution batch sizes."""

    name: str
    overrides: list[str]
    sizes: tuple[int, ...] = (200, 1000)
    note: str = ""


MODELS = [
    Model("hipparcos_sed", ["experiment=hipparcos_sed", f"datamodule.data_dir={DATA / 'hipparcos'}", "model.n_jobs=1"]),
    Model(
        "sdss17_sed",
        ["experiment=sdss17_sed", f"datamodule.data_dir={DATA / 'sdss17'}", "split=random", "model.n_jobs=1"],
        note="split=random: the test part is exchangeable with the validation part (the sky split's is a shift)",
    ),
    Model("sim_spectra", ["experiment=sim_spectra", "model=spectral_ridge", "datamodule.source.n=7000"]),
    Model(
        "miles_spectra",
        ["experiment=miles_spectra", "model=spectral_kernel_ridge", f"datamodule.data_dir={DATA / 'miles'}"],
        sizes=(100,),
        note="780 stars: the held-out part is ~120 stars, so only batches of 100 (drawn from the same ~120)",
    ),
    Model(
        "sim_lightcurves",
        [
            "experiment=sim_lightcurves",
            "model=lightcurve_xgboost",
            "datamodule.source.n=7000",
            "model.n_jobs=1",
            "trainer.max_epochs=1",
        ],
    ),
    Model(
        "eros_lightcurves",
        [
            "experiment=eros_lightcurves",
            "model=lightcurve_xgboost",
            f"datamodule.data_dir={DATA / 'eros'}",
            "model.n_jobs=1",
        ],
        sizes=(200,),
        note="split by EROS field patch (the experiment's split): the test part is other patches than the "
        "validation part, so its 'in-distribution' batches are a patch shift; ~440 test light curves: batches of 200",
    ),
    Model(
        "eros_lightcurves_random",
        [
            "experiment=eros_lightcurves",
            "model=lightcurve_xgboost",
            f"datamodule.data_dir={DATA / 'eros'}",
            "model.n_jobs=1",
            "split=random",
            "~split.group_key",  # the experiment's patch key, which a random split does not take
        ],
        sizes=(200,),
        note="split=random: the test part is exchangeable with the validation part; batches of 200",
    ),
]


# ---- training and the model's held-out part -----------------------------------------------------------------
def train(model: Model, out: Path) -> dict[str, Any]:
    """Train once; the run's objects, its reference and the check inputs of its test part."""
    run_dir = out / model.name
    base = [
        f"paths.output_dir={run_dir}",
        f"paths.store_dir={out / 'store'}",
        f"paths.log_dir={out / 'logs'}",
        "logger=[]",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=base + model.overrides)
    t0 = time.time()
    metrics, objs = train_run(cfg)
    reference = TrainingReference.load(run_dir)
    dm: StellarDataModule = objs["datamodule"]
    ctx = {**objs, "reference": reference, "cfg": cfg, "train_s": time.time() - t0}
    ctx["test"] = batch_inputs(
        objs["trainer"], objs["model"], dm, "test", reference, objs["calibrator"], objs["interval_calibrator"]
    )
    ctx["test_accuracy"] = (metrics.get("test_summary") or {}).get("classification", {}).get("accuracy")
    return ctx


def shifted_part(ctx: dict[str, Any], name: str, fields: dict[str, np.ndarray]) -> dict[str, Any]:
    """Check inputs of the test objects with their model-input ``fields`` replaced (made from shifted raw data by
    the datamodule's preprocessing): the fields become a part of the datamodule, with the test part's labels,
    targets and row index, and the model runs on it once."""
    dm: StellarDataModule = ctx["datamodule"]
    base = dm.part("test").tensors
    tensors = {
        k: torch.from_numpy(np.ascontiguousarray(np.asarray(v).astype(base[k].numpy().dtype)))
        for k, v in fields.items()
    }
    tensors.update({k: v for k, v in base.items() if k not in tensors})
    dm._parts[name] = TensorDictDataset(tensors)
    return other_data(ctx, dm, name)


def other_data(ctx: dict[str, Any], dm: StellarDataModule, part: str = "test") -> dict[str, Any]:
    """Check inputs of one part of another datamodule (the same model and preprocessing)."""
    return batch_inputs(
        ctx["trainer"], ctx["model"], dm, part, ctx["reference"], ctx["calibrator"], ctx["interval_calibrator"]
    )


def datamodule_on(ctx: dict[str, Any], source: Any) -> StellarDataModule:
    """The model's datamodule (its preprocessing, classes and targets) on another source, every object in the
    test part."""
    node = OmegaConf.to_container(ctx["cfg"].datamodule, resolve=True)
    node.pop("source")  # type: ignore[union-attr]
    dm: StellarDataModule = instantiate(node, _partial_=True)(source=source, split=None)
    dm.setup("test")
    return dm


def test_rows(ctx: dict[str, Any]) -> np.ndarray:
    """Stored-dataset row of every object of the test part (its ``index``)."""
    return np.asarray(ctx["test"]["arrays"]["index"])


# ---- shifts ------------------------------------------------------------------------------------------------
#: a shift: (check inputs of its pool of objects, the rows of that pool a batch is drawn from, row weights or None)
Shift = tuple[dict[str, Any], np.ndarray, np.ndarray | None]


def prior_shift(ctx: dict[str, Any]) -> Shift:
    """The test part drawn with 3× the weight of its rarest class (a class-prior shift, inputs unchanged)."""
    labels = ctx["test"]["labels"]
    counts = np.bincount(labels[labels >= 0], minlength=len(ctx["reference"].class_names))
    rare = int(np.argmin(np.where(counts > 0, counts, np.inf)))
    weights = np.where(labels == rare, 3.0, 1.0)
    return ctx["test"], np.arange(len(labels)), weights


def subset(ctx: dict[str, Any], keep: np.ndarray) -> Shift:
    return ctx["test"], np.flatnonzero(keep), None


def whole(inputs: dict[str, Any]) -> Shift:
    return inputs, np.arange(len(inputs["summaries"])), None


def sed_raw(ctx: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Raw magnitudes, errors (the preprocessing's bands) and metadata of the test objects."""
    dm = ctx["datamodule"]
    stored = [str(b) for b in dm.dataset.attrs.get("bands", [])]
    cols = [stored.index(b) for b in dm.preprocessing.bands]
    idx = test_rows(ctx)
    mag = dm.dataset.load("mag")[:, cols][idx].astype(np.float64)
    err = dm.dataset.load("mag_err")[:, cols][idx].astype(np.float64)
    return mag, err, dm.meta.iloc[idx].reset_index(drop=True)


def missing_band(ctx: dict[str, Any], band: str) -> Shift:
    """One band NaN before the SED preprocessing."""
    mag, err, meta = sed_raw(ctx)
    j = list(ctx["datamodule"].preprocessing.bands).index(band)
    mag[:, j] = np.nan
    err[:, j] = np.nan
    return whole(shifted_part(ctx, f"no_{band}", ctx["datamodule"].preprocessing(mag, err, meta)))


def sed_shifts(ctx: dict[str, Any], survey: str) -> dict[str, Callable[[], Shift]]:
    meta = ctx["datamodule"].meta.iloc[test_rows(ctx)].reset_index(drop=True)
    bands = list(ctx["datamodule"].preprocessing.bands)
    shifts: dict[str, Callable[[], Shift]] = {"class_prior_3x_rarest": lambda: prior_shift(ctx)}
    if survey == "hipparcos":
        v = sed_raw(ctx)[0][:, bands.index("johnson_v")]
        shifts["brightest_quartile_V"] = lambda: subset(ctx, v <= np.nanquantile(v, 0.25))
        shifts["V_lt_6"] = lambda: subset(ctx, v < 6.0)
        shifts["missing_band_B"] = lambda: missing_band(ctx, next(b for b in bands if b != "johnson_v"))
    else:
        ra, dec = meta["ra"].to_numpy(float), meta["dec"].to_numpy(float)
        shifts["sky_block_ra150-210_dec0-30"] = lambda: subset(ctx, (ra >= 150) & (ra < 210) & (dec >= 0) & (dec < 30))
        date = pd.to_datetime(meta["date"], errors="coerce")
        shifts["latest_date_tercile"] = lambda: subset(ctx, date >= date.quantile(2 / 3))
        shifts["missing_band_u"] = lambda: missing_band(ctx, bands[0])
    return shifts


def spectrum_noise(flux: np.ndarray, ivar: np.ndarray | None, snr: float, rng: np.random.Generator) -> tuple:
    """Flux with Gaussian noise added so that the median S/N per pixel is about ``snr``; the inverse variance
    updated (``None`` stays ``None``)."""
    sigma = np.nanmedian(np.abs(flux), axis=1, keepdims=True) / snr
    noisy = flux + rng.normal(size=flux.shape) * sigma
    if ivar is None:
        return noisy, None
    with np.errstate(divide="ignore"):
        var = np.where(ivar > 0, 1.0 / np.where(ivar > 0, ivar, 1.0), np.inf) + sigma**2
    return noisy, np.where(np.isfinite(var), 1.0 / var, 0.0)


def sim_spectra_shifts(ctx: dict[str, Any], seed: int) -> dict[str, Callable[[], Shift]]:
    source = instantiate(ctx["cfg"].datamodule.source)
    idx = test_rows(ctx)
    prep = ctx["datamodule"].preprocessing
    cache: dict[str, Any] = {}

    def raw() -> Any:
        if "sim" not in cache:
            sim = source.simulator.simulate(source.n, seed=source.seed)
            rv = sim.labels["rv"].to_numpy()[idx]
            cache["sim"] = (10.0**sim.log_wave, sim.flux[idx], None if sim.ivar is None else sim.ivar[idx],
                            None if sim.mask is None else sim.mask[idx], rv)  # fmt: skip
        return cache["sim"]

    def snr10() -> Shift:
        wave, flux, ivar, mask, rv = raw()
        noisy, ivar2 = spectrum_noise(flux, ivar, 10.0, np.random.default_rng(seed))
        return whole(shifted_part(ctx, "snr10", prep(wave, noisy, ivar=ivar2, mask=mask, rv=rv)))

    def wave_shift() -> Shift:
        wave, flux, ivar, mask, rv = raw()
        return whole(shifted_part(ctx, "wave75", prep(wave * (1 + 75.0 / C_KMS), flux, ivar=ivar, mask=mask, rv=rv)))

    def to_miles() -> Shift:
        return whole(other_data(ctx, datamodule_on(ctx, MilesSource(str(DATA / "miles")))))

    return {
        "class_prior_3x_rarest": lambda: prior_shift(ctx),
        "snr_10": snr10,
        "wavelength_shift_75kms": wave_shift,
        "simulated_to_MILES": to_miles,
    }


def miles_shifts(ctx: dict[str, Any], out: Path, seed: int) -> dict[str, Callable[[], Shift]]:
    """MILES shifts: MILES-format folders of the test stars with modified spectra, read by the model's datamodule
    (the source's DER_SNR noise and the model's preprocessing applied as to any folder)."""
    dm = ctx["datamodule"]
    names = dm.meta["object_id"].to_numpy()[test_rows(ctx)]

    def folder(tag: str, change: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> Shift:
        d = out / f"miles_{tag}"
        shutil.rmtree(d, ignore_errors=True)
        MilesSource(str(DATA / "miles")).write_subset(sorted(set(names)), d)
        with np.load(d / "miles_spectra.npz") as z:
            arrays = dict(z)
        arrays["wave_air_angstrom"], arrays["flux"] = change(arrays["wave_air_angstrom"], arrays["flux"])
        np.savez(d / "miles_spectra.npz", **arrays)
        return whole(other_data(ctx, datamodule_on(ctx, MilesSource(str(d)))))

    def snr10(w: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bad = ~np.isfinite(f) | (f == 0)
        noisy = spectrum_noise(np.where(bad, np.nan, f), None, 10.0, np.random.default_rng(seed))[0]
        return w, np.where(bad, f, noisy)

    return {
        "class_prior_3x_rarest": lambda: prior_shift(ctx),
        "snr_10": lambda: folder("snr10", snr10),
        "wavelength_shift_75kms": lambda: folder("wave75", lambda w, f: (w * (1 + 75.0 / C_KMS), f)),
    }


def fewer_epochs(ctx: dict[str, Any], padded: dict[str, np.ndarray], drop: float, seed: int) -> Shift:
    """Drop a fraction ``drop`` of the valid points of every light curve, then the model's preprocessing."""
    rng = np.random.default_rng(seed)
    mask = padded["mask"] | (rng.random(padded["mask"].shape) < drop)
    prep = ctx["datamodule"].preprocessing
    arrays = prep(padded["time"], padded["values"], padded["err"], padded["band"], mask)
    return whole(shifted_part(ctx, f"drop{int(drop * 100)}", arrays))


def lightcurve_shifts(ctx: dict[str, Any], survey: str, seed: int) -> dict[str, Callable[[], Shift]]:
    idx = test_rows(ctx)

    def raw() -> dict[str, np.ndarray]:
        if survey == "eros":
            rows, _ = ErosSource(str(DATA / "eros")).read()
            padded = pad_rows([rows[i] for i in idx])
            padded["mask"] = padded["mask"] | (padded["values"] >= 25.0)  # as ErosSource.build
            return padded
        source = instantiate(ctx["cfg"].datamodule.source)
        lc = source.simulator.simulate(source.n, seed=source.seed)
        return {"time": lc.time[idx], "values": lc.mag[idx], "err": lc.mag_err[idx], "band": lc.band[idx],
                "mask": lc.mask[idx]}  # fmt: skip

    cache: dict[str, Any] = {}

    def dropped(frac: float) -> Shift:
        cache.setdefault("raw", raw())
        return fewer_epochs(ctx, cache["raw"], frac, seed)

    return {
        "class_prior_3x_rarest": lambda: prior_shift(ctx),
        "fewer_epochs_drop50": lambda: dropped(0.5),
        "fewer_epochs_drop75": lambda: dropped(0.75),
    }


def shifts_of(model: Model, ctx: dict[str, Any], out: Path, seed: int) -> dict[str, Callable[[], Shift]]:
    if model.name == "hipparcos_sed":
        return sed_shifts(ctx, "hipparcos")
    if model.name == "sdss17_sed":
        return sed_shifts(ctx, "sdss17")
    if model.name == "sim_spectra":
        return sim_spectra_shifts(ctx, seed)
    if model.name == "miles_spectra":
        return miles_shifts(ctx, out, seed)
    return lightcurve_shifts(ctx, "eros" if model.name.startswith("eros") else "sim", seed)


# ---- batches -----------------------------------------------------------------------------------------------
def family(check: str) -> str:
    """The check family of an alert name in ``report["alerts"]``."""
    if check.startswith("performance:"):
        return "performance_labelled"
    return {
        "input_sketch": "sketch_mmd",
        "embedding": "embedding_mmd",
        "ood_fraction": "ood_fraction",
        "predicted_class": "prediction",
        "confidence": "prediction",
        "performance_estimate": "performance_estimate",
    }.get(check, "feature")


def one_batch(reference: TrainingReference, inputs: dict[str, Any], rows: np.ndarray, cfg: dict) -> dict[str, Any]:
    batch = batch_rows(inputs, rows)
    report = check_batch(reference, cfg=cfg, **batch)
    probs, labels = batch["probs"], batch["labels"]
    true_acc = None
    if probs is not None and labels is not None and (labels >= 0).any():
        ok = labels >= 0
        true_acc = float(np.mean(probs[ok].argmax(axis=1) == labels[ok]))
    fired = list(report["alerts"])
    return {
        "alert": report["alert"],
        "alert_label_free": any(family(a) != "performance_labelled" for a in fired),
        "fired": fired,
        "estimated_accuracy": report.get("performance_estimate", {}).get("accuracy"),
        "estimated_accuracy_std": report.get("performance_estimate", {}).get("accuracy_std"),
        "true_accuracy": true_acc,
    }


def draw(rng: np.random.Generator, pool: np.ndarray, size: int, weights: np.ndarray | None) -> np.ndarray:
    p = None if weights is None else weights[pool] / weights[pool].sum()
    return rng.choice(pool, size=size, replace=False, p=p)


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Alert rates (overall, label-free only, per family), the checks that fired, and the accuracy estimate's error."""
    n = len(records)
    fams = Counter(f for r in records for f in {family(a) for a in r["fired"]})
    checks = Counter(a for r in records for a in r["fired"])
    known = [r for r in records if r["true_accuracy"] is not None and r["estimated_accuracy"] is not None]
    err = np.array([r["estimated_accuracy"] - r["true_accuracy"] for r in known])
    sds = np.array([r["estimated_accuracy_std"] for r in known])
    out: dict[str, Any] = {
        "n_batches": n,
        "alert_rate": float(np.mean([r["alert"] for r in records])),
        "alert_rate_label_free": float(np.mean([r["alert_label_free"] for r in records])),
        "family_rate": {k: v / n for k, v in sorted(fams.items())},
        "fired": dict(checks.most_common(8)),
    }
    if len(err):
        out["accuracy_estimate"] = {
            "mean_true": float(np.mean([r["true_accuracy"] for r in known])),
            "mean_estimated": float(np.mean([r["estimated_accuracy"] for r in known])),
            "mean_error": float(err.mean()),
            "mean_abs_error": float(np.abs(err).mean()),
            "p95_abs_error": float(np.quantile(np.abs(err), 0.95)),
            "within_0.02": float(np.mean(np.abs(err) <= 0.02)),
            # the estimate's own 95% interval (Poisson-binomial sd): how often it holds the batch's true accuracy
            "mean_estimated_std": float(np.mean(sds)),
            "interval_95_coverage": float(np.mean(np.abs(err) <= 1.96 * sds)),
        }
    return out


def batches(
    name: str, reference: TrainingReference, shift: Shift, size: int, n: int, cfg: dict, seed: int
) -> dict[str, Any]:
    inputs, pool, weights = shift
    if len(pool) < size:
        return {"n_batches": 0, "skipped": f"only {len(pool)} objects in the pool, fewer than the batch of {size}"}
    rng = np.random.default_rng(seed)
    records = [
        one_batch(reference, inputs, draw(rng, pool, size, weights), cfg)
        for _ in tqdm(range(n), desc=f"{name} @{size}", leave=False)
    ]
    return {"pool": len(pool), **summarise(records)}


def monitor_settings() -> dict[str, Any]:
    """The thresholds of conf/monitor.yaml, as they are."""
    cfg = yaml.safe_load((REPO / "conf" / "monitor.yaml").read_text())
    return {k: cfg[k] for k in ("alpha", "min_effect", "mmd", "performance", "seed")}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def _rates(v: dict[str, Any]) -> str:
    """Table cells: alert rate, label-free alert rate, and the rate of each family that fired."""
    fams = ", ".join(f"{k} {_pct(x)}" for k, x in v["family_rate"].items()) or "none"
    return f"{_pct(v['alert_rate'])} | {_pct(v['alert_rate_label_free'])} | {fams} |"


def tables(results: dict[str, Any]) -> str:
    """The README's tables (Markdown) from a results JSON: models, false alarms, power, accuracy estimate."""
    models = {k: v for k, v in results.items() if k != "settings"}
    lines = [
        "| model | config (besides `paths`) | reference (val) | test part | reference accuracy / ECE | notes |",
        "|---|---|---|---|---|---|",
    ]
    for m, r in models.items():
        ovs = " ".join(f"`{o}`" for o in r["overrides"] if "data_dir" not in o and "n_jobs" not in o)
        ref = r["reference_metrics"]
        lines.append(
            f"| {m} | {ovs} | {r['n_reference']} | {r['n_test']} | {ref.get('accuracy', float('nan')):.3f} / "
            f"{ref.get('ece', float('nan')):.3f} | {r['note']} |"
        )
    lines += [
        "",
        "| model | batch | batches | alert rate | label-free checks only | families that fired (rate) |",
        "|---|---|---|---|---|---|",
    ]
    for m, r in models.items():
        for size, v in r["null"].items():
            lines.append(f"| {m} | {size} | {v['n_batches']} | {_rates(v)}")
    lines += [
        "",
        "| model | shift | batch | pool | detection rate | label-free checks only | families that fired (rate) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, r in models.items():
        for s_name, by_size in r["shifts"].items():
            for size, v in by_size.items():
                if not v.get("n_batches"):
                    lines.append(f"| {m} | {s_name} | {size} | – | n/a: {v['skipped']} | | |")
                    continue
                lines.append(f"| {m} | {s_name} | {size} | {v['pool']} | {_rates(v)}")
    lines += [
        "",
        "| model | batches | batch | true accuracy | estimated | mean error | mean abs. error | 95th pct abs. error "
        "| within 0.02 | estimate's sd | its 95% interval holds the truth |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in models.items():
        rows = [("in distribution", size, v) for size, v in r["null"].items()]
        rows += [(s_name, size, v) for s_name, d in r["shifts"].items() for size, v in d.items()]
        for label, size, v in rows:
            a = v.get("accuracy_estimate")
            if not a:
                continue
            lines.append(
                f"| {m} | {label} | {size} | {a['mean_true']:.3f} | {a['mean_estimated']:.3f} | {a['mean_error']:+.3f} "
                f"| {a['mean_abs_error']:.3f} | {a['p95_abs_error']:.3f} | {_pct(a['within_0.02'])} "
                f"| {a['mean_estimated_std']:.3f} | {_pct(a['interval_95_coverage'])} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 5 batches of 50 each (default model: hipparcos_sed)"
    )
    ap.add_argument("--models", nargs="*", default=None, help="model names (default: all)")
    ap.add_argument("--n-null", type=int, default=100, help="in-distribution batches per size")
    ap.add_argument("--n-shift", type=int, default=50, help="batches per shift and size")
    ap.add_argument("--out", type=Path, default=Path("/tmp/mon17"), help="run folders and the dataset store")
    ap.add_argument("--results", type=Path, default=None, help="results JSON (default: results/monitoring.json)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", nargs="*", default=[], help="overrides appended to every model's (e.g. a small n)")
    ap.add_argument("--tables", action="store_true", help="print the README tables of the results JSON and stop")
    args = ap.parse_args()
    if args.tables:
        print(tables(json.loads((args.results or RESULTS / "monitoring.json").read_text())))
        return
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    n_null, n_shift = (5, 5) if args.quick else (args.n_null, args.n_shift)
    wanted = args.models or (["hipparcos_sed"] if args.quick else [m.name for m in MODELS])
    cfg = monitor_settings()
    path = args.results or RESULTS / ("monitoring_quick.json" if args.quick else "monitoring.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() and args.models else {}
    results["settings"] = {"monitor": cfg, "n_null": n_null, "n_shift": n_shift, "seed": args.seed}
    chosen = [dataclasses.replace(m, overrides=m.overrides + args.extra) for m in MODELS if m.name in wanted]
    for model in chosen:
        if args.quick:  # a smoke run: small batches, so that small test parts (--extra datamodule.source.n=…) fit
            model = dataclasses.replace(model, sizes=(50,))
        t0 = time.time()
        ctx = train(model, args.out)
        reference = ctx["reference"]
        row: dict[str, Any] = {
            "overrides": model.overrides,
            "note": model.note,
            "train_s": round(ctx["train_s"], 1),
            "n_test": len(ctx["test"]["summaries"]),
            "n_reference": len(reference.summaries),
            "reference_metrics": {k: v for k, v in reference.metrics.items() if not isinstance(v, dict)},
            "test_accuracy": ctx["test_accuracy"],
            "null": {},
            "shifts": {},
        }
        for size in model.sizes:
            row["null"][str(size)] = batches(model.name, reference, whole(ctx["test"]), size, n_null, cfg, args.seed)
        for s_name, make in shifts_of(model, ctx, args.out, args.seed).items():
            shift = make()
            sizes = (200,) if s_name == "simulated_to_MILES" and not args.quick else model.sizes
            row["shifts"][s_name] = {
                str(size): batches(f"{model.name}:{s_name}", reference, shift, size, n_shift, cfg, args.seed + 1)
                for size in sizes
            }
        row["wall_s"] = round(time.time() - t0, 1)
        results[model.name] = row
        path.write_text(json.dumps(results, indent=1, default=float))
        rates = {k: v.get("alert_rate") for k, v in row["null"].items()}
        print(f"{model.name}: {row['wall_s']} s; in-distribution alert rate {rates}")
    print(f"written {path}")


if __name__ == "__main__":
    main()
