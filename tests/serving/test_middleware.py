"""Payload limit and API key, on a bare ASGI app (no model, no workers)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from stellar.serving.server import APIKeyMiddleware, BodyLimitMiddleware


def _client(key: str | None = None, max_bytes: int = 1000) -> TestClient:
    app = FastAPI()

    @app.post("/predict/echo")
    async def echo(request: Request) -> dict:
        return {"n": len(await request.body())}

    @app.get("/health")
    async def health() -> str:
        return "ok"

    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)
    if key:
        app.add_middleware(APIKeyMiddleware, key=key)
    return TestClient(app)


def test_body_limit_by_length_and_by_stream():
    c = _client()
    assert c.post("/predict/echo", content=b"x" * 1000).json() == {"n": 1000}
    r = c.post("/predict/echo", content=b"x" * 1001)
    assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(20):
            yield b"x" * 100

    r = c.post("/predict/echo", content=chunks())
    assert r.status_code == 413
    r = c.post("/predict/echo", content=b"x", headers={"Content-Length": "abc"})
    assert r.status_code == 400


def test_api_key_only_when_set():
    assert _client().post("/predict/echo", content=b"{}").status_code == 200
    c = _client(key="s3cret")
    assert c.post("/predict/echo", content=b"{}").status_code == 401
    assert c.post("/predict/echo", content=b"{}", headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.post("/predict/echo", content=b"{}", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert c.get("/health").status_code == 200  # only /predict is guarded
