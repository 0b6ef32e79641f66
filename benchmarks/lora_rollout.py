"""LoRA on the rollout side, one GPU: merged weights (Tandem's way) against vLLM's native LoRA. Prints a table.

    python benchmarks/lora_rollout.py                          # 1.5B shape, rank 16, every linear layer
    python benchmarks/lora_rollout.py --model qwen2.5-0.5b-shape --rank 64

merged: the trainer folds W + scale * B @ A layer by layer and pushes every base tensor into the plain
engine (CUDA graphs, no LoRA kernels): sync = fold + push. native: the engine is built with
`enable_lora` and each step registers the new adapter under a fresh id; vLLM reads adapters from a
directory, so sync = save the adapter + load it. raw: plain vLLM with native's arguments minus LoRA, the
baseline. Generation: 256 prompts x 256 tokens at temperature 1, random weights, EOS ignored, the median
of 3 rounds. Each mode runs in its own process (vLLM does not
give all of its memory back in-process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from vllm_rollout_bench import median_time, prompts

RESULT = "RESULT "
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_policy(model_dir: str, rank: int):
    """The trainer's LoRA policy on the GPU (bf16), with non-zero B so the merge is not a no-op."""
    from transformers import AutoModelForCausalLM

    from core.models.lora import apply_lora

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda()
    model = apply_lora(model, SimpleNamespace(rank=rank, alpha=2 * rank, dropout=0.0, target_modules=TARGETS))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1e-3)
    return model


def throughput(llm, n_prompts: int, max_tokens: int, **generate_kwargs) -> float:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    requests = [TokensPrompt(prompt_token_ids=p) for p in prompts(n_prompts)]
    params = SamplingParams(max_tokens=max_tokens, temperature=1.0, ignore_eos=True, detokenize=False)
    llm.generate(requests[:8], params, use_tqdm=False, **generate_kwargs)  # warm-up (and adapter load)
    seconds, outputs = median_time(lambda: llm.generate(requests, params, use_tqdm=False, **generate_kwargs))
    return sum(len(c.token_ids) for o in outputs for c in o.outputs) / seconds


def merged_case(model_dir: str, rank: int, n_prompts: int, max_tokens: int) -> dict:
    from omegaconf import OmegaConf

    from core.config.schema import TandemConfig
    from core.plugins.manager import load_backend
    from core.rollout.base import EngineSettings, EngineTarget
    from core.rollout.vllm_engine import engine_from_config
    from core.sharding.base import iter_full_parameters

    cfg = OmegaConf.structured(TandemConfig)
    cfg.model.path, cfg.backend.name, cfg.backend.engine = model_dir, "cuda", "vllm"
    cfg.data.max_prompt_length, cfg.rollout.max_tokens = 128, max_tokens
    engine = engine_from_config(EngineSettings.from_config(cfg), EngineTarget.from_config(cfg, model_dir),
                                load_backend("cuda"))
    policy = lora_policy(model_dir, rank)
    push = lambda: engine.update_weights(iter_full_parameters(policy, dtype=engine.dtype))  # noqa: E731
    push()
    sync_s, _ = median_time(push, 5)
    return dict(mode="merged (default)", tok_s=throughput(engine.llm, n_prompts, max_tokens), sync_ms=sync_s * 1e3)


def native_case(model_dir: str, rank: int, n_prompts: int, max_tokens: int) -> dict:
    from vllm import LLM
    from vllm.lora.request import LoRARequest

    llm = LLM(model=model_dir, dtype="bfloat16", enable_lora=True, max_lora_rank=rank, max_loras=1,
              gpu_memory_utilization=0.5, max_model_len=128 + max_tokens, seed=0)
    policy = lora_policy(model_dir, rank)
    adapters = Path(tempfile.mkdtemp(prefix="tandem-lora-"))
    next_id = iter(range(1, 1000))

    def new_adapter() -> LoRARequest:
        """What a native-LoRA sync does each step: write the adapter, register it under a new id."""
        lora_id = next(next_id)
        path = adapters / f"step{lora_id}"
        policy.save_pretrained(path)
        request = LoRARequest(f"step{lora_id}", lora_id, str(path))
        llm.llm_engine.add_lora(request)
        return request

    new_adapter()
    sync_s, request = median_time(new_adapter, 5)
    plain = throughput(llm, n_prompts, max_tokens)
    with_adapter = throughput(llm, n_prompts, max_tokens, lora_request=request)
    return dict(mode="native (enable_lora)", tok_s=with_adapter, sync_ms=sync_s * 1e3, plain_tok_s=plain)


def raw_case(model_dir: str, rank: int, n_prompts: int, max_tokens: int) -> dict:
    """Plain vLLM with the native case's arguments minus LoRA: the baseline both others are read against."""
    from vllm import LLM

    llm = LLM(model=model_dir, dtype="bfloat16", gpu_memory_utilization=0.5, max_model_len=128 + max_tokens, seed=0)
    return dict(mode="raw vLLM, no LoRA", tok_s=throughput(llm, n_prompts, max_tokens), sync_ms=float("nan"))


CASES = {"merged": merged_case, "native": native_case, "raw": raw_case}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-1.5b-shape", help="a builtin shape")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--mode", choices=list(CASES), help=argparse.SUPPRESS)  # one child process
    args = parser.parse_args()
    from core.models.builtin import resolve_model_path

    model_dir = resolve_model_path(f"builtin:{args.model}")
    if args.mode:
        print(RESULT + json.dumps(CASES[args.mode](model_dir, args.rank, args.prompts, args.max_tokens)), flush=True)
        return
    results = []
    for mode in CASES:
        started = time.perf_counter()
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--mode", mode], stdout=subprocess.PIPE,
                               text=True)
        lines = [line for line in child.stdout.splitlines() if line.startswith(RESULT)]
        if child.returncode or not lines:
            print(f"{mode}: failed (exit {child.returncode})")
            continue
        results.append({**json.loads(lines[-1][len(RESULT):]), "wall_s": time.perf_counter() - started})
    print(f"\nLoRA rank {args.rank} on {args.model}, {args.prompts} prompts x {args.max_tokens} tokens")
    print(f"{'mode':>22} {'gen tok/s':>10} {'sync ms':>8} {'wall s':>7}")
    for r in results:
        print(f"{r['mode']:>22} {r['tok_s']:>10,.0f} {r['sync_ms']:>8.1f} {r['wall_s']:>7.0f}")
    native = [r for r in results if "plain_tok_s" in r]
    if native:
        print(f"{'native engine, no adapter':>22} {native[0]['plain_tok_s']:>10,.0f}")
    by_mode = {r["mode"].split()[0]: r for r in results}
    if {"merged", "native"} <= by_mode.keys():
        print(f"native / merged generation: {by_mode['native']['tok_s'] / by_mode['merged']['tok_s']:.3f}; "
              f"sync: {by_mode['native']['sync_ms'] / by_mode['merged']['sync_ms']:.2f}x")


if __name__ == "__main__":
    main()
