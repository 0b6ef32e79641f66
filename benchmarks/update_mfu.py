"""GRPO loop with the FSDP2 engine under the Ray launcher, and the MFU of its update phase.

    python benchmarks/update_mfu.py                       # H100, 0.5B shape, 1 GPU, 8 steps
    python benchmarks/update_mfu.py --steps 8 --peak-tflops 989 -- trainer.max_tokens_per_gpu=16384

Runs `core.rl.loop.train` (rollout on the backend's engine, FSDP2 training in one Ray worker
per GPU) on random-init Qwen2.5-0.5B-shape weights, then prints one row per step and a summary:
update throughput (tokens/s/GPU), and MFU = 6 * params * tokens * ppo_epochs / update time / peak
(bf16 dense peak per GPU; the recompute of gradient checkpointing is not counted, as usual).
The first step (compilation, allocator warm-up) is left out of the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--gpus", type=int, default=1, help="trainer.n_gpus_per_node")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak per GPU (H100 SXM: 989)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, after --")
    args = parser.parse_args()

    from hydra import compose, initialize_config_module

    from core.config.schema import register_schemas
    from core.rl.loop import train

    register_schemas()
    out = Path(tempfile.mkdtemp(prefix="tandem-update-mfu-"))
    overrides = [
        "model=qwen2_5_0_5b", "+backend=cuda", "trainer.launcher=ray", f"trainer.n_gpus_per_node={args.gpus}",
        f"trainer.total_steps={args.steps}", "data.prompt_batch_size=64", "rollout.n=8", "rollout.max_tokens=512",
        "trainer.remove_padding=true", "trainer.max_tokens_per_gpu=16384", "trainer.loggers=[jsonl]",
        "trainer.report=false", "trainer.save_model=false", "model.gradient_checkpointing=true",
        f"trainer.output_dir={out}", *args.overrides,
    ]
    with initialize_config_module(config_module="core.conf", version_base=None):
        cfg = compose("config", overrides=overrides)
    train(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    params = _parameter_count(cfg.model.path)
    print(f"model {cfg.model.path}: {params / 1e6:.0f}M parameters, {args.gpus} GPU(s), run dir {out}")
    print(f"{'step':>4} {'tokens':>8} {'gen s':>7} {'logprob s':>9} {'update s':>8} {'upd tok/s/GPU':>13} {'MFU':>6}")
    mfus, rates = [], []
    for m in rows:
        tokens, update_s = m["perf/tokens"], m["timing/update"]
        rate = tokens * cfg.trainer.ppo_epochs / update_s / args.gpus
        mfu = 6 * params * rate / (args.peak_tflops * 1e12)
        print(f"{m['step']:>4} {tokens:>8} {m['timing/gen']:>7.2f} {m['timing/logprob']:>9.2f} "
              f"{update_s:>8.2f} {rate:>13.0f} {mfu:>6.1%}")
        if m["step"] > 1:
            mfus.append(mfu)
            rates.append(rate)
    if mfus:
        print(f"steady state (steps 2..{rows[-1]['step']}): update {sum(rates) / len(rates):.0f} tokens/s/GPU, "
              f"MFU {sum(mfus) / len(mfus):.1%}")


def _parameter_count(model_path: str) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from core.models.builtin import resolve_model_path

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model_path(model_path)))
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    sys.exit(main())
