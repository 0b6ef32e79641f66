"""SFT validation generation: the backend's batched engine vs batched HF generate vs an HF for-loop.

    python benchmarks/sft_validation.py                      # on a GPU host: vLLM (+backend=cuda), 0.5B shape,
                                                            # 512 prompts x 128 new tokens, for-loop timed on 32 prompts
    python benchmarks/sft_validation.py --backend cpu --model builtin:tiny-qwen2 --prompts 16 --max-tokens 8 \
        --loop-prompts 16                                   # the CPU smoke test (HF engine only)

It uses exactly what `python -m sft.main` uses: the engine and sharding manager from the backend's
plugin hooks (`ValidationEngine`), fed the trainer model's weights through the sharding manager
(the "weight push" row), and the HF engine for both HF rows. Random-weight model, random prompt ids
(64-256 tokens), sampling at temperature 0.8 / top_p 0.9: a throughput measurement, not a quality one.
The for-loop generates one prompt per call; with --loop-prompts < --prompts its time is measured on
that many prompts and scaled to all of them (marked "scaled"). Goal: batched engine >= 20x the for-loop.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from core.plugins.manager import require_backend
from core.rollout.base import EngineSettings, EngineTarget, SamplingParams
from core.trainer.setup import load_policy, resolve_device
from sft.engine import ValidationEngine, backend_engine_factory, hf_engine_factory


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="cuda", help="cpu | cuda | rocm: whose rollout engine is measured")
    parser.add_argument("--model", default="builtin:qwen2.5-0.5b-shape")
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--loop-prompts", type=int, default=32, help="prompts the one-at-a-time loop is timed on")
    # HF keeps every step's [rows, vocab] logits: 64 rows x 152k vocab x 128 steps is 2.5 GB in bf16
    parser.add_argument("--hf-batch", type=int, default=64, help="rows per batched HF generate call")
    parser.add_argument("--pushes", type=int, default=3, help="weight pushes timed (median reported)")
    return parser.parse_args()


def config(args: argparse.Namespace):
    """The config `python -m sft.main +backend=... model.path=...` would run with."""
    from hydra import compose, initialize_config_module

    from sft.config import register_sft_schemas

    register_sft_schemas()
    overrides = [
        f"+backend={args.backend}", f"model.path={args.model}",
        f"model.dtype={'float32' if args.backend == 'cpu' else 'bfloat16'}",
        f"validation.max_tokens={args.max_tokens}", "data.max_prompt_length=256",
        f"rollout.max_num_seqs={max(args.prompts, 256)}",
    ]
    with initialize_config_module(config_module="sft.conf", version_base=None):
        return compose("sft", overrides=overrides)


def random_prompts(count: int, vocab: int, seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(64, 257, (count,), generator=gen).tolist()
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in lengths]


def timed_generate(engine: ValidationEngine, prompts, params, batch: int) -> tuple[float, int, float]:
    """(seconds, generated tokens, seconds of the weight pushes) over `prompts` in calls of `batch`."""
    seconds, tokens, push = 0.0, 0, 0.0
    for start in range(0, len(prompts), batch):
        generation = engine.generate(prompts[start : start + batch], params)
        seconds += generation.sync_s + generation.generate_s
        push += generation.sync_s
        tokens += int(generation.output.response_lengths.sum())
    return seconds, tokens, push


def main() -> None:
    args = parse_args()
    backend, availability = require_backend(args.backend)
    print(f"backend {args.backend}: {availability.reason}")
    cfg = config(args)
    model_dir, tokenizer, model = load_policy(cfg.model, resolve_device("auto", backend))
    prompts = random_prompts(args.prompts, min(len(tokenizer), model.config.vocab_size))
    params = SamplingParams(temperature=0.8, top_p=0.9, max_tokens=args.max_tokens, seed=0, logprobs=False)
    rows: list[tuple[str, int, float, int, float]] = []  # engine, prompts, seconds, tokens, push seconds

    target = EngineTarget(model_dir, int(cfg.data.max_prompt_length), int(cfg.trainer.seed))
    factory = backend_engine_factory(backend, EngineSettings.from_config(cfg), target, model)
    with ValidationEngine(factory, fallback=None) as backend_engine:
        backend_engine.generate(prompts[:8], params)  # warm-up: engine start, CUDA graphs, allocator
        label = f"batched, backend engine ({backend_engine.current.label})"
        seconds, tokens, push = timed_generate(backend_engine, prompts, params, len(prompts))
        rows.append((label, len(prompts), seconds, tokens, push))
        pushes = [backend_engine.generate([], params).sync_s for _ in range(args.pushes)]
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    with ValidationEngine(hf_engine_factory(model_dir, model), fallback=None) as hf:
        hf.generate(prompts[:2], params)  # warm-up
        seconds, tokens, push = timed_generate(hf, prompts, params, args.hf_batch)
        rows.append((f"batched HF generate ({args.hf_batch} per call)", len(prompts), seconds, tokens, push))
        looped = prompts[: args.loop_prompts]
        seconds, tokens, push = timed_generate(hf, looped, params, 1)
        scale = len(prompts) / len(looped)
        label = "HF for-loop (1 per call)" + (f", scaled from {len(looped)}" if scale != 1 else "")
        rows.append((label, len(prompts), seconds * scale, int(tokens * scale), push * scale))

    loop_seconds = rows[-1][2]
    print(f"\n{args.prompts} prompts x up to {args.max_tokens} new tokens, model {args.model}, backend {args.backend}")
    print(f"{'engine':<58} {'prompts':>7} {'seconds':>9} {'tokens':>8} {'tok/s':>9} {'vs loop':>8} {'push s':>8}")
    for label, count, seconds, tokens, push in rows:
        print(f"{label:<58} {count:>7} {seconds:>9.2f} {tokens:>8} {tokens / seconds:>9.0f} "
              f"{loop_seconds / seconds:>7.1f}x {push:>8.3f}")
    print(f"\nweight push into the backend engine before a validation (median of {len(pushes)}): "
          f"{statistics.median(pushes):.3f} s")


if __name__ == "__main__":
    main()
