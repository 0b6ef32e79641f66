"""Core's tools, offered to the plugin manager like any plugin's: `agent.tools=[calculator]`, `[python]`,
and `agent_engine`, which builds the run's AgentEngine from the config."""

from __future__ import annotations

from core.agent.engine import AgentEngine
from core.agent.formats import make_format
from core.agent.python_tool import PythonExecutor
from core.agent.tools import Calculator, Tool
from core.errors import TandemError
from core.plugins.hookspecs import hookimpl
from core.rollout.base import Sampler


@hookimpl
def tandem_tools(agent_cfg):
    return {
        "calculator": Calculator,
        "python": lambda: PythonExecutor(timeout_s=agent_cfg.tool_timeout_s, memory_mb=agent_cfg.python_memory_mb,
                                         sandbox=agent_cfg.sandbox),
    }


def resolve_tools(names, pm, agent_cfg) -> dict[str, Tool]:
    available = {}
    for provided in pm.hook.tandem_tools(agent_cfg=agent_cfg):
        available.update(provided or {})
    unknown = [name for name in names if name not in available]
    if unknown:
        raise TandemError(f"agent.tools: unknown tool {unknown[0]!r}; available: {', '.join(sorted(available))}")
    return {name: available[name]() for name in names}


def agent_engine(engine: Sampler, agent, tokenizer, pm) -> Sampler:
    """What the RL loop samples from: `engine` itself without `agent.tools`; else an AgentEngine running the
    conversations on it. `agent`: the config's agent group (core.config.schema.AgentConfig)."""
    if not agent.tools:
        return engine
    tools = resolve_tools(list(agent.tools), pm, agent)
    return AgentEngine(engine, tools, make_format(agent.format, tools, tokenizer), tokenizer,
                       max_turns=agent.max_turns, tool_timeout_s=agent.tool_timeout_s,
                       max_parallel_tools=agent.max_parallel_tools)
