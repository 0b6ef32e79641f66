"""Which AMD GPUs Ray workers see: HIP_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES under Ray.

Ray gives each GPU worker its own visibility variable (one GPU per worker). Tandem's workers
instead see every GPU of the node and pick theirs by LOCAL_RANK, because the co-located trainer
and vLLM processes exchange weights through IPC handles and vLLM's ROCm platform copies
HIP_VISIBLE_DEVICES into CUDA_VISIBLE_DEVICES, which must agree across those processes. So Ray
must be told not to set the variable, and the variable's name depends on Ray's version:
Ray >= 2.45 manages HIP_VISIBLE_DEVICES (and refuses a lone ROCR_VISIBLE_DEVICES), older Ray
manages ROCR_VISIBLE_DEVICES.
"""

from __future__ import annotations

from typing import Mapping

from packaging.version import Version

from core.errors import TandemError

HIP = "HIP_VISIBLE_DEVICES"
ROCR = "ROCR_VISIBLE_DEVICES"
RAY_MANAGES_HIP_SINCE = Version("2.45")


def ray_visibility_variable(ray_version: str) -> str:
    """The variable Ray sets per GPU worker on AMD GPUs."""
    return HIP if Version(ray_version) >= RAY_MANAGES_HIP_SINCE else ROCR


def ray_worker_env(environ: Mapping[str, str], ray_version: str) -> dict[str, str | None]:
    """Env changes (None: unset) that keep the user's GPU selection and stop Ray overriding it.

    The user's selection, from HIP_VISIBLE_DEVICES or ROCR_VISIBLE_DEVICES, moves to the variable
    this Ray version manages. Both set at once is refused: ROCm applies ROCR first and then HIP
    indexes into what is left, so "HIP=0,1 ROCR=2,3" means physical GPUs 2,3, which nobody reads
    out of it correctly.
    """
    hip, rocr = environ.get(HIP), environ.get(ROCR)
    if hip is not None and rocr is not None:
        raise TandemError(
            f"both {HIP}={hip!r} and {ROCR}={rocr!r} are set; ROCm applies them one after the other, so "
            f"set only {HIP} (e.g. `unset {ROCR}`)"
        )
    managed = ray_visibility_variable(ray_version)
    env: dict[str, str | None] = {f"RAY_EXPERIMENTAL_NOSET_{managed}": "1"}
    selection = hip if hip is not None else rocr
    if selection is not None:
        other = ROCR if managed == HIP else HIP
        env[managed] = selection
        env[other] = None
    return env


def installed_ray_version() -> str:
    import ray

    return ray.__version__
