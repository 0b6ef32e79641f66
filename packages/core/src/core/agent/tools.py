"""What a tool is, core's calculator, and running a step's tool calls concurrently.

A tool takes one string argument and returns a string. It may raise or hang: `run_tool_calls` turns
both into an error message for the model (with a per-call timeout), so a tool never ends a run.
"""

from __future__ import annotations

import ast
import math
import operator
import threading
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class Tool(Protocol):
    name: str  # how the model calls it: <name>...</name> (tagged format) or {"name": ...} (chat template)
    description: str  # one line for the prompt
    parameter: str  # the argument's name in a JSON call ({"arguments": {parameter: ...}})

    def run(self, argument: str) -> str:
        """The result text the model reads next. Raising is allowed: the model sees the error."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    argument: str
    unreadable: str | None = None  # why the call could not be parsed (then it is answered with that, not run)


@dataclass(frozen=True)
class ToolResult:
    text: str  # what is appended for the model to read
    error: bool = False  # the tool raised, or the call named no known tool
    timed_out: bool = False


def run_tool_calls(calls: list[ToolCall], tools: dict[str, Tool], timeout_s: float, max_parallel: int) -> list[ToolResult]:
    """Every call's result, in order. Up to `max_parallel` calls run at once, each given `timeout_s`. Each runs in
    a daemon thread: a tool that never returns is abandoned (its result dropped) and cannot hold the process
    open at exit, as a thread pool's worker would."""
    results: list[ToolResult] = []
    for first in range(0, len(calls), max_parallel):
        chunk = calls[first : first + max_parallel]
        outcomes: list[list] = [[] for _ in chunk]
        threads = []
        for call, outcome in zip(chunk, outcomes):
            tool = tools.get(call.name) if call.unreadable is None else None
            thread = None
            if tool is not None:
                thread = threading.Thread(target=_run_into, args=(tool, call.argument, outcome), daemon=True,
                                          name=f"tandem-tool-{call.name}")
                thread.start()
            threads.append(thread)
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        results += [_result(call, outcome, thread, timeout_s) for call, outcome, thread in zip(chunk, outcomes, threads)]
    return results


def _run_into(tool: Tool, argument: str, outcome: list) -> None:
    try:
        outcome.append(str(tool.run(argument)))
    except BaseException as exc:  # whatever a tool raises becomes the model's error message
        outcome.append(exc)


def _result(call: ToolCall, outcome: list, thread, timeout_s: float) -> ToolResult:
    if call.unreadable is not None:
        return ToolResult(f"error: {call.unreadable}", error=True)
    if thread is None:
        return ToolResult(f"error: no tool named {call.name!r}", error=True)
    if not outcome:
        return ToolResult(f"error: {call.name} timed out after {timeout_s:g} s", error=True, timed_out=True)
    if isinstance(outcome[0], BaseException):
        return ToolResult(f"error: {type(outcome[0]).__name__}: {outcome[0]}", error=True)
    return ToolResult(outcome[0])


class Calculator:
    """Arithmetic on numbers: + - * / // % **, parentheses, unary minus, and a few math functions.
    Evaluated from the syntax tree (never `eval`), with bounded work: an integer may not grow past
    MAX_BITS, and a power or product that would is refused before it is computed, so every call is quick
    (an unbounded `((9**999)**999)**999` would run for hours, and no thread can be stopped)."""

    name = "calculator"
    description = "evaluates an arithmetic expression, e.g. (3 + 4) * -2"
    parameter = "expression"
    BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
    UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
    MAX_BITS = 4096  # ~1233 decimal digits
    MAX_ROUND_DIGITS = 100

    def __init__(self):
        self.functions = {"sqrt": math.sqrt, "abs": abs, "round": self._round, "min": min, "max": max}

    def run(self, argument: str) -> str:
        value = self._value(ast.parse(argument.strip(), mode="eval").body)
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            value = int(value)  # 12 / 4 -> 3, as people write it
        return str(value)

    def _value(self, node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return self._bounded(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in self.BINARY:
            left, right = self._value(node.left), self._value(node.right)
            self._refuse_growth(node.op, left, right)
            return self._bounded(self.BINARY[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in self.UNARY:
            return self.UNARY[type(node.op)](self._value(node.operand))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.functions
                and not node.keywords):
            return self._bounded(self.functions[node.func.id](*(self._value(arg) for arg in node.args)))
        raise ValueError(f"not arithmetic: {ast.unparse(node)}")

    def _refuse_growth(self, op, left, right) -> None:
        if not (isinstance(left, int) and isinstance(right, int)):
            return  # float arithmetic is bounded: it overflows to an error or inf at once
        # (bit_length - 1) * exponent is at most the power's size in bits: past the limit, it is surely too large
        if isinstance(op, ast.Pow) and right > 0 and abs(left) > 1 and right * (left.bit_length() - 1) > self.MAX_BITS:
            raise ValueError(f"a power to the {right} of a {left.bit_length()}-bit number is too large")
        if isinstance(op, ast.Mult) and left.bit_length() + right.bit_length() > self.MAX_BITS + 1:
            raise ValueError("the product is too large")

    def _bounded(self, value):
        if isinstance(value, int) and value.bit_length() > self.MAX_BITS:
            raise ValueError("the number is too large")
        return value

    def _round(self, number, digits=None):
        if digits is not None and (not isinstance(digits, int) or abs(digits) > self.MAX_ROUND_DIGITS):
            raise ValueError(f"round(): digits must be an integer within ±{self.MAX_ROUND_DIGITS}")
        return round(number, digits)
