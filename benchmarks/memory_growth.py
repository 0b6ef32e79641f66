"""Does the trainer's GPU memory stay flat from step to step? Runs GRPO on the 0.5B shape with long
prompts and 256-token responses (the shape that used to run out of memory at step 5) and prints the
`memory/*` figures the loop logs every step, read while vLLM sleeps, and their spread after step 2.

    python benchmarks/memory_growth.py --out /tmp/mem --steps 50
    python benchmarks/memory_growth.py --out /tmp/mem --report-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

# ~170-token prompts (byte-level tokenizer: one token per character) and 256-token responses
INSTRUCTION = " Show your work step by step, check every intermediate result twice, and end with the final answer alone" \
              " on its own line, written as digits only, with no units."
OVERRIDES = [
    "+backend=cuda", "model=qwen2_5_0_5b", "data=reasoning_gym", "data.prompt_batch_size=32", "rollout.n=8",
    "rollout.max_tokens=256", "data.max_prompt_length=256", "trainer.micro_batch_size=128", "trainer.lr=1e-6",
    "trainer.test_freq=0", "trainer.save_model=false", "trainer.loggers=[console,jsonl]", "trainer.log_every=10",
    f"data.reasoning_gym.instruction='{INSTRUCTION}'",
]
# used_while_asleep: the device's count, the one that decides whether vLLM can wake; allocated,
# reserved and peak are this process's allocator, which also counts the sleeping engine's pool
DEVICE_GIB = 139.80  # the H200's total as torch reports it
KEYS = ["memory/used_while_asleep_gib", "memory/allocated_gib", "memory/reserved_gib", "memory/peak_allocated_gib"]


def report(out: Path) -> None:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "memory/reserved_gib" in r]
    for r in rows:  # runs logged before used_while_asleep existed: derive it from the free memory
        r.setdefault("memory/used_while_asleep_gib", DEVICE_GIB - r["memory/free_while_asleep_gib"])
    print(f"\n{'step':>4} {'used(asleep)':>13} {'alloc':>7} {'reserved':>9} {'peak':>7} {'step_s':>7}")
    for r in rows:
        if r["step"] <= 5 or r["step"] % 5 == 0:
            print(f"{r['step']:4d} " + " ".join(f"{r[k]:{w}.2f}" for k, w in zip(KEYS, (13, 7, 9, 7)))
                  + f" {r['timing/step']:7.2f}")
    # step 1's reading comes before the engine ever slept (it starts awake)
    later = [r["memory/used_while_asleep_gib"] for r in rows if r["step"] >= 2]
    if later:
        print(f"used while vLLM sleeps, steps 2-{rows[-1]['step']}: min {min(later):.2f} / max {max(later):.2f} GiB "
              f"(spread {max(later) - min(later):.2f}) over {len(rows)} steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides")
    args = parser.parse_args()
    if not args.report_only:
        cmd = [sys.executable, "-m", "core.main", *OVERRIDES, f"trainer.total_steps={args.steps}",
               f"trainer.output_dir={args.out}", *args.overrides]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=False)
    report(args.out)


if __name__ == "__main__":
    main()
