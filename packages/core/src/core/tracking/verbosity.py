"""What a run prints: Tandem's metrics table, its progress bars and every library's warnings and errors.

The libraries' own INFO detail -- vLLM's sleep/wake, "reset prefix cache" and memory lines, Ray's start-up
lines, transformers' loading bars inside Ray workers -- is shown only with one switch:

    TANDEM_VERBOSE=1 python -m core.main ...

An environment variable rather than a config key because vLLM reads its log level when it is imported
and Ray workers start before any config reaches them: the switch has to be in place in every process
first. A level the user set explicitly (e.g. VLLM_LOGGING_LEVEL=DEBUG) is never overridden.
"""

from __future__ import annotations

import logging
import os
import sys

VERBOSE_ENV = "TANDEM_VERBOSE"
RAY_TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def library_env() -> dict[str, str]:
    """Variables for this process and every worker it starts (Ray passes them in the runtime_env)."""
    if is_verbose():
        return {VERBOSE_ENV: "1"}
    env = {"VLLM_LOGGING_LEVEL": "WARNING"}
    if not sys.stdout.isatty():
        env["RAY_COLOR_PREFIX"] = "0"  # a log file gets worker prefixes without raw ANSI colour codes
        env["TQDM_DISABLE"] = "1"  # and no progress-bar frames (\r) from any library's tqdm
    return env


def quiet_libraries() -> None:
    """Apply the switch in this process: call before vLLM is imported (the driver's logging set-up and
    each Ray worker's start do)."""
    for key, value in library_env().items():
        os.environ.setdefault(key, value)
    if os.environ.get("TQDM_DISABLE") == "1":
        _silence_imported_tqdm()
    if "vllm" in sys.modules:  # imported already: it has read its level; set the one now in force
        logging.getLogger("vllm").setLevel(os.environ.get("VLLM_LOGGING_LEVEL", "INFO").upper())
    if not is_verbose():  # a new local Ray cluster says at every start that it turned token auth on, as it should
        logging.getLogger(RAY_TOKEN_AUTH_LOGGER).setLevel(logging.ERROR)
        # torchao (trainer.optimizer=adamw_bf16_sr) names each GPU kernel library it cannot load here; its
        # optimizers need none of them
        logging.getLogger("torchao").setLevel(logging.ERROR)
    from transformers.utils import logging as transformers_logging

    if is_verbose():
        transformers_logging.set_verbosity_warning()
    else:
        transformers_logging.set_verbosity_error()  # its warnings are about generation flags we set on purpose
        transformers_logging.disable_progress_bar()


def _silence_imported_tqdm() -> None:
    """TQDM_DISABLE for the tqdm already imported here. tqdm reads its TQDM_* variables once, when it is
    imported, and `import torch` imports it before any line of ours runs, so in this process the variable
    came too late; bars that choose no `disable` of their own (transformers' GGUF de-quantising one) would
    write their \\r frames into the log. A bar that asks for itself (disable=None or False) keeps its say."""
    if "tqdm" not in sys.modules:
        return  # imported later, it reads the variable itself
    from functools import partialmethod

    from tqdm import std

    if not getattr(std.tqdm, "_tandem_silenced", False):
        std.tqdm.__init__ = partialmethod(vars(std.tqdm)["__init__"], disable=True)
        std.tqdm._tandem_silenced = True


def ray_log_level() -> int:
    """`ray.init(logging_level=...)`: Ray's own driver lines ("Started a local Ray instance") only when verbose."""
    return logging.INFO if is_verbose() else logging.WARNING

