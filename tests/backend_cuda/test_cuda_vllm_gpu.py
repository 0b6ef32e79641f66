"""The CUDA backend end to end on a GPU: vLLM in-process and multi-process, with sleep mode and CUDA graphs.

Run on a GPU host with vLLM: `pytest -m gpu tests/backend_cuda`. Skipped elsewhere.
"""

from __future__ import annotations

import pytest
import torch

from core.patches import vllm_version
from core.rollout.base import EngineTarget

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(vllm_version() is None, reason="vLLM is not installed"),
]


@pytest.fixture(scope="module", params=[False, True], ids=["inprocess", "multiprocess"])
def setup(request):
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM

    from core.config.schema import TandemConfig
    from core.models.builtin import resolve_model_path
    from core.plugins.manager import load_backend

    model_dir = resolve_model_path("builtin:tiny-qwen2")
    cfg = OmegaConf.structured(TandemConfig)
    cfg.backend.name, cfg.backend.engine = "cuda", "vllm"
    cfg.rollout.gpu_memory_utilization = 0.3
    cfg.rollout.sleep_level = 2
    cfg.rollout.check_weight_sync = True
    cfg.rollout.multiprocess = request.param  # True: weights reach the engine-core process by CUDA IPC
    trainer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda()
    engine = load_backend("cuda").make_rollout_engine(cfg, EngineTarget.from_config(cfg, model_dir))
    engine.bucket_bytes = 64 << 10  # several buckets, and the embedding alone past the bucket (multi-process)
    manager = load_backend("cuda").make_sharding_manager(cfg, engine, trainer)
    yield engine, manager, trainer
    engine.close()


def test_hybrid_round_trips_with_sleep_and_checked_sync(setup):
    from core.rollout.base import SamplingParams
    from core.sharding.vllm import check_weight_sync

    engine, manager, trainer = setup
    assert engine.llm.llm_engine.vllm_config.model_config.enable_sleep_mode
    engine.sleep()
    for round_ in range(2):
        with torch.no_grad():
            for p in trainer.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        with manager:  # wake weights -> sync -> wake kv -> reset prefix cache -> logprob check
            out = engine.generate([[1, 2, 3], [4, 5]], SamplingParams(n=3, max_tokens=16))
        assert out.response_ids.shape[0] == 6 and out.response_mask.any(1).all()
        assert engine._asleep == {"weights", "kv_cache"}
    with manager:  # the check that passed in each round would have caught one round's drift left unsynced
        with torch.no_grad():
            for p in trainer.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        with pytest.raises(RuntimeError, match="weight sync check failed"):
            check_weight_sync(engine, trainer)
    if not engine.multiprocess:  # the second sync went by the copy plan (core/rollout/copy_plan.py)
        planned = engine.llm.collective_rpc(lambda w: len(getattr(w, "worker", w)._tandem_copy_plan.views))
        assert planned[0] > 0


def test_doctor_reports_cuda_features():
    from core.doctor import report

    rows = dict(report("cuda"))
    assert rows["backend cuda"].startswith("available")
    assert rows["sleep mode"].startswith("yes")
