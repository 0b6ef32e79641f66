"""`rollout.multiprocess=true` against a real vLLM: the engine core runs in its own process, so new
weights travel in buckets through `collective_rpc` (bytes on CPU; CUDA IPC handles on a GPU) instead of
being handed over in-process. On an H200 this engine generated 1.26x faster inside the GRPO step
(docs/grpo_step_performance.md, fourth round); this checks that what arrives is the trainer's model.
"""

from __future__ import annotations

import pytest
import torch

from core.patches import vllm_version

pytestmark = [pytest.mark.vllm, pytest.mark.skipif(vllm_version() is None, reason="vLLM is not installed")]


@pytest.mark.timeout(600)
def test_weights_cross_into_the_engine_core_process_and_match_the_trainer(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from core.rollout.base import SamplingParams
    from core.sharding.base import iter_full_parameters
    from core.sharding.vllm import check_weight_sync
    from vllm_cpu_engines import start_cpu_engine

    engine = start_cpu_engine(tiny_model_dir, multiprocess=True, load_format="dummy", gpu_memory_utilization=0.2)
    try:
        assert type(engine.llm.llm_engine.engine_core).__name__ != "InprocClient"  # really another process
        trainer = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        with pytest.raises(RuntimeError, match="weight sync check failed"):
            check_weight_sync(engine, trainer)  # dummy weights: nothing has been pushed yet
        engine.bucket_bytes = 64 << 10  # several buckets, and the embedding travels alone
        engine.update_weights(iter_full_parameters(trainer, dtype=engine.dtype))
        check_weight_sync(engine, trainer)
        with torch.no_grad():
            for p in trainer.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        engine.update_weights(iter_full_parameters(trainer, dtype=engine.dtype))  # the second sync: copy plan
        check_weight_sync(engine, trainer)
        with torch.no_grad():  # the check catches that much drift left unsynced
            for p in trainer.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        with pytest.raises(RuntimeError, match="weight sync check failed"):
            check_weight_sync(engine, trainer)
        out = engine.generate([[10, 20, 30]], SamplingParams(n=2, max_tokens=4, logprobs=False))
        assert out.response_ids.shape[0] == 2 and out.response_logprobs is None
    finally:
        engine.close()
