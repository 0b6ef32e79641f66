"""Structured-config schemas of `python -m sft.main`.

`model`, `rollout` and `backend` are core's own schemas (and config groups), so an SFT run picks
its model and rollout engine exactly like an RL run; `data`, `trainer` and `validation` are SFT's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from hydra.core.config_store import ConfigStore

from core.config.schema import BackendConfig, ModelConfig, ReasoningGymConfig, RolloutConfig, RunConfig


@dataclass
class SFTDataConfig:
    task: str = "reverse_letters"  # built-in synthetic chat task, "reasoning_gym" (generated), or "file"
    train_files: List[str] = field(default_factory=list)  # parquet/jsonl, used when task=file
    val_files: List[str] = field(default_factory=list)
    messages_key: str = "messages"  # column of chat messages [{"role", "content"}, ...]
    prompt_key: str = "prompt"  # used when a row has no messages: prompt (str or messages) ...
    response_key: str = "response"  # ... plus response (str), the assistant's answer
    max_length: int = 1024  # training conversations are cut to this many tokens
    max_prompt_length: int = 512  # validation prompts are left-truncated to this many tokens
    max_val_samples: Optional[int] = None  # validate on the first N conversations (None: all)
    reward_fn: Optional[str] = None  # a registered reward name or "module:function"; None: no score
    num_train: int = 2000  # synthetic task only: conversations to train on
    num_val: int = 64  # synthetic task only: validation conversations
    # task=reasoning_gym: the question as the user turn, its reference answer as the assistant's; the
    # same prompts (and reward) as an RL run with data.task=reasoning_gym, so RL can continue from here
    reasoning_gym: ReasoningGymConfig = field(default_factory=ReasoningGymConfig)
    val_size: int = 200  # task=reasoning_gym: validation questions per dataset
    # task=reasoning_gym: the assistant's turn, filled from the entry ({answer}, {question}, {metadata[KEY]});
    # e.g. a tool-using demonstration "<calculator>{metadata[expression]}</calculator><result>{answer}</result> {answer}"
    response_template: str = "{answer}"
    seed: int = 0


@dataclass
class SFTTrainerConfig(RunConfig):
    """SFT's own trainer keys; those every run has (seed, loggers, checkpoints, resume, launcher, ...) are
    core's RunConfig, with the same defaults as RL's."""

    total_steps: int = 300
    batch_size: int = 32  # conversations per optimizer step (over all data-parallel ranks)
    # token budget of one forward/backward: rows x padded length (real tokens if packed); null: sized from free
    # memory on a GPU (core/trainer/token_budget.py), CPU_MICRO_BATCH_TOKENS on a CPU
    micro_batch_tokens: Optional[int] = None
    lr: float = 1e-4
    lr_schedule: str = "cosine"  # constant | cosine, after the linear warm-up
    warmup_steps: int = 10
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.01
    output_dir: str = "runs/sft-${now:%Y-%m-%d_%H-%M-%S}"
    log_every: int = 10  # console table row every N steps (JSONL gets every step)
    dist_timeout_s: int = 600  # collective timeout when several ranks run (torchrun)


@dataclass
class ValidationConfig:
    """How validation generates. The sampling defaults are the documented ones (0.8 / 0.9 / 128)."""

    val_freq: int = 50  # validate every N steps (and always at the end); 0: only at the end
    validate_before_training: bool = True  # step 0: the starting point of the curves
    temperature: float = 0.8  # 0 means greedy
    top_p: float = 0.9
    top_k: int = -1
    max_tokens: int = 128
    stop: List[str] = field(default_factory=list)  # stop strings; each must be one token, e.g. "<|im_end|>"
    seed: Optional[int] = None  # per-validation sampling seed (None: the engine's generator)
    log_samples: int = 1  # (prompt, generation, reference) triples printed per validation (all go to a file)
    engine_fallback: bool = True  # if the backend's engine fails, generate with HF instead of stopping


@dataclass
class SFTConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    trainer: SFTTrainerConfig = field(default_factory=SFTTrainerConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)


def register_sft_schemas() -> None:
    """Make the SFT schema known to Hydra (idempotent); core's group schemas are registered too."""
    from core.config.schema import register_schemas

    register_schemas()
    ConfigStore.instance().store(name="sft_schema", node=SFTConfig)
