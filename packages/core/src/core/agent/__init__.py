"""Multi-turn rollouts with tools: the model writes a tool call, the tool's result is appended, the
model goes on, up to `agent.max_turns` calls or the conversation's token budget (`rollout.max_tokens`).

tools.py (the Tool protocol, the calculator, running calls concurrently with timeouts),
python_tool.py (a Python executor in a locked-down subprocess), formats.py (how calls are written
and results appended), engine.py (AgentEngine: a rollout engine that runs the conversations turn by
turn on another engine, and the masks that keep tool output out of the loss), builtin_tools.py (core's
tools, offered through the `tandem_tools` hook).
"""
