"""Greedy accuracy of models on a preset's validation questions, under two answer extractions.

    python benchmarks/real_task_eval.py packaged:smollm2-135m-instruct runs/x/final [--overrides ...]

`reply`: reasoning-gym's checker on the whole reply (what training optimises, `val/accuracy`);
`last number`: the same checker on the reply's last number (lenient about the words around it). HF
generate, greedy, so the figures compare with the gpu-kit README's baseline for SmolLM2-135M.
"""

from __future__ import annotations

import argparse

import torch
from hydra import compose, initialize_config_module

from core.config.schema import register_schemas
from core.data.reasoning_gym import last_number, extract_answer, score
from core.rewards.base import RewardInput
from core.rollout.base import SamplingParams
from core.rollout.hf_engine import HFRolloutEngine
from core.trainer.setup import load_tokenizer, make_prompt_source


def accuracies(model_path: str, cfg) -> tuple[float, float, str]:
    model_cfg = type("M", (), {"path": model_path})()
    model_dir, tokenizer = load_tokenizer(model_cfg)
    _, val = make_prompt_source(cfg.data, tokenizer)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    engine = HFRolloutEngine.from_pretrained(model_dir, device=device, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    out = engine.generate([s.prompt_ids for s in val.samples], SamplingParams(n=1, temperature=0.0, max_tokens=cfg.rollout.max_tokens))
    replies = tokenizer.batch_decode(out.responses(), skip_special_tokens=True)
    strict = lenient = 0
    for sample, reply in zip(val.samples, replies):
        item = RewardInput(reply, sample.ground_truth, sample.prompt_text, sample.data_source, sample.extra_info)
        strict += score(item, extract_answer(reply)) >= 1.0
        lenient += score(item, last_number(reply)) >= 1.0
    return strict / len(replies), lenient / len(replies), replies[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--overrides", nargs="*", default=["+experiment=smollm2_arithmetic"])
    args = parser.parse_args()
    register_schemas()
    with initialize_config_module(config_module="core.conf", version_base=None):
        cfg = compose("config", overrides=["+backend=cpu", *args.overrides])
    rows = [(path, *accuracies(path, cfg)) for path in args.models]
    print(f"\n{'model':<60} {'reply':>7} {'last number':>12}  first reply")
    for path, strict, lenient, first in rows:
        print(f"{path[-60:]:<60} {strict:7.3f} {lenient:12.3f}  {first[:60]!r}")


if __name__ == "__main__":
    main()
