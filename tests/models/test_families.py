"""Model families through the trainer's forward paths, on tiny random configs (tests/family_models.py): the
packed varlen forward (`tandem_varlen`, rows concatenated, no mask), the shared-prompt forward, LoRA, and the
padded sdpa forward give HF eager's log-probs. Tolerance: fp32 on CPU, the paths differ only in summation
order (1e-5). The in-place sync into vLLM is tests/vllm/test_vllm_cpu_families.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from core.distributed.packing import packed_response_logprobs
from core.models import varlen_attention
from core.trainer.actor import response_logprobs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "distributed"))
from dist_utils import grouped_batch, random_batch  # noqa: E402
from family_models import FAMILIES, random_model  # noqa: E402

def three_copies(family: str):
    """One random model of `family` as eager, sdpa and tandem_varlen attention, the same weights."""
    eager = random_model(family)
    copies = [eager]
    for attention in ("sdpa", varlen_attention.register()):
        copy = random_model(family, attention)
        copy.load_state_dict(eager.state_dict())
        copies.append(copy)
    return [model.eval() for model in copies]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_packed_and_padded_log_probs_equal_eager(family):
    eager, sdpa, varlen = three_copies(family)
    batch = random_batch(rows=6, max_prompt=7, max_response=6)  # rows up to 13 tokens: past Gemma's window of 4
    mask = batch.response_mask
    with torch.no_grad():
        expected, _ = response_logprobs(eager, batch)
        padded, _ = response_logprobs(sdpa, batch)
        packed, _ = packed_response_logprobs(varlen, batch)
    torch.testing.assert_close(padded[mask], expected[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed[mask], expected[mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_shared_prompts_and_lora_equal_the_packed_forward(family):
    """Each prompt once, its responses attending to it (GPU runs' default), plain and with LoRA adapters on."""
    from omegaconf import OmegaConf

    from core.distributed.shared_prompts import shared_prompt_logprobs
    from core.models.lora import apply_lora

    _, _, varlen = three_copies(family)
    batch = grouped_batch()  # prompts of 3-7 tokens, responses of up to 6: rows past Gemma's window of 4
    mask = batch.response_mask
    with torch.no_grad():
        shared, _ = shared_prompt_logprobs(varlen, batch)
        packed, _ = packed_response_logprobs(varlen, batch)
    torch.testing.assert_close(shared[mask], packed[mask], rtol=1e-5, atol=1e-5)
    lora = apply_lora(varlen, OmegaConf.create(dict(rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])))
    for lora_b in (p for name, p in lora.named_parameters() if "lora_B" in name):
        torch.nn.init.normal_(lora_b, std=0.1)  # adapters that change the output (peft starts them at 0)
    with torch.no_grad():
        shared_lora, _ = shared_prompt_logprobs(lora, batch)
        packed_lora, _ = packed_response_logprobs(lora, batch)
    torch.testing.assert_close(shared_lora[mask], packed_lora[mask], rtol=1e-5, atol=1e-5)
    assert (shared_lora[mask] - shared[mask]).abs().max() > 1e-3  # the adapters took part


def test_the_sliding_window_matters_here():
    """Without its window the packed Gemma 3 would differ: the test above checks the window, not luck."""
    eager, _, varlen = three_copies("gemma3")
    batch = random_batch(rows=6, max_prompt=7, max_response=6)
    mask = batch.response_mask
    for layer in varlen.model.layers:
        layer.self_attn.sliding_window = None
    with torch.no_grad():
        unwindowed, _ = packed_response_logprobs(varlen, batch)
        expected, _ = response_logprobs(eager, batch)
    assert (unwindowed[mask] - expected[mask]).abs().max() > 1e-3


def test_windowed_rowwise_mask_by_hand():
    # 3 queries aligned with the last of 5 keys, window 2: query i sees keys (2 + i - 1) .. (2 + i)
    mask = varlen_attention._causal_mask(3, 5, 2, "cpu").int().tolist()
    assert mask == [[0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]]


def test_a_written_model_dir_names_its_architecture(tmp_path):
    """vLLM picks its class by config.json's `architectures`: without it, gemma3_text and qwen3 load as
    vLLM's embedding models, and the engine refuses to generate."""
    import json

    from family_models import write_model_dir

    config = json.loads((write_model_dir("gemma3", tmp_path / "g") / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"]
