"""Building the loop's parts from config: device, policy model and tokenizer, prompt source."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

from core.errors import TandemError
from core.models.builtin import resolve_model_path
from core.models.lora import apply_lora
from core.trainer.precision import HALF_PRECISION

if TYPE_CHECKING:
    from core.backends.base import Backend

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str, backend: "Backend", local_index: int = 0) -> torch.device:
    """`trainer.device`: auto is the backend's device of this local rank; cpu or a device type as given."""
    if name == "auto":
        return backend.device(local_index)
    device = torch.device(name)
    if device.type != "cpu" and not torch.get_device_module(device.type).is_available():
        raise TandemError(f"trainer.device={name} but no {device.type} device is visible")
    return device


def process_group_backend(backend: "Backend", device: torch.device) -> str:
    """torch.distributed's backend for ranks on `device`: gloo for the CPU, else the backend's own."""
    return "gloo" if device.type == "cpu" else backend.dist_backend


def logits_width(model_dir: str) -> int:
    """The model's vocabulary (the logits' last dimension), often wider than its tokenizer's."""
    from transformers import AutoConfig

    with unreadable_model_named(model_dir, "config"):
        return AutoConfig.from_pretrained(model_dir).get_text_config().vocab_size


def load_tokenizer(model_cfg):
    """(model_dir, tokenizer) for `model.path` (builtin models are built on first use)."""
    from transformers import AutoTokenizer

    model_dir = resolve_model_path(model_cfg.path)
    with unreadable_model_named(model_dir, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if len(tokenizer) < 2:  # no tokenizer files: transformers builds an empty one, and generate fails later
        raise TandemError(f"model.path {model_dir}: cannot load its tokenizer: the directory has no tokenizer files")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model_dir, tokenizer


def load_policy(model_cfg, device: torch.device, dtype: torch.dtype | None = None, packed: bool = False,
                shared_prompts: bool = False):
    """(model_dir, tokenizer, model) for `model.path`; the model is on `device`, in `dtype`
    (default `model.dtype`; FSDP asks for float32 master weights and computes in `model.dtype`).
    `packed`: the padding-free forward, with varlen flash-attention when flash-attn is installed;
    `shared_prompts`: the shared-prompt forward's attention (`attention_kernel`)."""
    from transformers import AutoModelForCausalLM

    model_dir, tokenizer = load_tokenizer(model_cfg)
    with unreadable_model_named(model_dir, "weights"):
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=dtype or model_dtype(model_cfg),
            attn_implementation=attention_kernel(device, packed, shared_prompts),
        ).to(device)
    if model_cfg.gradient_checkpointing:  # newer transformers renamed it; the old name warns on every run
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    lora = getattr(model_cfg, "lora", None)
    if lora is not None and lora.rank > 0:
        if model_cfg.gradient_checkpointing:  # frozen embeddings: checkpointed blocks need a grad-carrying input
            model.enable_input_require_grads()
        model = apply_lora(model, lora)
    return model_dir, tokenizer, model


@contextmanager
def unreadable_model_named(model_dir: str, what: str):
    """transformers' many ways to fail on a broken model directory, as one line naming it."""
    try:
        yield
    except (OSError, ValueError, KeyError, EnvironmentError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TandemError(f"model.path {model_dir}: cannot load its {what}: {first_line}") from None
    except RuntimeError as exc:  # transformers: tensors whose shapes the config does not give
        if "mismatched_sizes" not in str(exc):
            raise
        raise TandemError(f"model.path {model_dir}: its config.json does not match its weights (tensor shapes differ; "
                          "transformers' report above names them)") from None
    except Exception as exc:  # safetensors' own error type for a truncated file, huggingface_hub's for a config
        # that contradicts itself, among others
        if type(exc).__module__.split(".")[0] not in ("safetensors", "tokenizers", "huggingface_hub"):
            raise
        first_line = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
        raise TandemError(f"model.path {model_dir}: cannot load its {what}: {first_line}") from None


def model_dtype(model_cfg) -> torch.dtype:
    if model_cfg.dtype not in DTYPES:
        raise TandemError(f"model.dtype={model_cfg.dtype!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[model_cfg.dtype]


def resolve_packing(setting: bool | None, device: torch.device, compute_dtype: torch.dtype,
                    shared_prompts: bool = False) -> bool:
    """`trainer.remove_padding`, with null meaning: packed where a varlen attention kernel runs on `device`
    in `compute_dtype` (flash kernels: bf16/fp16 only; measured on the H200: the 0.5B update 9% faster,
    SFT 1.7x; README), padded otherwise: on CPU the sdpa mask costs more than the padding saves, and an fp32
    model (SmolLM2's preset) has no flash kernel. `shared_prompts` (`trainer.share_prompts`) packs rows."""
    if shared_prompts:
        if setting is False:
            raise TandemError("trainer.share_prompts=true packs rows (each prompt once): it cannot run with "
                              "trainer.remove_padding=false; leave remove_padding null or true")
        if device.type != "cpu" and compute_dtype not in HALF_PRECISION:
            logging.getLogger("tandem").warning(
                "trainer.share_prompts with %s compute: no flash kernel takes it, so attention runs prompt by "
                "prompt and response by response (correct, slow); model.dtype=bfloat16 or trainer.master_weights "
                "gives the kernel", str(compute_dtype).removeprefix("torch."))
        return True
    if setting is not None:
        return bool(setting)
    return compute_dtype in HALF_PRECISION and attention_kernel(device, packed=True) is not None


def resolve_share_prompts(setting: bool | None, remove_padding: bool | None, device: torch.device,
                          compute_dtype: torch.dtype, samples_per_prompt: int) -> bool:
    """`trainer.share_prompts`, with null meaning: on where it runs on a flash kernel and has prompts to share
    (an accelerator with torch's varlen kernel, bf16/fp16 compute, rows not forced padded, rollout.n > 1).
    Measured with benchmarks/grpo_step.py (docs/grpo_step_performance.md): the log-prob + update phases
    11-20% shorter for the 0.5B shape on H100s, 30% for the 1.5B shape on the H200 and an H100. Off on CPU:
    there the fallback runs attention segment by segment, and the CPU path stays as it was."""
    from core.models import varlen_attention

    if setting is not None:
        return bool(setting)
    return (remove_padding is not False and samples_per_prompt > 1 and device.type != "cpu"
            and compute_dtype in HALF_PRECISION and varlen_attention.varlen_kernel_available())


def attention_kernel(device: torch.device, packed: bool, shared_prompts: bool = False) -> str | None:
    """For packed rows on an accelerator: flash_attention_2 when flash-attn is importable, else torch's varlen
    kernel (core/models/varlen_attention.py). Otherwise transformers' default (sdpa, which handles packed rows
    exactly with a block-diagonal mask: the CPU path). The shared-prompt forward needs `tandem_varlen` everywhere
    (its key lists; segment by segment on a CPU)."""
    import importlib.util

    from core.models import varlen_attention

    if shared_prompts:
        return varlen_attention.register()
    if not packed or device.type == "cpu":
        return None
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return varlen_attention.register() if varlen_attention.varlen_kernel_available() else None


def make_prompt_source(data_cfg, tokenizer):
    """(training prompt source, validation dataset or None) for `data.task`."""
    from core.data.rl_dataset import DatasetPromptSource, load_rl_dataset, rl_dataset_from_rows

    if data_cfg.task == "repeat_letters":
        from core.data.synthetic import RepeatLettersTask

        task = RepeatLettersTask(tokenizer, seed=data_cfg.seed)
        return task, task.validation_set(data_cfg.val_size)
    if data_cfg.task == "reasoning_gym":
        from core.data.reasoning_gym import train_and_validation_rows

        train_rows, val_rows = train_and_validation_rows(data_cfg.reasoning_gym, data_cfg.val_size, data_cfg.seed)

        def from_rows(rows, split):
            where = f"reasoning_gym {split} rows"
            return rl_dataset_from_rows(rows, tokenizer, data_cfg.max_prompt_length, data_cfg.filter_overlong_prompts,
                                        where, data_cfg.prompt_template,
                               data_cfg.few_shot)

        train = DatasetPromptSource(from_rows(train_rows, "train"), seed=data_cfg.seed, shuffle=data_cfg.shuffle)
        return train, from_rows(val_rows, "validation")
    if data_cfg.task != "file":
        raise TandemError(f"data.task={data_cfg.task!r} is unknown; choose repeat_letters, reasoning_gym or file")
    if not data_cfg.train_files:
        raise TandemError("data.task=file needs data.train_files (parquet or JSONL in verl's RL format)")

    def load(files):
        return load_rl_dataset(list(files), tokenizer, data_cfg.max_prompt_length, data_cfg.filter_overlong_prompts,
                               data_cfg.prompt_template,
                               data_cfg.few_shot)

    train = DatasetPromptSource(load(data_cfg.train_files), seed=data_cfg.seed, shuffle=data_cfg.shuffle)
    return train, load(data_cfg.val_files) if data_cfg.val_files else None


def check_cpu_offload(trainer_cfg, sharded: bool) -> None:
    """`trainer.cpu_offload` is FSDP's: with one rank there is nothing sharded to offload, and the setting would
    silently change nothing."""
    if trainer_cfg.cpu_offload and not sharded:
        raise TandemError("trainer.cpu_offload=true offloads FSDP's shards, and this run has one rank: it would "
                          "change nothing. Run on several GPUs (trainer.n_gpus_per_node, or torchrun), or leave it off")
