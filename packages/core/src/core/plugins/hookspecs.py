"""Every hook a Tandem plugin can answer, in one place.

Two kinds of plugins, both registered through entry points:
- a *backend* (`tandem.backends` group, the entry point named after the backend) answers
  `tandem_backend`; what a backend is and does is the `core.backends.base.Backend` Protocol;
- any other plugin (`tandem.plugins` group) adds things, e.g. reward functions.
Core's own defaults are plugins too (`core.backends.cpu`, `core.rewards.builtin`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from core.agent.tools import Tool
    from core.backends.base import Backend

PROJECT = "tandem"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def tandem_backend(name: str) -> "Backend | None":
    """The backend called `name`, if this plugin provides it (None otherwise)."""


@hookspec
def tandem_reward_functions() -> dict[str, Callable[..., float]] | None:
    """Provide reward functions by name (see `core.rewards.base.RewardFunction`)."""


@hookspec
def tandem_tools(agent_cfg) -> dict[str, Callable[[], "Tool"]] | None:
    """Provide tools for multi-turn rollouts by name: a factory per tool (see `core.agent.tools.Tool`),
    called once per run; `agent_cfg` is the run's `agent` config (timeouts, limits)."""
