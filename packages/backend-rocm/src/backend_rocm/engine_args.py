"""The vLLM engine arguments AMD's tuning notes prescribe, as a pure function of the config.

From verl's "performance tuning for AMD (ROCm kernel)" notes:
- CUDA-graph capture of large batches can crash on ROCm: capture only small sizes
  (`cudagraph_capture_sizes` [1, 2, 4, 8, 16, 32, 64], sized to the GPU's memory);
- CUDA graphs cannot be enabled on multiple nodes with vLLM's V1 engine: run eagerly there;
- `disable_custom_all_reduce=True` (RCCL's all-reduce instead of vLLM's custom kernel),
  `enable_prefix_caching=True` (core's default, left to `rollout.enable_prefix_caching`),
  `skip_tokenizer_init=False`, and `disable_mm_preprocessor_cache=True` for multimodal models.
The values live in backend_rocm/conf/backend/rocm.yaml (`backend.settings`); core merges what this returns
after its own `cfg.rollout` arguments and before the user's `backend.engine_args`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from packaging.version import Version

from core.errors import TandemError

V1_DEFAULT_SINCE = Version("0.8.0")  # vLLM's V1 engine is the default from 0.8.0 (the only one from 0.10)
MM_CACHE_GB_SINCE = Version("0.13.0")  # disable_mm_preprocessor_cache was removed in 0.13 (vllm#22441)
SLEEP_FALLBACKS = ("resident", "rebuild")


@dataclass(frozen=True)
class SleepPlan:
    """How the engine gives memory back to the trainer between rollouts."""

    mode: str  # sleep: vLLM sleep mode | resident: stay loaded, smaller share | rebuild: new engine per rollout | off
    reason: str

    @property
    def frees_memory_between_rollouts(self) -> bool:
        return self.mode in ("sleep", "rebuild")


def plan_sleep(free_cache_engine: bool, sleep_available: bool, why_not: str, fallback: str) -> SleepPlan:
    """Sleep mode when asked for and available, else the configured fallback (explicitly)."""
    if not free_cache_engine:
        return SleepPlan("off", "rollout.free_cache_engine=false: the engine stays resident")
    if sleep_available:
        return SleepPlan("sleep", "vLLM sleep mode works on this build")
    if fallback not in SLEEP_FALLBACKS:
        raise TandemError(f"backend.settings.sleep_fallback must be one of {SLEEP_FALLBACKS}, got {fallback!r}")
    how = {"resident": "keeping the engine resident with a smaller gpu_memory_utilization",
           "rebuild": "starting a new engine for every rollout"}[fallback]
    return SleepPlan(fallback, f"vLLM sleep mode is unavailable ({why_not}); {how} "
                               "(backend.settings.sleep_fallback)")


def uses_v1_engine(vllm_version: str, environ: Mapping[str, str]) -> bool:
    if "VLLM_USE_V1" in environ:
        return environ["VLLM_USE_V1"] == "1"
    return Version(vllm_version) >= V1_DEFAULT_SINCE


def is_multimodal(model_dir: str) -> bool:
    """An HF config with a vision or audio tower (only those models have an MM preprocessor)."""
    config = Path(model_dir) / "config.json"
    if not config.is_file():
        return False
    keys = json.loads(config.read_text())
    return any(key in keys for key in ("vision_config", "audio_config"))


def rocm_engine_args(
    settings: Mapping[str, Any],
    core_args: Mapping[str, Any],
    *,
    vllm_version: str,
    nnodes: int,
    plan: SleepPlan,
    multimodal: bool,
    environ: Mapping[str, str],
) -> tuple[dict[str, Any], list[str]]:
    """The ROCm contribution to vLLM's `LLM(...)` kwargs, and the warnings to log about them.

    `core_args` are the arguments core derived from `cfg.rollout` (read, never changed).
    """
    args: dict[str, Any] = {
        "disable_custom_all_reduce": bool(settings["disable_custom_all_reduce"]),
        "skip_tokenizer_init": bool(settings["skip_tokenizer_init"]),
        "enable_sleep_mode": plan.mode == "sleep",
    }
    warnings: list[str] = []
    if plan.mode == "resident":
        args["gpu_memory_utilization"] = float(settings["resident_gpu_memory_utilization"])
    if multimodal and settings["disable_mm_preprocessor_cache"]:
        if Version(vllm_version) >= MM_CACHE_GB_SINCE:
            args["mm_processor_cache_gb"] = 0
        else:
            args["disable_mm_preprocessor_cache"] = True
    if not core_args["enforce_eager"]:
        if nnodes > 1 and uses_v1_engine(vllm_version, environ) and not settings["multi_node_cuda_graphs"]:
            args["enforce_eager"] = True
            warnings.append(
                f"CUDA graphs are off (eager mode) for this {nnodes}-node run: with vLLM's V1 engine, graph "
                "capture does not work across nodes on ROCm (AMD's notes); rollout will be slower. "
                "Set backend.settings.multi_node_cuda_graphs=true to try anyway."
            )
        elif "compilation_config" not in core_args:  # rollout.cudagraph_capture_sizes, when set, wins
            args["compilation_config"] = {
                "cudagraph_capture_sizes": sorted(int(s) for s in settings["cudagraph_capture_sizes"])
            }
    return args, warnings
