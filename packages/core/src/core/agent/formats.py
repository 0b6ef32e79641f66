"""How a model writes a tool call, and what follows it before the model's next words.

The model's turn is cut right after its first complete call; the format supplies the text between the
call and the model's continuation (the tool's result, wrapped). Two formats:

- `tagged`, for any model (SmolLM2's template has no tools): `<calculator>3 * 4</calculator>`, answered
  inline with `<result>12</result>` in the same assistant message;
- `chat_template`, the Hermes/Qwen style that tool-aware chat templates use:
  `<tool_call>{"name": "calculator", "arguments": {"expression": "3 * 4"}}</tool_call>`, answered with
  the template's own tool turn (rendered by the tokenizer's chat template, role "tool") and a new
  assistant header.
"""

from __future__ import annotations

import json
import re
from typing import Protocol

from core.agent.tools import Tool, ToolCall
from core.errors import TandemError


class ToolFormat(Protocol):
    def stop_strings(self) -> list[str]:
        """Strings that end a call (the engine may stop there; the agent cuts there anyway)."""

    def find_call(self, text: str) -> tuple[ToolCall, int] | None:
        """The first complete call in `text` and the character index just after it, or None."""

    def result_text(self, result: str) -> str:
        """What follows the call: the result for the model to read, up to where the model goes on."""


class TaggedFormat:
    def __init__(self, tools: dict[str, Tool]):
        names = "|".join(re.escape(name) for name in tools)
        self.pattern = re.compile(rf"<({names})>(.*?)</\1>", re.DOTALL)
        self.tools = tools

    def stop_strings(self) -> list[str]:
        return [f"</{name}>" for name in self.tools]

    def find_call(self, text: str) -> tuple[ToolCall, int] | None:
        match = self.pattern.search(text)
        return (ToolCall(match.group(1), match.group(2).strip()), match.end()) if match else None

    def result_text(self, result: str) -> str:
        return f"<result>{result}</result>"


class ChatTemplateFormat:
    CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)

    def __init__(self, tools: dict[str, Tool], tokenizer):
        self.tools = tools
        self.between = template_tool_turn(tokenizer)

    def stop_strings(self) -> list[str]:
        return ["</tool_call>"]

    def find_call(self, text: str) -> tuple[ToolCall, int] | None:
        match = self.CALL.search(text)
        if match is None:
            return None
        try:
            call = json.loads(match.group(1))
        except ValueError as exc:
            return ToolCall("", match.group(1), unreadable=f"the tool call is not valid JSON ({exc})"), match.end()
        if not isinstance(call, dict) or "name" not in call:
            return ToolCall("", match.group(1), unreadable='the tool call needs {"name": ..., "arguments": {...}}'), match.end()
        name, arguments = call["name"], call.get("arguments", "")
        if isinstance(arguments, dict):  # {"expression": "3 * 4"}: the tool's one parameter
            tool = self.tools.get(name)
            if tool is not None and tool.parameter in arguments:
                arguments = arguments[tool.parameter]
            else:
                arguments = next(iter(arguments.values())) if len(arguments) == 1 else json.dumps(arguments)
        return ToolCall(str(name), str(arguments)), match.end()

    def result_text(self, result: str) -> str:
        return self.between.replace(RESULT_MARK, result)


RESULT_MARK = "\x00RESULT\x00"
CALL_MARK = "\x00CALL\x00"


def template_tool_turn(tokenizer) -> str:
    """The chat template's text from the end of an assistant's tool call to the next assistant message's
    first word, with RESULT_MARK where the tool's output goes: e.g. for ChatML
    '<|im_end|>\\n<|im_start|>tool\\nRESULT<|im_end|>\\n<|im_start|>assistant\\n'."""
    messages = [{"role": "user", "content": "question"}, {"role": "assistant", "content": CALL_MARK},
                {"role": "tool", "content": RESULT_MARK}]
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # templates raise their own error types for roles they do not know
        raise TandemError(f"agent.format=chat_template: the tokenizer's chat template cannot render a tool turn "
                          f"({exc}); use agent.format=tagged") from None
    if CALL_MARK not in text or RESULT_MARK not in text:
        raise TandemError("agent.format=chat_template: the tokenizer's chat template drops tool messages; "
                          "use agent.format=tagged")
    return text[text.index(CALL_MARK) + len(CALL_MARK):]


def make_format(name: str, tools: dict[str, Tool], tokenizer) -> ToolFormat:
    if name == "tagged":
        return TaggedFormat(tools)
    if name == "chat_template":
        return ChatTemplateFormat(tools, tokenizer)
    raise TandemError(f"agent.format={name!r} is not one of: tagged, chat_template")
