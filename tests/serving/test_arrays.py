"""Array fields of the request schemas (stellar.serving.arrays) and the request decoders that feed them: a numpy
request equals the list request, the vectorised checks refuse what the per-value ones did with the same messages,
Arrow columns become arrays without Python floats, and the orjson JSON path keeps NaN literals and error bodies."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from stellar.monitoring.summaries import _nanmedian
from stellar.serving.arrays import array_fields, finite_counts, negative_rows
from stellar.serving.binary import BodyError, decode_arrow, decode_json, encode_arrow
from stellar.serving.schemas import MAX_ROWS, LightCurveRequest, SEDRequest, SpectralRequest
from tests.serving.helpers import strict_json


def _flux(n: int = 3, m: int = 40) -> np.ndarray:
    return 1 + 0.1 * np.random.default_rng(0).random((n, m))


def test_array_request_equals_the_list_request():
    flux, err = _flux(), np.full((3, 40), 0.05)
    from_lists = SpectralRequest.model_validate_json(json.dumps({"spectra": flux.tolist(), "errors": err.tolist()}))
    from_arrays = SpectralRequest.model_validate({"spectra": flux, "errors": err})
    assert from_lists == from_arrays
    assert isinstance(from_lists.spectra, np.ndarray) and from_lists.spectra.dtype == np.float64
    np.testing.assert_array_equal(from_lists.spectra, flux)
    # ragged rows (per-row wavelengths) stay one array per row; float32 and int rows become float64
    ragged = LightCurveRequest.model_validate({"lightcurves": [np.float32([1, 2, 3]), np.arange(4)]})
    assert [r.dtype for r in ragged.lightcurves] == [np.float64] * 2 and [len(r) for r in ragged.lightcurves] == [3, 4]
    assert ragged.model_dump()["lightcurves"] == [[1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]]


@pytest.mark.parametrize(
    ("spectra", "says"),
    [
        (np.array([1.0, 2.0, 3.0]), "spectra must be rows of numbers (2-D); got an array of shape (3,)"),
        (np.array([[True, False, True]]), "spectra must hold numbers (float or int); got dtype bool"),
        (np.array([["1", "2", "3"]]), "spectra must hold numbers (float or int); got dtype <U1"),
        (np.ones((MAX_ROWS + 1, 2)), f"spectra has {MAX_ROWS + 1} rows; 1 to {MAX_ROWS} allowed"),
        (np.ones((0, 3)), f"spectra has 0 rows; 1 to {MAX_ROWS} allowed"),
        ([np.ones(3), np.ones(1)], "spectra[1] has 1 values; 2 to 20000 allowed"),
        (np.array([[1.0, np.nan, np.inf], [1.0, 2.0, 3.0]]), "spectra[0] has 1 finite values"),
    ],
    ids=["flat", "bool", "strings", "too_many_rows", "no_rows", "short_row", "one_finite"],
)
def test_array_inputs_are_refused_naming_the_field(spectra, says):
    with pytest.raises(ValidationError) as err:
        SpectralRequest.model_validate({"spectra": spectra})
    assert says in str(err.value)


@pytest.mark.parametrize("as_array", [False, True], ids=["lists", "arrays"])
def test_vectorised_checks_give_the_per_value_messages(as_array):
    def body(**fields):
        return {k: (np.asarray(v) if as_array and k != "wavelengths" else v) for k, v in fields.items()}

    flux = [[1.0, 2.0, 3.0], [np.nan, np.nan, 1.0]]
    with pytest.raises(ValidationError, match=r"spectra\[1\] has 1 finite values"):
        SpectralRequest.model_validate(body(spectra=flux))
    ok = [[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]]
    with pytest.raises(ValidationError, match=r"errors\[1\] has 1 negative value\(s\) \(e.g. -0.5\)"):
        SpectralRequest.model_validate(body(spectra=ok, errors=[[0.1, np.nan, 0.1], [0.1, -0.5, -np.inf]]))
    with pytest.raises(ValidationError, match=r"errors\[1\] has 2 values but spectra\[1\] has 3"):
        SpectralRequest.model_validate({"spectra": ok, "errors": [[0.1, 0.1, 0.1], [0.1, 0.1]]})
    with pytest.raises(ValidationError, match=r"wavelengths\[0\] must be strictly increasing"):
        SpectralRequest.model_validate(body(spectra=ok, wavelengths=[4000.0, 4000.0, 4100.0]))
    with pytest.raises(ValidationError, match=r"wavelengths\[1\] must be finite"):
        SpectralRequest.model_validate(body(spectra=ok, wavelengths=[[1.0, 2.0, 3.0], [1.0, np.nan, 3.0]]))
    with pytest.raises(ValidationError, match=r"magnitudes is ragged \(row lengths \[2, 3\]\)"):
        SEDRequest.model_validate({"magnitudes": [np.ones(2), np.ones(3)] if as_array else [[1, 2], [1, 2, 3]]})


def test_row_reductions_on_arrays_and_ragged_rows():
    rows = [np.array([1.0, np.nan, -2.0]), np.array([np.inf, 3.0]), np.array([-np.inf, np.nan])]
    np.testing.assert_array_equal(finite_counts(rows), [2, 1, 0])
    np.testing.assert_array_equal(negative_rows(rows), [0])  # -inf is unknown, not negative
    block = np.array([[1.0, -1.0], [np.nan, 2.0]])
    np.testing.assert_array_equal(finite_counts(block), [2, 1])
    np.testing.assert_array_equal(negative_rows(block), [0])
    assert array_fields(SpectralRequest) == {"spectra", "errors"}
    assert array_fields(SEDRequest) == {"magnitudes", "errors"}


def test_arrow_columns_become_arrays():
    flux = _flux(4, 6).astype(np.float32)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(flux.ravel()), 6)
    req = decode_arrow(encode_arrow(pa.table({"spectra": fixed, "redshift": [0.0, 0.1, 0.2, 0.3]})), SpectralRequest)
    assert isinstance(req, SpectralRequest) and req.spectra.shape == (4, 6) and req.redshift == [0.0, 0.1, 0.2, 0.3]
    np.testing.assert_array_equal(req.spectra, flux.astype(np.float64))
    # a sliced, chunked list column: the offsets of each chunk are honoured
    rows = [[1.0, 2.0, 3.0], [4.0, 5.0, 5.5, 5.7, 5.8], [6.0, 7.0, 8.0, 9.0]]
    col = pa.chunked_array([pa.array(rows[:1], pa.list_(pa.float64())), pa.array(rows, pa.list_(pa.float64()))[1:]])
    lc = decode_arrow(encode_arrow(pa.table({"lightcurves": col})), LightCurveRequest)
    assert [r.tolist() for r in lc.lightcurves] == rows
    # a null inside a row is not taken as NaN: pydantic refuses it, as it refuses JSON's null
    nulls = pa.array([[1.0, None, 3.0]], pa.list_(pa.float64()))
    with pytest.raises(BodyError) as err:
        decode_arrow(encode_arrow(pa.table({"spectra": nulls})), SpectralRequest)
    assert err.value.status == 422 and err.value.detail[0]["loc"] == ["body", "spectra", 0, 1]


def test_json_path_keeps_nan_literals_and_error_bodies():
    # NaN/Infinity literals (Python's and JavaScript's JSON writers): orjson refuses them, the fallback reads them
    req = decode_json(b'{"spectra": [[1.0, NaN, 3.0, Infinity]]}', SpectralRequest)
    assert np.isnan(req.spectra[0, 1]) and np.isposinf(req.spectra[0, 3])
    with pytest.raises(BodyError) as err:
        decode_json(b'{"spectra": [[NaN, NaN, NaN]]}', SpectralRequest)
    assert err.value.status == 422 and "spectra[0] has 0 finite values" in err.value.detail[0]["msg"]
    strict_json(json.dumps(err.value.detail))  # the echoed input has no NaN token: the 422 is strict JSON
    assert err.value.detail[0]["input"] == {"spectra": [["NaN", "NaN", "NaN"]]}
    with pytest.raises(BodyError) as err:
        decode_json(b'{"spectra": [[1.0, 2.0]', SpectralRequest)
    assert err.value.status == 422
    assert err.value.detail[0]["type"] == "json_invalid" and err.value.detail[0]["loc"] == ["body", 23]
    with pytest.raises(BodyError) as err:
        decode_json(b'{"spectra": [[1.0, true]]}', SpectralRequest)
    assert err.value.detail[0]["loc"] == ["body", "spectra", 0, 1] and err.value.detail[0]["type"] == "float_type"


@pytest.mark.parametrize(
    ("depth", "error_type"),
    [(500, "float_type"), (2000, "json_invalid")],  # deeper than the echo of the input; than the parsers allow
)
def test_json_nested_too_deep_is_a_422(depth, error_type):
    body = b'{"spectra": [[1.0, 2.0], ' + b"[" * depth + b"]" * depth + b"]}"  # a few kB of brackets
    with pytest.raises(BodyError) as err:
        decode_json(body, SpectralRequest)
    assert err.value.status == 422 and err.value.detail[0]["type"] == error_type
    json.dumps(err.value.detail)  # the 422 body can be written


def test_array_errors_echo_their_input_as_lists():
    with pytest.raises(BodyError) as err:
        flux = pa.FixedSizeListArray.from_arrays(pa.array([np.nan, np.nan, 1.0], pa.float32()), 3)
        decode_arrow(encode_arrow(pa.table({"spectra": flux})), SpectralRequest)
    assert err.value.detail[0]["input"]["spectra"] == [["NaN", "NaN", 1.0]]


def test_sorted_row_median_equals_numpy():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 1001))
    valid = rng.random(a.shape) > 0.4
    valid[0] = False  # no valid entry: NaN
    valid[1] = False
    valid[1, 7] = True  # one
    valid[2, :2] = True
    valid[2, 2:] = False  # two: their mean
    want = np.array(
        [np.nanmedian(np.where(v, x, np.nan)) if v.any() else np.nan for x, v in zip(a, valid, strict=True)]
    )
    np.testing.assert_array_equal(_nanmedian(a, valid), want)
