"""vLLM's `vllm.general_plugins` entry point: vLLM calls `register()` in every process it starts.

That is how the CUDA backend's patches reach vLLM's engine-core and worker processes, where
Tandem's own code never runs first. Applying is idempotent (see `core.patches`).
"""

from __future__ import annotations


def register() -> None:
    from backend_cuda.patches import PATCHES
    from core.patches import apply_patches

    apply_patches(PATCHES)
