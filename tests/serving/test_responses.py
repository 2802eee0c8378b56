"""How answers are written (stellar.serving.responses): Accept negotiation, and large answers streamed in chunks of
rows that read back as the unstreamed answer, in JSON and in Arrow."""

from __future__ import annotations

import asyncio
import json
import pickle
from typing import Any

import pyarrow as pa
import pytest

from stellar.serving.binary import ARROW_STREAM, response_table
from stellar.serving.responses import JSON, StreamedAnswer, negotiate
from stellar.serving.schemas import PredictionResponse


@pytest.mark.parametrize(
    ("accept", "answer"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        (ARROW_STREAM, ARROW_STREAM),
        (f"application/json;q=0.5, {ARROW_STREAM}", ARROW_STREAM),
        (f"{ARROW_STREAM};q=0.2, application/json", JSON),
        (f"{ARROW_STREAM};q=0.2, */*;q=0.8", JSON),  # the wildcard's weight is JSON's
        (f"{ARROW_STREAM}; q=0.9 , application/*;q=0.5", ARROW_STREAM),
        (f"application/json;q=0, {ARROW_STREAM};q=0.1", ARROW_STREAM),
        ("application/*;q=0.3, application/json;q=0", ARROW_STREAM),  # JSON refused by name, the wildcard takes Arrow
        (f"application/json;q=0.5, {ARROW_STREAM};q=0.5", JSON),  # a tie: JSON
        ("text/csv", None),
        ("text/csv, application/json;q=0", None),
        ("*/*;q=0", None),
        ("application/json;q=oops", None),  # a weight that is not a number counts 0
    ],
)
def test_negotiate(accept, answer):
    assert negotiate(accept) == answer


def _answer(n: int) -> dict[str, Any]:
    preds = [
        {
            "predicted_class": "G" if i % 2 else "K",
            "probabilities": {"G": 0.25 + 0.5 * (i % 2), "K": 0.75 - 0.5 * (i % 2)},
            "targets": {"teff": {"mean": 5000.0 + i, "std": 80.0, "interval_95": (4800.0 + i, 5200.0 + i)}},
            "valid_fraction": 1.0 - i / 100,
        }
        for i in range(n)
    ]
    return {
        "model": "m",
        "version": 3,
        "modality": "spectral",
        "calibrated": True,
        "intervals_calibrated": True,
        "predictions": preds,
        "assumed": ['a "quoted" note with "predictions":[] in it'],
    }


def _send(response: Any) -> list[dict[str, Any]]:
    """The ASGI messages ``response`` sends."""
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    asyncio.run(response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send))
    return messages


def test_streamed_json_is_the_unstreamed_document_in_chunks():
    answer = _answer(7)
    streamed = pickle.loads(pickle.dumps(StreamedAnswer(answer, PredictionResponse, chunk_rows=3)))  # the queue
    messages = _send(streamed)
    assert messages[0]["status"] == 200 and dict(messages[0]["headers"])[b"content-type"] == b"application/json"
    bodies = [m["body"] for m in messages[1:]]
    assert len([b for b in bodies if b]) == 5  # head + 3 chunks of rows (3, 3, 1) + tail
    want = PredictionResponse.model_validate(answer)
    assert b"".join(bodies) == want.model_dump_json().encode()  # byte for byte, field order included
    assert json.loads(b"".join(bodies))["predictions"][6]["targets"]["teff"]["interval_95"] == [4806.0, 5206.0]


def test_streamed_arrow_is_one_record_batch_per_chunk():
    answer = _answer(7)
    messages = _send(StreamedAnswer(answer, PredictionResponse, chunk_rows=3).as_arrow())
    assert dict(messages[0]["headers"])[b"content-type"] == ARROW_STREAM.encode()
    reader = pa.ipc.open_stream(b"".join(m["body"] for m in messages[1:]))
    batches = list(reader)
    assert [b.num_rows for b in batches] == [3, 3, 1]
    want = response_table(PredictionResponse.model_validate(answer).model_dump(mode="json"))
    assert pa.Table.from_batches(batches, reader.schema).equals(want, check_metadata=True)


def test_a_broken_answer_is_one_json_error_before_any_row():
    answer = _answer(5)
    answer["predictions"][4]["valid_fraction"] = "lots"  # the last chunk breaks the schema
    messages = _send(StreamedAnswer(answer, PredictionResponse, chunk_rows=2))
    assert messages[0]["status"] == 500 and len(messages) == 2  # no 200 was started
    assert "valid_fraction" in json.loads(messages[1]["body"])["detail"]
