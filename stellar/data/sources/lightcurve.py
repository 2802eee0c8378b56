"""Sources of light-curve datasets: the simulator, EROS-2 two-band folders and Stripe 82 RR Lyrae folders.

Each source reads its input into padded ``(N, T)`` arrays (points of every band in one row, a band index per point)
and a metadata table, and passes them through the one :class:`LightCurvePreprocessing`; the stored fields are its
outputs (``time``, ``flux``, ``flux_err``, ``band``, ``mask``, ``period``, ``features``). Human annotations of
the surveys (EROS ``quality`` and ``div_period``) stay in the metadata table and never reach a model input.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd

from stellar.data.labels import EROS_TYPES, RR_LYRAE_TYPES
from stellar.data.preprocess.lightcurve_inputs import LightCurvePreprocessing, band_indices
from stellar.data.sources.base import digest, simulated_meta
from stellar.errors import StellarDataError
from stellar.utils import urls

log = logging.getLogger(__name__)

LIGHTCURVE_UNITS = {
    "time": "d",
    "flux": "mag",
    "flux_err": "mag",
    "band": "",
    "mask": "",
    "period": "d",
    "features": "",
}


def pad_rows(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Ragged per-object arrays (``time``, ``values``, ``err``, ``band``) → padded (N, T) arrays and a mask."""
    if not rows:
        raise StellarDataError("no light curves to pad")
    width = max(max(len(r["time"]) for r in rows), 1)
    out = {
        "time": np.zeros((len(rows), width)),
        "values": np.zeros((len(rows), width)),
        "err": np.ones((len(rows), width)),
        "band": np.zeros((len(rows), width), np.int64),
        "mask": np.ones((len(rows), width), bool),
    }
    for i, r in enumerate(rows):
        k = len(r["time"])
        for key in ("time", "values", "err", "band"):
            out[key][i, :k] = r[key]
        out["mask"][i, :k] = False
    return out


def _write_kwargs(
    padded: dict[str, np.ndarray], meta: pd.DataFrame, prep: LightCurvePreprocessing, provenance: dict[str, Any]
) -> dict[str, Any]:
    arrays = prep(padded["time"], padded["values"], padded["err"], padded["band"], padded["mask"])
    empty = arrays["mask"].all(axis=1)
    if empty.any():
        log.warning("%d light curve(s) have no valid point left: %s", empty.sum(), meta["object_id"][empty].tolist())
    return {
        "arrays": arrays,
        "meta": meta.reset_index(drop=True),
        "modality": "lightcurve",
        "units": LIGHTCURVE_UNITS,
        "provenance": provenance,
        # bands and feature names are attributes (zarr v3 has no stable fixed-width string arrays)
        "attrs": {"preprocessing": prep.to_dict(), "bands": list(prep.bands), "feature_names": prep.feature_names()},
    }


@dataclasses.dataclass
class SimulatedLightCurveSource:
    """``n`` light curves from :class:`~stellar.data.simulate.lightcurve.LightCurveSimulator`, seeded, with sky
    positions uniform on the sphere. Its ``bands`` must be those of the preprocessing."""

    n: int = 3000
    seed: int = 0
    simulator: Any = None

    def _sim(self) -> Any:
        from stellar.data.simulate.lightcurve import LightCurveSimulator

        return self.simulator if self.simulator is not None else LightCurveSimulator()

    def _params(self) -> dict[str, Any]:
        return {"n": self.n, "seed": self.seed, "simulator": dataclasses.asdict(self._sim())}

    def dataset_name(self, preprocessing: dict[str, Any]) -> str:
        return f"sim_lightcurves-{digest(self._params(), preprocessing)}"

    def build(self, preprocessing: LightCurvePreprocessing) -> dict[str, Any]:
        sim = self._sim()
        if tuple(sim.bands) != preprocessing.bands:
            raise StellarDataError(
                f"simulator bands {tuple(sim.bands)} differ from the preprocessing bands {preprocessing.bands}"
            )
        lc = sim.simulate(self.n, seed=self.seed)
        meta = simulated_meta("simlc", self.n, self.seed, stream=2)
        meta = pd.concat([meta, lc.labels.reset_index(drop=True)], axis=1)
        padded = {"time": lc.time, "values": lc.mag, "err": lc.mag_err, "band": lc.band, "mask": lc.mask}
        return _write_kwargs(padded, meta, preprocessing, {"source": "simulator", **self._params()})


def _float_list(cell: Any) -> np.ndarray:
    """A JSON-like list cell ``"[1.0, 2.5, …]"`` → float array (faster than literal_eval for 3k×10 cells)."""
    s = str(cell).strip().strip("[]").strip()
    return np.asarray(s.split(","), dtype=float) if s else np.zeros(0)


@dataclasses.dataclass
class ErosSource:
    """An EROS-2 folder: every pair ``<name>.csv`` + ``<name>_varlength_features.csv.gz`` in ``data_dir``.

    Bands ``b`` (blue) and ``r`` (red), about 120 epochs each. Labels: ``type`` (1–4) mapped by
    :data:`~stellar.data.labels.EROS_TYPES` to ``var_class``; ``period`` / ``div_period`` becomes the label
    ``period`` (the catalogue period is often a multiple of the true one); ``quality`` and ``div_period`` are
    human annotations kept in the table only. A magnitude of 25.0 stands for a missing one. Sky positions come
    from the sexagesimal columns; ``patch_id`` (the EROS field patch) is kept as a split group.
    """

    data_dir: str

    def _pairs(self) -> list[tuple[str, str]]:
        """``(<name>.csv, <name>_varlength_features.csv.gz)`` paths or URLs of the folder, sorted."""
        d = self.data_dir
        if not urls.is_dir(d):
            raise StellarDataError(f"data_dir: EROS folder {d!r} is not a folder")
        pairs = []
        for var in urls.glob(d, "*_varlength_features.csv.gz"):
            static = urls.join(d, urls.basename(var).removesuffix("_varlength_features.csv.gz") + ".csv")
            if not urls.is_file(static):
                raise StellarDataError(f"{urls.basename(var)} has no matching {urls.basename(static)} in {d}")
            pairs.append((static, var))
        if not pairs:
            raise StellarDataError(
                f"data_dir: EROS folder {d!r} holds no <name>.csv + <name>_varlength_features.csv.gz pair"
            )
        return pairs

    def dataset_name(self, preprocessing: dict[str, Any]) -> str:
        files = [urls.read_bytes(p) for pair in self._pairs() for p in pair]
        return f"eros-{digest(*files, preprocessing)}"

    def read(self) -> tuple[list[dict[str, np.ndarray]], pd.DataFrame]:
        rows: list[dict[str, np.ndarray]] = []
        tables = []
        for static_path, var_path in self._pairs():
            static_name, var_name = urls.basename(static_path), urls.basename(var_path)
            with urls.open_url(static_path) as f:
                static = pd.read_csv(f)
            with urls.open_url(var_path, compression="infer") as f:
                var = pd.read_csv(f)
            if len(static) != len(var):
                raise StellarDataError(f"{static_name} has {len(static)} rows but {var_name} {len(var)}")
            need = [f"{k}_points_{b}" for k in ("time", "light", "error") for b in "br"]
            missing = [c for c in need if c not in var.columns]
            if missing:
                raise StellarDataError(f"{var_name} lacks columns {missing}")
            for _, r in var.iterrows():
                parts = [(_float_list(r[f"time_points_{b}"]), _float_list(r[f"light_points_{b}"]),
                          _float_list(r[f"error_points_{b}"]), k) for k, b in enumerate("br")]  # fmt: skip
                for t, v, e, _ in parts:
                    if not len(t) == len(v) == len(e):
                        raise StellarDataError(f"{var_name} row {r.iloc[0]}: time/light/error lengths differ")
                rows.append(
                    {
                        "time": np.concatenate([p[0] for p in parts]),
                        "values": np.concatenate([p[1] for p in parts]),
                        "err": np.concatenate([p[2] for p in parts]),
                        "band": np.concatenate([np.full(len(p[0]), p[3]) for p in parts]),
                    }
                )
            static["source_file"] = static_name
            tables.append(static)
        return rows, pd.concat(tables, ignore_index=True)

    def build(self, preprocessing: LightCurvePreprocessing) -> dict[str, Any]:
        if preprocessing.bands != ("b", "r"):
            raise StellarDataError(
                f"EROS light curves have bands ('b', 'r'); the preprocessing has {preprocessing.bands}"
            )
        rows, t = self.read()
        padded = pad_rows(rows)
        # 25.0 (and 99-type sentinels) stand for a missing magnitude: masked, counted
        sentinel = padded["values"] >= 25.0
        if sentinel[~padded["mask"]].any():
            log.info("EROS: masking %d sentinel magnitudes (>= 25)", int((sentinel & ~padded["mask"]).sum()))
        padded["mask"] = padded["mask"] | sentinel
        ids = t.iloc[:, 0].astype(str) if "Unnamed: 0" in t.columns else t.index.astype(str)
        sign = np.where(t["dec_d"].astype(float) < 0, -1.0, 1.0)
        dec = sign * (t["dec_d"].abs() + t["dec_m"] / 60.0 + t["dec_s"] / 3600.0)
        ra = 15.0 * (t["asc_d"] + t["asc_m"] / 60.0 + t["asc_s"] / 3600.0)
        etype = t["type"].astype("Int64") if "type" in t.columns else pd.Series(pd.NA, index=t.index, dtype="Int64")
        with np.errstate(all="ignore"):
            period = t["period"].astype(float) / t["div_period"].astype(float) if "div_period" in t else np.nan
        meta = pd.DataFrame(
            {
                "object_id": ("eros-" + ids).to_numpy(),
                "obs_id": ("eros-" + ids).to_numpy(),
                "survey": "eros",
                "ra": ra.to_numpy(dtype=float),
                "dec": dec.to_numpy(dtype=float),
                "patch_id": t["patch_id"].astype("Int64").astype(str).to_numpy(),
                "eros_type": etype.astype(float).to_numpy(),
                "var_class": [EROS_TYPES.get(int(v), "") if pd.notna(v) else "" for v in etype],
                "period": np.asarray(period, dtype=float),
                "catalogue_period": t["period"].astype(float).to_numpy(),
                "quality": t["quality"].astype(float).to_numpy() if "quality" in t else np.nan,
                "div_period": t["div_period"].astype(float).to_numpy() if "div_period" in t else np.nan,
                "source_file": t["source_file"].to_numpy(),
            }
        )
        kwargs = _write_kwargs(padded, meta, preprocessing, {"source": "eros", "data_dir": urls.display(self.data_dir)})
        _add_amplitude(kwargs, preprocessing, "r")
        return kwargs


def _add_amplitude(kwargs: dict[str, Any], prep: LightCurvePreprocessing, band: str) -> None:
    """``amplitude`` label (mag, half the 5–95 percentile range in ``band``) from the stored features."""
    names = prep.feature_names()
    kwargs["meta"]["amplitude"] = kwargs["arrays"]["features"][:, names.index(f"{band}_amplitude")].astype(float)


@dataclasses.dataclass
class SesarRRLyraeSource:
    """A Stripe 82 RR Lyrae folder (Sesar et al. 2010): ``periods.csv`` (``Num, Type, Per``) and
    ``light-curves/<Num>.csv`` (``time`` MJD, ``mag``, ``magerr``, ``band`` in u g r i z).

    Labels: ``var_class`` ``rr_lyrae_ab`` or ``rr_lyrae_c``, ``period`` (d), ``amplitude`` (r band). Stripe 82 lies
    on the celestial equator; the files carry no positions, so ``ra``/``dec`` are NaN and splits group by star.
    """

    data_dir: str

    def _files(self) -> tuple[str, list[str]]:
        """The paths or URLs of ``periods.csv`` and of every ``light-curves/*.csv`` (sorted)."""
        periods, curves = urls.join(self.data_dir, "periods.csv"), urls.join(self.data_dir, "light-curves")
        if not urls.is_file(periods) or not urls.is_dir(curves):
            raise StellarDataError(
                f"data_dir: Sesar folder {self.data_dir!r} needs periods.csv and a light-curves/ folder"
            )
        return periods, urls.glob(curves, "*.csv")

    def dataset_name(self, preprocessing: dict[str, Any]) -> str:
        periods, curves = self._files()
        files = [urls.read_bytes(periods), *[urls.read_bytes(c) for c in curves]]
        return f"sesar_rrlyrae-{digest(*files, preprocessing)}"

    def build(self, preprocessing: LightCurvePreprocessing) -> dict[str, Any]:
        periods_path, curves = self._files()
        with urls.open_url(periods_path) as f:
            periods = pd.read_csv(f)
        for col in ("Num", "Type", "Per"):
            if col not in periods.columns:
                raise StellarDataError(f"{periods_path} lacks column {col!r} (needs Num, Type, Per)")
        by_num = {urls.basename(c).removesuffix(".csv"): c for c in curves}
        missing = [str(n) for n in periods["Num"] if str(n) not in by_num]
        if missing:
            log.warning(
                "Sesar: %d star(s) in periods.csv have no light curve and are dropped: %s", len(missing), missing
            )
        periods = periods[[str(n) in by_num for n in periods["Num"]]].reset_index(drop=True)
        rows = []
        for num in periods["Num"]:
            with urls.open_url(by_num[str(num)]) as f:
                lc = pd.read_csv(f)
            rows.append(
                {
                    "time": lc["time"].to_numpy(float),
                    "values": lc["mag"].to_numpy(float),
                    "err": lc["magerr"].to_numpy(float),
                    "band": band_indices(lc["band"].astype(str).str.strip(), preprocessing.bands),
                }
            )
        ids = "sesar-" + periods["Num"].astype(str)
        meta = pd.DataFrame(
            {
                "object_id": ids.to_numpy(),
                "obs_id": ids.to_numpy(),
                "survey": "sdss_stripe82",
                "ra": np.nan,
                "dec": np.nan,
                "var_class": [RR_LYRAE_TYPES.get(str(v).strip(), "") for v in periods["Type"]],
                "period": periods["Per"].to_numpy(float),
            }
        )
        prov = {"source": "sesar_rrlyrae", "data_dir": urls.display(self.data_dir)}
        kwargs = _write_kwargs(pad_rows(rows), meta, preprocessing, prov)
        _add_amplitude(kwargs, preprocessing, "r")
        return kwargs
