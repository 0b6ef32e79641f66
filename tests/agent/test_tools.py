"""Core's tools and the two call formats (hand-written cases)."""

from __future__ import annotations

import os
import time

import pytest

from core.agent.builtin_tools import resolve_tools
from core.agent.formats import ChatTemplateFormat, TaggedFormat, make_format, template_tool_turn
from core.agent import sandbox as sandbox_module
from core.agent.python_tool import PythonExecutor
from core.agent.sandbox import namespaces_missing
from core.agent.tools import Calculator, ToolCall, run_tool_calls
from core.errors import TandemError
from core.models.tokenizer import build_byte_tokenizer
from core.plugins.hookspecs import hookimpl
from core.plugins.manager import get_plugin_manager


@pytest.mark.parametrize("expression, value", [
    ("2+3*4", "14"), ("(2+3)*4", "20"), ("-5 - -5", "0"), ("12/4", "3"), ("7/2", "3.5"), ("7//2", "3"),
    ("2**10", "1024"), ("sqrt(16)", "4"), ("abs(-3) + max(1, 2)", "5"),
])
def test_calculator(expression, value):
    assert Calculator().run(expression) == value


@pytest.mark.parametrize("expression", ["__import__('os')", "(1).real", "x + 1", "2**100000", "'a' * 3", "True + 1"])
def test_calculator_refuses_what_is_not_arithmetic(expression):
    with pytest.raises((ValueError, SyntaxError)):
        Calculator().run(expression)


@pytest.mark.parametrize("expression", ["((9**999)**999)**999", "round(1, -10**9)", "2**4096", "3**3000",
                                        "(10**600) * (10**700)", "9" * 5000])
def test_calculator_work_is_bounded(expression):
    """Each would run for minutes or hours unchecked (and a thread cannot be stopped): refused at once."""
    started = time.perf_counter()
    with pytest.raises((ValueError, SyntaxError)):
        Calculator().run(expression)
    assert time.perf_counter() - started < 5  # liveness, not speed: unbounded, these take minutes to hours


def test_calculator_still_takes_large_but_bounded_numbers():
    assert Calculator().run("2**4095") == str(2**4095) and Calculator().run("round(2.567, 2)") == "2.57"


def test_tagged_format_finds_the_first_complete_call():
    fmt = TaggedFormat({"calculator": Calculator()})
    text = "so <calculator> 2 + 3 </calculator> then <calculator>9</calculator>"
    assert fmt.find_call(text) == (ToolCall("calculator", "2 + 3"), text.index(" then"))
    assert fmt.find_call("an open <calculator>2+") is None
    assert fmt.stop_strings() == ["</calculator>"] and fmt.result_text("5") == "<result>5</result>"


def test_chat_template_format_reads_json_calls_and_renders_the_templates_tool_turn():
    tokenizer = build_byte_tokenizer()  # ChatML
    fmt = make_format("chat_template", {"calculator": Calculator()}, tokenizer)
    assert isinstance(fmt, ChatTemplateFormat)
    text = 'ok <tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>'
    assert fmt.find_call(text) == (ToolCall("calculator", "6*7"), len(text))
    not_json, _ = fmt.find_call("<tool_call>not json</tool_call>")
    no_name, _ = fmt.find_call('<tool_call>{"arguments": {}}</tool_call>')
    results = run_tool_calls([not_json, no_name], {"calculator": Calculator()}, timeout_s=1, max_parallel=2)
    assert results[0].error and results[0].text.startswith("error: the tool call is not valid JSON (Expecting value")
    assert results[1].error and results[1].text == 'error: the tool call needs {"name": ..., "arguments": {...}}'
    assert fmt.result_text("42") == "<|im_end|>\n<|im_start|>tool\n42<|im_end|>\n<|im_start|>assistant\n"


def test_a_template_without_tool_turns_is_refused_by_name():
    class DropsTools:
        def apply_chat_template(self, messages, **_):
            return "".join(m["content"] for m in messages if m["role"] != "tool")

    with pytest.raises(TandemError, match="drops tool messages; use agent.format=tagged"):
        template_tool_turn(DropsTools())


@pytest.mark.parametrize("sandbox", ["namespaces", "process"])
def test_python_tool_runs_code_and_returns_its_output(sandbox):
    if sandbox == "namespaces" and namespaces_missing():
        pytest.skip(f"no namespaced sandbox on this host: {namespaces_missing()}")
    assert PythonExecutor(sandbox=sandbox).run("print(sum(range(10)))") == "45"
    assert PythonExecutor(sandbox=sandbox).run("raise ValueError('bad input')") == "ValueError: bad input"
    with pytest.raises(TimeoutError, match="longer than 0.5 s"):
        PythonExecutor(timeout_s=0.5, sandbox=sandbox).run("while True: pass")
    with pytest.raises(TimeoutError, match="longer than 0.5 s"):  # its pipes closed: the deadline holds all the same
        PythonExecutor(timeout_s=0.5, sandbox=sandbox).run("import os, time; os.close(1); os.close(2); time.sleep(60)")


@pytest.mark.parametrize("code, refused", [
    ("import socket; socket.create_connection(('127.0.0.1', 9))", "not allowed in this sandbox: socket"),
    ("import subprocess; subprocess.run(['true'])", "not allowed in this sandbox: subprocess.Popen"),
    ("import ctypes", "not allowed in this sandbox: ctypes"),
    ("x = bytearray(1 << 31)", "MemoryError"),
])
def test_process_mode_refuses_the_obvious(code, refused):
    assert refused in PythonExecutor(memory_mb=256, sandbox="process").run(code)


def test_process_mode_cannot_touch_the_run_directory_by_plain_calls(tmp_path):
    run_file = tmp_path / "metrics.jsonl"
    run_file.write_text("keep")
    for code in (f"open({str(run_file)!r}, 'w').write('x')", f"import os; os.remove({str(run_file)!r})",
                 f"import shutil; shutil.rmtree({str(tmp_path)!r})"):
        assert "PermissionError" in PythonExecutor(sandbox="process").run(code)
    assert run_file.read_text() == "keep" and os.listdir(tmp_path) == ["metrics.jsonl"]
    assert PythonExecutor(sandbox="process").run("open('s.txt', 'w').write('ok'); print(open('s.txt').read())") == "ok"


def test_a_host_without_namespaces_refuses_or_degrades_as_asked(monkeypatch, caplog):
    monkeypatch.setattr(sandbox_module, "namespaces_missing", lambda: "unshare failed: Operation not permitted")
    with pytest.raises(TandemError, match=r"^agent.sandbox=namespaces: this host cannot isolate tool code "
                                          r"\(unshare failed: Operation not permitted\); .* agent.sandbox=process"):
        PythonExecutor(sandbox="namespaces")
    with caplog.at_level("WARNING"):
        assert PythonExecutor(sandbox="auto").mode == "process"
    assert "does not hold against hostile code" in caplog.text
    with pytest.raises(TandemError, match="agent.sandbox='docker' is unknown"):
        PythonExecutor(sandbox="docker")


class Echo:
    name, description, parameter = "echo", "says it back", "text"

    def run(self, argument):
        return argument


class EchoPlugin:  # what a third-party package registers under the tandem.plugins entry points
    @staticmethod
    @hookimpl
    def tandem_tools(agent_cfg):
        return {"echo": Echo}


def test_a_plugin_contributes_tools_and_unknown_names_are_refused(compose_config):
    pm = get_plugin_manager()
    pm.register(EchoPlugin(), name="echo-plugin")
    try:
        agent_cfg = compose_config("agent.tools=[echo,calculator]").agent
        tools = resolve_tools(list(agent_cfg.tools), pm, agent_cfg)
        assert tools["echo"].run("hi") == "hi" and tools["calculator"].run("1+1") == "2"
        with pytest.raises(TandemError, match="unknown tool 'search'; available: calculator, echo, python"):
            resolve_tools(["search"], pm, agent_cfg)
    finally:
        pm.unregister(name="echo-plugin")


def test_the_bounded_calculator_answers_the_calculator_presets_questions_as_python_does():
    """`+experiment=smollm2_calculator`'s task (3-digit, 2 terms, + - *): the work bounds change no answer."""
    rg = pytest.importorskip("reasoning_gym")
    dataset = rg.create_dataset("basic_arithmetic", size=300, seed=5, min_terms=2, max_terms=3, min_digits=3,
                                max_digits=3, operators=("+", "-", "*"))
    for entry in dataset:
        expression = entry["question"].removeprefix("Calculate ").rstrip(".")
        assert Calculator().run(expression) == str(eval(expression)) == entry["answer"], expression
