"""`python -m core.doctor [+backend=NAME]`: what this machine can run, and why not.
`python -m core.doctor --plan [--gpu-gib N] OVERRIDES`: whether a run's model fits one GPU (core.trainer.memory_plan).

Prints versions, the GPU, every installed backend's probe, and for the selected backend whether
vLLM's sleep mode, CUDA graphs and prefix caching can work here, and which patches apply. Never
starts an engine and never raises on a machine that lacks something: it says what and why.
"""

from __future__ import annotations

import importlib.util
import platform
import sys

from core.backends.base import Backend
from core.errors import TandemError, exit_on_user_error
from core.patches import installed_version, needed, vllm_version
from core.plugins.manager import backend_from_argv, detect_backend, installed_backends, load_backend, probe


def versions() -> list[tuple[str, str]]:
    import torch

    rows = [("python", platform.python_version()), ("torch", torch.__version__)]
    rows.append(("torch build", f"HIP {torch.version.hip}" if torch.version.hip else
                 f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"))
    rows.append(("vllm", vllm_version() or "not installed"))
    for dist in ("transformers", "ray", "hydra-core"):
        rows.append((dist, installed_version(dist) or "not installed"))
    rows.append(("gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible"))
    return rows


def vllm_features(backend: Backend) -> list[tuple[str, str]]:
    """Whether each engine feature can work here (checked statically: no engine is started)."""
    if vllm_version() is None:
        missing = "no: vLLM is not installed"
        return [("sleep mode", missing), ("CUDA graphs", missing), ("prefix caching", missing)]
    if backend.device_type == "cpu":
        return [("sleep mode", "no: needs a GPU (vLLM's cumem allocator)"),
                ("CUDA graphs", "no: no GPU (vLLM runs eagerly on CPU)"),
                ("prefix caching", "yes")]
    has_cumem = importlib.util.find_spec("vllm.cumem_allocator") is not None
    return [("sleep mode", "yes (cumem allocator)" if has_cumem else "no: this vLLM build lacks cumem_allocator"),
            ("CUDA graphs", "yes (rollout.enforce_eager=false)"),
            ("prefix caching", "yes (reset after every weight update)")]


def report(requested: str | None) -> list[tuple[str, str]]:
    rows = versions()
    try:
        for backend in installed_backends():
            availability = probe(backend)
            rows.append((f"backend {backend.name}", ("available: " if availability.available else "unavailable: ")
                         + availability.reason))
        selected = load_backend(requested) if requested else detect_backend()
    except Exception as exc:  # doctor reports, it does not fail
        return rows + [("selected backend", f"none: {exc}")]
    availability = probe(selected)
    if availability.available:
        rows.append(("selected backend", selected.name + ("" if requested else " (auto-detected)")))
        rows += vllm_features(selected)
    else:
        rows.append(("selected backend", f"{selected.name} cannot run here: {availability.reason}"))
    patches = selected.patches()
    for patch in patches:
        rows.append((f"patch {patch.name}", f"{needed(patch).reason} - {patch.why}"))
    if not patches:
        rows.append(("patches", f"none listed for '{selected.name}'"))
    return rows


H100_GIB = 79.2  # what torch reports for an H100 80GB: the plan's GPU when none is visible and none is named


def plan(argv: list[str]) -> str:
    """`--plan [--gpu-gib N] OVERRIDES`: the memory plan of the run these overrides compose, on this GPU (or one
    of N GiB; an H100 80GB when neither), and the closest settings that fit when it cannot."""
    import torch
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    from core.algorithms.spec import AlgorithmSpec
    from core.config.cli_lists import single_values_as_lists
    from core.config.schema import TandemConfig, register_schemas
    from core.trainer.memory_plan import GIB, model_size, plan_run

    args = [arg for arg in argv if arg != "--plan"]
    gpu_gib = None
    if "--gpu-gib" in args:
        at = args.index("--gpu-gib")
        gpu_gib, args = float(args[at + 1]), args[:at] + args[at + 2:]
    if gpu_gib is None:
        gpu_gib = torch.cuda.get_device_properties(0).total_memory / GIB if torch.cuda.is_available() else H100_GIB
    register_schemas()
    try:
        with initialize_config_module(config_module="core.conf", version_base=None):
            cfg = compose("config", overrides=single_values_as_lists(args, TandemConfig))
    except HydraException as exc:  # an unknown option or key: Hydra's first line names it
        raise TandemError(f"--plan {' '.join(args)}: {str(exc).splitlines()[0]}") from None
    ranks = cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node if cfg.trainer.launcher == "ray" else 1
    size = model_size(cfg.model.path, cfg.model.lora.target_modules)
    memory, options = plan_run(cfg, AlgorithmSpec.from_config(cfg.algorithm, cfg.rollout.max_tokens), ranks, gpu_gib,
                               size)
    lines = [f"{cfg.model.path}: {size.parameters / 1e9:.2f}B parameters, {ranks} GPU(s) of {gpu_gib:.1f} GiB",
             memory.table()]
    problems = memory.problems()
    lines += [f"does not fit: {problem}" for problem in problems]
    if problems:
        lines.append("fits with: " + (", or ".join(options) or "no one setting; more GPUs"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--plan" in argv:
        print(exit_on_user_error(plan)(argv))
        return 0
    rows = report(backend_from_argv(argv))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
