"""The worker of one device: policy, reference and critic (FSDP2-sharded under torch.distributed),
the rollout engine and the sharding manager that moves weights into it (the hybrid engine).

A worker group calls these methods on every rank with that rank's share of the work; nothing here
knows whether it runs in the controller's process or in a Ray actor.
"""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig

from core.algorithms.spec import AlgorithmSpec
from core.checkpoint.manager import Trainable
from core.distributed.collectives import is_distributed, world
from core.distributed.fsdp import FSDPSettings, device_mesh, shard_model
from core.models.compiled_parts import compile_layer_parts, switch_compile
from core.models.lora import adapters_disabled, is_lora
from core.plugins.manager import load_backend
from core.rollout.base import EngineSettings, EngineTarget, RolloutOutput, SamplingParams
from core.trainer.actor import Actor, UpdateResult, forward_layout, scoring_temperature
from core.trainer.batch import AdvantageBatch, TrainingBatch
from core.trainer.memory import memory_while_asleep, peak_since_last_call
from core.trainer.critic import Critic
from core.trainer.precision import configured_precision, training_precision
from core.trainer.memory_plan import check_memory_plan
from core.trainer.setup import (check_cpu_offload, load_policy, model_dtype, resolve_device, resolve_packing,
                                 resolve_share_prompts)
from core.workers.base import ModelWorker


class TrainWorker(ModelWorker):
    def __init__(self, cfg: DictConfig):
        torch.manual_seed(cfg.trainer.seed)  # identical initial weights (critic head) on every rank
        self.cfg = cfg
        backend = load_backend(cfg.backend.name)
        self.device = resolve_device(cfg.trainer.device, backend)
        if self.device.type != "cpu":  # fp32 (master) weights multiply on tensor cores, in TF32
            torch.set_float32_matmul_precision("high")
        sharded = is_distributed()
        check_cpu_offload(cfg.trainer, sharded)
        spec = AlgorithmSpec.from_config(cfg.algorithm, cfg.rollout.max_tokens)
        check_memory_plan(cfg, spec, self.device, world()[1])  # refuses, before loading, what cannot fit
        compute_dtype = model_dtype(cfg.model)
        shard = self._shard_fn(compute_dtype) if sharded else (lambda model: model)
        # the config's nulls resolved here, for this device, and handed on (the config is never written: under
        # Ray each worker holds its own copy, and a write would be seen by this worker alone)
        share_prompts = resolve_share_prompts(
            cfg.trainer.share_prompts, cfg.trainer.remove_padding, self.device, compute_dtype, cfg.rollout.n)
        packed = resolve_packing(cfg.trainer.remove_padding, self.device, compute_dtype, share_prompts)
        # under FSDP the parameters are fp32 masters and compute_dtype is the forward's
        precision = configured_precision(cfg.model, cfg.trainer, compute_dtype, sharded)
        self.model_dir, self.tokenizer, policy = load_policy(
            cfg.model, self.device, precision.param_dtype, packed=packed, shared_prompts=share_prompts)
        compiled = switch_compile(cfg.trainer.compile, self.device, policy, backend.compiles_by_default)
        prepare = (lambda model: shard(compile_layer_parts(model))) if compiled else shard
        reference = None
        if spec.needs_reference and not is_lora(policy):  # LoRA: the policy with its adapters off
            reference = prepare(copy.deepcopy(policy).eval().requires_grad_(False))  # forward-only
        self.policy = prepare(policy)
        self.reference = reference
        self.actor = Actor(self.policy, cfg.algorithm, cfg.trainer, spec, temperature=scoring_temperature(cfg.rollout),
                           precision=precision, layout=forward_layout(share_prompts, packed))
        self.critic = None
        if spec.needs_critic:  # PPO: a value head on the policy's backbone
            critic_precision = training_precision(compute_dtype, sharded, cfg.trainer.master_weights)  # never LoRA
            self.critic = Critic.from_pretrained(
                self.model_dir, critic_precision, self.device, cfg.algorithm, cfg.trainer, spec.horizon, wrap=shard
            )
        if sharded:  # ranks sample differently from here on
            torch.manual_seed(cfg.trainer.seed + torch.distributed.get_rank())
        engine_settings = EngineSettings.from_config(cfg)  # the rollout and backend groups, all a backend reads
        self.engine = backend.make_rollout_engine(engine_settings, EngineTarget.from_config(cfg, self.model_dir))
        self.sharding = backend.make_sharding_manager(engine_settings, self.engine, self.policy)

    def _shard_fn(self, compute_dtype: torch.dtype):
        mesh = device_mesh(self.device)
        settings = FSDPSettings(compute_dtype=compute_dtype, cpu_offload=self.cfg.trainer.cpu_offload)
        return lambda model: shard_model(model, mesh, settings)

    # rollout (the sharding manager's enter/exit, split so a group can hold all ranks awake)
    def wake(self) -> None:
        self.memory = memory_while_asleep(self.device)  # before the engine takes its share back
        self.sharding.__enter__()

    def sleep(self) -> None:
        self.sharding.__exit__(None, None, None)

    def memory_stats(self) -> dict[str, float]:
        """The trainer's memory at the last wake-up and its peak since the last call (GiB; {} on CPU)."""
        return {**getattr(self, "memory", {}), **peak_since_last_call(self.device)}

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> RolloutOutput | None:
        return self.engine.generate(prompts, params) if prompts else None

    # training, on this rank's share of the batch
    def compute_logprobs(self, batch: TrainingBatch):
        return self.actor.compute_logprobs(batch)

    def compute_ref_logprobs(self, batch: TrainingBatch) -> torch.Tensor:
        # no entropies: nothing reads the reference's, and they cost a pass over [tokens x vocab] per chunk
        if self.reference is None:  # LoRA: no second copy of the weights
            with adapters_disabled(self.policy):
                return self.actor.compute_logprobs(batch, with_entropy=False)[0]
        return self.actor.compute_logprobs(batch, model=self.reference, with_entropy=False)[0]

    def compute_values(self, batch: TrainingBatch) -> torch.Tensor:
        return self.critic.compute_values(batch)

    def update(self, batch: AdvantageBatch) -> UpdateResult:
        result = self.actor.update(batch)
        if self.critic is not None:
            result.metrics.update(self.critic.update(batch))
        return result

    # checkpoints and the HF export: ModelWorker's, over these parts
    def _parts(self) -> dict[str, Trainable]:
        parts = {"actor": Trainable(self.policy, self.actor.optimizer, self.actor.scheduler)}
        if self.critic is not None:
            parts["critic"] = Trainable(self.critic.model, self.critic.optimizer)
        return parts

    def close(self) -> None:
        self.engine.close()
