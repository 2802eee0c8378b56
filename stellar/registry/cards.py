"""What a registry version says about itself: the model card and the fingerprint of the data it was trained on."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any


def default_card(manifest: Mapping[str, Any]) -> str:
    """A short markdown model card from a manifest."""
    lines = [f"# {manifest.get('name')} v{manifest.get('version')}", ""]
    lines.append(f"- created: {manifest.get('created')} (stellar {manifest.get('code_version')})")
    if manifest.get("model_target"):
        lines.append(f"- model: `{manifest['model_target']}`, inputs {manifest.get('inputs')}")
    if manifest.get("class_names"):
        lines.append(f"- classes: {', '.join(manifest['class_names'])}")
    if manifest.get("targets"):
        lines.append(f"- regression targets: {', '.join(manifest['targets'])} (mean and standard deviation)")
    fp = manifest.get("data_fingerprint") or {}
    if fp:
        lines.append(f"- trained on: `{fp.get('dataset')}` (content hash `{str(fp.get('content_hash'))[:16]}`)")
    if manifest.get("calibrator"):
        lines.append(f"- calibration: {manifest['calibrator']} fitted on the validation part")
    summary = manifest.get("test_summary") or {}
    cls = summary.get("classification") or {}
    if cls:
        nan = float("nan")
        acc, f1 = cls.get("accuracy", nan), cls.get("macro_f1", nan)
        before, after = cls.get("ece_before", nan), cls.get("ece_after", nan)
        lines.append(
            f"- test: accuracy {acc:.3f}, macro-F1 {f1:.3f}, ECE {before:.3f} → {after:.3f} (n={cls.get('n')})"
        )
    for t, r in (summary.get("regression") or {}).items():
        lines.append(f"- test {t}: MAE {r.get('mae', float('nan')):.4g}, RMSE {r.get('rmse', float('nan')):.4g}")
    if manifest.get("run_dir"):
        lines.append(f"- run: `{manifest['run_dir']}`")
    lines += [
        "",
        "Limitations: trained on the dataset above; inputs far from it (other surveys, resolutions, wavelength or",
        "time coverage) are extrapolation. Probabilities are calibrated on the validation part only.",
    ]
    return "\n".join(lines) + "\n"


def fingerprint(dm: Any) -> dict[str, Any]:
    """What the model was trained on: dataset name and content hash, rows per part, hash of the training ids.

    Parameters
    ----------
    dm : datamodule
        The run's datamodule (its ``dataset``/``dataset_name``, ``split_result`` and ``meta`` are read if present).

    Returns
    -------
    dict
        ``dataset``, ``content_hash`` and, when the datamodule was split, ``rows`` per part and
        ``train_ids_sha256`` (SHA-256 of the sorted training ``object_id``s).
    """
    fp: dict[str, Any] = {}
    dataset = getattr(dm, "dataset", None)
    name = getattr(dm, "dataset_name", None) if dataset is None else dataset.name
    fp["dataset"] = name
    attrs = getattr(dataset, "attrs", {}) or {}
    fp["content_hash"] = attrs.get("content_hash")
    split = getattr(dm, "split_result", None)
    if split is not None:
        fp["rows"] = {k: len(v) for k, v in split.parts().items()}
        meta = getattr(dm, "meta", None)
        if meta is not None and "object_id" in meta:
            ids = sorted(str(x) for x in meta["object_id"].to_numpy()[split.train])
            fp["train_ids_sha256"] = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    return fp
