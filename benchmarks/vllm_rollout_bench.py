"""vLLM rollout on one GPU: our engine vs raw vLLM vs HF, weight sync, sleep/wake. Prints a table.

    python benchmarks/vllm_rollout_bench.py --hf            # in-process engine (the default), 0.5B shape, + HF
    python benchmarks/vllm_rollout_bench.py --multiprocess  # vLLM's engine core in its own process
    python benchmarks/vllm_rollout_bench.py --model qwen2.5-1.5b-shape --sync-only
    python benchmarks/vllm_rollout_bench.py --sweep         # vLLM's throughput options, one engine per option set
    python benchmarks/vllm_rollout_bench.py --cprofile      # where the host's CPU time goes in one GRPO-shaped rollout

Random-weight models (`builtin:` shapes), random prompt ids, sampling at temperature 1: throughput
only. (a) compares like with like: our engine without log-probs (what the RL loop asks for, since
it recomputes them with the trainer) against raw `LLM.generate` at its best settings, and our engine
with log-probs against raw with the same log-prob settings. Rows are also appended to
$OUT/bench.jsonl (or ./bench.jsonl).

--sweep starts one engine per entry of SWEEP (in a child process each: vLLM does not give all of its memory
back in-process) with those `LLM(...)` options on top of ours (`backend.engine_args`; a "rollout" key sets
rollout options instead), at the GRPO step's shape (32 prompts of 170 ids x n=8, 256 new tokens, fresh prompts
at every repeat as in training: no prefix-cache hits across rollouts), and prints raw vLLM's and our engine's
tokens/s for each against the first entry: the engine alone, to hold against the step's gen column.

--cprofile runs one rollout at that shape under cProfile and prints the functions by own CPU time: a
rollout of many short sequences is bound by the host's per-step Python work (scheduler, input preparation,
output processing), and this says whose.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import torch

OUT = Path(os.environ.get("OUT", "."))
ROWS: list[tuple[str, str]] = []
# option sets for --sweep: vLLM's knobs for many short sequences (the first is the baseline)
SWEEP: dict[str, dict] = {
    "defaults": {},
    "async_scheduling=False": {"async_scheduling": False},  # on by default since vLLM 0.1x: what it buys
    "max_num_batched_tokens=65536": {"max_num_batched_tokens": 65536},  # every prompt's prefill in one step
    "enable_prefix_caching=False": {"enable_prefix_caching": False},  # n=8 shares each prompt's blocks
    "rollout.multiprocess=true": {"rollout": {"multiprocess": True}},  # engine core in its own process
}
SWEEP_RESULT = "SWEEP "
PROBE = "our engine alone,"


def record(what: str, value: str) -> None:
    ROWS.append((what, value))
    print(f"{what:<62} {value}", flush=True)
    with open(OUT / "bench.jsonl", "a") as f:
        f.write(json.dumps({"what": what, "value": value}) + "\n")


def median_time(fn, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def prompts(count: int, length: int = 128, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, length), generator=g).tolist()


def start(model: str, multiprocess: bool, engine_args: dict | None = None, max_prompt_length: int = 128, **rollout):
    from omegaconf import OmegaConf

    from core.config.schema import TandemConfig
    from core.models.builtin import resolve_model_path
    from core.plugins.manager import load_backend
    from core.rollout.base import EngineSettings, EngineTarget
    from core.rollout.vllm_engine import engine_from_config

    cfg = OmegaConf.structured(TandemConfig)
    cfg.model.path = f"builtin:{model}"
    cfg.data.max_prompt_length = max_prompt_length
    cfg.backend.name, cfg.backend.engine = "cuda", "vllm"
    cfg.rollout.multiprocess, cfg.rollout.max_tokens = multiprocess, 256
    for key, value in rollout.items():
        cfg.rollout[key] = value
    cfg.backend.engine_args = engine_args or {}
    model_dir = resolve_model_path(cfg.model.path)
    t = time.perf_counter()
    engine = engine_from_config(EngineSettings.from_config(cfg), EngineTarget.from_config(cfg, model_dir),
                                load_backend("cuda"))
    record(f"engine start ({_mode(multiprocess)}, {model})", f"{time.perf_counter() - t:.1f} s")
    return engine, model_dir


def _mode(multiprocess: bool) -> str:
    return "multi-process" if multiprocess else "in-process"


def throughput(engine, tag: str, n_prompts: int = 256, n: int = 1, max_tokens: int = 256) -> None:
    from vllm import SamplingParams as VllmSamplingParams
    from vllm.inputs import TokensPrompt

    from host_probe import HostProbe

    from core.rollout.base import SamplingParams

    step_shaped = tag.startswith(SWEEP_RESULT)  # --sweep: the GRPO step's prompts, new ones every rollout
    length = 170 if step_shaped else 128
    ps = prompts(n_prompts, length)
    seeds = iter(range(1, 1000))

    def prompt_sets(repeats: int = 3) -> Iterator[list[list[int]]]:
        """One prompt list per timed repeat, made before the timing starts."""
        sets = [prompts(n_prompts, length, seed=next(seeds)) if step_shaped else ps for _ in range(repeats)]
        return iter(sets)

    def raw(**extra) -> float:
        params = VllmSamplingParams(n=n, max_tokens=max_tokens, temperature=1.0, ignore_eos=True, **extra)
        requests = iter([[TokensPrompt(prompt_token_ids=p) for p in batch] for batch in prompt_sets()])
        sec, res = median_time(lambda: engine.llm.generate(next(requests), params, use_tqdm=False))
        return sum(len(c.token_ids) for o in res for c in o.outputs) / sec

    def ours(logprobs: bool) -> float:
        params = SamplingParams(n=n, max_tokens=max_tokens, temperature=1.0, logprobs=logprobs)
        batches = prompt_sets()
        with HostProbe() as probe:
            sec, out = median_time(lambda: engine.generate(next(batches), params))
        if step_shaped:
            print(f"{PROBE} 3 rollouts: {probe.summary()}", flush=True)
        return int(out.response_mask.sum()) / sec

    engine.generate(ps[:8], SamplingParams(max_tokens=8))  # warm-up
    if step_shaped:  # the two figures it compares, nothing else
        print(tag + json.dumps({"raw": raw(detokenize=False), "ours": ours(False)}), flush=True)
        return
    raw_best = max(raw(), raw(detokenize=False))
    raw_logprobs = raw(detokenize=False, logprobs=0, flat_logprobs=True)
    ours_plain, ours_logprobs = ours(False), ours(True)
    record(f"raw LLM.generate {tag} n={n}, best (detokenize=False)", f"{raw_best:,.0f} tok/s")
    record(f"VllmRolloutEngine {tag} n={n} (ids + masks)", f"{ours_plain:,.0f} tok/s")
    record(f"(a) ours / raw best, {tag} n={n}", f"{ours_plain / raw_best:.3f}")
    record(f"    with log-probs: raw {raw_logprobs:,.0f}, ours {ours_logprobs:,.0f} tok/s", f"{ours_logprobs / raw_logprobs:.3f}")


def sync_time(engine, model_dir: str, label: str) -> None:
    from transformers import AutoModelForCausalLM

    from core.sharding.base import iter_full_parameters

    for dtype in (torch.bfloat16, torch.float32):  # bf16: in-process trainer; fp32: FSDP master weights
        trainer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).cuda()
        nbytes = sum(p.numel() for p in trainer.parameters()) * 2
        engine.update_weights(iter_full_parameters(trainer, dtype=engine.dtype))  # warm-up
        sec, _ = median_time(lambda: engine.update_weights(iter_full_parameters(trainer, dtype=engine.dtype)), 5)
        tag = str(dtype).removeprefix("torch.")
        record(f"(c) weight sync {label}, {tag} trainer", f"{sec * 1e3:.1f} ms, {nbytes / sec / 1e9:.1f} GB/s")
        del trainer
        torch.cuda.empty_cache()


def sleep_wake(engine, model_dir: str) -> None:
    from transformers import AutoModelForCausalLM

    from core.sharding.vllm import VllmShardingManager, check_weight_sync

    trainer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda()
    for level in (2, 1):
        engine.sleep_level = level
        free_awake = torch.cuda.mem_get_info()[0]
        t = time.perf_counter()
        engine.sleep()
        slept = time.perf_counter() - t
        freed = (torch.cuda.mem_get_info()[0] - free_awake) / 2**30
        record(f"(d) sleep(level={level})", f"{slept:.3f} s, freed {freed:.1f} GiB")
        t = time.perf_counter()
        VllmShardingManager(engine, trainer, free_cache_engine=True).__enter__()
        record(f"(d) wake weights + sync + wake kv (after level {level})", f"{time.perf_counter() - t:.3f} s")
        mean, worst = check_weight_sync(engine, trainer)
        record(f"    prompt-logprob |diff| vs fp32 trainer (level {level})", f"mean {mean:.3f}, max {worst:.3f}")
    del trainer
    torch.cuda.empty_cache()


def hf_generate(model_dir: str) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda().eval()
    ids = torch.tensor(prompts(64)).cuda()
    kwargs = dict(max_new_tokens=128, min_new_tokens=128, do_sample=True, temperature=1.0, top_k=0, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids[:4], attention_mask=torch.ones_like(ids[:4]), **{**kwargs, "max_new_tokens": 8, "min_new_tokens": 8})
        sec, _ = median_time(lambda: model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs), 2)
    record("(b) HF generate bf16, batch 64, 128 new tokens", f"{64 * 128 / sec:,.0f} tok/s")
    del model
    torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--multiprocess", action="store_true", help="vLLM engine core in its own process")
    parser.add_argument("--model", default="qwen2.5-0.5b-shape", help="a builtin shape")
    parser.add_argument("--sync-only", action="store_true", help="only sync and sleep/wake (eager engine, less memory)")
    parser.add_argument("--hf", action="store_true", help="also HF generate (the (b) baseline)")
    parser.add_argument("--sweep", nargs="?", const=",".join(SWEEP), metavar="NAMES",
                        help="raw vs ours under each of SWEEP's vLLM options (or the comma-separated NAMES of them)")
    parser.add_argument("--cprofile", action="store_true", help="one GRPO-shaped rollout under cProfile")
    parser.add_argument("--sweep-case", help=argparse.SUPPRESS)  # one SWEEP entry, in a child process
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    mode, size = _mode(args.multiprocess), args.model.split("-")[1].upper()
    if args.sweep:
        sweep(args.model, args.sweep.split(","))
        return
    if args.cprofile:
        engine, _ = start(args.model, args.multiprocess, max_prompt_length=512, max_tokens=256)
        throughput(engine, SWEEP_RESULT, n_prompts=32, n=8)
        cpu_profile(engine)
        engine.close()
        return
    if args.sweep_case:
        options = dict(SWEEP[args.sweep_case])
        rollout = {"max_tokens": 256, **options.pop("rollout", {})}
        # the step's data.max_prompt_length: the same max_model_len, so the same automatic KV pool
        engine, _ = start(args.model, rollout.pop("multiprocess", args.multiprocess), options, 512, **rollout)
        throughput(engine, SWEEP_RESULT, n_prompts=32, n=8)
        engine.close()
        return

    if args.sync_only:
        engine, model_dir = start(args.model, args.multiprocess, enforce_eager=True, gpu_memory_utilization=0.3)
        sync_time(engine, model_dir, f"{size} {mode}")
        sleep_wake(engine, model_dir)
    else:
        engine, model_dir = start(args.model, args.multiprocess)
        throughput(engine, mode)
        throughput(engine, mode, n_prompts=64, n=4)
        # rollout.expand_prompts (64 prompts x 4 as 256 requests with n=1) is the first line's shape
        sync_time(engine, model_dir, f"{size} {mode}")
        sleep_wake(engine, model_dir)
    engine.close()
    if args.hf:
        hf_generate(model_dir)
    print("\n=== table ===")
    for what, value in ROWS:
        print(f"{what:<62} {value}")


def cpu_profile(engine, rows: int = 35) -> None:
    """One rollout of 32 prompts x 8 samples x 256 tokens (no engine log-probs, as in RL) under cProfile,
    functions by own time and by cumulative time."""
    import cProfile
    import platform
    import pstats

    from core.rollout.base import SamplingParams

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"host CPU: {cpu}; {len(os.sched_getaffinity(0))} cores usable", flush=True)
    params = SamplingParams(n=8, max_tokens=256, temperature=1.0, logprobs=False)  # as the RL loop asks
    ps = prompts(32)
    profiler = cProfile.Profile()
    torch.cuda.synchronize()
    start_s = time.perf_counter()
    profiler.enable()
    out = engine.generate(ps, params)
    torch.cuda.synchronize()
    profiler.disable()
    seconds = time.perf_counter() - start_s
    print(f"profiled rollout: {int(out.response_mask.sum())} tokens in {seconds:.2f} s (profiler overhead included)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(rows)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(rows)


def sweep(model: str, names: list[str]) -> None:
    """Each named SWEEP entry in its own process; a table of raw and our tokens/s, and ratios to the first."""
    results: dict[str, dict] = {}
    for name in names:
        child = subprocess.run([sys.executable, __file__, "--model", model, "--sweep-case", name],
                               stdout=subprocess.PIPE, text=True)
        lines = [line for line in child.stdout.splitlines() if line.startswith(SWEEP_RESULT)]
        print("\n".join(f"{name}: {line}" for line in child.stdout.splitlines() if line.startswith(PROBE)))
        if child.returncode or not lines:
            print(f"{name}: failed (exit {child.returncode})")
            continue
        results[name] = json.loads(lines[-1][len(SWEEP_RESULT):])
        base = next(iter(results.values()))
        print(f"\n{'vLLM options':<32} {'raw tok/s':>10} {'ours tok/s':>10} {'ours/raw':>8} {'ours/base':>9}")
        for label, r in results.items():
            print(f"{label:<32} {r['raw']:>10,.0f} {r['ours']:>10,.0f} {r['ours'] / r['raw']:>8.3f} "
                  f"{r['ours'] / base['ours']:>9.3f}", flush=True)


if __name__ == "__main__":
    main()
