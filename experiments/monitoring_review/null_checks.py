"""In-distribution behaviour of the monitor's checks that the review of issue 17 fixed, on synthetic inputs whose
answer is known (every batch is drawn from the reference's own distribution, so every alert is a false alarm).

- ``ood_rate``: fraction of fresh in-distribution spectra (256 pixels) flagged out of distribution, against
  ``ood_alpha`` (0.01 and 0.05);
- ``sketch_mmd``: the input-sketch MMD's p-values on in-distribution batches of such spectra (uniform under the null);
- ``confidence``: the confidence KS distance of a confident classifier through a saved reference.

    PYTHONPATH=. python experiments/monitoring_review/null_checks.py --out experiments/monitoring_review/results/x.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from stellar.monitoring import TrainingReference, build_reference, check_batch, summarize


def spectra(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    flux = 1.0 + rng.normal(size=(n, 256)) * (0.2 / np.sqrt(np.arange(1, 257)))
    return {"flux": flux, "ivar": np.full((n, 256), 400.0), "mask": np.zeros((n, 256), bool)}


def confident(rng: np.random.Generator, n: int) -> np.ndarray:
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), rng.integers(0, 3, n)] += 25.0
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    start = time.time()
    out: dict = {"batches": args.batches}
    for alpha in (0.01, 0.05):
        rates = []
        for seed in range(5):
            rng = np.random.default_rng(seed)
            ref = build_reference(spectra(rng, 2000), n_components=16, ood_alpha=alpha, seed=seed)
            rates.append(float(ref.ood(spectra(rng, 5000))[1].mean()))
        out[f"ood_rate_alpha_{alpha}"] = {"mean": float(np.mean(rates)), "std": float(np.std(rates)), "seeds": rates}
    rng = np.random.default_rng(100)
    ref = build_reference(spectra(rng, 2000), n_components=16)
    for n in (200, 1000):
        p, alerts = [], 0
        for _ in range(args.batches):
            batch = spectra(rng, n)
            report = check_batch(ref, summarize(batch), arrays=batch)
            c = next(c for c in report["data_drift"]["checks"] if c["name"] == "input_sketch")
            p.append(c["p_value"])
            alerts += bool(report["alert"])
        out[f"sketch_mmd_batch_{n}"] = {
            "median_p": float(np.median(p)),
            "fraction_p_below_0.05": float(np.mean(np.array(p) < 0.05)),
            "alert_rate": alerts / args.batches,
        }
    arrays = {"mag": rng.normal(10, 1, (600, 3)), "features": rng.normal(size=(600, 3))}
    ref = build_reference(arrays, probs=confident(rng, 600), class_names=["a", "b", "c"])
    with tempfile.TemporaryDirectory() as d:
        ref.save(d)
        back = TrainingReference.load(d)
    ks = []
    for _ in range(args.batches):
        batch = {"mag": rng.normal(10, 1, (200, 3)), "features": rng.normal(size=(200, 3))}
        rep = check_batch(back, summarize(batch), probs=confident(rng, 200))
        ks.append(next(c["effect"] for c in rep["prediction_drift"]["checks"] if c["name"] == "confidence"))
    out["confidence_ks_batch_200"] = {"mean": float(np.mean(ks)), "max": float(np.max(ks))}
    out["wall_s"] = round(time.time() - start, 1)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
