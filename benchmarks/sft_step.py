"""SFT step throughput and MFU on one GPU: padded vs packed (padding-free) micro-batches, by token budget.

    python benchmarks/sft_step.py                                    # 0.5B shape, 64 chats x ~450 tokens a step
    python benchmarks/sft_step.py --cases packed:16384,packed:32768 -- model.gradient_checkpointing=true

Each case runs `sft.loop.train` (in-process, bf16, the cuda backend) on random-init Qwen2.5-0.5B-shape
weights over chats of random words whose lengths vary from ~200 to ~700 tokens, so padding costs what it
costs on real data. Validation is off. The first steps (allocator warm-up) are left out. MFU = 6 N T / step
time / the bf16 matmul peak measured at the start of the same run, with T the real tokens of the step and N
the non-embedding parameters (the lm-head included). Reference point: prime-rl's SFT, 23.7% MFU for a 0.6B
model on one H100.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from grpo_step import bf16_peak_tflops, non_embedding_parameters

CHATS_PER_STEP = 64
WARMUP_STEPS = 2
RESULT = "RESULT "


def write_chats(path: Path, count: int, seed: int = 0) -> None:
    """Chats of random words: a ~20-70-word question and a ~40-200-word answer (~2 byte tokens a word)."""
    rng = random.Random(seed)
    words = lambda n: " ".join("".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 3))) for _ in range(n))  # noqa: E731
    with path.open("w") as f:
        for _ in range(count):
            f.write(json.dumps({"prompt": words(rng.randint(20, 70)), "response": words(rng.randint(40, 200))}) + "\n")


def run_case(backend: str, model: str, packed: bool, budget: str, steps: int, chats: Path,
             extra: list[str]) -> tuple[list[dict], object]:
    from hydra import compose, initialize_config_module

    from sft.config import register_sft_schemas
    from sft.loop import train

    register_sft_schemas()
    out = Path(tempfile.mkdtemp(prefix="tandem-sft-step-"))
    overrides = [
        f"model={model}", f"+backend={backend}", "data.task=file", f"data.train_files=[{chats}]",
        f"data.val_files=[{chats}]", "data.max_length=1024", "data.reward_fn=null", f"trainer.total_steps={steps}",
        f"trainer.batch_size={CHATS_PER_STEP}", f"trainer.micro_batch_tokens={'null' if budget == 'auto' else int(budget)}",
        f"trainer.remove_padding={str(packed).lower()}", "trainer.loggers=[jsonl]", "trainer.report=false",
        "trainer.save_model=false", "validation.val_freq=0", "validation.validate_before_training=false",
        "data.max_val_samples=1", f"trainer.output_dir={out}", *extra,
    ]
    with initialize_config_module(config_module="sft.conf", version_base=None):
        cfg = compose("sft", overrides=overrides)
    train(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "timing/step" in r], cfg


def measure(args, case: str, chats: Path, peak: float) -> dict:
    layout, budget = case.split(":")
    rows, cfg = run_case(args.backend, args.model, layout == "packed", budget, args.steps, chats, args.overrides)
    measured = rows[WARMUP_STEPS:] or rows
    mean = lambda key: sum(r[key] for r in measured) / len(measured)  # noqa: E731
    step_s, tokens = mean("timing/step"), mean("train/input_tokens")
    params = non_embedding_parameters(cfg.model.path)
    return dict(case=case, step=step_s, tokens=tokens, rate=tokens / step_s, params=params,
                mfu=6 * params * tokens / step_s / (peak * 1e12), micro=mean("train/micro_batches"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="padded:16384,packed:16384,packed:32768,packed:auto",
                        help="comma-separated padded|packed:micro_batch_tokens (auto: sized from free memory)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--backend", default="cuda", help="cpu: a smoke run of the script (MFU then means nothing)")
    parser.add_argument("--model", default="qwen2_5_0_5b", help="a model config group option")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one case, run in a child process ...
    parser.add_argument("--peak", type=float, help=argparse.SUPPRESS)  # ... with the parent's peak and chats
    parser.add_argument("--chats", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every case, after --")
    args = parser.parse_args()
    if args.case:  # one engine per process: vLLM does not hand all of its memory back in-process
        print(RESULT + json.dumps(measure(args, args.case, Path(args.chats), args.peak)), flush=True)
        return
    peak = bf16_peak_tflops() if args.backend != "cpu" else float("nan")
    chats = Path(tempfile.mkdtemp(prefix="tandem-sft-data-")) / "chats.jsonl"
    write_chats(chats, count=CHATS_PER_STEP * (args.steps + 1))
    results = []
    for case in args.cases.split(","):
        child = [sys.executable, __file__, "--steps", str(args.steps), "--backend", args.backend, "--model", args.model,
                 "--case", case, "--peak", str(peak), "--chats", str(chats), "--", *args.overrides]
        done = subprocess.run(child, stdout=subprocess.PIPE, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
        if done.returncode or not lines:
            print(f"case {case} failed (exit {done.returncode})")
            continue
        results.append(json.loads(lines[-1][len(RESULT):]))
        print(f"\nbf16 matmul peak measured: {peak:.0f} TFLOP/s; {CHATS_PER_STEP} chats a step, "
              f"N = {results[0]['params'] / 1e6:.0f}M")
        print(f"{'case':>14} {'step s':>7} {'tokens':>7} {'tok/s':>8} {'MFU':>6} {'micro':>5}")
        for r in results:
            print(f"{r['case']:>14} {r['step']:>7.3f} {r['tokens']:>7.0f} {r['rate']:>8.0f} {r['mfu']:>6.1%} {r['micro']:>5.1f}")


if __name__ == "__main__":
    main()
