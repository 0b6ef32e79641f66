"""vLLM's `vllm.general_plugins` entry point: vLLM calls `register()` in every process it starts.

That is how the ROCm backend's patches reach vLLM's engine-core and worker processes. On a CUDA
or CPU build of torch it does nothing: this package may be installed next to the CUDA backend.
"""

from __future__ import annotations


def register() -> None:
    import torch

    if torch.version.hip is None:
        return
    from backend_rocm.patches import PATCHES
    from core.patches import apply_patches

    apply_patches(PATCHES)
