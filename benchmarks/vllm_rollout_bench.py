"""vLLM rollout on one GPU: our engine vs raw vLLM vs HF, weight sync, sleep/wake. Prints a table.

    python benchmarks/vllm_rollout_bench.py main     # multi-process engine (the default), 0.5B shape
    python benchmarks/vllm_rollout_bench.py inproc   # in-process engine (VLLM_ENABLE_V1_MULTIPROCESSING=0)
    python benchmarks/vllm_rollout_bench.py sync15   # weight sync of the 1.5B shape (eager engine)

Each phase appends its rows to $OUT/bench.jsonl (or ./bench.jsonl) and prints them. Random-weight
models (`builtin:` shapes), random prompt ids, sampling at temperature 1: throughput only.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

OUT = Path(os.environ.get("OUT", "."))
ROWS: list[tuple[str, str]] = []


def record(what: str, value: str) -> None:
    ROWS.append((what, value))
    print(f"{what:<58} {value}", flush=True)
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


def make_cfg(model: str, **rollout):
    from omegaconf import OmegaConf

    from core.config.schema import TandemConfig

    cfg = OmegaConf.structured(TandemConfig)
    cfg.model.path = f"builtin:{model}"
    cfg.data.max_prompt_length = 128
    cfg.backend.name = "cuda"
    cfg.backend.engine = "vllm"
    cfg.backend.settings = {"weight_bucket_mb": 512}
    for key, value in rollout.items():
        cfg.rollout[key] = value
    return cfg


def prompts(count: int, length: int = 128, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, length), generator=g).tolist()


def start(model: str, multiprocess: bool, **rollout):
    from transformers import AutoModelForCausalLM

    from core.models.builtin import resolve_model_path
    from core.rollout.vllm_engine import engine_from_config

    model_dir = resolve_model_path(f"builtin:{model}")
    trainer = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda()
    cfg = make_cfg(model, multiprocess=multiprocess, max_tokens=256, **rollout)
    t = time.perf_counter()
    engine = engine_from_config(cfg, model_dir, "cuda")
    record(f"engine start ({'multi' if multiprocess else 'in'}-process, {model})", f"{time.perf_counter() - t:.1f} s")
    return engine, trainer, model_dir


def throughput(engine, tag: str, n_prompts: int = 256, n: int = 1, max_tokens: int = 256) -> float:
    from vllm import SamplingParams as VllmSamplingParams
    from vllm.inputs import TokensPrompt

    from core.rollout.base import SamplingParams

    ps = prompts(n_prompts)
    ours = SamplingParams(n=n, max_tokens=max_tokens, temperature=1.0)
    engine.generate(ps[:8], ours)  # warm-up
    sec, out = median_time(lambda: engine.generate(ps, ours))
    ours_tps = int(out.response_mask.sum()) / sec
    raw_tps = 0.0
    variants = [("default", {}), ("detokenize=False", {"detokenize": False}),
                ("detok=False, logprobs=0", {"detokenize": False, "logprobs": 0}),
                ("detok=False, logprobs=0, flat", {"detokenize": False, "logprobs": 0, "flat_logprobs": True})]
    for label, extra in variants:
        raw = VllmSamplingParams(n=n, max_tokens=max_tokens, temperature=1.0, ignore_eos=True, **extra)
        reqs = [TokensPrompt(prompt_token_ids=p) for p in ps]
        sec, res = median_time(lambda: engine.llm.generate(reqs, raw, use_tqdm=False))
        tps = sum(len(c.token_ids) for o in res for c in o.outputs) / sec
        record(f"raw LLM.generate {tag} n={n} ({label})", f"{tps:,.0f} tok/s")
        if "logprobs" not in extra:
            raw_tps = max(raw_tps, tps)
    record(f"VllmRolloutEngine {tag} n={n} (+logprobs, masks)", f"{ours_tps:,.0f} tok/s")
    record(f"(a) ours / raw best {tag} n={n}", f"{ours_tps / raw_tps:.3f}")
    return ours_tps


def sync_time(engine, trainer, label: str) -> None:
    from core.sharding.base import iter_full_parameters

    nbytes = sum(p.numel() for p in trainer.parameters()) * 2
    for bucket_mb in (128, 512, 2048):
        engine.bucket_bytes = bucket_mb << 20
        engine.update_weights(iter_full_parameters(trainer, dtype=engine.dtype))  # warm-up
        sec, _ = median_time(lambda: engine.update_weights(iter_full_parameters(trainer, dtype=engine.dtype)), 5)
        record(f"(c) weight sync {label}, bucket {bucket_mb} MiB", f"{sec * 1e3:.1f} ms, {nbytes / sec / 1e9:.1f} GB/s")
    engine.bucket_bytes = 512 << 20


def hf_generate(model_dir: str) -> float:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda().eval()
    ids = torch.tensor(prompts(64)).cuda()
    kwargs = dict(max_new_tokens=128, min_new_tokens=128, do_sample=True, temperature=1.0, top_k=0, pad_token_id=0)
    model.generate(ids[:4], attention_mask=torch.ones_like(ids[:4]), **{**kwargs, "max_new_tokens": 8, "min_new_tokens": 8})
    sec, _ = median_time(lambda: model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs), 2)
    tps = 64 * 128 / sec
    record("HF generate bf16, batch 64, 128 new tokens", f"{tps:,.0f} tok/s")
    del model
    torch.cuda.empty_cache()
    return tps


def sleep_wake(engine, trainer) -> None:
    from core.sharding.vllm import VllmShardingManager, check_weight_sync

    for level in (1, 2):
        engine.sleep_level = level
        free_awake = torch.cuda.mem_get_info()[0]
        t = time.perf_counter()
        engine.sleep()
        slept = time.perf_counter() - t
        freed = (torch.cuda.mem_get_info()[0] - free_awake) / 2**30
        record(f"(d) sleep(level={level})", f"{slept:.3f} s, freed {freed:.1f} GiB")
        manager = VllmShardingManager(engine, trainer, free_cache_engine=True)
        t = time.perf_counter()
        manager.__enter__()
        record(f"(d) wake weights + sync + wake kv (after level {level})", f"{time.perf_counter() - t:.3f} s")
        mean, worst = check_weight_sync(engine, trainer)
        record(f"    prompt-logprob |diff| vs fp32 trainer (level {level})", f"mean {mean:.3f}, max {worst:.3f}")
    engine.sleep_level = 1


def emulated_grpo_step(engine, trainer) -> None:
    """gen / sync / logprob / update of one GRPO-sized step with our parts (64 prompts x n=8 x 256)."""
    from core.rollout.base import SamplingParams
    from core.sharding.vllm import VllmShardingManager

    manager = VllmShardingManager(engine, trainer, free_cache_engine=True)
    optimizer = torch.optim.AdamW(trainer.parameters(), lr=1e-6)
    engine.sleep()
    for step in range(2):  # the second step is timed (first: optimizer state allocation)
        times = {}
        t = time.perf_counter()
        manager.__enter__()
        times["sync (wake+load+wake kv)"] = time.perf_counter() - t
        t = time.perf_counter()
        out = engine.generate(prompts(64), SamplingParams(n=8, max_tokens=256))
        times["gen"] = time.perf_counter() - t
        t = time.perf_counter()
        manager.__exit__(None, None, None)
        times["sleep"] = time.perf_counter() - t
        ids = torch.cat([torch.tensor([p for p in out.prompt_ids]), out.response_ids], dim=1).cuda()
        t = time.perf_counter()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            for chunk in ids.split(64):
                trainer(input_ids=chunk).logits
        torch.cuda.synchronize()
        times["logprob (fwd)"] = time.perf_counter() - t
        t = time.perf_counter()
        for chunk in ids.split(16):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                trainer(input_ids=chunk).logits.float().logsumexp(-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times["update (fwd+bwd+adam)"] = time.perf_counter() - t
    for phase, sec in times.items():
        record(f"(e) emulated GRPO step: {phase}", f"{sec:.3f} s")
    engine.wake_up()


def phase_main() -> None:
    engine, trainer, model_dir = start("qwen2.5-0.5b-shape", multiprocess=True)
    if "--skip-throughput" not in sys.argv:
        throughput(engine, "multi-process")
        throughput(engine, "multi-process", n_prompts=64, n=4)
        engine.expand_prompts = True
        throughput(engine, "multi-process expand_prompts", n_prompts=64, n=4)
        engine.expand_prompts = False
    sync_time(engine, trainer, "0.5B multi-process (CUDA IPC)")
    sleep_wake(engine, trainer)
    emulated_grpo_step(engine, trainer)
    hf_generate(model_dir)
    engine.close()


def phase_inproc() -> None:
    engine, trainer, _ = start("qwen2.5-0.5b-shape", multiprocess=False)
    throughput(engine, "in-process")
    sync_time(engine, trainer, "0.5B in-process")
    engine.close()


def phase_sync15() -> None:
    engine, trainer, _ = start("qwen2.5-1.5b-shape", multiprocess=True, enforce_eager=True,
                               gpu_memory_utilization=0.3)
    sync_time(engine, trainer, "1.5B multi-process (CUDA IPC)")
    engine.close()


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    phase = sys.argv[1] if len(sys.argv) > 1 else "main"
    {"main": phase_main, "inproc": phase_inproc, "sync15": phase_sync15}[phase]()
    print("\n=== table ===")
    for what, value in ROWS:
        print(f"{what:<58} {value}")
