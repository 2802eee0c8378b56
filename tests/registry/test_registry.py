"""The model registry: write-once versions, atomic aliases, name validation, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from stellar.errors import StellarError, StellarValueError
from stellar.registry import ModelRegistry, main, validate_name

FILES = {"checkpoints/model.bin": b"w" * 1000, "calibrator.json": b'{"x": 1}'}


@pytest.fixture(params=["local", "memory"])
def reg(request, tmp_path) -> ModelRegistry:
    if request.param == "local":
        return ModelRegistry(tmp_path / "registry")
    return ModelRegistry(f"memory://reg-{tmp_path.name}")


def test_register_resolve_and_alias(reg):
    v1 = reg.register("m", FILES, {"class_names": ["A", "B"], "targets": ["teff"]})
    v2 = reg.register("m", FILES, {"class_names": ["A", "B"]})
    assert (v1.version, v2.version) == (1, 2) and v1.tag == "m:v1"
    assert reg.models() == ["m"] and reg.versions("m") == [1, 2]
    assert reg.resolve("m") == 2 and reg.resolve("m", "v1") == 1 and reg.resolve("m", 1) == 1
    assert reg.set_alias("m", "production", 1) == 1
    reg.set_alias("m", "staging", "latest")
    assert reg.aliases("m") == {"production": 1, "staging": 2}
    got = reg.get("m", "production")
    assert got.version == 1 and got.class_names == ["A", "B"] and got.targets == ["teff"]
    assert got.read_bytes("checkpoints/model.bin") == FILES["checkpoints/model.bin"]
    assert got.manifest["artifact"]["primary"] == "checkpoints/model.bin"
    assert set(got.files) == {*FILES, "MODEL_CARD.md"} and "# m v1" in got.card
    assert got.local_path("checkpoints/model.bin").read_bytes() == FILES["checkpoints/model.bin"]


def test_unknown_references_name_the_problem(reg):
    reg.register("m", FILES)
    with pytest.raises(StellarValueError, match="unknown model 'nope'"):
        reg.get("nope")
    with pytest.raises(StellarValueError, match="no version"):
        reg.get("m", 7)
    with pytest.raises(StellarValueError, match="no alias 'production'"):
        reg.get("m", "production")
    with pytest.raises(StellarValueError, match="not part of"):
        reg.get("m").read_bytes("../../etc/passwd")


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "..", "a..b", "x" * 200, "a b", None, 3])
def test_names_are_validated(bad, tmp_path):
    with pytest.raises(StellarValueError, match="not allowed"):
        validate_name(bad)
    reg = ModelRegistry(tmp_path)
    with pytest.raises(StellarError):
        reg.register(bad, FILES)  # type: ignore[arg-type]
    assert not any(tmp_path.parent.glob("x*")) and list(tmp_path.iterdir()) == []


def test_file_names_and_reserved_aliases_are_validated(tmp_path):
    reg = ModelRegistry(tmp_path)
    for rel in ["../evil", "/abs", "a/../b", "manifest.json"]:
        with pytest.raises(StellarValueError):
            reg.register("m", {rel: b"x"})
    reg.register("m", FILES)
    for alias in ["latest", "v2", "3", "../x"]:
        with pytest.raises(StellarValueError):
            reg.set_alias("m", alias, 1)


def test_versions_are_immutable_folders(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.register("m", FILES)
    reg.register("m", {"checkpoints/model.bin": b"other"})
    assert reg.get("m", 1).read_bytes("checkpoints/model.bin") == FILES["checkpoints/model.bin"]
    manifest = json.loads((tmp_path / "m/versions/v1/manifest.json").read_text())
    assert manifest["version"] == 1 and len(manifest["files"]["checkpoints/model.bin"]) == 64  # sha256


def test_crash_during_registration_leaves_no_partial_version(reg, monkeypatch):
    reg.register("m", FILES)
    calls = {"n": 0}
    real_put = ModelRegistry._put

    def failing_put(self, path, src):
        calls["n"] += 1
        if calls["n"] == 2:  # after the first file is written
            raise OSError("disk full")
        return real_put(self, path, src)

    monkeypatch.setattr(ModelRegistry, "_put", failing_put)
    with pytest.raises(OSError, match="disk full"):
        reg.register("m", FILES)
    monkeypatch.undo()
    assert reg.versions("m") == [1] and reg.resolve("m") == 1
    # the failed writer removed what it wrote but kept its claim, so v2 holds only the claim and is skipped
    assert reg.fs.find(reg._vpath("m", 2)) == [f"{reg._vpath('m', 2)}/.claim.json"]
    assert reg.register("m", FILES).version == 3 and reg.versions("m") == [1, 3]


def test_killed_registration_leaves_no_partial_version(tmp_path):
    """A process killed half way (no cleanup runs) leaves a claimed number that readers ignore and writers skip."""
    code = f"""
import os
from stellar.registry import ModelRegistry
real = ModelRegistry._put
def put(self, path, src):
    if path.endswith("calibrator.json"):
        os._exit(9)
    return real(self, path, src)
ModelRegistry._put = put
ModelRegistry({str(tmp_path)!r}).register("m", {{"checkpoints/model.bin": b"w", "calibrator.json": b"c"}})
"""
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == 9
    reg = ModelRegistry(tmp_path)
    assert reg.models() == [] and reg.versions("m") == []
    assert sorted(p.name for p in (tmp_path / "m/versions/v1").iterdir()) == [".claim.json", "checkpoints"]
    assert reg.register("m", FILES).version == 2 and reg.versions("m") == [2]


def test_alias_move_is_atomic(tmp_path, monkeypatch):
    reg = ModelRegistry(tmp_path)
    for _ in range(2):
        reg.register("m", FILES)
    reg.set_alias("m", "production", 1)
    # a crash before the rename keeps the old alias and leaves no temporary file
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(OSError, match="crash"):
        reg.set_alias("m", "production", 2)
    monkeypatch.undo()
    assert reg.aliases("m") == {"production": 1}
    assert sorted(p.name for p in (tmp_path / "m/aliases").iterdir()) == ["production.json"]
    # readers racing a writer always see a whole alias: 1 or 2, never a partial file
    seen: set[int] = set()
    errors: list[Exception] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(reg.resolve("m", "production"))
            except Exception as err:
                errors.append(err)

    t = threading.Thread(target=read)
    t.start()
    for i in range(200):
        reg.set_alias("m", "production", 1 + i % 2)
    stop.set()
    t.join()
    assert not errors and seen <= {1, 2}


def test_cli(tmp_path, capsys, monkeypatch):
    reg = ModelRegistry(tmp_path / "r")
    reg.register("m", FILES, {"class_names": ["A", "B"]})
    reg.register("m", FILES)
    root = f"registry.root={tmp_path / 'r'}"
    assert main([root, "alias", "m", "production", "1"]) == 0
    assert main(["--root", str(tmp_path / "r"), "list"]) == 0
    assert main([root, "versions", "m"]) == 0
    assert main([root, "card", "m", "production"]) == 0
    assert main([root, "show", "m", "v1"]) == 0
    out = capsys.readouterr().out
    assert "m/production -> v1" in out and "versions [1, 2]" in out and "production→v1" in out
    assert "v1\t" in out and "# m v1" in out and '"class_names"' in out
    assert main([root, "card", "nope"]) == 2 and main([root, "alias", "m", "prod", "9"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    monkeypatch.setenv("STELLAR_REGISTRY", str(tmp_path / "r"))
    assert main(["list"]) == 0 and "production→v1" in capsys.readouterr().out
    # --root after the command, as a new user types it; it wins over the environment
    monkeypatch.setenv("STELLAR_REGISTRY", str(tmp_path / "empty"))
    assert main(["list", "--root", str(tmp_path / "r")]) == 0 and "production→v1" in capsys.readouterr().out
    assert main(["versions", "m", "--root", str(tmp_path / "r")]) == 0 and "v2\t" in capsys.readouterr().out
    assert main(["list"]) == 0 and "no models" in capsys.readouterr().out


def test_only_a_manifest_carrying_its_claims_token_makes_a_version(reg):
    """A manifest beside another writer's claim is a torn version (ignored); one from before claims still counts."""
    reg.register("m", FILES)
    v1 = reg._vpath("m", 1)
    manifest = json.loads(reg.fs.cat_file(f"{v1}/manifest.json"))
    claim = json.loads(reg.fs.cat_file(f"{v1}/.claim.json"))
    assert manifest["claim"] == claim["token"] and reg.versions("m") == [1]
    reg.fs.pipe_file(f"{v1}/.claim.json", json.dumps({**claim, "token": "another writer"}).encode())
    assert reg.versions("m") == [] and reg.models() == []
    with pytest.raises(StellarValueError, match="unknown model"):
        reg.get("m", 1)
    # a version registered before claims: a manifest without a token and no claim file
    reg.fs.rm_file(f"{v1}/.claim.json")
    reg.fs.pipe_file(f"{v1}/manifest.json", json.dumps({k: v for k, v in manifest.items() if k != "claim"}).encode())
    assert reg.versions("m") == [1] and reg.get("m", "v1").files == list(manifest["files"])
    assert reg.register("m", FILES).version == 2
