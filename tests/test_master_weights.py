"""`trainer.master_weights`: on one device a bf16 model keeps fp32 weights and computes under autocast.

The failure it prevents, shown on the tiny model: one AdamW step at an RL learning rate (1e-5) moves
each weight by about 1e-5, below half of bf16's spacing at any |w| above ~2.6e-3 (|w| / 256), so bf16
weights stay where they were, while fp32 master weights move. Compute stays bf16: the log-probs agree with the
bf16 model's to bf16 precision."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from core.algorithms.spec import AlgorithmSpec
from core.trainer.actor import Actor
from core.trainer.precision import TrainingPrecision, rounding_warning, training_precision

sys.path.insert(0, str(Path(__file__).parent / "distributed"))
from dist_utils import random_batch  # noqa: E402
from test_on_policy_logprobs import ALGO, TRAINER  # noqa: E402


def _actor(model_dir, precision: TrainingPrecision) -> Actor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=precision.param_dtype)
    trainer = OmegaConf.merge(TRAINER, {"lr": 1e-5})
    return Actor(model, ALGO, trainer, AlgorithmSpec.from_config(ALGO, 5), precision=precision)


def _share_of_weights_moved(actor: Actor, batch) -> float:
    before = [p.detach().clone() for p in actor.model.parameters()]
    actor.update(batch)
    moved = sum(int((p.detach() != b).sum()) for p, b in zip(actor.model.parameters(), before))
    return moved / sum(b.numel() for b in before)


def test_fp32_master_weights_keep_the_updates_bf16_weights_round_away(tiny_model_dir):
    batch = random_batch(rows=8, seed=3)
    master = _actor(tiny_model_dir, training_precision(torch.bfloat16, sharded=False, master_weights=True))
    plain = _actor(tiny_model_dir, training_precision(torch.bfloat16, sharded=False, master_weights=False))
    assert next(master.model.parameters()).dtype == torch.float32
    assert next(plain.model.parameters()).dtype == torch.bfloat16

    master_logprobs, _ = master.compute_logprobs(batch)
    plain_logprobs, _ = plain.compute_logprobs(batch)
    # the same bf16 arithmetic up to where the norms run (fp32 weights there): bf16-sized differences
    torch.testing.assert_close(master_logprobs, plain_logprobs, rtol=0, atol=0.1)

    # measured: 85% of the fp32 weights moved (embedding rows of tokens absent from the batch get no
    # gradient) against 13% of the bf16 ones: those with |w| < ~2.6e-3 (normal init, std 0.02: ~10%)
    master_moved, plain_moved = _share_of_weights_moved(master, batch), _share_of_weights_moved(plain, batch)
    assert master_moved > 0.8 and plain_moved < 0.2, (master_moved, plain_moved)


def test_autocast_runs_the_forward_in_the_compute_dtype(tiny_model_dir):
    precision = training_precision(torch.bfloat16, sharded=False, master_weights=True)
    actor = _actor(tiny_model_dir, precision)
    ids = torch.randint(0, 200, (2, 7))
    with precision.compute(actor.device):
        logits = actor.model(input_ids=ids).logits
    assert logits.dtype == torch.bfloat16  # the lm-head ran in bf16 on fp32 weights
    assert actor.model(input_ids=ids).logits.dtype == torch.float32  # outside the trainer's context: fp32


@pytest.mark.parametrize("compute, sharded, master, params, autocast", [
    (torch.bfloat16, True, False, torch.float32, None),  # FSDP: fp32 masters, its own casts
    (torch.bfloat16, False, True, torch.float32, torch.bfloat16),  # one device, master weights
    (torch.bfloat16, False, False, torch.bfloat16, None),  # one device, weights in model.dtype
    (torch.float32, False, True, torch.float32, None),  # fp32 model: nothing to split
])
def test_training_precision_table(compute, sharded, master, params, autocast):
    assert training_precision(compute, sharded, master) == TrainingPrecision(params, autocast)


def test_half_precision_weights_on_one_device_are_warned_about_naming_the_fix():
    message = rounding_warning(training_precision(torch.bfloat16, False, False), lr=1e-5)
    # bf16's spacing at 1.0 is 2^-7: a step of 1e-5 is lost above 2 * 1e-5 * 128 = 0.00256
    assert "bfloat16" in message and "lr=1e-05" in message and "~0.0026" in message
    assert "trainer.master_weights=true" in message
    assert rounding_warning(training_precision(torch.bfloat16, False, False), lr=5e-3) is None  # moves even |w| = 1
    assert rounding_warning(training_precision(torch.bfloat16, False, True), lr=1e-6) is None
    assert rounding_warning(training_precision(torch.bfloat16, True, False), lr=1e-6) is None


def test_lora_keeps_its_base_in_model_dtype_and_is_not_warned_about(tiny_model_dir):
    """peft's adapters are fp32 masters already: master weights add only autocast, not an fp32 copy of the base."""
    pytest.importorskip("peft")
    from core.models.lora import apply_lora

    precision = training_precision(torch.bfloat16, sharded=False, master_weights=True, lora=True)
    assert precision == TrainingPrecision(torch.bfloat16, torch.bfloat16)
    assert rounding_warning(training_precision(torch.bfloat16, False, False, lora=True), lr=1e-6, lora=True) is None
    from transformers import AutoModelForCausalLM

    lora_cfg = OmegaConf.create(dict(rank=4, alpha=8, dropout=0.0, target_modules=["q_proj", "up_proj"]))
    model = apply_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=precision.param_dtype), lora_cfg)
    adapters = {p.dtype for name, p in model.named_parameters() if ".lora_" in name}
    base = {p.dtype for name, p in model.named_parameters() if ".lora_" not in name}
    assert adapters == {torch.float32} and base == {torch.bfloat16}
    with precision.compute(torch.device("cpu")):  # the adapters' products in bf16: the sum stays bf16
        hidden = model(input_ids=torch.randint(0, 200, (2, 5)), output_hidden_states=True).hidden_states[-1]
    assert hidden.dtype == torch.bfloat16


def test_the_workers_precision_warns_once_for_bf16_weights_and_not_for_lora(caplog):
    from core.trainer.precision import configured_precision

    trainer = OmegaConf.create(dict(master_weights=False, lr=1e-5))
    with caplog.at_level("WARNING", logger="tandem"):
        plain = configured_precision(OmegaConf.create(dict(lora=dict(rank=0))), trainer, torch.bfloat16, sharded=False)
        lora = configured_precision(OmegaConf.create(dict(lora=dict(rank=8))), trainer, torch.bfloat16, sharded=False)
    assert plain == lora == TrainingPrecision(torch.bfloat16)
    assert [r.message.count("trainer.master_weights=true") for r in caplog.records] == [1]
