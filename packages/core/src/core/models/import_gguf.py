"""`python -m core.models.import_gguf FILE.gguf OUT_DIR [--dtype float32|bfloat16]`: de-quantise a GGUF
into a Hugging Face directory (config, safetensors, tokenizer, chat template) for `model.path`."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import exit_on_user_error
from core.models.gguf import import_gguf


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(prog="python -m core.models.import_gguf", description=__doc__)
    parser.add_argument("gguf_file", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="dtype of the written weights (float32 keeps the de-quantised values exactly)")
    args = parser.parse_args(argv)
    out = import_gguf(args.gguf_file, args.out_dir, getattr(torch, args.dtype))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
