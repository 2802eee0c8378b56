"""``/predict/multimodal`` on registered fused models: the README example, every subset of parts, and bad input as a
4xx JSON answer naming the field."""

from __future__ import annotations

import json
import re
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hydra import compose, initialize_config_dir
from litserve.utils import wrap_litserve_start
from pydantic import ValidationError

import stellar
from stellar.evaluation.calibration import ONE_SIGMA, SubsetIntervalCalibrator
from stellar.models.late_fusion import LateFusion
from stellar.pipelines import train
from stellar.serving.api import Failure, MultiModalAPI
from stellar.serving.request_log import RequestLogConfig, read_request_log
from stellar.serving.schemas import MultiModalRequest, MultiModalResponse
from stellar.serving.server import build_server
from tests.conftest import REPO
from tests.pipelines.conftest import FAST_MULTIMODAL, MILES_PAIRED
from tests.serving.helpers import strict_json, train_registered, wait_ready

ROUTE = "/predict/multimodal"


def _readme_body() -> dict[str, Any]:
    line = next(x for x in (REPO / "README.md").read_text().splitlines() if ROUTE in x and x.startswith("curl"))
    m = re.search(r"-d '(.*)'$", line)
    assert m, line
    return json.loads(m.group(1))


def _register(tmp: Path, *overrides: str) -> Path:
    """Train a tiny fused model and register it as ``fusion``; returns the registry root."""
    registry = tmp / "registry"
    base = [f"paths.output_dir={tmp / 'run'}", f"paths.store_dir={tmp / 'store'}", f"paths.log_dir={tmp}"]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(
            "train",
            overrides=[*base, *overrides, "debug=limit", "logger=none", "register=true", f"registry.root={registry}"],
        )
    train.run(cfg)
    return registry


@pytest.fixture(scope="module")
def sim_registry(tmp_path_factory) -> Path:
    """model=fusion on the paired simulation (spectrum, SED with parallax, light curve)."""
    return _register(
        tmp_path_factory.mktemp("mm_sim"), "model=fusion", *FAST_MULTIMODAL, "datamodule.source.n=96",
        "interval_calibrator.min_subset_rows=2",  # every subset its own interval calibrator, even on a tiny val part
    )  # fmt: skip


def _api(root: Path) -> MultiModalAPI:
    api = MultiModalAPI("fusion", registry_root=str(root), api_path=ROUTE)
    api.setup("cpu")
    assert api.load_error is None, api.load_error
    return api


def _answer(api: MultiModalAPI, body: dict[str, Any]) -> dict[str, Any]:
    out = api.encode_response(api.predict(api.decode_request(MultiModalRequest.model_validate(body))))
    assert isinstance(out, dict), getattr(out, "body", out)
    return MultiModalResponse.model_validate(out).model_dump()


@pytest.mark.slow
def test_readme_example_over_http_and_bad_input_names_the_field(miles_registry) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("serve", overrides=[f"registry.root={miles_registry}"])
    with wrap_litserve_start(build_server(cfg)) as srv, TestClient(srv.app) as client:
        wait_ready(client, timeout=90)
        r = client.post(ROUTE, json=_readme_body())
        assert r.status_code == 200, r.text
        out = strict_json(r.text)
        assert out["modality"] == "multimodal" and out["calibrated"] and out["intervals_calibrated"]
        used = [p["modalities_used"] for p in out["predictions"]]
        assert used == [["spectrum", "photometry"], ["photometry"], ["spectrum"]]
        for p in out["predictions"]:
            assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
            for t in ("teff", "logg", "feh"):
                lo, hi = p["targets"][t]["interval_95"]
                assert lo <= p["targets"][t]["mean"] <= hi
        assert any("no parallax" in a for a in out["assumed"])  # the second object sent none
        bad = [
            ({"objects": [{}]}, ["body", "objects", 0], "at least one of spectrum, photometry, lightcurve"),
            ({"objects": [{"photometry": {"magnitudes": ["4.2"]}}]},
             ["body", "objects", 0, "photometry", "magnitudes", 0], ""),
            ({"objects": [{"spectrum": {"flux": [1, 2, 3], "wavelengths": [5000, 4000, 6000]}}]},
             ["body", "objects", 0, "spectrum"], "wavelengths[0] must be strictly increasing"),
            ({"objects": [{"radio": {}}]}, ["body", "objects", 0, "radio"], ""),
        ]  # fmt: skip
        for body, loc, msg in bad:
            r = client.post(ROUTE, json=body)
            assert r.status_code == 422, r.text
            (err,) = strict_json(r.text)["detail"]
            assert err["loc"] == loc and msg in err["msg"], err
        # a part the model has no encoder for (MILES has no light curves): 422 naming the object and the part
        r = client.post(
            ROUTE,
            json={
                "objects": [
                    {"photometry": {"magnitudes": [4.3, 4.2, 3.6, 3.0]}},
                    {"lightcurve": {"values": [1, 2, 1, 2]}},
                ]
            },
        )
        assert r.status_code == 422 and "objects[1].lightcurve" in strict_json(r.text)["detail"], r.text
        r = client.post(ROUTE, json={"objects": [{"photometry": {"magnitudes": [4.3], "bands": ["sdss_z"]}}]})
        assert r.status_code == 422 and "objects[0].photometry: unknown band(s) ['sdss_z']" in r.json()["detail"]
        # the other endpoints are unchanged (not registered here: 404 JSON naming the model)
        r = client.post("/predict/spectral", json={"spectra": [[0.1, 0.2, 0.3]]})
        assert r.status_code == 404 and "spectral_cnn" in r.json()["detail"]


def test_every_subset_of_parts_answers_and_matches_the_batched_answer(sim_registry) -> None:
    api = _api(sim_registry)
    assert sorted(api.used) == ["lightcurve", "photometry", "spectrum"]
    bands = list(api.parts["photometry"].bands)
    parts = {
        "spectrum": {"flux": [1.0 + 0.01 * k for k in range(50)]},
        "photometry": {"magnitudes": [15.0 - 0.2 * k for k in range(len(bands))], "parallax": 2.0, "parallax_err": 0.1},
        "lightcurve": {"values": [15 + 0.3 * ((k * 7) % 5) for k in range(40)], "times": [0.37 * k for k in range(40)]},
    }
    subsets = [s for n in (1, 2, 3) for s in combinations(parts, n)]
    alone = []
    for s in subsets:
        out = _answer(api, {"objects": [{p: parts[p] for p in s}]})
        (p,) = out["predictions"]
        assert p["modalities_used"] == list(s) and p["predicted_class"] in p["probabilities"]
        alone.append(p)
    # one request with all 7 objects (one batch, parts padded per object) gives each object's own answer
    batched = _answer(api, {"objects": [{p: parts[p] for p in s} for s in subsets]})["predictions"]
    for a, b in zip(alone, batched, strict=True):
        assert b["modalities_used"] == a["modalities_used"]
        assert b["probabilities"] == pytest.approx(a["probabilities"], rel=1e-4, abs=1e-6)
        assert b["targets"]["teff"]["mean"] == pytest.approx(a["targets"]["teff"]["mean"], rel=1e-4)
    # each object's σ is calibrated by its modality subset's calibrator: the raw σ times that subset's factor
    cal = api.interval_calibrator
    assert isinstance(cal, SubsetIntervalCalibrator) and len(cal.subsets_) == len(subsets)
    api.interval_calibrator = None
    raw = _answer(api, {"objects": [{p: parts[p] for p in s} for s in subsets]})["predictions"]
    api.interval_calibrator = cal
    for s, a, r in zip(subsets, batched, raw, strict=True):
        name = "+".join(api.used[p] for p in s)
        k = cal.factors("logg", ONE_SIGMA, 1, [name])[0]
        assert a["targets"]["logg"]["std"] == pytest.approx(r["targets"]["logg"]["std"] * k, rel=1e-4), name
    # the parts change the answer: spectrum alone vs spectrum + photometry differ
    assert alone[0]["probabilities"] != pytest.approx(alone[3]["probabilities"], abs=1e-6)
    failed = api.decode_request(MultiModalRequest.model_validate({"objects": [{"photometry": {"magnitudes": [1.0]}}]}))
    assert isinstance(failed, Failure) and failed.status == 422 and "objects[0].photometry" in failed.detail


def test_schema_refuses_an_object_without_parts() -> None:
    with pytest.raises(ValidationError, match="at least one of spectrum, photometry, lightcurve"):
        MultiModalRequest.model_validate({"objects": [{"spectrum": None}]})
    with pytest.raises(ValidationError, match=r"errors\[0\] has 2 values but values\[0\] has 3"):
        MultiModalRequest.model_validate({"objects": [{"lightcurve": {"values": [1, 2, 3], "errors": [0.1, 0.1]}}]})


def test_a_miles_fused_model_answers_with_each_modality_missing(miles_registry) -> None:
    api = _api(miles_registry)
    assert sorted(api.used) == ["photometry", "spectrum"]  # MILES has no light curves
    body = _readme_body()
    spectrum, photometry = body["objects"][0]["spectrum"], body["objects"][0]["photometry"]
    only = {
        "spectrum": {"spectrum": spectrum},
        "photometry+parallax": {"photometry": photometry},
        "both": {"spectrum": spectrum, "photometry": photometry},
    }
    out = {k: _answer(api, {"objects": [v]}) for k, v in only.items()}
    used = {k: o["predictions"][0]["modalities_used"] for k, o in out.items()}
    assert used == {"spectrum": ["spectrum"], "photometry+parallax": ["photometry"], "both": ["spectrum", "photometry"]}
    for o in out.values():
        (p,) = o["predictions"]
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert all(p["targets"][t]["std"] > 0 for t in ("teff", "logg", "feh"))
    # the parallax reaches the model: without it (or sent as NaN) the photometry-only answer moves, and says why
    no_plx = {k: v for k, v in photometry.items() if not k.startswith("parallax")}
    without = _answer(api, {"objects": [{"photometry": no_plx}]})
    nan = float("nan")
    nan_plx = _answer(api, {"objects": [{"photometry": {**photometry, "parallax": nan, "parallax_err": nan}}]})
    with_p = out["photometry+parallax"]["predictions"][0]
    assert without["predictions"][0]["targets"]["logg"]["mean"] != pytest.approx(with_p["targets"]["logg"]["mean"])
    assert nan_plx["predictions"][0]["targets"]["logg"]["mean"] == pytest.approx(
        without["predictions"][0]["targets"]["logg"]["mean"], rel=1e-5
    )
    assert "photometry: parallax not finite: missing (NaN) (objects [0])" in nan_plx["assumed"]
    # a modality the model was not trained on: 422 naming the object and the part
    failed = api.decode_request(
        MultiModalRequest.model_validate({"objects": [{"spectrum": spectrum}, {"lightcurve": {"values": [1, 2, 1]}}]})
    )
    assert isinstance(failed, Failure) and failed.status == 422
    assert "objects[1].lightcurve: model 'fusion' reads no lightcurve" in failed.detail


def test_predict_takes_one_dict_of_modalities_per_object_as_the_readme_body(miles_registry) -> None:
    """``stellar.load("fusion").predict([{...}, ...])``: each modality through its single-modality adapter, the
    numbers of the README's JSON body; a bad object is named with its index and modality."""
    from stellar.errors import StellarValueError
    from stellar.serving.predictor import Predictor

    api = _api(miles_registry)
    want = _answer(api, _readme_body())["predictions"]
    ubv = {"data": [4.27, 4.16, 3.61], "bands": ["johnson_u", "johnson_b", "johnson_v"]}
    flux = [1.0, 1.1, 1.2, 1.15, 1.1, 1.05]
    # stellar.load finds the fused model's endpoint by the version's modality (it used to refuse: not table-scorable)
    loaded = stellar.load("fusion", registry=str(miles_registry))
    assert isinstance(loaded.api, MultiModalAPI)
    got = loaded.predict(
        [
            {"spectrum": flux, "photometry": {**ubv, "parallax": 91.5, "parallax_err": 0.22}},
            {"photometry": ubv},
            {"spectrum": {"data": flux}},
        ]
    )
    assert list(got["predicted_class"]) == [p["predicted_class"] for p in want]
    for k, p in enumerate(want):
        for c, v in p["probabilities"].items():
            assert got[f"p_{c}"][k] == pytest.approx(v, rel=1e-6)
        assert got["teff_mean"][k] == pytest.approx(p["targets"]["teff"]["mean"], rel=1e-6)
    assert "no parallax" in got["warnings"][1] and "no parallax" not in got["warnings"][0]
    one = Predictor(api).predict({"photometry": ubv})  # one object: a dict alone
    assert one["p_" + want[1]["predicted_class"]][0] == pytest.approx(got["p_" + want[1]["predicted_class"]][1])
    for data, says in (
        ([{"radio": [1.0]}], "data[0] has unknown modalities ['radio']"),
        ([{}], "data[0] must be a dict of modalities"),
        ([{"spectrum": {"data": [flux, flux]}}], "data[0].spectrum holds 2 objects"),
        ([{"photometry": {"bands": ["johnson_u"]}}], "data[0].photometry needs 'data'"),
        ([{"spectrum": {"data": flux, "colour": "red"}}], "data[0].spectrum: "),
    ):
        with pytest.raises(StellarValueError, match=re.escape(says)):
            Predictor(api).predict(data)


def test_requests_of_different_parts_batched_together_answer_as_alone(miles_registry) -> None:
    # LitServe hands predict() the decoded requests of a batch as a list: one spectrum-only, one photometry-only, one
    # whose spectrum misses the model's wavelength range (a worker-side 422 that must not touch the others)
    api = _api(miles_registry)
    spectrum, photometry = (_readme_body()["objects"][0][k] for k in ("spectrum", "photometry"))
    bodies = [
        {"objects": [{"spectrum": spectrum}]},
        {"objects": [{"photometry": photometry}, {"spectrum": spectrum, "photometry": photometry}]},
        {"objects": [{"spectrum": {"flux": [1.0, 2.0, 3.0], "wavelengths": [20000.0, 20001.0, 20002.0]}}]},
    ]
    jobs = [api.decode_request(MultiModalRequest.model_validate(b)) for b in bodies]
    assert isinstance(jobs[2], Failure) and jobs[2].status == 422 and "objects[0].spectrum" in jobs[2].detail
    batched = api.predict(jobs)
    assert batched[2] is jobs[2]
    for body, got in zip(bodies[:2], batched[:2], strict=True):
        alone = _answer(api, body)["predictions"]
        mine = MultiModalResponse.model_validate(api.encode_response(got)).model_dump()["predictions"]
        assert [p["modalities_used"] for p in mine] == [p["modalities_used"] for p in alone]
        for a, b in zip(alone, mine, strict=True):
            assert b["probabilities"] == pytest.approx(a["probabilities"], rel=1e-4, abs=1e-6)
            assert b["targets"]["logg"]["mean"] == pytest.approx(a["targets"]["logg"]["mean"], rel=1e-4)


def test_miles_fusion_serves_late_fusion_that_pools_the_modalities_present(miles_registry) -> None:
    # experiment=miles_fusion registers model=late_fusion (an estimator) as "fusion": one modality gives that
    # member's answer, both give the presence-masked pool, whose mean lies between the members' (Gaussian product)
    api = _api(miles_registry)
    assert isinstance(api.net, LateFusion) and api.inputs == ("present", "spectrum", "sed")
    body = _readme_body()
    spectrum, photometry = body["objects"][0]["spectrum"], body["objects"][0]["photometry"]
    parts = {"spectrum": {"spectrum": spectrum}, "photometry": {"photometry": photometry},
             "both": {"spectrum": spectrum, "photometry": photometry}}  # fmt: skip
    got = {k: _answer(api, {"objects": [v]})["predictions"][0] for k, v in parts.items()}
    assert [got[k]["modalities_used"] for k in parts] == [["spectrum"], ["photometry"], ["spectrum", "photometry"]]
    for t in ("teff", "logg", "feh"):
        lo, hi = sorted(got[k]["targets"][t]["mean"] for k in ("spectrum", "photometry"))
        assert lo - 1e-6 * abs(lo) <= got["both"]["targets"][t]["mean"] <= hi + 1e-6 * abs(hi), t
    assert got["spectrum"]["probabilities"] != pytest.approx(got["photometry"]["probabilities"], abs=1e-3)


def test_request_log_keeps_each_objects_modalities_and_their_summaries(sim_registry, tmp_path) -> None:
    api = MultiModalAPI("fusion", registry_root=str(sim_registry), api_path=ROUTE)
    api.enable_monitoring(None, RequestLogConfig(str(tmp_path), flush_rows=1))
    api.setup("cpu")
    bands = list(api.parts["photometry"].bands)
    spectrum = {"flux": [1.0 + 0.01 * k for k in range(50)]}
    photometry = {"magnitudes": [15.0 - 0.2 * k for k in range(len(bands))], "parallax": 2.0}
    body = {
        "objects": [
            {"spectrum": spectrum},
            {"photometry": photometry},
            {"spectrum": spectrum, "photometry": photometry},
        ]
    }
    _answer(api, body)
    api.request_log.close()
    t = read_request_log(tmp_path, endpoint=ROUTE)
    assert list(t["row"]) == [0, 1, 2] and t["request_id"].nunique() == 1
    assert list(t["in_present_spectrum"]) == [1.0, 0.0, 1.0] and list(t["in_present_sed"]) == [0.0, 1.0, 1.0]
    # each modality's summaries where it is present, NaN where it is absent
    assert list(t["in_spectrum.valid_fraction"].notna()) == [True, False, True]
    assert list(t["in_sed.n_bands"].notna()) == [False, True, True]


@pytest.mark.slow
def test_miles_fusion_serves_the_cascade_and_keeps_the_plain_members_answers(miles_registry, tmp_path_factory) -> None:
    # model=late_fusion_cascade: the third (cascaded) member answers only with both parts, from the spectrum member's
    # predictions; an object with one part gets exactly the answer of late_fusion's plain member of that part
    root = train_registered(tmp_path_factory.mktemp("mm_cascade"), "experiment=miles_fusion",
                            "model=late_fusion_cascade", *MILES_PAIRED, "debug=limit")  # fmt: skip
    api, plain = _api(root), _api(miles_registry)
    assert isinstance(api.net, LateFusion) and api.net.cascade is not None and "cascade_0" in api.net.models
    body = _readme_body()
    spectrum, photometry = body["objects"][0]["spectrum"], body["objects"][0]["photometry"]
    parts = {"spectrum": {"spectrum": spectrum}, "photometry": {"photometry": photometry},
             "both": {"spectrum": spectrum, "photometry": photometry}}  # fmt: skip
    got = {k: _answer(api, {"objects": [v]})["predictions"][0] for k, v in parts.items()}
    ref = {k: _answer(plain, {"objects": [v]})["predictions"][0] for k, v in parts.items()}
    for k in ("spectrum", "photometry"):
        for t in ("teff", "logg", "feh"):
            assert got[k]["targets"][t]["mean"] == pytest.approx(ref[k]["targets"][t]["mean"], rel=1e-6), (k, t)
    assert got["both"]["modalities_used"] == ["spectrum", "photometry"]
    assert all(abs(v["mean"]) < 1e6 for v in got["both"]["targets"].values())
