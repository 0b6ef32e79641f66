"""Write a training checkpoint as a Hugging Face model directory.

    python -m core.checkpoint.export CKPT_DIR OUT_DIR [--dtype bfloat16] [--adapter]

CKPT_DIR is one `global_step_N` directory or a checkpoints root (its latest checkpoint is used).
The sharded DCP weights are gathered into one process (no GPU, no torch.distributed needed) and
saved as safetensors with the config and tokenizer, ready for `from_pretrained` and vLLM. A LoRA
checkpoint holds the adapters only: the base model its adapter config names is loaded, the adapters
are merged in (or, with --adapter, written alone in peft's format).
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


def _load_weights(checkpoint: Path, state: dict) -> None:
    """Fill `state` (a model's own tensors) in place from the checkpoint's actor weights."""
    with single_process_quiet():
        dcp.load({"actor": {"model": state}}, checkpoint_id=checkpoint / "dcp", no_dist=True)


def _lora_model(checkpoint: Path, merge: bool):
    """The base model named by the adapter config, with the checkpoint's adapters; merged if asked."""
    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_config = PeftConfig.from_pretrained(checkpoint / "hf" / "adapter")
    base_dir = Path(peft_config.base_model_name_or_path)
    if not (base_dir / "config.json").is_file():
        raise TandemError(f"{checkpoint} is a LoRA checkpoint of the base model {base_dir}, which is not there any more")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), peft_config)
    state = model.state_dict()
    _load_weights(checkpoint, {name: state[name] for name in state if ".lora_" in name})
    return model.merge_and_unload() if merge else model


def export_hf(checkpoint: Path, out_dir: Path, dtype: str | None = None, adapter_only: bool = False) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    checkpoint = find_checkpoint(Path(checkpoint), "checkpoint")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise TandemError(f"output directory '{out_dir}' exists; export into a new one")
    if (checkpoint / "hf" / "adapter" / "adapter_config.json").is_file():
        model = _lora_model(checkpoint, merge=not adapter_only)
    else:
        if adapter_only:
            raise TandemError(f"{checkpoint} is not a LoRA checkpoint: it has no adapter to export alone")
        config = AutoConfig.from_pretrained(checkpoint / "hf")
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        _load_weights(checkpoint, model.state_dict())
    if dtype is not None:
        model.to(DTYPES[dtype])
    staging = out_dir.with_name(f".{out_dir.name}.tmp")  # a crash mid-write leaves no half model
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True, **({"save_embedding_layers": False} if adapter_only else {}))
    AutoTokenizer.from_pretrained(checkpoint / "hf").save_pretrained(staging)
    staging.rename(out_dir)
    return out_dir


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core.checkpoint.export", description=__doc__.split("\n")[1])
    parser.add_argument("checkpoint", type=Path, help="global_step_N directory, or a checkpoints root")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="cast before saving")
    parser.add_argument("--adapter", action="store_true", help="a LoRA checkpoint: write the adapter alone (peft)")
    args = parser.parse_args(argv)
    print(export_hf(args.checkpoint, args.out_dir, args.dtype, args.adapter))


if __name__ == "__main__":
    main()
