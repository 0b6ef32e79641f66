"""Padding-free SFT: the packed forward gives the padded forward's loss and gradients, and a run trains with it."""

from __future__ import annotations

import json

import torch
from omegaconf import OmegaConf

from sft.batching import collate, micro_batches
from sft.dataset import make_example
from sft.trainer import micro_loss_sum
from sft_fakes import tiny_run

DATA = OmegaConf.create({"max_length": 64, "max_prompt_length": 48})


def test_packed_loss_and_gradients_equal_the_padded_ones(tiny_tokenizer, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from sft.synthetic import reverse_letters_conversations

    examples = [make_example(tiny_tokenizer, m, DATA, "t") for m in reverse_letters_conversations(5, seed=3)]
    assert len({len(e.input_ids) for e in examples}) > 1  # rows of different lengths: padding matters
    batch = collate(examples, tiny_tokenizer.pad_token_id)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)

    def loss_and_gradient(packed: bool):
        model.zero_grad()
        summed, count = micro_loss_sum(model, batch, packed=packed)
        summed.backward()
        return summed.detach(), count, torch.cat([p.grad.flatten() for p in model.parameters()])

    padded_loss, padded_count, padded_grad = loss_and_gradient(packed=False)
    packed_loss, packed_count, packed_grad = loss_and_gradient(packed=True)
    assert packed_count == padded_count == int((batch.labels != -100).sum())
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed_grad, padded_grad, rtol=1e-4, atol=1e-6)


def test_packed_budget_counts_real_tokens(tiny_tokenizer):
    from sft.synthetic import reverse_letters_conversations

    examples = [make_example(tiny_tokenizer, m, DATA, "t") for m in reverse_letters_conversations(8, seed=1)]
    budget = 2 * max(len(e.input_ids) for e in examples)
    padded = micro_batches(examples, budget, tiny_tokenizer.pad_token_id, padded=True)
    packed = micro_batches(examples, budget, tiny_tokenizer.pad_token_id, padded=False)
    assert all(int(b.attention_mask.sum()) <= budget for b in packed)
    assert len(packed) <= len(padded)  # no padding to pay for: as many rows or more per pass


def test_packed_run_trains_and_validates(tmp_path):
    from sft.loop import train

    summary = train(tiny_run(tmp_path, "trainer.remove_padding=true", "trainer.micro_batch_tokens=200",
                             "data.reward_fn=null"))
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(m["train/micro_batches"] > 1 for m in metrics if "train/loss" in m)
    assert summary["val/loss_end"] < summary["val/loss_start"]
