"""The training reference: what every run and registered artifact keeps for the monitor to compare against.

It is computed on the validation part (the data the calibrators were fitted on, which the model did not train on,
so its confidences and embeddings are those of new data) and holds, for at most ``max_rows`` objects drawn with a
seed:

- the input summaries (:func:`~stellar.monitoring.summaries.summarize`);
- an input sketch: a principal-component basis of the standardised inputs (summaries, missing-value flags and, for
  spectra, the flux binned to at most :data:`MAX_PIXELS` pixels), with the thresholds of the two classical
  PCA-monitoring statistics (Hotelling's T² inside the basis, the squared prediction error Q outside it) at the
  ``1 - ood_alpha`` quantile, measured on the half of the reference the basis was *not* fitted on, then both scaled
  so that ``ood_alpha`` of that half exceeds either; every object's out-of-distribution score is
  ``max(T²/T²_q, Q/Q_q)`` and it is flagged when the score exceeds 1;
- the coordinates of the kept objects on the input sketch's components and the model's embeddings (the encoder
  output of a neural model, projected on their own principal components, when the model has an encoder), both
  for the held-out objects only, the basis-fitted ones being no sample of what new data look like;
- calibrated class probabilities (class priors, predicted-class distribution, confidence distribution) and the
  validation metrics (accuracy, macro F1, ECE after calibration; per regression target MAE, median error and
  calibrated 68% coverage).

It is written as one ``reference.npz`` (arrays, and the rest as a JSON string; no pickles) of a few hundred kB.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stellar.errors import StellarDataError
from stellar.monitoring.summaries import summarize

__all__ = ["REFERENCE_FILE", "InputSketch", "TrainingReference", "flux_block"]

REFERENCE_FILE = "reference.npz"
#: most flux pixels of a spectrum kept in the input sketch (binned down by averaging)
MAX_PIXELS = 256
FORMAT = 1


def flux_block(arrays: Mapping[str, Any]) -> np.ndarray | None:
    """The spectra of ``arrays`` (top level, or under ``spectrum`` for several modalities) binned to at most
    :data:`MAX_PIXELS` pixels, masked pixels (and absent spectra) at the continuum, 1; ``None`` without spectra."""
    sub: Any = arrays
    if "flux" not in arrays or "time" in arrays:
        sub = next((v for v in arrays.values() if isinstance(v, Mapping) and "flux" in v and "ivar" in v), None)
    if sub is None or "flux" not in sub or "time" in sub:
        return None
    flux = np.asarray(sub["flux"], dtype=np.float64)
    bad = np.asarray(sub["mask"], dtype=bool) if "mask" in sub else ~np.isfinite(flux)
    flux = np.where(bad | ~np.isfinite(flux), 1.0, flux)
    present = arrays.get("present")
    if isinstance(present, Mapping):
        for m, v in arrays.items():
            if v is sub and m in present:
                flux[~np.asarray(present[m], bool)] = 1.0
    k = flux.shape[1]
    step = int(np.ceil(k / MAX_PIXELS))
    usable = (k // step) * step
    return np.asarray(flux[:, :usable].reshape(len(flux), usable // step, step).mean(axis=2))  # 0 rows too


def halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows :meth:`InputSketch.fit` fits its basis on and the held-out rows it sets the thresholds on (a seeded
    split in halves; all rows for both when there are fewer than 20)."""
    order = np.random.default_rng(seed).permutation(n)
    return (order[: n // 2], order[n // 2 :]) if n >= 20 else (order, order)


@dataclasses.dataclass
class InputSketch:
    """A principal-component basis of standardised inputs, and the OOD thresholds measured on held-out rows."""

    columns: list[str]
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    t2_threshold: float
    q_threshold: float
    alpha: float
    #: the held-out rows the thresholds were set on, and how many of them the score flags (about ``alpha`` of them):
    #: the monitor tests a batch's flagged fraction against these counts, so a threshold set on few rows is not
    #: taken for an exact ``alpha``
    n_held: int = 0
    held_flagged: int = 0

    @classmethod
    def fit(cls, matrix: np.ndarray, columns: list[str], n_components: int, alpha: float, seed: int) -> InputSketch:
        """Fit on half of the rows, set the thresholds on the other half (all rows when there are fewer than 20)."""
        fit_rows, held = halves(len(matrix), seed)
        x = matrix[fit_rows]
        seen = np.isfinite(x).any(axis=0)  # a column with no value in the reference (a band never observed) stays 0
        mean, scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
        mean[seen], scale[seen] = np.nanmean(x[:, seen], axis=0), np.nanstd(x[:, seen], axis=0)
        scale = np.where(np.isfinite(scale) & (scale > 1e-9), scale, 1.0)
        z = np.nan_to_num((x - mean) / scale)
        k = max(1, min(int(n_components), z.shape[1], len(z) - 1))
        _, s, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
        variances = np.maximum(s[:k] ** 2 / max(len(z) - 1, 1), 1e-9)
        sketch = cls(columns, mean, scale, vt[:k], variances, 1.0, 1.0, float(alpha))
        t2, q = sketch.statistics(matrix[held])
        # floors: with as many components as columns nothing is left outside the basis (Q is round-off), and a
        # column constant in the reference has no variance: any change of it is then far outside
        floor = 1e-6 * z.shape[1]
        sketch.t2_threshold = max(float(np.quantile(t2, 1.0 - alpha)), floor)
        sketch.q_threshold = max(float(np.quantile(q, 1.0 - alpha)), floor)
        # an object is flagged when either exceeds its threshold: scale both so that the union, not each, holds
        # ``alpha`` of the held-out rows (each at its own quantile, up to 2 alpha were flagged)
        c = float(np.quantile(sketch.ood_score(matrix[held]), 1.0 - alpha))
        if np.isfinite(c) and c > 0:
            sketch.t2_threshold, sketch.q_threshold = sketch.t2_threshold * c, sketch.q_threshold * c
        sketch.n_held, sketch.held_flagged = len(held), int((sketch.ood_score(matrix[held]) > 1.0).sum())
        return sketch

    def standardise(self, matrix: np.ndarray) -> np.ndarray:
        return np.nan_to_num((np.asarray(matrix, np.float64) - self.mean) / self.scale)

    def project(self, matrix: np.ndarray) -> np.ndarray:
        """Coordinates on the principal components, in units of their reference standard deviations."""
        return (self.standardise(matrix) @ self.components.T) / np.sqrt(self.variances)

    def statistics(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hotelling's T² in the basis and the squared prediction error Q outside it, per row."""
        z = self.standardise(matrix)
        coords = z @ self.components.T
        t2 = (coords**2 / self.variances).sum(axis=1)
        q = ((z - coords @ self.components) ** 2).sum(axis=1)
        return t2, q

    def ood_score(self, matrix: np.ndarray) -> np.ndarray:
        """``max(T²/T²_q, Q/Q_q)`` per row: above 1 is outside the reference at level ``alpha``."""
        t2, q = self.statistics(matrix)
        return np.asarray(np.maximum(t2 / self.t2_threshold, q / self.q_threshold))


def input_matrix(
    summaries: pd.DataFrame, arrays: Mapping[str, Any], columns: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """The raw input sketch matrix: summary columns (in ``columns`` order when given), a missing flag per summary
    column, and the binned flux of spectra."""
    cols = (
        list(summaries.columns) if columns is None else [c for c in columns if not c.startswith(("missing:", "flux:"))]
    )
    values = summaries.reindex(columns=cols).to_numpy(dtype=np.float64)
    blocks = [values, (~np.isfinite(values)).astype(np.float64)]
    names = cols + [f"missing:{c}" for c in cols]
    flux = flux_block(arrays)
    width = sum(c.startswith("flux:") for c in columns or [])
    if flux is None and width:  # no spectrum in this batch (several modalities): the continuum, as absent ones
        flux = np.ones((len(values), width))
    if flux is not None:
        blocks.append(flux)
        names += [f"flux:{j}" for j in range(flux.shape[1])]
    matrix = np.hstack(blocks)
    if columns is not None and len(names) != len(columns):
        raise StellarDataError(f"inputs give {len(names)} sketch columns; the reference has {len(columns)}")
    return matrix, names


@dataclasses.dataclass
class TrainingReference:
    """What the monitor compares a batch against (see the module docstring); built by :func:`build_reference`."""

    summaries: pd.DataFrame
    sketch: InputSketch
    meta: dict[str, Any]
    probs: np.ndarray | None = None
    #: coordinates on the input sketch's components of the kept objects the basis was not fitted on (the fitted
    #: rows spread more along their own components than new objects do, which an MMD would take for drift)
    sketch_coords: np.ndarray | None = None
    embedding_basis: InputSketch | None = None
    embeddings: np.ndarray | None = None
    regression: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    # ---- derived views -----------------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names", []))

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.meta.get("metrics", {}))

    def input_sketch(self, summaries: pd.DataFrame, arrays: Mapping[str, Any]) -> np.ndarray:
        """The raw sketch matrix of new inputs, with the reference's columns."""
        return input_matrix(summaries, arrays, self.sketch.columns)[0]

    def ood(self, arrays: Mapping[str, Any], prep: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-distribution score and flag (score > 1) of every object of model inputs ``arrays``."""
        summaries = summarize(arrays, prep)
        score = self.sketch.ood_score(self.input_sketch(summaries, arrays))
        return score, score > 1.0

    # ---- storage -----------------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``folder/reference.npz`` (atomically: a temporary file, then a rename)."""
        path = Path(folder) / REFERENCE_FILE
        arrays: dict[str, np.ndarray] = {
            "summaries": self.summaries.to_numpy(dtype=np.float32),
            "sketch_mean": self.sketch.mean,
            "sketch_scale": self.sketch.scale,
            "sketch_components": self.sketch.components.astype(np.float32),
            "sketch_variances": self.sketch.variances,
        }
        if self.sketch_coords is not None:
            arrays["sketch_coords"] = self.sketch_coords.astype(np.float32)
        if self.probs is not None:
            arrays["probs"] = self.probs.astype(np.float32)
        if self.embedding_basis is not None and self.embeddings is not None:
            arrays.update(
                emb_mean=self.embedding_basis.mean,
                emb_scale=self.embedding_basis.scale,
                emb_components=self.embedding_basis.components.astype(np.float32),
                emb_variances=self.embedding_basis.variances,
                embeddings=self.embeddings.astype(np.float32),
            )
        for t, v in self.regression.items():
            arrays[f"regression:{t}"] = np.asarray(v, np.float32)
        header = {
            "format": FORMAT,
            "meta": self.meta,
            "summary_columns": list(self.summaries.columns),
            "sketch": {
                "columns": self.sketch.columns,
                "t2_threshold": self.sketch.t2_threshold,
                "q_threshold": self.sketch.q_threshold,
                "alpha": self.sketch.alpha,
                "n_held": self.sketch.n_held,
                "held_flagged": self.sketch.held_flagged,
            },
            "embedding": None
            if self.embedding_basis is None
            else {
                "columns": self.embedding_basis.columns,
                "t2_threshold": self.embedding_basis.t2_threshold,
                "q_threshold": self.embedding_basis.q_threshold,
                "alpha": self.embedding_basis.alpha,
                "n_held": self.embedding_basis.n_held,
                "held_flagged": self.embedding_basis.held_flagged,
            },
        }
        arrays["header"] = np.array(json.dumps(header, default=_json_default))
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        tmp = path.with_suffix(".npz.tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)
        return path

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainingReference:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        header = json.loads(str(a["header"]))
        if header.get("format") != FORMAT:
            raise StellarDataError(f"reference format {header.get('format')} is not {FORMAT}; retrain to refresh it")

        def basis(prefix: str, node: Mapping[str, Any]) -> InputSketch:
            return InputSketch(
                list(node["columns"]),
                a[f"{prefix}_mean"],
                a[f"{prefix}_scale"],
                a[f"{prefix}_components"].astype(np.float64),
                a[f"{prefix}_variances"],
                float(node["t2_threshold"]),
                float(node["q_threshold"]),
                float(node["alpha"]),
                int(node.get("n_held", 0)),
                int(node.get("held_flagged", 0)),
            )

        emb = header.get("embedding")
        return cls(
            summaries=pd.DataFrame(a["summaries"].astype(np.float64), columns=header["summary_columns"]),
            sketch=basis("sketch", header["sketch"]),
            meta=header["meta"],
            probs=a["probs"].astype(np.float64) if "probs" in a else None,
            sketch_coords=a["sketch_coords"].astype(np.float64) if "sketch_coords" in a else None,
            embedding_basis=basis("emb", emb) if emb else None,
            embeddings=a["embeddings"].astype(np.float64) if emb else None,
            regression={k.split(":", 1)[1]: v.astype(np.float64) for k, v in a.items() if k.startswith("regression:")},
        )

    @classmethod
    def load(cls, folder: str | Path) -> TrainingReference:
        """Read ``folder/reference.npz`` (a run folder); a clear error when the run has none."""
        path = Path(folder) / REFERENCE_FILE
        if not path.is_file():
            raise StellarDataError(
                f"{folder} has no {REFERENCE_FILE}: the run predates monitoring or had no validation part; "
                "retrain it (train.py writes the reference when there is a validation part)"
            )
        return cls.from_bytes(path.read_bytes())


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
