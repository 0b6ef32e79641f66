"""Every hook a Tandem plugin can answer, in one place.

Installed packages register plugins under the `tandem.plugins` entry-point group; a plugin answers
whichever hooks it cares about. A *backend* (cpu, cuda, rocm, or a third-party one) declares itself
with `tandem_backends` and answers the backend-scoped hooks below when `backend` is its own name
(returning None otherwise); other plugins only add things, e.g. reward functions. Core's own
defaults are plugins too (`core.backends.cpu`, `core.rewards.builtin`). Hooks marked firstresult
stop at the first plugin that answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from core.rollout.base import RolloutEngine
    from core.sharding.base import ShardingManager

PROJECT = "tandem"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class BackendSpec:
    """A backend's identity."""

    name: str  # what users type after `+backend=`
    priority: int  # auto-detection tries available backends from the highest priority down
    description: str = ""


@dataclass(frozen=True)
class Availability:
    """A probe's answer: can this backend run here, and if not, why not."""

    available: bool
    reason: str = ""  # why not (or, when available, what was found: "H100, vLLM 0.26.0")
    details: dict[str, Any] = field(default_factory=dict)  # versions etc., shown by `doctor`


@dataclass(frozen=True)
class VersionedPatch:
    """A fix applied to a third-party library only for the versions that need it.

    `applies_to` gets the installed version string; `apply` must be idempotent. Patches that must
    also run inside vLLM's worker processes are applied there by the `vllm.general_plugins` entry
    point of the backend package.
    """

    name: str
    why: str  # one line shown by `doctor`: the upstream bug and the version that fixed it
    target: str  # distribution name whose version gates the patch, e.g. "vllm"
    applies_to: Callable[[str], bool]
    apply: Callable[[], None]


@hookspec
def tandem_backends() -> list[BackendSpec]:
    """Declare the backends this plugin provides."""


@hookspec(firstresult=True)
def tandem_probe(backend: str) -> Availability | None:
    """Say whether `backend` can run on this machine. Must be cheap and must not raise."""


@hookspec(firstresult=True)
def tandem_make_rollout_engine(backend: str, cfg: "DictConfig", model_dir: str) -> "RolloutEngine | None":
    """Build the rollout engine for `backend` from the composed config (`cfg.rollout`, `cfg.backend`)."""


@hookspec(firstresult=True)
def tandem_make_sharding_manager(
    backend: str, cfg: "DictConfig", engine: "RolloutEngine", trainer_model: Any
) -> "ShardingManager | None":
    """Build the context manager that moves `trainer_model`'s weights into `engine` for a rollout."""


@hookspec
def tandem_vllm_engine_args(backend: str, cfg: "DictConfig", engine_args: dict[str, Any]) -> dict[str, Any] | None:
    """Contribute vLLM `LLM(...)` keyword arguments (including `compilation_config`).

    `engine_args` holds what core derived from `cfg.rollout`; return the keys to add or override.
    All contributions are merged in registration order (later plugins win).
    """


@hookspec
def tandem_vllm_patches(backend: str) -> list[VersionedPatch] | None:
    """List the version-gated patches `backend` needs (applied before the engine starts)."""


@hookspec
def tandem_worker_env(backend: str) -> dict[str, str | None] | None:
    """Environment variables Ray workers of `backend` need (device visibility, Ray's NOSET flags).

    The Ray launcher applies every answer to `os.environ` before `ray.init` (workers inherit it)
    and to the workers' `runtime_env`; a value of None means "unset this variable". May raise
    `TandemError` for an environment that cannot work (e.g. conflicting visibility variables).
    """


@hookspec
def tandem_config_searchpath() -> str | None:
    """Return a Hydra search-path entry (e.g. "pkg://my_backend.conf") holding `backend/NAME.yaml`."""


@hookspec
def tandem_reward_functions() -> dict[str, Callable[..., float]] | None:
    """Provide reward functions by name (see `core.rewards.base.RewardFunction`)."""
