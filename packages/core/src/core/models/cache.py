"""Tandem's model cache and how model directories are written into it: whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def cache_root() -> Path:
    return Path(os.environ.get("TANDEM_CACHE", Path.home() / ".cache" / "tandem")) / "models"


def write_dir_atomically(target: Path, write: Callable[[Path], None], replace: bool = False) -> Path:
    """`write` into a staging directory beside `target`, then rename it to `target`: a crash leaves
    no partial directory. `replace`: an existing `target` gives way once the new one is complete;
    otherwise a concurrent writer of the same content simply loses the race."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        if replace and target.exists():
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:  # another process finished first; its copy is identical
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def save_hf_weights(model, out: Path) -> None:
    """config.json + model.safetensors, written by this process whatever its rank: transformers'
    `save_pretrained` silently writes no weights on ranks other than 0 once torch.distributed is up, and
    every torchrun rank may be the one that builds the cache."""
    from safetensors.torch import save_file

    # safetensors stores a tied tensor once; from_pretrained re-ties lm_head to the embeddings
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in tied}
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    # vLLM picks its model class by `architectures`; without it, a text-only model_type such as gemma3_text
    # or qwen3 resolves to vLLM's embedding model, not the causal LM (save_pretrained would write it; this does not)
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(out)
