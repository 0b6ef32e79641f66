"""The SFT loop, top to bottom: load data and model, then train steps with validation by generation
every `validation.val_freq` steps and at the end, then export the final model as an HF directory.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from core.checkpoint.manager import load_checkpoint, resolve_resume, save_checkpoint
from core.data.rl_dataset import EpochSampler
from core.errors import TandemError
from core.plugins.manager import get_plugin_manager
from core.rewards.scoring import RewardScorer, resolve_reward_fn
from core.sharding.base import iter_full_parameters
from core.trainer.setup import load_policy, resolve_device
from core.tracking.tracker import Tracker
from sft.dataset import load_sft_examples
from sft.engine import ValidationEngine, backend_engine_factory, hf_engine_factory, sampling_params
from sft.trainer import SFTTrainer, world
from sft.validation import Validator

log = logging.getLogger("tandem")


def load_data(cfg: DictConfig, tokenizer):
    """(train, validation) examples of the built-in task or of the configured files."""
    data = cfg.data
    if data.task == "reverse_letters":
        from sft.synthetic import reverse_letters_examples

        train = reverse_letters_examples(tokenizer, data, data.num_train, seed=data.seed)
        val = reverse_letters_examples(tokenizer, data, data.num_val, seed=data.seed + 1_000_003)
    elif data.task == "file":
        train = load_sft_examples(list(data.train_files), tokenizer, data)
        val = load_sft_examples(list(data.val_files), tokenizer, data, limit=data.max_val_samples)
    else:
        raise TandemError(f"data.task={data.task!r} is unknown; use 'file' or the built-in 'reverse_letters'")
    return train, val[: data.max_val_samples]


def init_distributed(cfg: DictConfig) -> bool:
    """Join the process group a launcher (torchrun) describes in the environment; True if this call made it."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=cfg.trainer.dist_timeout_s))
    return True


def same_on_all_ranks(value):
    """Rank 0's `value` on every rank."""
    if world()[1] == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def train(cfg: DictConfig) -> dict[str, float]:
    """Run `trainer.total_steps` SFT steps; returns a summary (validation reward/loss first and last)."""
    owns_group = init_distributed(cfg)
    try:
        return _train(cfg)
    finally:
        if owns_group:
            dist.destroy_process_group()


def _train(cfg: DictConfig) -> dict[str, float]:
    pm = get_plugin_manager()
    rank, world_size = world()
    torch.manual_seed(cfg.trainer.seed)
    if cfg.trainer.batch_size < world_size:
        raise TandemError(f"trainer.batch_size={cfg.trainer.batch_size} is smaller than the {world_size} ranks")
    run_dir = Path(same_on_all_ranks(cfg.trainer.output_dir))  # ${now:...} may differ by a second between ranks
    device = resolve_device(cfg.trainer.device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    model_dir, tokenizer, model = load_policy(cfg.model, device)
    train_set, val_set = load_data(cfg, tokenizer)
    sampler = EpochSampler(len(train_set), seed=cfg.data.seed)
    trainer = SFTTrainer(model, cfg.trainer, tokenizer.pad_token_id, compute_dtype=cfg.model.dtype)
    checkpoints = run_dir / "checkpoints"
    first_step = resume(cfg.trainer.resume, checkpoints, trainer, sampler)
    scorer = RewardScorer(resolve_reward_fn(cfg.data.reward_fn, pm), workers=1) if cfg.data.reward_fn else None
    engine = ValidationEngine(
        backend_engine_factory(pm, cfg, model_dir, model),
        hf_engine_factory(model_dir, model) if cfg.validation.engine_fallback else None,
        sleep_between=bool(cfg.rollout.free_cache_engine),
    )
    validator = Validator(val_set, engine, tokenizer, sampling_params(cfg.validation, tokenizer), scorer, run_dir,
                          cfg.validation.log_samples)
    tracker = None
    if rank == 0:
        tracker = Tracker(list(cfg.trainer.loggers), run_dir, OmegaConf.to_container(cfg, resolve=True),
                          console_every=cfg.trainer.log_every)
    history: list[dict[str, float]] = []

    def validate(step: int) -> None:
        metrics = validator.run(step, trainer)
        history.append({"step": step, **metrics})
        if tracker is not None:
            tracker.log(metrics, step)

    total, val_freq = cfg.trainer.total_steps, cfg.validation.val_freq
    start = time.perf_counter()
    try:
        with engine:
            if cfg.validation.validate_before_training and first_step == 1:
                validate(0)
            for step in tqdm(range(first_step, total + 1), desc="sft", unit="step", disable=rank != 0 or None):
                step_start = time.perf_counter()
                batch = [train_set[i] for i in sampler.next_indices(cfg.trainer.batch_size)]
                metrics = trainer.train_step(batch)
                metrics["timing/step"] = time.perf_counter() - step_start
                if tracker is not None:
                    tracker.log(metrics, step)
                if step == total or (val_freq > 0 and step % val_freq == 0):
                    validate(step)
                if cfg.trainer.save_freq > 0 and (step % cfg.trainer.save_freq == 0 or step == total):
                    save_checkpoint(checkpoints, step, {"actor": trainer.checkpointable()},
                                    {"sampler": sampler.state_dict()}, tokenizer, cfg.trainer.keep_last)
        summary = _summary(history, total, time.perf_counter() - start)
        if cfg.trainer.save_model:
            summary["final_model"] = str(export_final_model(model, tokenizer, run_dir / "final"))
        return summary
    finally:
        if tracker is not None:
            tracker.close()
        if scorer is not None:
            scorer.close()


def resume(setting: str, checkpoints: Path, trainer: SFTTrainer, sampler: EpochSampler) -> int:
    """Restore the latest (or the named) checkpoint; returns the first step still to run."""
    path = resolve_resume(setting, checkpoints)
    if path is None:
        return 1
    state = load_checkpoint(path, {"actor": trainer.checkpointable()})
    sampler.load_state_dict(state["trainer"]["sampler"])
    log.info("resumed from %s (step %d)", path, state["step"])
    return state["step"] + 1


def export_final_model(model: torch.nn.Module, tokenizer, out_dir: Path) -> Path:
    """The trained model as an HF directory; every rank helps gather the shards, rank 0 writes."""
    state = dict(iter_full_parameters(model))
    if world()[0] == 0:
        model.save_pretrained(out_dir, state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    return out_dir


def _summary(history: list[dict[str, float]], steps: int, wall_s: float) -> dict[str, float]:
    summary: dict[str, float] = {"steps": steps, "wall_s": wall_s, "validations": len(history)}
    for key in ("val/loss", "val/reward"):
        if history and key in history[0]:
            summary[f"{key}_start"], summary[f"{key}_end"] = history[0][key], history[-1][key]
    return summary
