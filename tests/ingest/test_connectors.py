"""Each connector against the replay server answering with recorded service payloads; the CLI entry points."""

from __future__ import annotations

import io
import sys
import types
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from stellar.data.ingest.gaia import GaiaConnector
from stellar.data.ingest.lightcurves import MASTLightCurveConnector
from stellar.data.ingest.manifest import Manifest
from stellar.data.ingest.policy import FetchPolicy
from stellar.data.ingest.replay import FaultPlan, ReplayServer
from stellar.data.ingest.runner import ingest
from stellar.data.ingest.sdss import SDSSConnector
from stellar.data.ingest.simbad import SimbadConnector
from stellar.data.store import DatasetStore
from stellar.errors import StellarConfigError, StellarValueError
from stellar.pipelines.ingest import run
from stellar.store import main as store_main
from tests.ingest.conftest import RAW, SPEC_SMALL

REPO = Path(__file__).resolve().parents[2]
GAIA_VOT = (RAW / "gaia" / "1714556098855O-result.vot").read_bytes()
GAIA_ID = "5929246508730155392"


def _route(path: str, params: dict[str, str]) -> tuple[bytes, str] | None:
    if path.endswith("/tap/sync"):
        return GAIA_VOT, "application/x-votable+xml"
    if path.endswith("/sim-tap/sync"):
        return (RAW / "simbad" / "simbad_M1.vot").read_bytes(), "application/x-votable+xml"
    if path.endswith("/SqlSearch"):
        return (RAW / "sdss_skyserver" / "xid_sp.txt").read_bytes(), "text/plain"
    if path.endswith("spec-0751-52251-0160.fits"):
        return SPEC_SMALL, "application/fits"
    if path.endswith("/Download/file") and params.get("uri", "").endswith("kplr011442793-2010009091648_llc.fits"):
        return (RAW / "kepler" / "kplr011442793-2010009091648_llc.fits").read_bytes(), "application/fits"
    return None


@pytest.fixture
def server():
    with ReplayServer(_route, FaultPlan(rate=0.3, seed=5, stall_s=1.5, retry_after="0")) as srv:
        yield srv


def _run(conn, targets: pd.DataFrame, tmp_path: Path, fast_policy: FetchPolicy, make_fetcher):
    store = DatasetStore(tmp_path / "store")
    rep = ingest(
        conn, targets, store=store, fetcher=make_fetcher(fast_policy), manifest=Manifest(tmp_path / "m"), progress=False
    )
    return rep, store


def test_gaia_by_source_id_chunks(server, tmp_path, fast_policy, make_fetcher) -> None:
    conn = GaiaConnector(tap_url=server.url + "/tap", chunk_size=2)
    targets = pd.DataFrame({"source_id": [GAIA_ID, "1", "2"]})
    assert [t.targets for t in conn.plan(targets)] == [[GAIA_ID, "1"], ["2"]]
    rep, store = _run(conn, targets, tmp_path, fast_policy, make_fetcher)
    assert rep.failed == {"1": "source_id 1 not in gaiadr3.gaia_source", "2": "source_id 2 not in gaiadr3.gaia_source"}
    ds = store.open(rep.datasets[0])
    assert list(ds.meta["object_id"]) == [f"gaia-dr3-{GAIA_ID}"] and ds.load("mag").shape == (1, 3)
    # the ADQL went to the sync endpoint as a POST form
    assert all(k.startswith("/tap/sync?") and "gaiadr3.gaia_source" in k for k, _, _ in server.log.entries)


def test_simbad_by_name(server, tmp_path, fast_policy, make_fetcher) -> None:
    conn = SimbadConnector(tap_url=server.url + "/sim-tap")
    rep, store = _run(conn, pd.DataFrame({"name": ["M1"]}), tmp_path, fast_policy, make_fetcher)
    meta = store.open(rep.datasets[0]).meta
    assert meta.loc[0, "main_id"] == "M 1" and meta.loc[0, "matched_id"] == "M1"
    assert meta.loc[0, "otype"] == ""  # the recorded answer has no otype column: nothing is guessed


def test_sdss_by_specobjid_resolves_through_skyserver(server, tmp_path, fast_policy, make_fetcher) -> None:
    conn = SDSSConnector(sas_url=server.url + "/sas", skyserver_url=server.url + "/SqlSearch")
    rep, _ = _run(conn, pd.DataFrame({"specobjid": ["845594848269461504"]}), tmp_path, fast_policy, make_fetcher)
    assert rep.n_failed == 0
    paths = [k for k, _, o in server.log.entries if o == "ok"]
    assert any(
        p.startswith("/sas/dr17/sdss/spectro/redux/26/spectra/lite/0751/spec-0751-52251-0160.fits") for p in paths
    )


def test_kepler_by_data_uri(server, tmp_path, fast_policy, make_fetcher) -> None:
    uri = "mast:Kepler/url/missions/kepler/lightcurves/0114/011442793/kplr011442793-2010009091648_llc.fits"
    conn = MASTLightCurveConnector(mission="kepler", download_url=server.url + "/api/v0.1/Download/file")
    rep, store = _run(
        conn, pd.DataFrame({"target": ["KIC 11442793"], "data_uri": [uri]}), tmp_path, fast_policy, make_fetcher
    )
    ds = store.open(rep.datasets[0])
    assert ds.meta.loc[0, "object_id"] == "kic-11442793" and ds.meta.loc[0, "segments"] == "4"
    with pytest.raises(StellarValueError, match="mission"):
        MASTLightCurveConnector(mission="galex")


def test_targets_need_their_columns() -> None:
    with pytest.raises(StellarValueError, match="needs plate/mjd/fiber or specobjid or ra/dec"):
        SDSSConnector().plan(pd.DataFrame({"name": ["x"]}))
    with pytest.raises(StellarValueError, match="duplicate target ids"):
        GaiaConnector().plan(pd.DataFrame({"source_id": ["1", "1"]}))


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="ingest", overrides=list(overrides))


def test_cli_input_dir_then_store_summary_and_csv(tmp_path: Path) -> None:
    cfg = _cfg(
        f"input_dir={RAW / 'sdss'}", f"store={tmp_path / 'store'}", f"cache_dir={tmp_path / 'cache'}", "progress=false"
    )
    with redirect_stdout(io.StringIO()):
        metrics, _ = run(cfg)
    assert metrics["n_done"] == 2 and len(metrics["datasets"]) == 1
    out = io.StringIO()
    with redirect_stdout(out):
        store_main([str(tmp_path / "store")])
    assert "modality=spectra" in out.getvalue() and "field flux" in out.getvalue()
    out = io.StringIO()
    with redirect_stdout(out):
        store_main([str(tmp_path / "store"), "--csv"])
    df = pd.read_csv(io.StringIO(out.getvalue()))
    assert {"object_id", "survey", "class", "subclass", "z"} <= set(df.columns)
    assert df.set_index("object_id").loc["sdss-4455-55539-0692", "subclass"] == "WDhotter"


def test_cli_survey_config_and_errors(tmp_path: Path, server) -> None:
    targets = tmp_path / "t.csv"
    pd.DataFrame({"name": ["M1"]}).to_csv(targets, index=False)
    cfg = _cfg(
        "survey=simbad",
        f"targets={targets}",
        f"store={tmp_path / 'store'}",
        f"cache_dir={tmp_path / 'c'}",
        f"surveys.simbad.connector.tap_url={server.url}/sim-tap",
        "progress=false",
        "policy.timeout_s=1.0",
        "policy.backoff_base_s=0.01",
    )
    assert cfg.policy.concurrency == 2  # the survey's own limit
    with redirect_stdout(io.StringIO()):
        metrics, _ = run(cfg)
    assert metrics["n_done"] == 1
    with pytest.raises(StellarConfigError, match="exactly one of"):
        run(_cfg(f"store={tmp_path / 'store'}"))


def test_kepler_search_goes_through_lightkurve_and_the_cache(
    server, tmp_path, fast_policy, make_fetcher, monkeypatch
) -> None:
    uri = "mast:Kepler/url/missions/kepler/lightcurves/0114/011442793/kplr011442793-2010009091648_llc.fits"
    searched: list[dict] = []

    def search_lightcurve(target, **kw):
        searched.append({"target": target, **kw})
        return types.SimpleNamespace(table={"dataURI": [uri]})

    monkeypatch.setitem(sys.modules, "lightkurve", types.SimpleNamespace(search_lightcurve=search_lightcurve))
    conn = MASTLightCurveConnector(mission="kepler", download_url=server.url + "/api/v0.1/Download/file")
    targets = pd.DataFrame({"target": ["KIC 11442793"], "quarter": ["4"]})
    rep, _ = _run(conn, targets, tmp_path, fast_policy, make_fetcher)
    assert rep.n_done == 1 and searched == [
        {"target": "KIC 11442793", "mission": "kepler", "author": None, "exptime": "long", "quarter": 4}
    ]
    # offline, the cached search answer and file suffice
    offline = FetchPolicy(offline=True)
    rep = ingest(
        conn, targets, store=None, fetcher=make_fetcher(offline), manifest=Manifest(tmp_path / "m2"), progress=False
    )
    assert rep.n_done == 1 and len(searched) == 1


def test_rerun_without_retrying_failures_keeps_them_listed(server, tmp_path, fast_policy, make_fetcher) -> None:
    conn = GaiaConnector(tap_url=server.url + "/tap", chunk_size=10)
    targets = pd.DataFrame({"source_id": [GAIA_ID, "1"]})
    manifest = Manifest(tmp_path / "m")
    ingest(conn, targets, store=None, fetcher=make_fetcher(fast_policy), manifest=manifest, progress=False)
    n = len(server.log.entries)
    rep = ingest(
        conn,
        targets,
        store=DatasetStore(tmp_path / "s"),
        fetcher=make_fetcher(fast_policy),
        manifest=manifest,
        progress=False,
        retry_failed=False,
    )
    assert len(server.log.entries) == n  # nothing requested
    assert rep.failed == {"1": "source_id 1 not in gaiadr3.gaia_source"} and rep.n_done == 1
    assert DatasetStore(tmp_path / "s").open(rep.datasets[0]).n_rows == 1


def test_cones_and_positions(server, tmp_path, fast_policy, make_fetcher) -> None:
    gaia = GaiaConnector(tap_url=server.url + "/tap", radius_arcsec=3.0)
    rep, store = _run(
        gaia, pd.DataFrame({"ra": ["266.4"], "dec": ["-29.0"]}), tmp_path / "g", fast_policy, make_fetcher
    )
    assert rep.n_done == 1 and store.open(rep.datasets[0]).n_rows == 1
    adql = [k for k, _, _ in server.log.entries if "CONTAINS" in k]
    assert adql and "CIRCLE%28266.4%2C+-29.0%2C+0.000833" in adql[0]  # 3 arcsec in degrees
    simbad = SimbadConnector(tap_url=server.url + "/sim-tap")
    rep, store = _run(
        simbad, pd.DataFrame({"ra": ["83.63"], "dec": ["22.01"]}), tmp_path / "s", fast_policy, make_fetcher
    )
    assert store.open(rep.datasets[0]).meta.loc[0, "main_id"] == "M 1"
