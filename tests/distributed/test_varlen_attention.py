"""The `tandem_varlen` attention (torch's varlen kernel on GPU, row-by-row sdpa on CPU) equals sdpa's
block-diagonal packed forward, in values and gradients, and falls back to sdpa for padded batches."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from core.distributed.packing import packed_response_logprobs
from core.models import varlen_attention
from core.trainer.actor import response_logprobs

from dist_utils import random_batch


def models():
    """Two copies of one random grouped-query Qwen2 (4 query heads share 2 key/value heads): sdpa and varlen."""
    config = Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    reference = Qwen2ForCausalLM._from_config(config, attn_implementation="sdpa")
    varlen = Qwen2ForCausalLM._from_config(config, attn_implementation=varlen_attention.register())
    varlen.load_state_dict(reference.state_dict())
    return reference, varlen


def test_packed_forward_and_gradients_equal_sdpa():
    reference, varlen = models()
    batch = random_batch(rows=6)
    mask = batch.response_mask
    expected, expected_entropy = packed_response_logprobs(reference, batch, with_entropy=True)
    got, got_entropy = packed_response_logprobs(varlen, batch, with_entropy=True)
    torch.testing.assert_close(got[mask], expected[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_entropy[mask], expected_entropy[mask], rtol=1e-5, atol=1e-5)
    expected[mask].sum().backward()
    got[mask].sum().backward()
    for (name, a), b in zip(reference.named_parameters(), varlen.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_padded_batch_takes_the_sdpa_path():
    reference, varlen = models()
    batch = random_batch(rows=4, seed=1)
    torch.testing.assert_close(response_logprobs(varlen, batch), response_logprobs(reference, batch))


def test_row_bounds_of_packed_positions():
    # rows of 3, 1 and 2 tokens: starts 0, 3, 4; longest 3
    cumulative, longest = varlen_attention.row_bounds(torch.tensor([[0, 1, 2, 0, 0, 1]]))
    assert cumulative.tolist() == [0, 3, 4, 6] and longest == 3


def test_the_rows_bounds_are_found_once_per_forward_not_in_every_layer(monkeypatch):
    _, varlen = models()  # 2 layers: found in each layer, the bounds would be found twice
    calls = []
    found = varlen_attention.row_bounds
    monkeypatch.setattr(varlen_attention, "row_bounds", lambda positions: calls.append(1) or found(positions))
    packed_response_logprobs(varlen, random_batch(rows=3))
    assert len(calls) == 1


def test_packing_defaults_to_padded_on_cpu_and_an_explicit_setting_wins():
    from core.trainer.setup import resolve_packing

    cpu = torch.device("cpu")
    assert resolve_packing(None, cpu, torch.bfloat16) is False
    assert resolve_packing(True, cpu, torch.float32) is True and resolve_packing(False, cpu, torch.bfloat16) is False


@pytest.mark.gpu
@pytest.mark.skipif(not varlen_attention.varlen_kernel_available(), reason="needs a CUDA GPU with torch's varlen kernel")
def test_the_cuda_varlen_kernel_matches_sdpa_in_bf16():
    reference, varlen = (m.to("cuda", torch.bfloat16) for m in models())
    batch = random_batch(rows=6).to("cuda")
    mask = batch.response_mask
    expected, _ = packed_response_logprobs(reference, batch)
    got, _ = packed_response_logprobs(varlen, batch)
    torch.testing.assert_close(got[mask], expected[mask], rtol=0.02, atol=0.05)  # bf16: two kernels' rounding


@pytest.mark.gpu
@pytest.mark.skipif(not varlen_attention.varlen_kernel_available(), reason="needs a CUDA GPU with torch's varlen kernel")
def test_fp32_master_weights_under_bf16_autocast_take_the_varlen_kernel(monkeypatch):
    """trainer.master_weights on a GPU: fp32 weights, the forward under bf16 autocast. The rotary embedding
    promotes q and k back to fp32; the flash kernel must still run (in bf16), not the row-by-row fallback."""
    from core.trainer.precision import TrainingPrecision

    reference, varlen = (m.to("cuda") for m in models())  # fp32 weights
    batch = random_batch(rows=6).to("cuda")
    mask = batch.response_mask
    # the fp32 reference takes the row-by-row path itself (the flash kernel refuses fp32): run it before the trap
    expected, _ = packed_response_logprobs(reference, batch)
    monkeypatch.setattr(varlen_attention, "rowwise_causal", lambda *args: pytest.fail("took the fp32 fallback"))
    with TrainingPrecision(torch.float32, torch.bfloat16).compute(torch.device("cuda")):
        got, _ = packed_response_logprobs(varlen, batch)
    torch.testing.assert_close(got[mask], expected[mask], rtol=0.02, atol=0.05)  # bf16 compute vs fp32
    got[mask].sum().backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in varlen.parameters())
