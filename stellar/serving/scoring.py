"""Catalogue scoring: every object of a table file or a dataset folder through a registered model, resumable.

Two kinds of input:

- a **table file** (``.csv``, ``.parquet``, ``.fits``/``.fit`` table), one object per row for spectra (a ``flux``
  array column — Parquet list or FITS vector — or numeric columns ``flux_0 … flux_{M-1}`` in a CSV; optional
  ``wavelength`` and ``flux_err`` the same way, and a scalar ``redshift``), or one *point* per row for light
  curves (long format: ``time``, ``mag`` or ``flux``, optional ``mag_err``/``flux_err`` and ``band``, grouped by
  the id column). Rows become requests of the modality's API and go through the very decode → preprocess →
  predict path the server runs, so a bad object gets its message in the ``error`` column instead of a prediction;
- a **dataset folder** that the model's training datamodule can read (``datamodule.data_dir``, e.g. MILES), read
  through the dataset store with the datamodule's own preprocessing.

Objects are scored ``chunk_size`` at a time; each chunk is written atomically to ``<output>.parts/`` and skipped
when the command is run again, so an interrupted run resumes where it stopped. The parts are then joined into
``output`` (CSV or Parquet): the id column, ``predicted_class``, ``p_<class>`` per class, ``<target>_mean`` and
``<target>_std``, ``valid_fraction``, ``ood_score`` and ``ood`` (against the model's training reference, for versions
that have one) and ``error``.

    python -m stellar.serving.scoring --model spectral_cnn --input catalogue.parquet --output scores.parquet
    python -m stellar.serving.scoring --model spectral_cnn --input ../shared/data/miles --output miles.csv
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stellar.errors import StellarConfigError, StellarDataError, StellarError, StellarValueError
from stellar.registry import DEFAULT_ROOT, LATEST, ModelRegistry

log = logging.getLogger(__name__)

_API = {"spectra": "SpectralAPI", "lightcurve": "LightCurveAPI", "sed": "SEDAPI"}


# ---- reading ---------------------------------------------------------------------------------------------------


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV, Parquet or FITS table as a DataFrame (FITS vector columns become arrays per cell)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(p)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(p)
    if suffix in (".fits", ".fit", ".fts"):
        from astropy.table import Table

        t = Table.read(p)
        return pd.DataFrame({c: list(np.asarray(t[c])) if t[c].ndim > 1 else np.asarray(t[c]) for c in t.colnames})
    raise StellarValueError(f"input={str(path)!r}: tables must be .csv, .parquet or .fits")


def _array_column(df: pd.DataFrame, name: str, required: bool) -> list[np.ndarray] | None:
    """Per-row arrays from an array column ``name`` or numeric columns ``name_0, name_1…``."""
    if name in df.columns:
        return [np.asarray(v, dtype=np.float64).ravel() for v in df[name]]
    wide = [c for c in df.columns if str(c).startswith(f"{name}_") and str(c)[len(name) + 1 :].isdigit()]
    if wide:
        wide.sort(key=lambda c: int(str(c)[len(name) + 1 :]))
        return list(df[wide].to_numpy(dtype=np.float64))
    if required:
        raise StellarDataError(f"the table has no {name!r} array column nor {name}_0… columns: {list(df.columns)}")
    return None


def _json_list(a: np.ndarray) -> list[float]:
    return [float(v) for v in a]  # NaN stays NaN: the request schema masks it


def spectral_requests(df: pd.DataFrame, id_column: str) -> Iterator[tuple[str, dict[str, Any]]]:
    flux = _array_column(df, "flux", True)
    wave = _array_column(df, "wavelength", False)
    err = _array_column(df, "flux_err", False)
    z = df["redshift"].to_numpy(float) if "redshift" in df.columns else None
    for i, oid in enumerate(df[id_column].astype(str)):
        body: dict[str, Any] = {"spectra": [_json_list(flux[i])]}  # type: ignore[index]
        if wave is not None:
            body["wavelengths"] = _json_list(wave[i])
        if err is not None:
            body["errors"] = [_json_list(err[i])]
        if z is not None and np.isfinite(z[i]):
            body["redshift"] = [float(z[i])]
        yield oid, body


def lightcurve_requests(df: pd.DataFrame, id_column: str) -> Iterator[tuple[str, dict[str, Any]]]:
    unit = "mag" if "mag" in df.columns else "flux" if "flux" in df.columns else None
    if unit is None or "time" not in df.columns:
        raise StellarDataError(f"a light-curve table needs 'time' and 'mag' or 'flux' columns: {list(df.columns)}")
    err_col = f"{unit}_err" if f"{unit}_err" in df.columns else None
    for oid, g in df.groupby(df[id_column].astype(str), sort=False):
        g = g.sort_values("time", kind="stable")
        body: dict[str, Any] = {"lightcurves": [_json_list(g[unit].to_numpy(float))], "unit": unit}
        body["times"] = _json_list(g["time"].to_numpy(float))
        if err_col:
            body["errors"] = [_json_list(g[err_col].to_numpy(float))]
        if "band" in g.columns:
            body["bands"] = [[str(b) for b in g["band"]]]
        yield str(oid), body


# ---- scoring ---------------------------------------------------------------------------------------------------


def _api_for(version: Any) -> Any:
    from stellar.serving import api as api_module

    name = _API.get(str(version.manifest.get("modality")))
    if name is None:
        raise StellarConfigError(f"{version.tag} has modality {version.manifest.get('modality')!r}; scorable: {_API}")
    a = getattr(api_module, name)(version.name, version.version, version.registry.root, api_path="/score")
    a.setup("cpu")
    if a.load_error:
        raise StellarDataError(a.load_error)
    return a


def _rows_of(api: Any, oids: Sequence[str], outputs: Sequence[Any]) -> list[dict[str, Any]]:
    from stellar.serving.api import Failure

    rows = []
    for oid, out in zip(oids, outputs, strict=True):
        row: dict[str, Any] = {"object_id": oid, "error": ""}
        if isinstance(out, Failure):
            row["error"] = out.detail
        else:
            row.update(_flatten(out[1][0]))
        rows.append(row)
    return rows


def _flatten(pred: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"predicted_class": pred.get("predicted_class"), "valid_fraction": pred["valid_fraction"]}
    if "ood_score" in pred:  # models with a training reference
        row["ood_score"], row["ood"] = pred["ood_score"], pred["ood"]
    row.update({f"p_{c}": p for c, p in pred["probabilities"].items()})
    for t, est in pred["targets"].items():
        row[f"{t}_mean"], row[f"{t}_std"] = est["mean"], est["std"]
    return row


def _score_requests(api: Any, items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    from pydantic import ValidationError

    from stellar.serving.api import Failure

    request_model = type(api).decode_request.__annotations__["request"]
    decoded: list[Any] = []
    for _, body in items:
        try:
            decoded.append(api.decode_request(request_model.model_validate(body)))
        except ValidationError as err:
            first = err.errors()[0]
            decoded.append(Failure(422, f"{'.'.join(map(str, first['loc']))}: {first['msg']}"))
    return _rows_of(api, [oid for oid, _ in items], api.predict(decoded))


def _job_key(source: str, version: Any, chunk: int) -> dict[str, Any]:
    p = Path(source)
    st = p.stat()
    return {
        "input": str(p.resolve()),
        "size": st.st_size,
        "mtime": st.st_mtime,
        "model": version.tag,
        "chunk": chunk,
    }


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def score(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    model: str,
    ref: str | int = LATEST,
    registry_root: str = DEFAULT_ROOT,
    id_column: str = "object_id",
    chunk_size: int = 256,
    progress: bool = True,
    store_root: str | None = None,
) -> pd.DataFrame:
    """Score every object of ``input`` with a registered model and write ``output``; returns the predictions.

    Parameters
    ----------
    input : path
        A table file (``.csv``, ``.parquet``, ``.fits``) or a dataset folder of the model's datamodule.
    output : path
        ``.csv`` or ``.parquet``; chunks go to ``<output>.parts/`` first (kept for resuming until the end).
    model, ref : str
        Registered model name and version/alias/``latest``.
    registry_root : str
        Registry root.
    id_column : str
        Column holding the object ids (tables).
    chunk_size : int
        Objects per chunk (the unit of resuming).
    progress : bool
        Show a tqdm progress bar.
    store_root : str, optional
        Dataset store for a dataset folder (default: the one in the model's training config).
    """
    from tqdm.auto import tqdm

    if int(chunk_size) < 1:
        raise StellarValueError(f"chunk_size must be >= 1; got {chunk_size}")
    out = Path(output)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise StellarValueError(f"output={str(output)!r} must end in .csv or .parquet")
    version = ModelRegistry(registry_root).get(model, ref)
    src = Path(input)
    if not src.exists():
        raise StellarValueError(f"input={str(input)!r} does not exist")
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    key = _job_key(str(src), version, int(chunk_size))
    job_file = parts / "_job.json"
    if job_file.is_file() and json.loads(job_file.read_text()) != key:
        raise StellarValueError(
            f"{parts} holds chunks of another job ({json.loads(job_file.read_text())}); remove it to start over"
        )
    job_file.write_text(json.dumps(key))

    if src.is_dir():
        chunks, n_objects = _folder_chunks(version, src, int(chunk_size), store_root)
    else:
        chunks, n_objects = _table_chunks(version, src, id_column, int(chunk_size))
    api = None
    n_chunks = -(-n_objects // int(chunk_size))
    done = 0
    with tqdm(total=n_objects, disable=not progress, unit="obj", desc=f"scoring with {version.tag}") as bar:
        for k, make_rows in enumerate(chunks):
            part = parts / f"part-{k:06d}.parquet"
            if part.is_file():  # finished before an interruption
                bar.update(len(pd.read_parquet(part, columns=["object_id"])))
                continue
            if api is None:
                api = _api_for(version)
            frame = pd.DataFrame(make_rows(api))
            _write_atomic(frame, part)
            done += 1
            bar.update(len(frame))
    files = [parts / f"part-{k:06d}.parquet" for k in range(n_chunks)]
    result = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()
    result = result.rename(columns={"object_id": id_column})
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    if out.suffix.lower() == ".csv":
        result.to_csv(tmp, index=False)
    else:
        result.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    for f in files:
        f.unlink()
    job_file.unlink()
    parts.rmdir()
    n_err = int((result["error"] != "").sum()) if "error" in result else 0
    log.info("scored %d objects (%d chunks computed now, %d failed) -> %s", len(result), done, n_err, out)
    return result


def _table_chunks(version: Any, src: Path, id_column: str, chunk_size: int) -> tuple[Iterator[Any], int]:
    df = read_table(src)
    if id_column not in df.columns:
        raise StellarDataError(f"id_column={id_column!r} is not a column of {src}: {list(df.columns)}")
    modality = version.manifest.get("modality")
    maker = lightcurve_requests if modality == "lightcurve" else spectral_requests
    ids = df[id_column].astype(str)
    unique = list(dict.fromkeys(ids)) if modality == "lightcurve" else list(ids)

    def chunks() -> Iterator[Any]:
        for s in range(0, len(unique), chunk_size):
            sel = unique[s : s + chunk_size]
            sub = df[ids.isin(set(sel))] if modality == "lightcurve" else df.iloc[s : s + chunk_size]
            yield lambda api, sub=sub: _score_requests(api, list(maker(sub, id_column)))

    return chunks(), len(unique)


def _folder_chunks(version: Any, src: Path, chunk_size: int, store_root: str | None) -> tuple[Iterator[Any], int]:
    """Rows of a dataset folder read by the model's own datamodule (through the dataset store)."""
    from hydra.utils import instantiate
    from omegaconf import open_dict

    cfg = version.training_config()
    with open_dict(cfg):
        cfg.datamodule.data_dir = str(src)
        if store_root:
            cfg.datamodule.store_root = str(store_root)
        if "source" in cfg.datamodule and "data_dir" in cfg.datamodule.source:
            cfg.datamodule.source.data_dir = str(src)
    dm = instantiate(cfg.datamodule, split=None)
    dm.setup("test")
    arrays = dm.arrays("test") if hasattr(dm, "arrays") else None
    if arrays is None:
        raise StellarDataError(f"the datamodule of {version.tag} cannot list its rows as arrays")
    ids = dm.meta["object_id"].astype(str).to_numpy()[dm.part("test").tensors["index"].numpy()]

    def chunks() -> Iterator[Any]:
        for s in range(0, len(ids), chunk_size):
            sel = {k: np.asarray(v)[s : s + chunk_size] for k, v in arrays.items()}

            def make(api: Any, sel: dict[str, np.ndarray] = sel, s: int = s) -> list[dict[str, Any]]:
                preds = api._predictions(sel)
                rows = zip(ids[s : s + chunk_size], preds, strict=True)
                return [{"object_id": i, "error": "", **_flatten(p)} for i, p in rows]

            yield make

    return chunks(), len(ids)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stellar.serving.scoring``; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m stellar.serving.scoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--ref", default=LATEST, help="version (3, v3), alias or 'latest'")
    p.add_argument("--input", required=True, help="table (.csv/.parquet/.fits) or dataset folder")
    p.add_argument("--output", required=True, help=".csv or .parquet")
    p.add_argument("--id-column", default="object_id")
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--root", default=None, help="registry root; or registry.root=…")
    args_in = list(sys.argv[1:] if argv is None else argv)
    root = next((a.split("=", 1)[1] for a in args_in if a.startswith("registry.root=")), None)
    args = p.parse_args([a for a in args_in if not a.startswith("registry.root=")])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        score(
            args.input,
            args.output,
            args.model,
            args.ref,
            args.root or root or os.environ.get("STELLAR_REGISTRY") or DEFAULT_ROOT,
            args.id_column,
            args.chunk_size,
        )
    except StellarError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
