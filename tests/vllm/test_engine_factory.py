"""Backend.make_rollout_engine / make_sharding_manager: which pair each backend builds (vLLM itself faked)."""

from __future__ import annotations

import pytest
import torch

from core.errors import TandemError
from core.plugins.manager import load_backend
from core.rollout.base import EngineTarget
from core.rollout.hf_engine import HFRolloutEngine
from core.sharding.hf import HFShardingManager
from core.sharding.vllm import VllmShardingManager


@pytest.fixture
def fake_vllm_start(monkeypatch):
    """Replace the real vLLM start; returns the (backend, multiprocess) of every start."""
    import core.rollout.vllm_engine

    starts = []

    def start(cfg, target, backend):
        starts.append((backend.name, bool(cfg.rollout.multiprocess)))
        return object()  # any non-HF engine gets the hybrid manager

    monkeypatch.setattr(core.rollout.vllm_engine, "engine_from_config", start)
    return starts


def build(cfg, backend, model_dir="unused"):
    engine = load_backend(backend).make_rollout_engine(cfg, EngineTarget.from_config(cfg, model_dir))
    manager = load_backend(backend).make_sharding_manager(cfg, engine, torch.nn.Linear(2, 2))
    return engine, manager


def test_cpu_hf_engine_gets_the_copying_manager(compose_config, tiny_model_dir):
    engine, manager = build(compose_config("+backend=cpu"), "cpu", tiny_model_dir)
    assert isinstance(engine, HFRolloutEngine) and isinstance(manager, HFShardingManager)
    assert next(engine.model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@pytest.mark.parametrize("free", [True, False])
def test_vllm_engine_gets_the_hybrid_manager(compose_config, fake_vllm_start, backend, free):
    cfg = compose_config(f"+backend={backend}", "backend.engine=vllm", f"rollout.free_cache_engine={free}",
                         "rollout.check_weight_sync=true")
    _, manager = build(cfg, backend)
    assert fake_vllm_start == [(backend, False)]  # in-process by default
    assert isinstance(manager, VllmShardingManager)
    assert manager.free_cache_engine is free and manager.check_weight_sync


def test_unknown_engine_names_the_key(compose_config):
    from core.config.ranges import check_ranges

    with pytest.raises(TandemError, match="backend.engine=sglang is out of range: it must be hf or vllm"):
        check_ranges(compose_config("+backend=cpu", "backend.engine=sglang"))
