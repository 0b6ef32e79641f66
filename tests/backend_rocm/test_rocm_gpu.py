"""The ROCm backend on an AMD GPU: the sleep-mode probe against reality, and one hybrid round trip.

Everything else in tests/backend_rocm runs on CPU with fakes. These need a ROCm torch, an AMD GPU
and a ROCm build of vLLM: `pytest -m gpu tests/backend_rocm` on such a host. Skipped elsewhere.
"""

from __future__ import annotations

import pytest
import torch

from backend_rocm.probe import probe_rocm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.version.hip is None, reason="needs a ROCm (HIP) build of torch"),
]


@pytest.fixture(scope="module")
def rocm_available():
    availability = probe_rocm()
    if not availability.available:
        pytest.skip(availability.reason)
    return availability


def test_static_sleep_probe_agrees_with_a_real_cycle(rocm_available):
    from backend_rocm.probe import sleep_mode_support, verify_sleep_cycle

    static = sleep_mode_support()
    if not static.available:
        pytest.skip(f"this build has no sleep mode ({static.reason}); the fallback path is tested on CPU")
    assert verify_sleep_cycle().available


def test_hybrid_round_trip_with_the_notes_settings(rocm_available, compose_config):
    from transformers import AutoModelForCausalLM

    from core.models.builtin import resolve_model_path
    from core.plugins.manager import load_backend
    from core.rollout.base import EngineTarget, SamplingParams

    model_dir = resolve_model_path("builtin:tiny-qwen2")
    cfg = compose_config("+backend=rocm", "rollout.gpu_memory_utilization=0.3", "rollout.check_weight_sync=true")
    trainer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda()
    engine = load_backend("rocm").make_rollout_engine(cfg, EngineTarget.from_config(cfg, model_dir))
    manager = load_backend("rocm").make_sharding_manager(cfg, engine, trainer)
    try:
        for _ in range(2):
            with manager:  # weights synced and checked against the trainer's logprobs
                out = engine.generate([[1, 2, 3], [4, 5]], SamplingParams(n=2, max_tokens=8))
            assert out.response_ids.shape[0] == 4
    finally:
        engine.close()
