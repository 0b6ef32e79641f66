"""The real models (SmolLM2-135M-Instruct, Gemma 3 270M) on a GPU: the trainer's packed varlen path equals its
padded and eager forwards, and vLLM holds the trainer's weights after each in-place sync (the prompt-logprob
check of core.sharding.vllm: bf16 engine against the fp32 trainer) — with sleep mode, as a run uses it.

Run on a GPU host with vLLM and the models' packages: `pytest -m gpu tests/backend_cuda`. Skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from core.models.gguf import PACKAGED_MODELS
from core.patches import vllm_version

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distributed"))
from dist_utils import random_batch  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
REAL_MODELS = ["smollm2-135m-instruct", "gemma3-270m"]


def _real_model_dir(name: str) -> str:
    from core.models.builtin import resolve_model_path

    if importlib.util.find_spec(PACKAGED_MODELS[name].module) is None:
        pytest.skip(f"needs {PACKAGED_MODELS[name].install}")
    return resolve_model_path(f"packaged:{name}")  # imported once; its tokenizer checked against the file


@pytest.mark.parametrize("name", REAL_MODELS)
def test_packed_padded_and_eager_log_probs_agree_on_the_real_model(name):
    from transformers import AutoModelForCausalLM

    from core.distributed.packing import packed_response_logprobs
    from core.models import varlen_attention
    from core.trainer.actor import response_logprobs

    model_dir = _real_model_dir(name)
    eager = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    varlen = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                  attn_implementation=varlen_attention.register())
    eager, varlen = eager.cuda().eval(), varlen.cuda().eval()
    # rows of up to 700 tokens: past Gemma's sliding window of 512
    batch = random_batch(rows=6, vocab=eager.config.vocab_size, max_prompt=400, max_response=300, seed=1).to("cuda")
    mask = batch.response_mask
    with torch.no_grad():
        expected, _ = response_logprobs(eager, batch)
        packed, _ = packed_response_logprobs(varlen, batch)
    # fp32 on both sides; the kernels sum in other orders over up to 700 positions
    torch.testing.assert_close(packed[mask], expected[mask], rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(vllm_version() is None, reason="vLLM is not installed")
@pytest.mark.parametrize("name", REAL_MODELS)
def test_vllm_holds_the_real_models_weights_after_each_sync(name):
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM

    from core.config.schema import TandemConfig
    from core.plugins.manager import load_backend
    from core.rollout.base import EngineTarget, SamplingParams
    from core.sharding.vllm import check_weight_sync

    model_dir = _real_model_dir(name)
    cfg = OmegaConf.structured(TandemConfig)
    cfg.model.path = model_dir
    cfg.backend.name, cfg.backend.engine = "cuda", "vllm"
    cfg.rollout.gpu_memory_utilization = 0.3
    cfg.rollout.sleep_level = 2
    cfg.rollout.load_format = "dummy"  # every weight the engine ends up with comes from the trainer
    cfg.rollout.check_weight_sync = True
    backend = load_backend("cuda")
    trainer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda()
    engine = backend.make_rollout_engine(cfg, EngineTarget.from_config(cfg, model_dir))
    try:
        manager = backend.make_sharding_manager(cfg, engine, trainer)
        engine.sleep()
        for _ in range(2):  # the real weights, then an update's worth of change everywhere
            with manager:  # wake -> sync -> the prompt-logprob check -> generate
                out = engine.generate([[1, 2, 3, 4]], SamplingParams(n=2, max_tokens=8))
                assert out.response_mask.any(1).all()
            with torch.no_grad():
                for parameter in trainer.parameters():
                    parameter.add_(torch.randn_like(parameter) * 0.01)
        with manager:
            check_weight_sync(engine, trainer)
    finally:
        engine.close()
