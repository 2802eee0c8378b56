"""Choose the neural model on the VALIDATION parts only: each variant trained once per fold (seed 7) by ``train.run``
exactly as ``python train.py experiment=miles_spectra split=group_kfold split.fold=K ...``, then scored on its
validation part (fold K+1), raw outputs (no calibration), test part never scored (``test=false``).

Run from the repository root (results in ``results/select_neural.json``)::

    PYTHONPATH=. python experiments/miles_spectra/select_neural.py --data-dir ../shared/data/miles
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from experiments.miles_spectra.five_fold import print_table
from stellar.pipelines.common import predict, score_outputs
from stellar.pipelines.train import run

REPO = Path(__file__).resolve().parents[2]
BASE = ["experiment=miles_spectra", "split=group_kfold", "split.base.seed=7", "seed=7", "test=false", "logger=none",
        "callbacks.progress_bar=null"]  # fmt: skip
#: the candidates, fixed before any run: StarNet with and without the continuum channel, and the project's CNN
VARIANTS = {
    "spectral_starnet": ["model=spectral_starnet", "trainer.max_epochs=60"],
    "spectral_starnet, no continuum channel": [
        "model=spectral_starnet",
        "trainer.max_epochs=60",
        "datamodule.preprocessing.continuum_channel=false",
    ],
    "spectral_multitask": ["model=spectral_multitask", "trainer.max_epochs=60"],
}


def val_columns(overrides: list[str]) -> dict[str, float]:
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=overrides)
    _, objs = run(cfg)
    model, dm = objs["model"], objs["datamodule"]
    rep = score_outputs(predict(objs["trainer"], model, dm, "val"), dm, model.class_names, model.targets, None)
    reg = rep["regression"]
    return {"logg_mae": reg["logg"]["mae"], "teff_median_ae": reg["teff"]["median_ae"], "teff_mae": reg["teff"]["mae"],
            "feh_mae": reg["feh"]["mae"], "mk_accuracy": rep["classification"]["accuracy"]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data/miles")
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "select_neural.json"))
    args = ap.parse_args()
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.exists() else {}
    tmp = Path(tempfile.mkdtemp())
    for name in args.variants:
        rows = []
        for fold in args.folds:
            ovr = [*BASE, *VARIANTS[name], f"datamodule.data_dir={args.data_dir}", f"split.fold={fold}",
                   f"paths.output_dir={tmp / f'{len(saved)}_{fold}'}", f"paths.log_dir={tmp}"]  # fmt: skip
            rows.append(val_columns(ovr))
            print(name, fold, json.dumps(rows[-1]), flush=True)
        saved[name] = {"folds": args.folds, "overrides": VARIANTS[name], "rows": rows}
        out.write_text(json.dumps(saved, indent=1))
    print("validation parts (fold K+1 of each split):")
    print_table({name: r["rows"] for name, r in saved.items()})


if __name__ == "__main__":
    main()
