"""Write a training checkpoint as a Hugging Face model directory.

    python -m core.checkpoint.export CKPT_DIR OUT_DIR [--dtype bfloat16]

CKPT_DIR is one `global_step_N` directory or a checkpoints root (its latest checkpoint is used).
The sharded DCP weights are gathered into one process (no GPU, no torch.distributed needed) and
saved as safetensors with the config and tokenizer, ready for `from_pretrained` and vLLM.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp

from core.checkpoint.manager import find_checkpoint, single_process_quiet
from core.errors import TandemError, exit_on_user_error
from core.trainer.setup import DTYPES


def export_hf(checkpoint: Path, out_dir: Path, dtype: str | None = None) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    checkpoint = find_checkpoint(Path(checkpoint), "checkpoint")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise TandemError(f"output directory '{out_dir}' exists; export into a new one")
    config = AutoConfig.from_pretrained(checkpoint / "hf")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = model.state_dict()
    with single_process_quiet():
        dcp.load({"actor": {"model": state}}, checkpoint_id=checkpoint / "dcp", no_dist=True)  # fills `state` (model's tensors) in place
    if dtype is not None:
        model.to(DTYPES[dtype])
    staging = out_dir.with_name(f".{out_dir.name}.tmp")  # a crash mid-write leaves no half model
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    AutoTokenizer.from_pretrained(checkpoint / "hf").save_pretrained(staging)
    staging.rename(out_dir)
    return out_dir


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.checkpoint.export", description=__doc__.split("\n")[1])
    parser.add_argument("checkpoint", type=Path, help="global_step_N directory, or a checkpoints root")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="cast before saving")
    args = parser.parse_args(argv)
    print(export_hf(args.checkpoint, args.out_dir, args.dtype))


if __name__ == "__main__":
    main()
