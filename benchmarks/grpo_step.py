"""GRPO step time on one GPU, phase by phase: where every step-time claim comes from (docs/grpo_step_performance.md).

    python benchmarks/grpo_step.py                                  # 0.5B and 1.5B shapes x responses 256, 1024
    python benchmarks/grpo_step.py --shapes 0.5b --responses 256 --steps 4 -- trainer.reuse_on_policy_logprobs=false
    python benchmarks/grpo_step.py --shapes 0.5b --responses 256 --generate-twice   # is the first rollout after a wake slow?

Each case runs `core.rl.loop.train` in-process on the cuda backend (vLLM rollout, sleep mode, CUDA graphs)
with random-init Qwen2.5 weights: 32 prompts x 8 samples, prompts of ~170 random words' tokens, responses
up to --responses tokens (random weights rarely sample EOS, so nearly all run to the limit), GRPO at its
defaults. The first step (engine warm-up, allocator growth) is left out; the rest are averaged.

Columns: seconds per phase (gen includes sync = wake + weight push + KV wake; logprob = the reference
and, unless the update is on-policy, the behaviour forward), tokens/s of the step and of generation,
MFU of the update (6 N T) and of the log-prob phase (2 N T per forward pass it runs) against the bf16
matmul peak measured at the start of the same run (T: the tokens the trainer's forward computes, each prompt
once with `trainer.share_prompts`; the tokens column counts every row's prompt), the trainer's peak memory
(what it keeps while the engine sleeps plus the step's rise above that) and what it keeps while the engine
sleeps. N counts non-embedding parameters (the lm-head included).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {"0.5b": ("qwen2_5_0_5b", "builtin:qwen2.5-0.5b-shape"), "1.5b": ("qwen2_5_1_5b", "builtin:qwen2.5-1.5b-shape")}
PROMPTS, SAMPLES, PROMPT_TOKENS = 32, 8, 170
RESULT = "RESULT "


def parity_reward(sample) -> float:
    """A reward with spread, so GRPO's advantages are not all zero: odd response length scores 1."""
    return float(len(sample.response) % 2)


def bf16_peak_tflops(size: int = 8192, repeats: int = 20) -> float:
    import torch

    a, b = (torch.randn(size, size, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    del a, b
    torch.cuda.empty_cache()
    return 2 * size**3 / seconds / 1e12


def write_prompts(path: Path, count: int = 4 * PROMPTS) -> None:
    """Chat prompts of random words, each grown until its templated form has PROMPT_TOKENS tokens."""
    from core.models.tokenizer import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()  # every builtin model's: no 0.5B model built in this process for it
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    with path.open("w") as f:
        for _ in range(count):
            words: list[str] = []
            while len(tokenizer.apply_chat_template([{"role": "user", "content": " ".join(words)}],
                                                    add_generation_prompt=True, tokenize=True,
                                                    return_dict=False)) < PROMPT_TOKENS:  # ids, not a BatchEncoding
                words.append("".join(rng.choice(letters) for _ in range(rng.randint(2, 7))))
            f.write(json.dumps({"prompt": [{"role": "user", "content": " ".join(words)}], "data_source": "bench",
                                "reward_model": {"style": "rule", "ground_truth": ""}}) + "\n")


def profile_phases(at_call: int = 3, rows: int = 30) -> None:
    """Wrap the update and the log-prob pass so that their `at_call`-th run (past the warm-up) runs under
    torch.profiler, printing the kernels by GPU time: where the phase's seconds go."""
    import functools

    import torch

    from core.trainer.actor import Actor

    for name in ("update", "compute_logprobs"):
        original, calls = getattr(Actor, name), [0]

        def profiled(self, *args, _original=original, _calls=calls, _name=name, **kwargs):
            _calls[0] += 1
            if _calls[0] != at_call:
                return _original(self, *args, **kwargs)
            activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            start = time.perf_counter()
            with torch.profiler.profile(activities=activities) as prof:
                result = _original(self, *args, **kwargs)
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            averages = prof.key_averages()
            print(f"\n=== profile: Actor.{_name} (call {at_call}, {seconds:.3f} s profiled) ===")
            print(averages.table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=60))
            # where the host's time went: launches, allocator calls, waits on the GPU (synchronisations)
            print(averages.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))
            return result

        setattr(Actor, name, functools.wraps(original)(profiled))


def generate_twice() -> None:
    """Time every rollout's generation, then the same prompts again at once (prefix cache reset), then once
    more with the Python heap frozen (no collection walks the trainer's objects): whether the first generation
    after the wake and weight sync is the slow one, and whether the garbage collector is. Also counts the
    caching allocator's retries (a full GPU makes each one free its cache and synchronise), and for the first two
    what the host's threads and the GPU did (`host_probe.py`). Triples the gen column; vLLM's sleep then also
    takes ~0.4 s more (its garbage collection walks the unfrozen heap)."""
    import gc

    import torch

    from host_probe import HostProbe

    from core.rollout.vllm_engine import VllmRolloutEngine

    original = VllmRolloutEngine.generate

    def seconds(run):
        start = time.perf_counter()
        out = run()
        return time.perf_counter() - start, out

    def timed(self, prompts, params):
        retries = torch.cuda.memory_stats().get("num_alloc_retries", 0)
        with HostProbe() as first_probe:
            first, out = seconds(lambda: original(self, prompts, params))
        retries = torch.cuda.memory_stats().get("num_alloc_retries", 0) - retries
        self.reset_prefix_cache()
        with HostProbe() as again_probe:
            again, _ = seconds(lambda: original(self, prompts, params))
        self.reset_prefix_cache()
        gc.freeze()
        try:
            frozen, _ = seconds(lambda: original(self, prompts, params))
        finally:
            gc.unfreeze()
        tokens = int(out.response_mask.sum())
        print(f"generate three times: {tokens / first:,.0f} tok/s after the wake, {tokens / again:,.0f} again, "
              f"{tokens / frozen:,.0f} with the heap frozen ({gc.get_count()} gc counts, "
              f"{len(gc.get_objects()):,} objects); allocator retries in the first: {retries}\n"
              f"  after the wake: {first_probe.summary()}\n  again: {again_probe.summary()}", flush=True)
        return out

    VllmRolloutEngine.generate = timed


def profile_rollout(at_call: int = 3, rows: int = 30) -> None:
    """cProfile the `at_call`-th rollout inside the step, printing the functions by own time: where the
    host's time goes in the step's generation (compare `vllm_rollout_bench.py --cprofile`, the engine alone)."""
    import cProfile
    import pstats

    from core.rollout.vllm_engine import VllmRolloutEngine

    original, calls = VllmRolloutEngine.generate, [0]

    def profiled(self, prompts, params):
        calls[0] += 1
        if calls[0] != at_call:
            return original(self, prompts, params)
        profiler = cProfile.Profile()
        out = profiler.runcall(original, self, prompts, params)
        print(f"\n=== cProfile: rollout {at_call} inside the step ===")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(rows)
        return out

    VllmRolloutEngine.generate = profiled


def run_case(shape: str, response_tokens: int, steps: int, prompts: Path, extra: list[str]) -> tuple[list[dict], object]:
    from hydra import compose, initialize_config_module

    from core.config.schema import register_schemas
    from core.rl.loop import train

    register_schemas()
    out = Path(tempfile.mkdtemp(prefix=f"tandem-step-{shape}-{response_tokens}-"))
    overrides = [
        f"model={SHAPES[shape][0]}", "+backend=cuda", "data.task=file", f"data.train_files=[{prompts}]",
        "data.max_prompt_length=512", f"data.prompt_batch_size={PROMPTS}", f"rollout.n={SAMPLES}",
        f"rollout.max_tokens={response_tokens}", "reward.reward_fn=grpo_step:parity_reward",
        f"trainer.total_steps={steps}", "trainer.loggers=[jsonl]", "trainer.report=false",
        "trainer.save_model=false", "trainer.test_freq=0", f"trainer.output_dir={out}", *extra,
    ]
    with initialize_config_module(config_module="core.conf", version_base=None):
        cfg = compose("config", overrides=overrides)
    train(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows, cfg


def non_embedding_parameters(model_path: str) -> int:
    from transformers import AutoConfig

    from core.models.builtin import resolve_model_path

    c = AutoConfig.from_pretrained(resolve_model_path(model_path))
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    attention = c.hidden_size * head_dim * (2 * c.num_attention_heads + 2 * c.num_key_value_heads)
    mlp = 3 * c.hidden_size * c.intermediate_size
    return c.num_hidden_layers * (attention + mlp) + c.hidden_size * c.vocab_size  # + the lm-head matmul


def summarise(shape, response_tokens, rows, cfg, peak) -> dict:
    measured = rows[1:] or rows
    mean = lambda key: sum(r.get(key, 0.0) for r in measured) / len(measured)  # noqa: E731
    params = non_embedding_parameters(cfg.model.path)
    tokens = mean("perf/tokens")
    computed = mean("perf/update_tokens") or tokens  # what the trainer's forward ran (prompts once if shared)
    from core.algorithms.spec import AlgorithmSpec
    from core.trainer.actor import behaviour_logprobs_from_update

    spec = AlgorithmSpec.from_config(cfg.algorithm, cfg.rollout.max_tokens)
    passes = int(spec.needs_reference) + int(not behaviour_logprobs_from_update(cfg.trainer, spec))
    response_tokens_done = mean("response_length/mean") * PROMPTS * SAMPLES
    return dict(
        case=f"{shape} x {response_tokens}", step=mean("timing/step"), gen=mean("timing/gen"), sync=mean("timing/sync"),
        logprob=mean("timing/logprob"), update=mean("timing/update"), tokens=tokens,
        step_tok_s=tokens / mean("timing/step"), gen_tok_s=response_tokens_done / max(mean("timing/gen") - mean("timing/sync"), 1e-9),
        update_mfu=6 * params * computed / mean("timing/update") / (peak * 1e12),
        logprob_mfu=2 * params * computed * passes / max(mean("timing/logprob"), 1e-9) / (peak * 1e12) if passes else 0.0,
        # the allocator's peak also counts the in-process engine's pool (allocated even while unmapped):
        # the trainer's own peak is what it keeps while the engine sleeps plus the step's rise above that
        peak_gib=max(r.get("memory/used_while_asleep_gib", 0.0)
                     + max(0.0, r.get("memory/peak_allocated_gib", 0.0) - r.get("memory/allocated_gib", 0.0))
                     for r in measured),
        asleep_gib=max(r.get("memory/used_while_asleep_gib", 0.0) for r in measured),
        # the update's micro-batch token budget at the last step (sized from free memory; 0: fixed rows)
        micro_tokens=next((v for k, v in rows[-1].items() if k.endswith("micro_batch_tokens")), 0.0),
    )


def print_table(results: list[dict], peak: float) -> None:
    print(f"\nbf16 matmul peak measured: {peak:.0f} TFLOP/s")
    head = (f"{'case':>12} {'step s':>7} {'gen s':>6} {'sync s':>6} {'logp s':>6} {'upd s':>6} {'tokens':>7} "
            f"{'step tok/s':>10} {'gen tok/s':>9} {'upd MFU':>7} {'logp MFU':>8} {'peak GiB':>8} {'asleep GiB':>10} {'micro tok':>9}")
    print(head)
    for r in results:
        print(f"{r['case']:>12} {r['step']:>7.2f} {r['gen']:>6.2f} {r['sync']:>6.2f} {r['logprob']:>6.2f} {r['update']:>6.2f} "
              f"{r['tokens']:>7.0f} {r['step_tok_s']:>10.0f} {r['gen_tok_s']:>9.0f} {r['update_mfu']:>7.1%} "
              f"{r['logprob_mfu']:>8.1%} {r['peak_gib']:>8.1f} {r['asleep_gib']:>10.1f} {r.get('micro_tokens', 0):>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="0.5b,1.5b")
    parser.add_argument("--responses", default="256,1024")
    parser.add_argument("--steps", type=int, default=4, help="steps per case; the first is not counted")
    parser.add_argument("--profile", action="store_true", help="print the update's and log-prob pass's top kernels (3rd step)")
    parser.add_argument("--generate-twice", action="store_true",
                        help="diagnostic: each rollout's generation timed, then twice more (distorts the gen column)")
    parser.add_argument("--profile-rollout", action="store_true", help="cProfile the 3rd step's generation (distorts it)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # shape:responses:peak:prompts, run in a child process
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every case, after --")
    args = parser.parse_args()
    if args.case:  # one engine per process: vLLM does not hand all of its memory back in-process
        shape, response_tokens, peak, prompts = args.case.split(":", 3)
        if args.profile:
            profile_phases()
        if args.generate_twice:
            generate_twice()
        if args.profile_rollout:
            profile_rollout()
        rows, cfg = run_case(shape, int(response_tokens), args.steps, Path(prompts), args.overrides)
        print(RESULT + json.dumps(summarise(shape, int(response_tokens), rows, cfg, float(peak))), flush=True)
        return
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # `timeout`: clean up the child
    peak = bf16_peak_tflops()
    prompts = Path(tempfile.mkdtemp(prefix="tandem-step-data-")) / "prompts.jsonl"
    write_prompts(prompts)
    results = []
    for shape in args.shapes.split(","):
        for response_tokens in args.responses.split(","):
            case = f"{shape}:{response_tokens}:{peak}:{prompts}"
            # the child's output streams through (engine start, steps); only its RESULT line is kept
            child = subprocess.Popen([sys.executable, __file__, "--steps", str(args.steps), "--case", case,
                                      *(["--profile"] if args.profile else []),
                                      *(["--generate-twice"] if args.generate_twice else []),
                                      *(["--profile-rollout"] if args.profile_rollout else []), "--",
                                      *args.overrides], stdout=subprocess.PIPE, text=True, bufsize=1)
            lines = []
            try:
                for line in child.stdout:
                    (lines.append(line) if line.startswith(RESULT) else print(line, end="", flush=True))
                child.wait()
            finally:  # a timeout or Ctrl-C ends the case's process too, not only this one
                if child.poll() is None:
                    child.kill()
            if child.returncode or not lines:
                print(f"case {shape} x {response_tokens} failed (exit {child.returncode})")
                continue
            results.append(json.loads(lines[-1][len(RESULT):]))
            print_table(results, peak)  # after every case: a killed run still shows what it measured


if __name__ == "__main__":
    main()
