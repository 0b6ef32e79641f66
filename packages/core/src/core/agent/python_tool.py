"""A Python executor the model may call: a fresh interpreter per call, in a locked-down subprocess.

What holds it in (all at once, none alone is a sandbox):
- wall-clock timeout (the process group is killed), CPU-time and address-space limits (resource);
- a fresh empty working directory, deleted afterwards; `python -I` (no site-packages of the user,
  no PYTHON* variables), an environment with nothing of ours in it;
- an audit hook (PEP 578, cannot be removed once installed) refusing every network call, every
  process launch, ctypes, and any file write, rename or delete outside that directory; so the run
  directory and the rest of the file system cannot be touched;
- where the kernel allows unprivileged namespaces, `unshare --net` too (no network device at all).
It is meant for model-written arithmetic and string code, not for hostile code on a shared host.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

# Runs first in the child: installs the audit hook, then executes the model's code from stdin.
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
_code = sys.stdin.read()
exec(compile(_code, "<tool>", "exec"), {"__name__": "__main__"})
"""


class PythonExecutor:
    """Runs the model's Python code; the result is what it prints (stdout, then stderr), cut to a length."""

    name = "python"
    description = "runs Python code and returns what it prints"
    parameter = "code"

    def __init__(self, timeout_s: float = 5.0, memory_mb: int = 512, max_output_chars: int = 2000):
        self.timeout_s, self.memory_mb, self.max_output_chars = timeout_s, memory_mb, max_output_chars

    def run(self, argument: str) -> str:
        workdir = tempfile.mkdtemp(prefix="tandem-tool-")
        command = [*network_isolation(), sys.executable, "-I", "-c", PRELUDE]
        try:
            child = subprocess.Popen(command, cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True,
                                     env={"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8"},
                                     preexec_fn=functools.partial(_limit, self.memory_mb, self.timeout_s))
            try:
                out, err = child.communicate(argument, timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.communicate()
                raise TimeoutError(f"the code ran longer than {self.timeout_s:g} s") from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        err_lines = err.strip().splitlines()
        if child.returncode != 0 and err_lines:  # a traceback's last line says what went wrong
            err_lines = err_lines[-1:]
        text = "\n".join([out.strip(), *err_lines]).strip() or f"(no output; exit code {child.returncode})"
        return text if len(text) <= self.max_output_chars else text[: self.max_output_chars] + " ...(cut)"


def _limit(memory_mb: int, timeout_s: float) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    cpu = int(timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))


@functools.cache
def network_isolation() -> tuple[str, ...]:
    """`unshare --map-root-user --net` where unprivileged namespaces work here; else nothing (the audit hook
    still refuses sockets)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    try:
        probe = subprocess.run([unshare, "--map-root-user", "--net", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return (unshare, "--map-root-user", "--net") if probe.returncode == 0 else ()
