"""evaluate.py through compose(): a trained run is rebuilt from its folder and scored; report files are complete."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from stellar.errors import StellarDataError
from stellar.pipelines import evaluate, train
from tests.pipelines.conftest import MILES

CLASSIFICATION_KEYS = {
    "accuracy",
    "macro_f1",
    "per_class",
    "mcc",
    "roc_auc_ovr",
    "pr_auc_ovr",
    "confusion_matrix",
    "ece_before",
    "ece_after",
    "brier_before",
    "brier_after",
}
REGRESSION_KEYS = {
    "mae",
    "rmse",
    "r2",
    "median_ae",
    "coverage_68",
    "coverage_95",
    "coverage_68_after",
    "coverage_95_after",
}


@pytest.fixture
def trained_run(make_cfg, tmp_path) -> Path:
    cfg = make_cfg("model=spectral_multitask", "debug=limit", "calibrator=temperature", "datamodule.source.n=160")
    train.run(cfg)
    return Path(cfg.paths.output_dir)


def _eval_cfg(make_cfg, tmp_path, run_dir, *overrides):
    return make_cfg(
        f"run_dir={run_dir}", f"paths.output_dir={tmp_path / 'eval'}", *overrides, name="evaluate", tiny=False
    )


def test_evaluate_rebuilds_the_run_and_writes_every_report_file(make_cfg, tmp_path, trained_run):
    evaluate.run(_eval_cfg(make_cfg, tmp_path, trained_run))
    out = tmp_path / "eval"
    on_disk = json.loads((out / "report.json").read_text())
    assert set(on_disk) >= {"classification", "regression", "meta"}
    assert set(on_disk["classification"]) >= CLASSIFICATION_KEYS
    assert set(on_disk["regression"]) == {"teff", "logg", "feh"}
    assert all(set(v) >= REGRESSION_KEYS for v in on_disk["regression"].values())
    assert on_disk["meta"]["calibrator"] == "TemperatureScaler"
    # the same numbers the training run reported on its test part
    summary = json.loads((trained_run / "metrics.json").read_text())["test_summary"]
    assert on_disk["classification"]["accuracy"] == pytest.approx(summary["classification"]["accuracy"])
    assert on_disk["regression"]["logg"]["mae"] == pytest.approx(summary["regression"]["logg"]["mae"], rel=1e-5)
    figures = {"confusion_matrix", "reliability", "roc", "precision_recall"} | {
        f"regression_{t}" for t in ("teff", "logg", "feh")
    }
    assert {p.stem for p in out.glob("*.png")} == figures
    html = (out / "report.html").read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', html)
    assert {name for name, _ in images} == figures
    for _, b64 in images:  # every inlined figure decodes as a real image
        assert Image.open(io.BytesIO(base64.b64decode(b64))).size[0] > 200
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["images"]) == {f"eval/{name}" for name in figures}


def test_roc_and_pr_legends_show_the_reported_areas(make_cfg, tmp_path, trained_run, monkeypatch):
    legends: dict[str, list[str]] = {}
    write = evaluate.write_report

    def spy(out_dir, report, figures):  # read the legends before write_report closes the figures
        for name in ("roc", "precision_recall"):
            legends[name] = [t.get_text() for t in figures[name].axes[0].get_legend().get_texts()]
        return write(out_dir, report, figures)

    monkeypatch.setattr(evaluate, "write_report", spy)
    evaluate.run(_eval_cfg(make_cfg, tmp_path, trained_run))
    cls = json.loads((tmp_path / "eval" / "report.json").read_text())["classification"]
    assert len(cls["class_names"]) > 2  # one curve per class
    for name, key, tag in (("roc", "roc_auc_ovr", "AUC"), ("precision_recall", "pr_auc_ovr", "PR-AUC")):
        shown = {m[1]: m[2] for t in legends[name] if (m := re.fullmatch(rf"(\S+) \({tag} ([\d.]+)\)", t))}
        assert shown == {c: f"{v:.3f}" for c, v in cls[key].items()}
        absent = set(cls["class_names"]) - set(cls[key])  # classes without positives in the test part
        assert {t.split(":")[0] for t in legends[name] if t.endswith("no curve")} == absent


def test_scores_every_object_of_another_folder(make_cfg, tmp_path, miles_dir):
    cfg = make_cfg(
        "experiment=miles_spectra",
        "model=spectral_multitask",
        MILES,
        "debug=limit",
        "calibrator=temperature",
        tiny=False,
    )
    train.run(cfg)
    other = tmp_path / "other_folder"
    shutil.copytree(miles_dir, other)
    report, _ = evaluate.run(
        _eval_cfg(make_cfg, tmp_path, cfg.paths.output_dir, f"datamodule.data_dir={other}", "split=none")
    )
    assert report["meta"]["n_scored"] == 43
    assert report["meta"]["split"] == "none"
    assert report["classification"]["n"] == sum(v["support"] for v in report["classification"]["per_class"].values())


def test_the_default_miles_model_scores_another_folder_with_calibrated_intervals(make_cfg, tmp_path, miles_dir):
    """``experiment=miles_spectra`` trains its default (the StarNet seed ensemble and the kernel ridge, weighed per
    head on val); evaluate.py scores every star of another MILES-format folder with the run's interval calibrator."""
    cfg = make_cfg("experiment=miles_spectra", MILES, "trainer.max_epochs=2", "logger=none", tiny=False)
    assert cfg.model.name == "spectral_starnet_kernel_ridge" and cfg.model.weighting == "validation"
    _, objs = train.run(cfg)
    assert set(objs["model"].weights) >= {"teff", "logg", "feh"}  # chosen on the validation part
    other = tmp_path / "other_folder"
    shutil.copytree(miles_dir, other)
    report, _ = evaluate.run(
        _eval_cfg(make_cfg, tmp_path, cfg.paths.output_dir, f"datamodule.data_dir={other}", "split=none")
    )
    assert report["meta"]["n_scored"] == 43 and report["meta"]["split"] == "none"
    for t in ("teff", "logg", "feh"):
        reg = report["regression"][t]
        assert reg["n"] > 30 and 0.0 <= reg["coverage_68_after"] <= reg["coverage_95_after"] <= 1.0
    saved = json.loads((Path(cfg.paths.output_dir) / "interval_calibrator.json").read_text())
    assert saved["type"] == "conformal"


def test_bad_run_dir(make_cfg, tmp_path):
    with pytest.raises(StellarDataError, match=r"no config\.yaml"):
        evaluate.run(_eval_cfg(make_cfg, tmp_path, tmp_path))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# appended to a copy of report.html: once the page (images included) has loaded, write what each <img> decoded to
IMAGE_PROBE = """<img alt="broken_control" src="data:image/png;base64,AAAA"/><script>
window.addEventListener("load", () => {
  const seen = Array.from(document.images).map((i) => {
    const box = i.getBoundingClientRect();
    const natural = [i.naturalWidth, i.naturalHeight];
    return {alt: i.alt, complete: i.complete, natural: natural, shown: [box.width, box.height]};
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(seen);
  document.body.appendChild(out);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> str:
    import subprocess

    assert CHROMIUM is not None
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_report_html_renders_headless(make_cfg, tmp_path, trained_run):
    import html as html_lib

    import numpy as np

    evaluate.run(_eval_cfg(make_cfg, tmp_path, trained_run))
    report = tmp_path / "eval" / "report.html"
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--window-size=1200,4000", f"--screenshot={shot}", report.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    # the figures are drawn: far below the tables the page is not blank
    lower = pixels[1500:3800]
    assert lower.std() > 20 and (lower < 128).mean() > 0.01

    # every figure, ROC and precision-recall included, is in the page and decodes to a drawn image
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", IMAGE_PROBE + "</body>"))
    dom = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run; Chromium printed {dom[:500]!r}"
    seen = {img["alt"]: img for img in json.loads(html_lib.unescape(found[1]))}
    assert set(seen) >= {"confusion_matrix", "reliability", "roc", "precision_recall", "broken_control"}
    assert seen.pop("broken_control")["natural"] == [0, 0]  # the probe tells a broken image from a drawn one
    for name, img in seen.items():
        assert img["complete"], name
        assert img["natural"][0] > 200 and img["natural"][1] > 200, (name, img)
        assert img["shown"][0] > 0 and img["shown"][1] > 0, (name, img)
