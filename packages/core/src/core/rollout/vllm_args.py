"""vLLM engine arguments, assembled from the config as a pure function (no vLLM import).

Three layers, later ones winning key by key (`compilation_config` is merged key by key too):
1. what core derives from `cfg.rollout` (memory, scheduling, graphs, prefix caching, dummy load);
2. what the selected backend contributes (`Backend.vllm_engine_args`: sleep mode, capture sizes...);
3. what the user wrote in `cfg.backend.engine_args` / `cfg.backend.compilation_config`.

`cudagraph_capture_sizes`, the one key set in three places, is settled in that order, last wins:
a backend's default (ROCm: `backend.settings.cudagraph_capture_sizes`) only when
`rollout.cudagraph_capture_sizes` is unset, then the rollout key, then the user's
`backend.compilation_config.cudagraph_capture_sizes`. With `rollout.enforce_eager` core and backends add none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol

from core.errors import TandemError

if TYPE_CHECKING:
    from core.rollout.base import EngineTarget


class EngineArgsContributor(Protocol):
    """The part of a backend (`core.backends.base.Backend`) that engine-arg assembly uses."""

    def vllm_engine_args(self, cfg: Any, engine_args: dict[str, Any]) -> dict[str, Any]: ...


# Qualified name of the class vLLM mixes into its worker so that weights can be pushed in place.
WORKER_EXTENSION = "core.rollout.vllm_worker.WeightSyncExtension"


def core_engine_args(rollout: Mapping[str, Any], model_dir: str, max_prompt_length: int, seed: int,
                     device_memory_bytes: int | None = None) -> dict[str, Any]:
    """The `LLM(...)` kwargs that follow from `cfg.rollout` (and the accelerator's memory, for the KV pool)."""
    max_model_len = rollout["max_model_len"] or max_prompt_length + rollout["max_tokens"]
    check_context_length(model_dir, max_prompt_length, rollout["max_tokens"], rollout["max_model_len"])
    args: dict[str, Any] = dict(
        model=model_dir,
        load_format=rollout["load_format"],
        dtype="bfloat16",
        seed=seed,
        gpu_memory_utilization=rollout["gpu_memory_utilization"],
        max_model_len=max_model_len,
        max_num_seqs=rollout["max_num_seqs"],
        max_num_batched_tokens=max(rollout["max_num_batched_tokens"], max_model_len),
        enable_chunked_prefill=rollout["enable_chunked_prefill"],
        enable_prefix_caching=rollout["enable_prefix_caching"],
        enforce_eager=rollout["enforce_eager"],
        tensor_parallel_size=rollout["tensor_parallel_size"],
        worker_extension_cls=WORKER_EXTENSION,
    )
    pool = kv_pool_tokens(rollout, max_model_len, model_dir, device_memory_bytes)
    if pool:
        args["kv_cache_memory_bytes"] = pool * kv_bytes_per_token(model_dir)
    sizes = rollout.get("cudagraph_capture_sizes")
    if sizes and not rollout["enforce_eager"]:
        args["compilation_config"] = {"cudagraph_capture_sizes": sorted(int(s) for s in sizes)}
    return args


def kv_pool_tokens(rollout: Mapping[str, Any], max_model_len: int, model_dir: str,
                   device_memory_bytes: int | None) -> int | None:
    """The KV pool in tokens, or None for vLLM's own sizing (all of its `gpu_memory_utilization` share).

    `rollout.kv_cache_tokens` N: exactly N; 0: vLLM's sizing; null (auto): `max_num_seqs x max_model_len`.
    vLLM never runs more than max_num_seqs sequences of at most max_model_len tokens at once, so a larger
    pool is never filled within a rollout, and every pool block costs time at each wake (one H200, 0.5B,
    256 x 512 tokens instead of 68 GiB: wake + sync 0.36 -> 0.09 s, generation 1.4x faster). Auto only where
    the accelerator's memory is known and the pool takes under half of the engine's share (a long
    max_model_len would ask more than the share holds: vLLM sizes it then, as before).
    """
    tokens = rollout.get("kv_cache_tokens")
    if tokens is not None:
        return int(tokens) or None
    if device_memory_bytes is None:
        return None
    auto = int(rollout["max_num_seqs"]) * max_model_len
    share = rollout["gpu_memory_utilization"] * device_memory_bytes
    return auto if auto * kv_bytes_per_token(model_dir) < share / 2 else None


def check_context_length(model_dir: str, max_prompt_length: int, max_tokens: int, max_model_len: int | None = None) -> None:
    """One line naming the keys when an engine's sequences (`max_model_len`, else prompt + response budget)
    would outgrow the model's positions.

    vLLM refuses such a length with a pydantic traceback deep inside its own arguments; the HF engine would
    generate past the positions the model was trained on. Models whose config extends the positions (a rope
    scaling other than the default) are left alone.
    """
    try:
        config = model_config(model_dir)
    except (OSError, ValueError):
        return  # not a model directory we can read: the engine says what is wrong with it
    length = max_model_len or max_prompt_length + max_tokens
    limit = config.get("max_position_embeddings")
    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    if not isinstance(limit, int) or length <= limit or rope.get("rope_type", rope.get("type")) not in (None, "default"):
        return
    where = f"the model's context ({limit} tokens: max_position_embeddings in {model_dir}/config.json)"
    if max_model_len:
        raise TandemError(f"rollout.max_model_len={max_model_len} is longer than {where}")
    raise TandemError(
        f"data.max_prompt_length ({max_prompt_length}) + rollout.max_tokens ({max_tokens}) = {length} "
        f"tokens is longer than {where}: lower one of them"
    )


def model_config(model_dir: str) -> dict[str, Any]:
    """The text model's part of `model_dir`/config.json (raises OSError or ValueError when unreadable)."""
    import json
    from pathlib import Path

    config = json.loads((Path(model_dir) / "config.json").read_text())
    return config.get("text_config", config)


def kv_bytes_per_token(model_dir: str, dtype_bytes: int = 2) -> int:
    """KV-cache bytes one token takes in the model of `model_dir`: K and V in every layer (bf16)."""
    try:
        config = model_config(model_dir)
    except (OSError, ValueError) as exc:
        raise TandemError(f"rollout.kv_cache_tokens needs the model's config.json in {model_dir}: {exc}") from None
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return 2 * config["num_hidden_layers"] * config.get("num_key_value_heads", heads) * head_dim * dtype_bytes


def merge_engine_args(base: Mapping[str, Any], overrides: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Apply `overrides` in order onto `base`; `compilation_config` dicts merge key by key."""
    merged = dict(base)
    for layer in overrides:
        for key, value in (layer or {}).items():
            if key == "compilation_config" and isinstance(value, Mapping):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return merged


def user_engine_args(backend: Mapping[str, Any]) -> dict[str, Any]:
    """What the user wrote in `backend.engine_args` and `backend.compilation_config` (applied last)."""
    user = dict(backend.get("engine_args") or {})
    if backend.get("compilation_config"):
        user["compilation_config"] = dict(backend["compilation_config"])
    return user


def engine_args_from_config(cfg: Any, target: "EngineTarget", backend: EngineArgsContributor) -> dict[str, Any]:
    """Core's args from `cfg.rollout` and `target`, then `backend`'s contribution, then the user's `backend.*` keys.

    Of `cfg` only `rollout` and `backend` are read here (the backend's own hook may read more of it).
    """
    from omegaconf import OmegaConf

    from core.distributed.devices import accelerator_memory_bytes

    rollout = OmegaConf.to_container(cfg.rollout, resolve=True)
    base = core_engine_args(rollout, target.model_dir, target.max_prompt_length, target.seed,
                            accelerator_memory_bytes())
    user = user_engine_args(OmegaConf.to_container(cfg.backend, resolve=True))
    return merge_engine_args(base, [backend.vllm_engine_args(cfg, dict(base)), user])
