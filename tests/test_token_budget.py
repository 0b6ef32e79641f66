"""The actor's micro-batch token budget sized from free memory (core/trainer/token_budget.py), on a fake
device: the arithmetic by hand, the measurement around an update, and the step's peak still reported whole."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from core.trainer import memory, token_budget
from core.trainer.token_budget import MIN_TOKENS, START_TOKENS, MemoryTokenBudget, next_budget, prior_bytes_per_token

sys.path.insert(0, str(Path(__file__).parent / "distributed"))
from dist_utils import random_batch  # noqa: E402

GIB, MIB = 1 << 30, 1 << 20


class FakeAccelerator:
    """The few `torch.cuda` calls the budget and memory.py make, over numbers the test sets."""

    def __init__(self, free: int, reserved: int, allocated: int):
        self.free, self.reserved, self.allocated, self.peak = free, reserved, allocated, allocated

    def mem_get_info(self, device=None):
        return self.free, 80 * GIB

    def memory_reserved(self, device=None):
        return self.reserved

    def memory_allocated(self, device=None):
        return self.allocated

    def max_memory_allocated(self, device=None):
        return self.peak

    def reset_peak_memory_stats(self, device=None):
        self.peak = self.allocated

    def current_device(self):
        return 0


@pytest.fixture
def accelerator(monkeypatch):
    fake = FakeAccelerator(free=50 * GIB, reserved=20 * GIB, allocated=10 * GIB)
    for module in (token_budget, memory):
        monkeypatch.setattr(module, "device_module", lambda device: None if torch.device(device).type == "cpu" else fake)
    return fake


def test_next_budget_fills_the_headroom_at_the_measured_cost_per_token():
    # 24 GiB over a 16,384-token micro-batch = 1.5 MiB a token; 0.8 x 60 GiB = 49,152 MiB -> 32,768 tokens
    assert next_budget(24 * GIB, 16384, 60 * GIB) == 32768
    # the rise does not scale down with a smaller free share: 1 GiB free -> 0.8 x 1024 / 1.5 = 546, floored
    assert next_budget(24 * GIB, 16384, 1 * GIB) == MIN_TOKENS
    assert next_budget(0, 16384, 60 * GIB) == MIN_TOKENS  # nothing measured: stay small


def test_only_a_null_budget_on_an_accelerator_is_measured(accelerator):
    on_cpu = torch.nn.Linear(2, 2)
    on_gpu = torch.nn.Linear(2, 2, device="meta")  # any device but the CPU's: the fake accelerator answers
    on_gpu.config = OmegaConf.create(dict(num_hidden_layers=24, hidden_size=896, intermediate_size=4864))
    assert MemoryTokenBudget.for_setting(None, on_cpu) is None
    assert MemoryTokenBudget.for_setting(0, on_gpu) is None  # rows, as configured
    assert MemoryTokenBudget.for_setting(4096, on_gpu) is None
    # fp32 weights: 16 x 24 x 5760 x 4 / 2 = 4,423,680 bytes a token, twice the bf16 guess
    assert MemoryTokenBudget.for_setting(None, on_gpu).prior_bytes_per_token == 4423680
    assert MemoryTokenBudget.for_setting(None, on_gpu.to(torch.bfloat16)).prior_bytes_per_token == 2211840


def test_the_first_budget_is_guessed_from_the_model_shape_within_limits(accelerator):
    shape = lambda layers, hidden, intermediate: OmegaConf.create(  # noqa: E731
        dict(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=intermediate))
    # free: 50 GiB on the device + 20 - 10 GiB cached unused = 60 GiB
    # 1.5B shape: 16 x 28 x (1536 + 8960) = 4,702,208 bytes a token; 0.8 x 60 GiB / that = 10,960 tokens
    assert MemoryTokenBudget(torch.device("cuda"), prior_bytes_per_token(shape(28, 1536, 8960))).tokens == 10960
    # 0.5B shape: 16 x 24 x 5760 = 2.2 MB a token would allow 23,301: the ceiling holds it at START_TOKENS
    assert MemoryTokenBudget(torch.device("cuda"), prior_bytes_per_token(shape(24, 896, 4864))).tokens == START_TOKENS
    assert MemoryTokenBudget(torch.device("cuda"), prior_bytes_per_token(object())).tokens == START_TOKENS  # no shape
    first = MemoryTokenBudget(torch.device("cuda"), prior_bytes_per_token(shape(28, 1536, 8960)))
    assert first.tokens == 10960
    accelerator.free = 5 * GIB  # the engine awake later in the step: the guess stays what the first plan used
    assert first.tokens == 10960
    accelerator.free = 50 * GIB
    accelerator.free, accelerator.reserved = 1 * GIB, accelerator.allocated  # nearly full: never below the floor
    assert MemoryTokenBudget(torch.device("cuda"), prior_bytes_per_token(shape(28, 1536, 8960))).tokens == MIN_TOKENS


def test_measure_sizes_the_next_budget_from_the_update_peak(accelerator):
    budget = MemoryTokenBudget(torch.device("cuda"))
    accelerator.peak = 70 * GIB  # the rollout's peak, earlier in the step: not the update's
    budget.planned([99999])  # a log-prob pass before the update: not the update's either
    with budget.measure():
        budget.planned([8192, 16384])
        accelerator.peak = accelerator.allocated + 24 * GIB  # the largest micro-batch's activations
    # free when it began: 50 GiB on the device + 20 - 10 GiB cached unused = 60 GiB -> 32,768 (as above)
    assert budget.tokens == 32768
    # the step's peak, as the log shows it, is still the rollout's 70 GiB
    assert memory.peak_since_last_call(torch.device("cuda:0"))["memory/peak_allocated_gib"] == 70.0


def test_an_update_under_a_token_budget_plans_by_tokens_and_logs_it(tiny_model_dir, accelerator):
    from transformers import AutoModelForCausalLM

    from core.algorithms.spec import AlgorithmSpec
    from core.config.schema import AlgorithmConfig
    from core.trainer.actor import Actor

    algo = OmegaConf.structured(AlgorithmConfig)
    trainer = OmegaConf.create(dict(lr=1e-3, weight_decay=0.0, warmup_steps=0, grad_clip=1.0, ppo_epochs=1,
                                    mini_batches=1, micro_batch_size=64, max_tokens_per_gpu=None,
                                    remove_padding=False, reuse_on_policy_logprobs=True))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    actor = Actor(model, algo, trainer, AlgorithmSpec.from_config(algo, 5))
    assert actor.token_budget is None  # a CPU: the rows of the config
    actor.token_budget = MemoryTokenBudget(torch.device("cuda"))  # as on a GPU, after an update measured 40 tokens
    actor.token_budget.measured = 40
    batch = random_batch(rows=8, seed=3)
    batch.old_logprobs, _ = actor.compute_logprobs(batch)
    longest = int(batch.attention_mask.sum(-1).max())
    result = actor.update(batch)
    # padded rows cost rows x longest: 40 tokens hold 40 // longest rows, so the 8 rows took several passes
    assert 0 < actor.token_budget.largest_micro_tokens <= max(40, longest)
    assert result.metrics["perf/micro_batch_tokens"] == actor.token_budget.tokens == MIN_TOKENS  # no rise measured


def test_an_sft_step_under_a_token_budget_plans_by_it_and_logs_it(tiny_model_dir, accelerator):
    from transformers import AutoModelForCausalLM

    from sft.config import SFTTrainerConfig
    from sft.dataset import SFTExample
    from sft.trainer import CPU_MICRO_BATCH_TOKENS, SFTTrainer

    cfg = OmegaConf.structured(SFTTrainerConfig)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    trainer = SFTTrainer(model, cfg, pad_token_id=0, packed=False)
    assert trainer.token_budget is None and trainer.micro_batch_tokens() == CPU_MICRO_BATCH_TOKENS  # a CPU
    examples = [SFTExample(input_ids=list(range(3, 13)), loss_mask=[False] * 5 + [True] * 5, prompt_ids=[3, 4],
                           prompt_text="", reference="") for _ in range(4)]
    assert "perf/micro_batch_tokens" not in trainer.train_step(examples)  # nothing new logged on a CPU
    trainer.token_budget = MemoryTokenBudget(torch.device("cuda"))  # as on a GPU, after a step that measured 20
    trainer.token_budget.measured = 20
    metrics = trainer.train_step(examples)
    # 4 rows of 10 tokens, 20 tokens a micro-batch (padded: rows x length) -> 2 passes of 2 rows
    assert metrics["train/micro_batches"] == 2 and trainer.token_budget.largest_micro_tokens == 20
    assert metrics["perf/micro_batch_tokens"] == MIN_TOKENS  # the fake device showed no rise


def test_the_ppo_critic_plans_under_its_own_budget(tiny_model_dir, accelerator):
    from core.config.schema import AlgorithmConfig
    from core.trainer.critic import Critic
    from core.trainer.precision import TrainingPrecision

    algo = OmegaConf.structured(AlgorithmConfig)
    trainer = OmegaConf.create(dict(grad_clip=1.0, ppo_epochs=1, mini_batches=1, micro_batch_size=64,
                                    max_tokens_per_gpu=None, remove_padding=False))
    critic = Critic.from_pretrained(tiny_model_dir, TrainingPrecision(torch.float32), "cpu", algo, trainer, 5)
    assert critic.token_budget is None  # a CPU
    critic.token_budget = MemoryTokenBudget(torch.device("cuda"))  # as on a GPU, after an update measured 24
    critic.token_budget.measured = 24
    batch = random_batch(rows=8, seed=3)
    batch.values = critic.compute_values(batch)
    batch.returns = batch.values + 1.0
    longest = int(batch.attention_mask.sum(-1).max())
    critic.update(batch)  # padded: rows x longest row each, at most 24 (a lone longer row excepted)
    assert 0 < critic.token_budget.largest_micro_tokens <= max(24, longest)
    assert critic.token_budget.tokens == MIN_TOKENS  # re-measured: the fake device showed no rise


@pytest.mark.parametrize("budgeted, culprit", [
    (False, r"out of GPU memory in the update with trainer.micro_batch_size=64 rows a micro-batch: lower it, or set "
            r"trainer.max_tokens_per_gpu=null"),
    (True, r"out of GPU memory in the update with 4,096-token micro-batches sized from free memory: set "
           r"trainer.max_tokens_per_gpu to fewer tokens, or model.gradient_checkpointing=true"),
])
def test_running_out_of_memory_names_what_sized_the_micro_batches(tiny_model_dir, accelerator, monkeypatch,
                                                                   budgeted, culprit):
    from transformers import AutoModelForCausalLM

    from core.algorithms.spec import AlgorithmSpec
    from core.config.schema import AlgorithmConfig
    from core.errors import TandemError
    from core.trainer.actor import Actor

    algo = OmegaConf.structured(AlgorithmConfig)
    trainer = OmegaConf.create(dict(lr=1e-3, weight_decay=0.0, warmup_steps=0, grad_clip=1.0, ppo_epochs=1,
                                    mini_batches=1, micro_batch_size=64, max_tokens_per_gpu=None,
                                    remove_padding=False, reuse_on_policy_logprobs=True))
    actor = Actor(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), algo, trainer,
                  AlgorithmSpec.from_config(algo, 5))
    if budgeted:
        actor.token_budget = MemoryTokenBudget(torch.device("cuda"))
        actor.token_budget.measured = 4096

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 594.00 MiB")

    monkeypatch.setattr("core.trainer.actor.forward_logprobs", out_of_memory)
    with pytest.raises(TandemError, match=culprit):
        actor.update(random_batch(rows=8, seed=3))
