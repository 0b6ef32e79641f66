"""`python -m core.doctor [+backend=NAME]`: what this machine can run, and why not.

Prints versions, the GPU, every installed backend's probe, and for the selected backend whether
vLLM's sleep mode, CUDA graphs and prefix caching can work here, and which patches apply. Never
starts an engine and never raises on a machine that lacks something: it says what and why.
"""

from __future__ import annotations

import importlib.util
import platform
import sys

from core.patches import backend_patches, installed_version, needed, vllm_version
from core.plugins.manager import detect_backend, get_plugin_manager, installed_backends, probe


def parse_backend(argv: list[str]) -> str | None:
    """`+backend=cuda`, `backend=cuda` or `--backend cuda`; None means auto-detect."""
    for i, arg in enumerate(argv):
        if arg.lstrip("+").startswith("backend="):
            return arg.split("=", 1)[1]
        if arg == "--backend" and i + 1 < len(argv):
            return argv[i + 1]
    return None


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


def vllm_features(gpu: bool) -> list[tuple[str, str]]:
    """Whether each engine feature can work here (checked statically: no engine is started)."""
    if vllm_version() is None:
        missing = "no: vLLM is not installed"
        return [("sleep mode", missing), ("CUDA graphs", missing), ("prefix caching", missing)]
    if not gpu:
        return [("sleep mode", "no: needs a GPU (vLLM's cumem allocator)"),
                ("CUDA graphs", "no: no GPU (vLLM runs eagerly on CPU)"),
                ("prefix caching", "yes")]
    has_cumem = importlib.util.find_spec("vllm.cumem_allocator") is not None
    return [("sleep mode", "yes (cumem allocator)" if has_cumem else "no: this vLLM build lacks cumem_allocator"),
            ("CUDA graphs", "yes (rollout.enforce_eager=false)"),
            ("prefix caching", "yes (reset after every weight update)")]


def report(backend: str | None) -> list[tuple[str, str]]:
    import torch

    pm = get_plugin_manager()
    rows = versions()
    for name in installed_backends(pm):
        availability = probe(pm, name)
        rows.append((f"backend {name}", ("available: " if availability.available else "unavailable: ")
                     + availability.reason))
    try:
        selected = backend or detect_backend(pm)
    except Exception as exc:  # doctor reports, it does not fail
        return rows + [("selected backend", f"none: {exc}")]
    rows.append(("selected backend", selected + ("" if backend else " (auto-detected)")))
    rows += vllm_features(torch.cuda.is_available() and torch.version.hip is None or selected == "rocm")
    patches = backend_patches(selected)
    for patch in patches:
        outcome = needed(patch)
        rows.append((f"patch {patch.name}", f"{outcome.reason} - {patch.why}"))
    if not patches:
        rows.append(("patches", f"none listed for '{selected}'"))
    return rows


def main(argv: list[str] | None = None) -> int:
    rows = report(parse_backend(sys.argv[1:] if argv is None else argv))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
