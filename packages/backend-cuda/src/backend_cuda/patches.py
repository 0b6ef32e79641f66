"""Version-gated patches the CUDA backend applies to vLLM (see `core.patches`).

Each patch is idempotent, gated on the vLLM versions that need it, and says why in its docstring.
They are applied in the trainer process before the engine starts and, through the
`vllm.general_plugins` entry point (`backend_cuda.vllm_plugin`), in vLLM's own processes.
"""

from __future__ import annotations

from core.backends.base import VersionedPatch

PATCHES: list[VersionedPatch] = []
