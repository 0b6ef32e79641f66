"""Numeric ranges and choices of the config, checked before anything starts.

The schema checks types at composition; this checks values, so `rollout.n=0` or `trainer.lr=-1` fails
in one line naming the key and what it allows, instead of as a traceback (or a silent no-op) later.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from core.config.rules import MISSING, NON_NEGATIVE, POSITIVE, POSITIVE_INT, Rule, check_rules
from core.config.schema import ENGINES, OPTIMIZERS
from core.errors import TandemError

RULES: list[Rule] = [
    ("rollout.n", *POSITIVE_INT),
    ("rollout.max_tokens", *POSITIVE_INT),
    ("rollout.temperature", *NON_NEGATIVE),
    ("rollout.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("rollout.top_k", lambda v: v == -1 or v >= 1, "-1 (off) or an integer >= 1"),
    ("rollout.kv_cache_tokens", lambda v: v is None or v >= 0,
     "null (auto: max_num_seqs x max_model_len), 0 (vLLM fills its memory share) or a number of tokens"),
    ("rollout.gpu_memory_utilization", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("rollout.sleep_level", lambda v: v in (1, 2), "1 (weights to the CPU) or 2 (weights dropped)"),
    ("backend.engine", lambda v: v in ENGINES, " or ".join(ENGINES)),
    ("data.prompt_batch_size", *POSITIVE_INT),
    ("data.max_prompt_length", *POSITIVE_INT),
    ("data.val_size", *POSITIVE_INT),
    ("trainer.total_steps", *POSITIVE_INT),
    ("trainer.lr", *POSITIVE),
    ("trainer.weight_decay", *NON_NEGATIVE),
    ("trainer.warmup_steps", lambda v: v >= 0, "an integer >= 0"),
    ("trainer.grad_clip", *POSITIVE),
    ("trainer.ppo_epochs", *POSITIVE_INT),
    ("trainer.mini_batches", *POSITIVE_INT),
    ("trainer.micro_batch_size", *POSITIVE_INT),
    ("trainer.max_tokens_per_gpu", lambda v: v is None or v >= 0, "null (auto), 0 (rows) or a token count"),
    ("trainer.micro_batch_tokens", lambda v: v is None or v >= 1, "null (auto) or a token count >= 1"),  # SFT's
    ("trainer.device", lambda v: v == "auto" or _is_device(v), "auto, cpu or a torch device (cuda, cuda:1, xpu...)"),
    ("trainer.test_freq", lambda v: v >= 0, "an integer >= 0 (0: never)"),
    ("trainer.save_freq", lambda v: v >= 0, "an integer >= 0 (0: never)"),
    ("trainer.keep_last", *POSITIVE_INT),
    ("trainer.max_nonfinite_steps", *POSITIVE_INT),
    ("trainer.on_nonfinite", lambda v: v in ("stop", "skip"), "stop or skip"),
    ("trainer.on_collapse", lambda v: v in ("stop", "warn"), "stop or warn"),
    ("trainer.optimizer", lambda v: v in OPTIMIZERS, " or ".join(OPTIMIZERS)),
    ("reward.workers", *POSITIVE_INT),
    ("reward.timeout_s", lambda v: v is None or v > 0, "null (none) or a number > 0"),
    ("reward.stop_if_failed_fraction", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("model.lora.rank", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0: no LoRA)"),
    ("model.lora.alpha", lambda v: v > 0, "> 0"),
    ("model.lora.dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("agent.format", lambda v: v in ("tagged", "chat_template"), "tagged or chat_template"),
    ("agent.max_turns", *POSITIVE_INT),
    ("agent.tool_timeout_s", *POSITIVE),
    ("agent.max_parallel_tools", *POSITIVE_INT),
    ("agent.python_memory_mb", lambda v: v >= 64, "an integer >= 64"),
    ("agent.sandbox", lambda v: v in ("namespaces", "auto", "process"), "namespaces, auto or process"),
    ("eval.size", *POSITIVE_INT),
    ("eval.pass_k", lambda v: v >= 0, "an integer >= 0 (0: greedy only)"),
    ("eval.temperature", *POSITIVE),
    ("eval.max_tokens", lambda v: v is None or v >= 1, "null (rollout.max_tokens) or an integer >= 1"),
    ("data.prompt_template", lambda v: v is None or "{content}" in v, "null (the chat template) or text with {content}"),
    ("data.few_shot", lambda v: all(set(shot) == {"user", "assistant"} for shot in v),
     "a list of {user: ..., assistant: ...} examples"),
]


def check_ranges(cfg: Any, rules: list[Rule] = RULES) -> None:
    """Raise TandemError for the first key of `cfg` whose value is outside its range (the algorithm's keys
    have their rules with the algorithms: core.algorithms.spec.check_algorithm_config)."""
    check_rules(lambda key: OmegaConf.select(cfg, key, default=MISSING), rules)
    _check_files_are_read(cfg)


def _check_files_are_read(cfg: Any) -> None:
    """Data files given to a generated task (RL's repeat_letters, SFT's reverse_letters, reasoning_gym) would be
    ignored and the run would train on something else: say so instead (verl users set only the files)."""
    task = OmegaConf.select(cfg, "data.task", default="file")
    given = [key for key in ("data.train_files", "data.val_files") if OmegaConf.select(cfg, key, default=None)]
    reward_fn = OmegaConf.select(cfg, "reward.reward_fn", default=None)  # RL only: SFT has no reward
    use_files = "data=file" if reward_fn is not None else "data.task=file"
    if task != "file" and given:
        raise TandemError(f"{' and '.join(given)} set, but data.task={task} generates its own data and would ignore "
                          f"them; add {use_files} to train on the files")
    if task == "file" and reward_fn == "repeat_letters":  # data.task=file over the demo: its reward and 3 tokens
        raise TandemError("data.task=file keeps the demo's reward (reward.reward_fn=repeat_letters) and its 3-token "
                          "replies; use data=file (each row scored by its data_source, 256 tokens) or set "
                          "reward.reward_fn and rollout.max_tokens")


def _is_device(name) -> bool:
    import torch

    try:
        torch.device(str(name))
    except RuntimeError:
        return False
    return True
