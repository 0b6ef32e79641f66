"""The shared-prompt forward (each distinct prompt once, its responses attending to that copy) gives the packed
forward's log-probs, entropies and gradients; its layout, derived by hand; its micro-batches keep groups whole."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from core.distributed.batching import micro_batches_by_groups
from core.distributed.packing import packed_response_logprobs
from core.distributed.shared_prompts import shared_prompt_layout, shared_prompt_logprobs, shared_prompt_tokens
from core.models import varlen_attention

from dist_utils import grouped_batch


def varlen_model():
    """A random grouped-query Qwen2 (4 query heads over 2 key/value heads) with the `tandem_varlen` attention."""
    config = Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return Qwen2ForCausalLM._from_config(config, attn_implementation=varlen_attention.register())


def test_a_lora_policy_takes_the_shared_forward_and_its_reference_pass_too():
    """GPU runs share prompts by default, LoRA runs among them: peft's wrapper must hand the layout's attention
    arguments through, with adapters on (the policy) and off (the reference)."""
    from omegaconf import OmegaConf

    from core.models.lora import adapters_disabled, apply_lora

    model = apply_lora(varlen_model(), OmegaConf.create(dict(rank=4, alpha=8, dropout=0.0,
                                                             target_modules=["q_proj", "v_proj"])))
    for lora_b in (p for name, p in model.named_parameters() if "lora_B" in name):
        torch.nn.init.normal_(lora_b, std=0.1)  # adapters that change the output (peft starts them at 0)
    batch = grouped_batch()
    mask = batch.response_mask
    policy, _ = shared_prompt_logprobs(model, batch)
    torch.testing.assert_close(policy[mask], packed_response_logprobs(model, batch)[0][mask], rtol=1e-5, atol=1e-5)
    with adapters_disabled(model):
        reference, _ = shared_prompt_logprobs(model, batch)
        torch.testing.assert_close(reference[mask], packed_response_logprobs(model, batch)[0][mask], rtol=1e-5,
                                   atol=1e-5)
    assert (reference[mask] - policy[mask]).abs().max() > 1e-3  # the adapters were on, then off


def test_layout_by_hand():
    # prompt_len 3. Rows: 0 = prompt [7, 8] + response [1, 2]; 1 = prompt [9, 9, 9] + response [3];
    # 2 = prompt [7, 8] + response [4] (row 0's prompt). Distinct prompts sort as tensors: [-1, 7, 8] < [9, 9, 9].
    ids = torch.tensor([[0, 7, 8, 1, 2], [9, 9, 9, 3, 0], [0, 7, 8, 4, 0]])
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 0], [0, 1, 1, 1, 0]])
    layout = shared_prompt_layout(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), prompt_len=3)
    # packed: the prompts [7 8] [9 9 9], then the responses in row order [1 2] [3] [4]; a response's positions
    # continue from its prompt's
    assert layout.input_ids.tolist() == [[7, 8, 9, 9, 9, 1, 2, 3, 4]]
    assert layout.position_ids.tolist() == [[0, 1, 0, 1, 2, 2, 3, 3, 2]]
    # segments (queries): the two prompts (2, 3 tokens), then rows 0, 1, 2's responses (2, 1, 1)
    assert layout.cu_seq_q.tolist() == [0, 2, 5, 7, 8, 9] and layout.max_q == 3
    # keys: a prompt, itself; a response, its prompt then itself: [0 1] [2 3 4] [0 1 5 6] [2 3 4 7] [0 1 8]
    assert layout.key_index.tolist() == [0, 1, 2, 3, 4, 0, 1, 5, 6, 2, 3, 4, 7, 0, 1, 8]
    assert layout.cu_seq_k.tolist() == [0, 2, 5, 9, 13, 16] and layout.max_k == 4
    # row 2's prompt columns point at row 0's copy
    assert layout.packed_at.tolist() == [[-1, 0, 1, 5, 6], [2, 3, 4, 7, -1], [-1, 0, 1, 8, -1]]


def test_shared_forward_equals_the_packed_one_in_values_and_gradients():
    model = varlen_model()
    batch = grouped_batch()
    mask = batch.response_mask
    expected, expected_entropy = packed_response_logprobs(model, batch, with_entropy=True, temperature=0.7)
    expected[mask].sum().backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    got, got_entropy = shared_prompt_logprobs(model, batch, with_entropy=True, temperature=0.7)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_entropy, expected_entropy, rtol=1e-5, atol=1e-5)
    got[mask].sum().backward()
    for (name, param), grad in zip(model.named_parameters(), expected_grads):
        torch.testing.assert_close(param.grad, grad, rtol=1e-4, atol=1e-6, msg=name)


def test_rows_with_different_prompts_each_keep_their_own():
    model = varlen_model()
    batch = grouped_batch(groups=5, n=1, seed=3)  # nothing shared: the packed layout, segment for segment
    torch.testing.assert_close(shared_prompt_logprobs(model, batch)[0], packed_response_logprobs(model, batch)[0],
                               rtol=1e-5, atol=1e-5)


def test_a_row_without_response_tokens_has_no_segment():
    # rows 0 and 1 share the prompt [5, 6]; row 1 got no response token
    ids = torch.tensor([[5, 6, 1, 2], [5, 6, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    layout = shared_prompt_layout(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), prompt_len=2)
    assert layout.input_ids.tolist() == [[5, 6, 1, 2]]
    assert layout.cu_seq_q.tolist() == [0, 2, 4] and layout.cu_seq_k.tolist() == [0, 2, 6]
    assert layout.packed_at.tolist() == [[0, 1, 2, 3], [0, 1, -1, -1]]


def test_tokens_count_each_groups_prompt_once():
    # group 0: prompt 2 tokens, responses 2 and 1; group 1: prompt 3, response 1 -> 2 + 3 + 3 + 1 = 9
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 0], [0, 1, 1, 1, 0]])
    assert shared_prompt_tokens(mask, 3, torch.tensor([0, 1, 0])) == 9


def test_micro_batches_keep_groups_whole_and_pay_each_prompt_once():
    # rows 0-3: group 0 (prompt 4, responses 3 each: 4 + 4*3 = 16 tokens); rows 4-5: group 1 (prompt 2, responses
    # 5: 12); rows 6-7: group 2 (prompt 2, responses 1: 4). Budget 16: groups largest first, whole where they fit.
    lengths = [7, 7, 7, 7, 7, 7, 3, 3]
    prompts = [4, 4, 4, 4, 2, 2, 2, 2]
    groups = [0, 0, 0, 0, 1, 1, 2, 2]
    assert micro_batches_by_groups(lengths, prompts, groups, max_tokens=16) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # budget 10: group 0 splits in two (4 + 2*3 = 10 each), group 1 too (2 + 5 + 5 = 12): its halves cost 7, and
    # group 2's 4 tokens fit beside neither (7 + 4 = 11)
    assert micro_batches_by_groups(lengths, prompts, groups, max_tokens=10) == [[0, 1], [2, 3], [4], [5], [6, 7]]
    # rows mode: 3 rows per micro-batch, in group order
    assert micro_batches_by_groups(lengths, prompts, groups, rows_per_micro=3) == [[0, 1, 2], [3, 4, 5], [6, 7]]


@pytest.mark.parametrize("on_policy", [True, False], ids=["on_policy", "two_epochs_two_mini_batches"])
def test_an_update_with_shared_prompts_is_the_packed_update(tiny_model_dir, on_policy):
    """The whole actor: the same loss, gradient norm and log-probs in one on-policy step (token budget on); and
    off-policy (PPO-style epochs over shuffled mini-batches, which split a prompt's rows: each part shares its own
    copy), the same mean loss and gradient norm."""
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM

    from core.algorithms.spec import AlgorithmSpec
    from core.config.schema import AlgorithmConfig, TrainerConfig
    from core.trainer.actor import Actor

    algo = OmegaConf.merge(OmegaConf.structured(AlgorithmConfig), {"kl_placement": "none"})
    results = []
    for share in (False, True):
        epochs = dict(ppo_epochs=1, mini_batches=1) if on_policy else dict(ppo_epochs=2, mini_batches=2)
        trainer = OmegaConf.merge(OmegaConf.structured(TrainerConfig), dict(
            lr=1e-2 if on_policy else 1e-6, grad_clip=1e9, max_tokens_per_gpu=40, remove_padding=True,
            share_prompts=share, **epochs))
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32,
                                                     attn_implementation=varlen_attention.register())
        actor = Actor(model, algo, trainer, AlgorithmSpec.from_config(algo, 6))
        batch = grouped_batch(groups=3, n=4, seed=5)
        if on_policy:
            batch.old_logprobs, batch.on_policy = None, True  # the update hands its log-probs back
        torch.manual_seed(1)  # the same mini-batch shuffle
        results.append(actor.update(batch))
    packed, shared = results
    assert shared.metrics["actor/pg_loss"] == pytest.approx(packed.metrics["actor/pg_loss"], abs=1e-6)
    assert shared.metrics["actor/grad_norm"] == pytest.approx(packed.metrics["actor/grad_norm"], rel=1e-5)
    if on_policy:
        torch.testing.assert_close(shared.logprobs, packed.logprobs, rtol=0, atol=1e-5)
    # (not the weights: Adam's first step is ~lr x sign(gradient), so a gradient of ~0 rounded the other way
    # moves a weight by 2 lr; the forward's gradients are compared above)


def test_shared_prompts_refuse_padded_rows():
    from core.errors import TandemError
    from core.trainer.setup import resolve_packing

    with pytest.raises(TandemError, match="trainer.share_prompts=true .* trainer.remove_padding=false"):
        resolve_packing(False, torch.device("cpu"), torch.float32, shared_prompts=True)
    assert resolve_packing(None, torch.device("cpu"), torch.float32, shared_prompts=True)


def test_share_prompts_null_turns_on_only_where_a_flash_kernel_has_prompts_to_share(monkeypatch):
    from core.trainer.setup import resolve_share_prompts

    cuda, cpu, bf16 = torch.device("cuda"), torch.device("cpu"), torch.bfloat16
    monkeypatch.setattr(varlen_attention, "varlen_kernel_available", lambda: True)
    assert resolve_share_prompts(None, None, cuda, bf16, samples_per_prompt=8)
    assert resolve_share_prompts(None, True, cuda, torch.float16, samples_per_prompt=2)
    assert not resolve_share_prompts(None, None, cpu, bf16, samples_per_prompt=8)  # the CPU path unchanged
    assert not resolve_share_prompts(None, None, cuda, torch.float32, samples_per_prompt=8)  # no flash kernel
    assert not resolve_share_prompts(None, None, cuda, bf16, samples_per_prompt=1)  # nothing to share
    assert not resolve_share_prompts(None, False, cuda, bf16, samples_per_prompt=8)  # padded rows asked for
    assert resolve_share_prompts(True, None, cpu, torch.float32, samples_per_prompt=1)  # asked for: as asked
    assert not resolve_share_prompts(False, None, cuda, bf16, samples_per_prompt=8)
    monkeypatch.setattr(varlen_attention, "varlen_kernel_available", lambda: False)
    assert not resolve_share_prompts(None, None, cuda, bf16, samples_per_prompt=8)


@pytest.mark.gpu
@pytest.mark.skipif(not varlen_attention.varlen_kernel_available(), reason="needs a CUDA GPU with torch's varlen kernel")
def test_the_flash_kernel_aligns_a_response_after_its_prompt_as_the_cpu_fallback_does(monkeypatch):
    """On a GPU, torch's varlen kernel takes segments with more keys than queries: the result must be the
    row-by-row fallback's (bottom-right causal), in bf16, values and gradients; then the packed forward's."""
    model = varlen_model().to("cuda", torch.bfloat16)
    batch = grouped_batch(groups=4, n=8, seed=2).to("cuda")
    mask = batch.response_mask
    flash, _ = shared_prompt_logprobs(model, batch)
    flash[mask].float().sum().backward()
    flash_grads = [p.grad.float().clone() for p in model.parameters()]
    model.zero_grad()
    flash_kernel = varlen_attention.varlen_causal
    monkeypatch.setattr(varlen_attention, "varlen_causal", varlen_attention.rowwise_causal)
    fallback, _ = shared_prompt_logprobs(model, batch)
    fallback[mask].float().sum().backward()
    torch.testing.assert_close(flash[mask], fallback[mask], rtol=0.02, atol=0.05)
    for (name, param), grad in zip(model.named_parameters(), flash_grads):  # bf16 rounding: direction, not digits
        assert torch.nn.functional.cosine_similarity(grad.flatten(), param.grad.float().flatten(), dim=0) > 0.99, name
    monkeypatch.setattr(varlen_attention, "varlen_causal", flash_kernel)
    packed, _ = packed_response_logprobs(model, batch)
    torch.testing.assert_close(flash[mask], packed[mask], rtol=0.02, atol=0.05)


def test_the_update_reports_the_tokens_its_forward_computed(tiny_model_dir):
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM

    from core.algorithms.spec import AlgorithmSpec
    from core.config.schema import AlgorithmConfig, TrainerConfig
    from core.trainer.actor import Actor

    algo = OmegaConf.merge(OmegaConf.structured(AlgorithmConfig), {"kl_placement": "none"})
    batch = grouped_batch(groups=3, n=4, seed=5)
    prompts = batch.attention_mask[:, :batch.prompt_len].sum(-1)
    shared_tokens = int(batch.attention_mask.sum() - prompts.sum()) + int(prompts.unique().sum())  # 3 distinct lengths
    for share, expected in ((False, int(batch.attention_mask.sum())), (True, shared_tokens)):
        trainer = OmegaConf.merge(OmegaConf.structured(TrainerConfig), dict(remove_padding=True, share_prompts=share))
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32,
                                                     attn_implementation=varlen_attention.register())
        result = Actor(model, algo, trainer, AlgorithmSpec.from_config(algo, 6)).update(batch)
        assert result.metrics["perf/update_tokens"] == expected


def test_shared_prompts_without_a_flash_dtype_warn_on_an_accelerator(caplog):
    from core.trainer.setup import resolve_packing

    with caplog.at_level("WARNING", logger="tandem"):
        assert resolve_packing(None, torch.device("cuda"), torch.float32, shared_prompts=True)
    assert "trainer.share_prompts with float32 compute" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="tandem"):
        resolve_packing(None, torch.device("cuda"), torch.bfloat16, shared_prompts=True)
        resolve_packing(None, torch.device("cpu"), torch.float32, shared_prompts=True)
    assert not caplog.text
