"""What must fit on one GPU before anything loads, from the model's shape alone: the trainer's weights,
gradients and optimizer state (and a reference or critic copy), and the rollout engine's share.

These parts are exact arithmetic (parameters x bytes), so a run whose states cannot fit is refused at once,
with the fix that keeps the training closest to what was asked, instead of dying in an OOM after minutes of
loading. What is left over goes to activations, which the token budget sizes from free memory as it runs
(core.trainer.token_budget); the plan only reports it.

    python -m core.doctor --plan +backend=cuda model=qwen2_5_7b [--gpu-gib 80]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

GIB = 1024**3
# per process, beside the tensors: the CUDA context, cuBLAS workspaces and the caching allocator's slack
CUDA_CONTEXT_GIB = 1.0


@dataclass(frozen=True)
class ModelSize:
    """A model's size, read from its config without materialising any weight."""

    parameters: int  # every parameter (untied embeddings counted twice, as they are stored)
    lora_per_rank: int  # adapter parameters per unit of rank on model.lora's targets: sum of (in + out) features
    hidden: int  # hidden size (a critic's value head is hidden x 1)
    kv_bytes_per_token: int  # the engine's bf16 KV cache: 2 (K and V) x layers x kv heads x head dim x 2 bytes


@dataclass(frozen=True)
class PlanSettings:
    """The keys the plan reads (`from_config`), resolved the way the trainer resolves them."""

    model_bytes: int  # model.dtype: 2 (bf16/fp16) or 4
    param_bytes: int  # what weights, gradients and Adam's moments are stored in (core.trainer.precision)
    lora_rank: int
    reference: bool  # a frozen copy of the policy (a KL term without LoRA)
    critic: bool  # PPO's value model
    ranks: int  # FSDP shards the trainer's states over this many GPUs
    cpu_offload: bool  # FSDP keeps the states on the CPU between uses (several ranks only)
    engine: str  # backend.engine: vllm | hf
    engine_share: float  # rollout.gpu_memory_utilization
    engine_sleeps: bool  # rollout.free_cache_engine: vLLM frees its share while the trainer works
    max_model_len: int  # the longest sequence the engine must hold (prompt + response)

    @classmethod
    def from_config(cls, cfg, spec, ranks: int) -> "PlanSettings":
        """`spec`: RL's AlgorithmSpec (reference, critic); None for SFT, which has neither."""
        from core.trainer.precision import training_precision
        from core.trainer.setup import model_dtype

        compute_dtype = model_dtype(cfg.model)
        lora = cfg.model.lora.rank > 0
        precision = training_precision(compute_dtype, ranks > 1, cfg.trainer.master_weights, lora)
        return cls(model_bytes=compute_dtype.itemsize, param_bytes=precision.param_dtype.itemsize,
                   lora_rank=int(cfg.model.lora.rank), reference=bool(spec and spec.needs_reference and not lora),
                   critic=bool(spec and spec.needs_critic), ranks=ranks, cpu_offload=bool(cfg.trainer.cpu_offload),
                   engine=str(cfg.backend.engine), engine_share=float(cfg.rollout.gpu_memory_utilization),
                   engine_sleeps=bool(cfg.rollout.free_cache_engine),
                   max_model_len=int(cfg.rollout.max_model_len or cfg.data.max_prompt_length + cfg.rollout.max_tokens))


@dataclass(frozen=True)
class MemoryPlan:
    device_gib: float
    states_gib: dict  # this GPU's share of each trainer state: weights, gradients, optimizer, reference, critic
    engine_share_gib: float  # what the engine holds while it generates (vLLM: its whole share; HF: its weights)
    engine_needs_gib: float  # the least that share must hold: the engine's weights and one longest sequence's KV
    engine_sleeps: bool

    @property
    def during_rollout_gib(self) -> float:
        """The trainer's states less its gradients (freed after each step), the engine awake."""
        resident = sum(v for k, v in self.states_gib.items() if k != "gradients")
        return resident + CUDA_CONTEXT_GIB + self.engine_share_gib

    @property
    def before_activations_gib(self) -> float:
        """The update's floor: every state, and the engine's share unless it sleeps."""
        return sum(self.states_gib.values()) + CUDA_CONTEXT_GIB + (0.0 if self.engine_sleeps else self.engine_share_gib)

    @property
    def left_for_activations_gib(self) -> float:
        return self.device_gib - self.before_activations_gib

    def problems(self) -> list[str]:
        """Why this cannot run, each a sentence; empty when the fixed parts fit."""
        found = []
        if self.engine_share_gib < self.engine_needs_gib:
            found.append(f"the engine's share ({self.engine_share_gib:.1f} GiB) is less than its weights and one "
                         f"longest sequence's KV cache need ({self.engine_needs_gib:.1f} GiB)")
        if self.during_rollout_gib > self.device_gib:
            found.append(f"during the rollout the trainer keeps {self.during_rollout_gib - self.engine_share_gib:.1f}"
                         f" GiB beside the engine's {self.engine_share_gib:.1f} GiB: {self.during_rollout_gib:.1f} of "
                         f"the GPU's {self.device_gib:.1f} GiB")
        if self.before_activations_gib > self.device_gib:
            found.append(f"the update needs {self.before_activations_gib:.1f} GiB before any activation, more than "
                         f"the GPU's {self.device_gib:.1f} GiB")
        return found

    def table(self) -> str:
        rows = [(f"trainer {name}", gib) for name, gib in self.states_gib.items() if gib]
        rows += [("CUDA context (per process, assumed)", CUDA_CONTEXT_GIB),
                 (f"engine share{' (sleeps during the update)' if self.engine_sleeps else ''}", self.engine_share_gib),
                 ("  of which the engine needs at least", self.engine_needs_gib),
                 ("during the rollout", self.during_rollout_gib),
                 ("the update before activations", self.before_activations_gib),
                 ("left for activations (the token budget's)", self.left_for_activations_gib),
                 ("GPU", self.device_gib)]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {gib:8.1f} GiB" for name, gib in rows)


def plan_memory(size: ModelSize, settings: PlanSettings, device_gib: float) -> MemoryPlan:
    s, n = settings, size.parameters
    if s.lora_rank:  # the frozen base in its own dtype (fp32 when sharded); the adapters fp32, the only trained part
        base_bytes = 4 if s.ranks > 1 else s.model_bytes
        adapters = s.lora_rank * size.lora_per_rank
        states = {"weights": n * base_bytes + adapters * 4, "gradients": adapters * 4, "optimizer": adapters * 8}
    else:
        states = {"weights": n * s.param_bytes, "gradients": n * s.param_bytes, "optimizer": 2 * n * s.param_bytes}
    states["reference"] = n * s.param_bytes if s.reference else 0
    states["critic"] = 4 * (n + size.hidden) * s.param_bytes if s.critic else 0  # weights, gradients, 2 moments
    on_gpu = 0.0 if (s.cpu_offload and s.ranks > 1) else 1.0 / s.ranks  # FSDP: each rank holds its shard
    states_gib = {name: value * on_gpu / GIB for name, value in states.items()}
    engine_weights = n * 2 / GIB  # bf16
    if s.engine == "vllm":
        share = s.engine_share * device_gib
        needs = engine_weights + size.kv_bytes_per_token * s.max_model_len / GIB
        sleeps = s.engine_sleeps
    else:  # the HF engine: its own bf16 copy of the weights, never asleep
        share = needs = engine_weights
        sleeps = False
    return MemoryPlan(device_gib, states_gib, share, needs, sleeps)


def fixes(size: ModelSize, settings: PlanSettings, device_gib: float) -> list[str]:
    """Overrides that make the fixed parts fit, the one closest to the asked-for training first: the engine's
    share alone, then FSDP's offload, bf16 weights with stochastic rounding instead of fp32 masters, LoRA (each
    with the engine's share moved where it must go)."""
    candidates = [("", settings)]
    if settings.ranks > 1 and not settings.cpu_offload:
        candidates.append(("trainer.cpu_offload=true", replace(settings, cpu_offload=True)))
    if settings.ranks == 1 and settings.model_bytes == 2 and settings.param_bytes == 4 and not settings.lora_rank:
        candidates.append(("trainer.master_weights=false trainer.optimizer=adamw_bf16_sr",
                           replace(settings, param_bytes=2)))
    if not settings.lora_rank:
        candidates.append(("model.lora.rank=64",
                           replace(settings, lora_rank=64, reference=False, param_bytes=settings.model_bytes)))
    found = []
    for change, candidate in candidates:
        share = _fitting_share(size, candidate, device_gib)
        if share is None:
            continue
        moved = f"rollout.gpu_memory_utilization={share:.2f}" if share != candidate.engine_share else ""
        if change or moved:
            found.append(" ".join(part for part in (change, moved) if part))
    return found


def _fitting_share(size: ModelSize, settings: PlanSettings, device_gib: float) -> float | None:
    """The engine share with which `settings` fit: as asked if it does, else the nearest that does; None: none."""
    if _fits(size, settings, device_gib):
        return settings.engine_share
    if settings.engine != "vllm":
        return None
    plan = plan_memory(size, settings, device_gib)
    resident = plan.during_rollout_gib - plan.engine_share_gib
    fitting = math.floor((device_gib - resident) / device_gib * 100) / 100
    needed = math.ceil(plan.engine_needs_gib * 1.1 / device_gib * 100) / 100  # 10% for graphs and sampling
    share = min(max(settings.engine_share, needed), fitting)
    return share if needed <= fitting and _fits(size, replace(settings, engine_share=share), device_gib) else None


def _fits(size: ModelSize, settings: PlanSettings, device_gib: float) -> bool:
    return not plan_memory(size, settings, device_gib).problems()


def model_size(model_path: str, lora_targets) -> ModelSize:
    """The size of `model.path` from its config alone (a builtin shape is never written for this): the model
    built on the meta device, which allocates nothing."""
    import torch
    from transformers import AutoModelForCausalLM

    config = _model_config(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    targets = set(lora_targets)
    lora_per_rank = sum(module.in_features + module.out_features for name, module in model.named_modules()
                        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets)
    text = config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return ModelSize(parameters=sum(p.numel() for p in model.parameters()), lora_per_rank=lora_per_rank,
                     hidden=text.hidden_size,
                     kv_bytes_per_token=2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * 2)


def _model_config(model_path: str):
    from transformers import AutoConfig

    from core.models.builtin import BUILTIN_PREFIX, builtin_config, resolve_model_path

    if model_path.startswith(BUILTIN_PREFIX):
        return builtin_config(model_path[len(BUILTIN_PREFIX):])
    return AutoConfig.from_pretrained(resolve_model_path(model_path))


def plan_run(cfg, spec, ranks: int, device_gib: float,
             size: ModelSize | None = None) -> tuple[MemoryPlan, list[str]]:
    """The plan of the run `cfg` on a GPU of `device_gib`, and the settings that fit when it does not ([] when it
    does); `size`: the model's, when already read."""
    size = size or model_size(cfg.model.path, cfg.model.lora.target_modules)
    settings = PlanSettings.from_config(cfg, spec, ranks)
    plan = plan_memory(size, settings, device_gib)
    return plan, fixes(size, settings, device_gib) if plan.problems() else []


def check_memory_plan(cfg, spec, device, ranks: int) -> MemoryPlan | None:
    """On a GPU: the plan, logged; a run whose fixed parts cannot fit is refused with the closest fit named."""
    import logging

    import torch

    from core.errors import TandemError

    if device.type != "cuda":
        return None
    device_gib = torch.cuda.get_device_properties(device).total_memory / GIB
    log = logging.getLogger("tandem")
    try:
        size = model_size(cfg.model.path, cfg.model.lora.target_modules)
    except TandemError:
        raise  # a model path that does not exist, named as the run would name it
    except Exception as exc:  # a check before the run must never stop a model the trainer itself can load
        log.warning("memory plan skipped: %s cannot be sized from its config on the meta device (%s)",
                    cfg.model.path, exc)
        return None
    plan, options = plan_run(cfg, spec, ranks, device_gib, size)
    problems = plan.problems()
    if problems:
        fix = (f"the closest fit: {options[0]}" + (f" (or {', '.join(options[1:])})" if options[1:] else "")
               if options else "no one setting fits it: shard over more GPUs (trainer.n_gpus_per_node)")
        raise TandemError(f"model.path={cfg.model.path} cannot be trained on this {device_gib:.0f} GiB GPU as "
                          f"configured: {problems[0]}; {fix}. The whole plan: python -m core.doctor --plan "
                          "with this run's overrides")
    log.info(
        "memory plan: %.1f GiB during the rollout, %.1f GiB for the update before activations, %.1f GiB left for "
        "them (of %.1f GiB)", plan.during_rollout_gib, plan.before_activations_gib, plan.left_for_activations_gib,
        device_gib)
    return plan
