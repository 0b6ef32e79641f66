"""A Python executor the model may call: a fresh interpreter per call, isolated as `agent.sandbox` says.

With `namespaces` (the default; core.agent.sandbox) the operating system holds the code in: its own
namespaces, a read-only root with a small tmpfs to write in, no capabilities, rlimits, and every process
it starts killed at the deadline. `process` mode (for hosts without user namespaces, by choice only) runs
it with rlimits in its own session behind the audit hook below, which refuses the obvious (sockets,
processes, writes outside its directory) but lives in the same interpreter as the code: code written to
escape it can (through gc, ctypes-free fork_exec, dir_fd writes...). It is for trusted or benign code.
"""

from __future__ import annotations

from core.agent.sandbox import Limits, resolve_mode, run_code

# process mode only: runs first in the child and installs the audit hook; the code follows from stdin.
PRELUDE = r"""
import os, sys
_root = os.path.realpath(os.getcwd())
_write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

def _inside(path):
    try:
        return os.path.realpath(os.fsdecode(path)).startswith(_root + os.sep)
    except (TypeError, ValueError):
        return False

def _guard(event, args):
    if event.startswith(("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "ctypes.", "os.fork")) \
            or event in ("os.system", "os.kill", "os.killpg", "signal.pthread_kill"):
        raise PermissionError(f"not allowed in this sandbox: {event}")
    if event == "open" and args[0] is not None and not isinstance(args[0], int):
        mode, flags = args[1], args[2]
        writing = (mode is not None and any(c in mode for c in "wax+")) or (flags & _write_flags)
        if writing and not _inside(args[0]):
            raise PermissionError(f"writing outside the sandbox: {args[0]}")
    if event in ("os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.utime",
                 "os.symlink", "os.link", "shutil.rmtree", "shutil.copyfile", "shutil.move"):
        if not _inside(args[0]):
            raise PermissionError(f"{event} outside the sandbox: {args[0]}")
    if event == "os.rename" and not (_inside(args[0]) and _inside(args[1])):
        raise PermissionError("os.rename outside the sandbox")

sys.addaudithook(_guard)
del _guard
"""


class PythonExecutor:
    """Runs the model's Python code; the result is what it prints (stdout, then the error's last line), cut to a
    length. `sandbox` is resolved once, here: a host that cannot give it refuses in one line."""

    name = "python"
    description = "runs Python code and returns what it prints"
    parameter = "code"

    def __init__(self, timeout_s: float = 5.0, memory_mb: int = 512, max_output_chars: int = 2000,
                 sandbox: str = "namespaces"):
        self.limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb, max_output_bytes=4 * max_output_chars)
        self.max_output_chars = max_output_chars
        self.mode = resolve_mode(sandbox)

    def run(self, argument: str) -> str:
        finished = run_code(argument, self.limits, self.mode, process_prelude=PRELUDE)
        if finished.timed_out:
            raise TimeoutError(f"the code ran longer than {self.limits.timeout_s:g} s (all its processes were killed)")
        err_lines = finished.stderr.strip().splitlines()
        if finished.exit_code != 0 and err_lines:  # a traceback's last line says what went wrong
            err_lines = err_lines[-1:]
        text = "\n".join([finished.stdout.strip(), *err_lines]).strip()
        if finished.output_cut:
            return text[: self.max_output_chars] + " ...(output cut: the code printed too much and was stopped)"
        text = text or f"(no output; exit code {finished.exit_code})"
        return text if len(text) <= self.max_output_chars else text[: self.max_output_chars] + " ...(cut)"
