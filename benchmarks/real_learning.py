"""Does RL make a real model better at the skill, on questions it never saw? Runs recipes of the arithmetic
presets (`+experiment=smollm2_arithmetic`, `gemma3_arithmetic`) on one GPU, several at a time, and prints
core.eval's table: the base model, every run, and each recipe's mean ± sd over its seeds; exact and
format-insensitive, held-out and shifted (3-term) questions; and each run's entropy, end over start.

    python benchmarks/real_learning.py --out /tmp/learn --recipes smollm2 gemma3 --seeds 0 1 2 --parallel 7 \
        --ablations smollm2_exact_reward
    python benchmarks/real_learning.py --out /tmp/learn --report-only

Runs side by side share the GPU without sleep mode (vLLM checks the device's free memory around each
sleep, and other processes trip it), each with a small vLLM share and a fixed token budget; every run's
own start/end evaluation (RUN/eval.json) is what the table reads, so base and trained are measured by the
same engine, the same way. `--ablations` run once (seed 0) beside them, to show what a part of the recipe buys.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from core.eval.table import markdown, mean_and_spread

SIDE_BY_SIDE = ["+backend=cuda", "rollout.free_cache_engine=false", "rollout.gpu_memory_utilization=0.07",
                "trainer.loggers=[console,jsonl]"]
MODELS = {  # model -> (preset, overrides that fit it beside others)
    "smollm2": ("smollm2_arithmetic", ["trainer.max_tokens_per_gpu=4096"]),
    "gemma3": ("gemma3_arithmetic", ["trainer.max_tokens_per_gpu=2048"]),
}
TWO_SHOT = ('data.few_shot=[{user:"Calculate 12 + 7. Give only the final answer.",assistant:"19"},'
            '{user:"Calculate 9 * -4. Give only the final answer.",assistant:"-36"}]')
RECIPES = {  # name -> (model, overrides on its preset); the preset itself is "<model>"
    "smollm2": ("smollm2", []),
    "smollm2_lr2e-5": ("smollm2", ["trainer.lr=2e-5"]),
    "smollm2_no_kl": ("smollm2", ["algorithm.kl_placement=none"]),
    "smollm2_kl0.02_no_bonus": ("smollm2", ["algorithm.kl_coef=0.02", "algorithm.entropy_coef=0"]),
    "smollm2_exact_reward": ("smollm2", ["reward.reward_fn=reasoning_gym"]),
    # one worked example before each question: the instruct model then answers with a bare number
    "smollm2_one_shot": ("smollm2", ['data.few_shot=[{user:"Calculate 12 + 7. Give only the final answer.",'
                                     'assistant:"19"}]']),
    # the reward pays the asked-for shape by degrees ("= 68" beats "45 + 23 = 68"), towards the bare answer
    "smollm2_concise": ("smollm2", ["reward.reward_fn=graded_concise"]),
    "smollm2_concise_lr2e-5": ("smollm2", ["reward.reward_fn=graded_concise", "trainer.lr=2e-5"]),
    "gemma3": ("gemma3", ["rollout.check_weight_sync=true"]),
    "gemma3_lr2e-5": ("gemma3", ["trainer.lr=2e-5"]),
    # the SmolLM2 preset's collapse controls: one of the preset's 3 seeds fell to 18% of its entropy (README)
    "gemma3_kl0.05_entropy": ("gemma3", ["algorithm.kl_coef=0.05", "algorithm.entropy_coef=0.002"]),
    # two worked examples: the base model answers on the answer's line from the start (alone it starts a new line)
    "gemma3_two_shot": ("gemma3", [TWO_SHOT]),
    "gemma3_two_shot_lr2e-5": ("gemma3", [TWO_SHOT, "trainer.lr=2e-5"]),
}


def launch(out: Path, jobs: list[tuple[str, int]], stagger_s: float, extra: list[str]) -> None:
    """Start every (recipe, seed) at once, `stagger_s` apart (engines profile memory as they start); wait."""
    running = []
    for recipe, seed in jobs:
        model, overrides = RECIPES[recipe]
        preset, fit = MODELS[model]
        run_dir = out / f"{recipe}-seed{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "core.main", f"+experiment={preset}", *SIDE_BY_SIDE, *fit, *overrides, *extra,
               f"trainer.seed={seed}", f"trainer.output_dir={run_dir}", "trainer.resume=auto"]
        log = open(run_dir / "log.txt", "w")
        running.append((run_dir, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})))
        print(f"started {run_dir.name}", flush=True)
        time.sleep(stagger_s)
    for run_dir, process in running:
        print(f"{run_dir.name}: exit {process.wait()}", flush=True)


def read_eval(run_dir: Path) -> dict:
    path = run_dir / "eval.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def report(out: Path) -> None:
    runs = sorted(p.parent for p in out.glob("*/eval.json"))
    by_recipe: dict[str, list[Path]] = {}
    for run in runs:
        by_recipe.setdefault(run.name.rsplit("-seed", 1)[0], []).append(run)
    for recipe, recipe_runs in by_recipe.items():
        results = [read_eval(run) for run in recipe_runs]
        rows = [(f"base ({results[0]['base']['model']})", results[0]["base"]["metrics"])]
        finals = [r["final"]["metrics"] for r in results if "final" in r]
        rows += [(run.name, r["final"]["metrics"]) for run, r in zip(recipe_runs, results) if "final" in r]
        if len(finals) > 1:
            rows.append((f"{recipe}: mean ± sd of {len(finals)}", mean_and_spread(finals)))
        print(f"\n## {recipe}\n{markdown(rows)}")
        for run, result in zip(recipe_runs, results):
            entropy = result.get("entropy")
            if entropy:
                print(f"{run.name}: entropy {entropy['start']:.3f} -> {entropy['end']:.3f} "
                      f"({entropy['end_over_start']:.0%}{', COLLAPSED' if entropy['collapsed'] else ''})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipes", nargs="*", default=["smollm2", "gemma3"], choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--ablations", nargs="*", default=[], choices=list(RECIPES), help="run once, seed 0")
    parser.add_argument("--parallel", type=int, default=4, help="runs on the GPU at once")
    parser.add_argument("--stagger-s", type=float, default=15.0)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--extra", nargs="*", default=[], help="key=value overrides for every run")
    args = parser.parse_args()
    if not args.report_only:
        jobs = [(recipe, seed) for recipe in args.recipes for seed in args.seeds] + [(a, 0) for a in args.ablations]
        for start in range(0, len(jobs), args.parallel):
            launch(args.out, jobs[start:start + args.parallel], args.stagger_s, args.extra)
    report(args.out)


if __name__ == "__main__":
    main()
