"""Assistant-only loss masks (multi-turn), labels, the loss and LR schedule by hand, micro-batch invariance."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from core.errors import TandemError
from sft.batching import collate, micro_batches
from sft.chat import prompt_ids, shifted_labels, tokenize_chat
from sft.dataset import make_example
from core.trainer.schedule import lr_factor
from sft.loss import sft_loss_sum

DATA = OmegaConf.create({"max_length": 1024, "max_prompt_length": 512})


def masked_text(tokenizer, chat) -> str:
    return tokenizer.decode([t for t, m in zip(chat.input_ids, chat.loss_mask) if m])


def test_only_assistant_tokens_are_learned_in_every_turn(tiny_tokenizer):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "ok"},
    ]
    chat = tokenize_chat(tiny_tokenizer, messages)
    # both assistant turns, each with its end-of-turn marker; no system/user text, no role headers
    assert masked_text(tiny_tokenizer, chat) == "yo<|im_end|>\nok<|im_end|>\n"
    assert len(chat.loss_mask) == len(chat.input_ids)
    assert tiny_tokenizer.decode(prompt_ids(tiny_tokenizer, messages)).endswith("again<|im_end|>\n<|im_start|>assistant\n")


def test_conversation_without_assistant_is_refused(tiny_tokenizer):
    with pytest.raises(TandemError, match="row 3: no assistant message"):
        tokenize_chat(tiny_tokenizer, [{"role": "user", "content": "hi"}], where="f.jsonl: row 3")


def test_labels_are_the_next_assistant_token():
    input_ids = torch.tensor([[10, 11, 12, 13]])
    loss_mask = torch.tensor([[False, False, True, True]])
    # position 1 predicts 12, position 2 predicts 13, the last position predicts nothing
    assert shifted_labels(input_ids, loss_mask).tolist() == [[-100, 12, 13, -100]]


def test_loss_of_uniform_logits_is_log_vocab_per_labelled_token():
    logits = torch.zeros(1, 4, 4)  # vocab 4, uniform
    labels = torch.tensor([[-100, 1, 2, 3]])
    total, count = sft_loss_sum(logits, labels)
    assert count == 3 and total.item() == pytest.approx(3 * math.log(4))


def test_lr_schedule_warmup_then_cosine():
    assert [lr_factor(s, 4, 100, "cosine", 0.0) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(5, 0, 10, "cosine", 0.0) == pytest.approx(0.5)  # 0.5 * (1 + cos(pi / 2))
    assert lr_factor(10, 0, 10, "cosine", 0.1) == pytest.approx(0.1)  # fully decayed to the floor
    assert lr_factor(50, 4, 100, "constant", 0.0) == 1.0


def test_gradient_does_not_depend_on_the_token_budget(tiny_tokenizer, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from sft.synthetic import reverse_letters_conversations

    examples = [make_example(tiny_tokenizer, m, DATA, "t") for m in reverse_letters_conversations(6, seed=0)]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)

    def gradient(budget: int) -> torch.Tensor:
        model.zero_grad()
        batches = micro_batches(examples, budget, tiny_tokenizer.pad_token_id)
        total = sum(b.num_loss_tokens for b in batches)
        for b in batches:
            (sft_loss_sum(model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits, b.labels)[0] / total).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()]), len(batches)

    whole, one = gradient(10_000)
    split, many = gradient(40)  # about one conversation per micro-batch
    assert one == 1 and many >= 5
    torch.testing.assert_close(split, whole, rtol=1e-4, atol=1e-6)


def test_padding_is_neither_attended_nor_learned(tiny_tokenizer):
    examples = [make_example(tiny_tokenizer, [{"role": "user", "content": u}, {"role": "assistant", "content": a}], DATA, "t")
                for u, a in [("a", "b"), ("longer question", "c")]]
    batch = collate(examples, pad_token_id=tiny_tokenizer.pad_token_id)
    short = len(examples[0].input_ids)
    assert batch.attention_mask[0, short:].sum() == 0
    assert (batch.labels[0, short - 1:] == -100).all()
