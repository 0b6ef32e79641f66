"""Each model family's weights reach a real vLLM in place (vLLM's CPU build): an engine started with dummy
weights receives the trainer's tensors, and the prompt-logprob sync check (core.sharding.vllm, tolerance there:
bf16 engine against the fp32 trainer) passes before and after an update. Gemma 3 stores (1 + w) norms, scales
its embedding and mixes sliding-window with global layers; Qwen3 has q/k norms; Llama 3 scales its rope."""

from __future__ import annotations

import pytest
import torch

from core.patches import vllm_version

pytestmark = [pytest.mark.vllm, pytest.mark.skipif(vllm_version() is None, reason="vLLM is not installed")]


@pytest.mark.parametrize("family", ["llama3", "qwen3", "gemma3"])
def test_a_familys_weights_sync_in_place(family, tmp_path):
    from transformers import AutoModelForCausalLM

    from core.sharding.base import iter_full_parameters
    from core.sharding.vllm import check_weight_sync
    from family_models import write_model_dir
    from vllm_cpu_engines import start_cpu_engine

    model_dir = str(write_model_dir(family, tmp_path / family))
    trainer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    engine = start_cpu_engine(model_dir, load_format="dummy", max_model_len=128, kv_cache_memory_bytes=1 << 26)
    try:
        engine.update_weights(iter_full_parameters(trainer, dtype=engine.dtype))
        check_weight_sync(engine, trainer)
        with torch.no_grad():  # an update's worth of change everywhere, norms and embedding included
            for parameter in trainer.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.02)
        engine.update_weights(iter_full_parameters(trainer, dtype=engine.dtype))
        check_weight_sync(engine, trainer)
    finally:
        engine.close()
