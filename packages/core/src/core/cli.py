"""`tandem COMMAND ...`: one command on PATH for everything `python -m ...` does (both keep working).

    tandem train +backend=cuda +experiment=smollm2_arithmetic     # = python -m core.main ...
    tandem sft ...  |  tandem eval RUN  |  tandem doctor  |  tandem report RUN  |  tandem export CKPT OUT
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import sys

COMMANDS = {  # command -> (module run as __main__, what it does)
    "train": ("core.main", "RL training (GRPO, PPO, ...), Hydra overrides as arguments"),
    "sft": ("sft.main", "supervised fine-tuning, validated by batched generation"),
    "eval": ("core.eval", "held-out evaluation of runs or models, base model first"),
    "doctor": ("core.doctor", "versions, devices, what each backend can do here"),
    "report": ("core.report", "a run's curves and figures (report.png)"),
    "export": ("core.checkpoint.export", "a checkpoint as a Hugging Face model (or its LoRA adapter)"),
    "import-gguf": ("core.models.import_gguf", "a GGUF file as a Hugging Face model directory"),
    "prepare": ("core.data.prepare", "GSM8K / MATH downloads as parquet in verl's format"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    return "usage: tandem COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines) + "\n\n`tandem COMMAND --help` for each."


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"tandem: error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    module = COMMANDS[command][0]
    if importlib.util.find_spec(module.split(".")[0]) is None:
        print(f"tandem: error: `tandem {command}` needs the {module.split('.')[0]} package: "
              f"pip install -e packages/{module.split('.')[0]}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [f"tandem {command}", *rest]
    sys.path.insert(0, os.getcwd())  # as `python -m` does: reward.reward_fn=my_rewards:score finds ./my_rewards.py
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
