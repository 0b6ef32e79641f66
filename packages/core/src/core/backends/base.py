"""What a backend is: one object that tells core what it needs to know and builds what it needs.

A backend package registers a plugin under the `tandem.backends` entry-point group, named after the
backend; the plugin answers the `tandem_backend(name)` hook with a `Backend`. Only the selected
backend's plugin is imported (auto-detection and `core.doctor` import every installed one).

`Backend` is the contract, member by member: *required* members have no default, *optional* ones
are implemented by `BaseBackend`, which a backend subclasses and overrides where its hardware
differs. Core never branches on a backend's name; it asks the object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch

from core.patches import VersionedPatch

if TYPE_CHECKING:
    from core.rollout.base import EngineSettings, EngineTarget, RolloutEngine
    from core.sharding.base import ShardingManager


@dataclass(frozen=True)
class Availability:
    """A probe's answer: can this backend run here, and if not, why not."""

    available: bool
    reason: str = ""  # why not (or, when available, what was found: "H100, vLLM 0.26.0")
    details: dict[str, Any] = field(default_factory=dict)  # versions etc., shown by `doctor`


@dataclass
class VllmSettings:
    """`backend.settings` keys every vLLM-capable backend reads (a backend's schema extends it)."""

    weight_bucket_mb: int = 512  # weight sync packs parameters into buckets of this size (one IPC handle each)


@runtime_checkable
class Backend(Protocol):
    """The contract between core and a backend."""

    # required
    name: str  # what users type after `+backend=`
    priority: int  # auto-detection tries available backends from the highest priority down
    description: str  # one line for `core.doctor`

    def probe(self) -> Availability:
        """Required. Can this backend run here, and if not why not. Cheap; never raises."""

    # optional: BaseBackend's defaults
    device_type: str  # torch device type of training and of the HF engine ("cpu", "cuda", "xpu")
    dist_backend: str  # torch.distributed backend across this backend's devices ("gloo", "nccl", "xccl")
    ray_resource: str | None  # the Ray resource one worker reserves ("GPU"); None: CPU only
    settings_schema: type | None  # dataclass of `backend.settings`; unknown keys and wrong types are refused
    config_searchpath: str | None  # Hydra search-path entry holding `backend/NAME.yaml` ("pkg://its_pkg.conf")
    compiles_by_default: bool  # trainer.compile=null compiles the layers here (GPUs: yes; CPUs: it costs more)

    def device(self, index: int = 0) -> torch.device:
        """The device of local rank `index`."""

    def set_device(self, index: int) -> None:
        """Make local device `index` this process's current device (before joining the process group)."""

    def worker_env(self) -> dict[str, str | None]:
        """Environment for Ray workers (applied before `ray.init` and to their runtime_env); None unsets."""

    def patches(self) -> list[VersionedPatch]:
        """Version-gated patches applied before the vLLM engine starts (and in vLLM's own processes)."""

    def vllm_engine_args(self, cfg: "EngineSettings", engine_args: dict[str, Any]) -> dict[str, Any]:
        """vLLM `LLM(...)` kwargs to add to or override in `engine_args` (core's, derived from `cfg.rollout`).
        Engine hooks get `EngineSettings`: the config's rollout and backend groups, not the whole config."""

    def release_ipc_memory(self) -> None:
        """After a weight sync: let the device allocator reuse buffers the engine has released (CUDA IPC)."""

    def frees_memory_between_rollouts(self, cfg: "EngineSettings") -> bool:
        """Whether the engine sleeps between rollouts (the sharding manager's and SFT validation's answer)."""

    def make_rollout_engine(self, cfg: "EngineSettings", target: "EngineTarget") -> "RolloutEngine":
        """The engine `cfg.backend.engine` names, for `target.model_dir` (`EngineTarget`: sizes and seed)."""

    def make_sharding_manager(self, cfg: "EngineSettings", engine: "RolloutEngine",
                              trainer_model: torch.nn.Module) -> "ShardingManager":
        """The context manager that moves `trainer_model`'s weights into `engine` around a rollout."""


class BaseBackend:
    """Core's defaults: a CPU device, gloo, the HF engine or vLLM as `backend.engine` says."""

    name: ClassVar[str]
    priority: ClassVar[int]
    description: ClassVar[str] = ""
    device_type: ClassVar[str] = "cpu"
    dist_backend: ClassVar[str] = "gloo"
    ray_resource: ClassVar[str | None] = None
    settings_schema: ClassVar[type | None] = VllmSettings
    config_searchpath: ClassVar[str | None] = None
    hf_dtype: ClassVar[torch.dtype] = torch.bfloat16  # the HF engine's dtype on this backend's device
    compiles_by_default: ClassVar[bool] = False

    def probe(self) -> Availability:
        raise NotImplementedError(f"backend {self.name} must say whether it can run here (probe)")

    def device(self, index: int = 0) -> torch.device:
        return torch.device("cpu") if self.device_type == "cpu" else torch.device(self.device_type, index)

    def set_device(self, index: int) -> None:
        if self.device_type != "cpu":
            torch.get_device_module(self.device_type).set_device(index)

    def worker_env(self) -> dict[str, str | None]:
        return {}

    def patches(self) -> list[VersionedPatch]:
        return []

    def vllm_engine_args(self, cfg: "EngineSettings", engine_args: dict[str, Any]) -> dict[str, Any]:
        return {}

    def release_ipc_memory(self) -> None:
        pass

    def frees_memory_between_rollouts(self, cfg: "EngineSettings") -> bool:
        return bool(cfg.rollout.free_cache_engine)

    def make_rollout_engine(self, cfg: "EngineSettings", target: "EngineTarget") -> "RolloutEngine":
        if cfg.backend.engine == "hf":  # `backend.engine` is one of ENGINES (core.config.ranges)
            from core.rollout.hf_engine import HFRolloutEngine
            from core.rollout.vllm_args import check_context_length

            check_context_length(target.model_dir, target.max_prompt_length, int(cfg.rollout.max_tokens))
            return HFRolloutEngine.from_pretrained(target.model_dir, device=str(self.device()), dtype=self.hf_dtype)
        return self.start_vllm(cfg, target)

    def start_vllm(self, cfg: "EngineSettings", target: "EngineTarget") -> "RolloutEngine":
        """This backend's patches and engine args, then one engine (ROCm may start one per rollout)."""
        from core.rollout.vllm_engine import engine_from_config

        return engine_from_config(cfg, target, self)

    def make_sharding_manager(self, cfg: "EngineSettings", engine: "RolloutEngine",
                              trainer_model: torch.nn.Module) -> "ShardingManager":
        from core.rollout.hf_engine import HFRolloutEngine

        if isinstance(engine, HFRolloutEngine):
            from core.sharding.hf import HFShardingManager

            return HFShardingManager(engine, trainer_model)
        from core.sharding.vllm import VllmShardingManager

        return VllmShardingManager(engine, trainer_model, free_cache_engine=self.frees_memory_between_rollouts(cfg),
                                   check_weight_sync=bool(cfg.rollout.check_weight_sync), device=self.device(),
                                   verify_weights=bool(cfg.rollout.verify_weights))
