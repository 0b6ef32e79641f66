"""Where model-written code runs: isolation by the operating system (`agent.sandbox`).

    namespaces  `unshare` gives each call fresh user, mount, pid, net, ipc and uts namespaces; a root file
                system of read-only binds (/usr, /lib, /bin, /etc, Python) and a 64 MiB tmpfs at /scratch (= /tmp),
                no capabilities, no new privileges, rlimits; pid 1 of the namespace is ours
                (core.agent.sandbox_setup), so killing it at the deadline kills everything the code started.
                A seccomp filter refuses the kernel's rarely-needed system calls (core.agent.seccomp_filter).
    process     a child process in its own session under the same rlimits and seccomp filter, with an audit hook
                (PEP 578) refusing sockets, processes and writes outside its directory. Python-level only: it
                does not hold against code written to escape (core.agent.python_tool says why).
    auto        namespaces where the host allows them, else process, said once in the log.

Output is read as it comes and capped: past `max_output_bytes` the call is killed, so a flood never
reaches the trainer's memory.
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core.agent.seccomp_filter import for_this_host as seccomp_for_this_host
from core.agent.seccomp_filter import install as install_seccomp
from core.errors import TandemError

log = logging.getLogger(__name__)

SANDBOX_MODES = ("namespaces", "auto", "process")
SETUP_SCRIPT = Path(__file__).with_name("sandbox_setup.py")
SYSTEM_READ_ONLY = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/localtime")
EXTRA_PROCESSES = 32  # processes a call may add to the count its user already has (fork bombs stop there)


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 5.0  # wall clock; then the whole call is killed
    memory_mb: int = 512  # address space of each process
    disk_mb: int = 64  # the writable /scratch (namespaces); one file's size limit is min(disk_mb, 16)
    max_output_bytes: int = 64 << 10  # stdout + stderr read; beyond, the call is killed and the reply cut

    @property
    def cpu_s(self) -> int:  # RLIMIT_CPU: a busy loop dies by itself a second after the deadline
        return int(self.timeout_s) + 1

    @property
    def file_mb(self) -> int:  # RLIMIT_FSIZE: one file's size
        return min(self.disk_mb, 16)


@dataclass(frozen=True)
class Finished:
    stdout: str
    stderr: str
    exit_code: int | None  # None: killed at the deadline or for its output
    timed_out: bool = False
    output_cut: bool = False


def resolve_mode(requested: str) -> str:
    """The isolation a call will get: `requested`, or a one-line refusal when the host cannot give it."""
    if requested not in SANDBOX_MODES:
        raise TandemError(f"agent.sandbox={requested!r} is unknown; choose {', '.join(SANDBOX_MODES)}")
    _say_if_no_seccomp()
    if requested == "process":
        return "process"
    missing = namespaces_missing()
    if missing is None:
        return "namespaces"
    if requested == "namespaces":
        raise TandemError(f"agent.sandbox=namespaces: this host cannot isolate tool code ({missing}); allow user "
                          "namespaces, or set agent.sandbox=process to accept a sandbox that does not hold "
                          "against hostile code")
    log.warning("agent.sandbox=auto: no namespaces here (%s); the python tool runs with rlimits and an audit "
                "hook only, which does not hold against hostile code", missing)
    return "process"


@functools.cache
def _say_if_no_seccomp() -> None:
    why = seccomp_for_this_host()[1]
    if why:
        log.warning("no seccomp filter for the python tool (%s): tool code can reach every system call the "
                    "namespaces leave it", why)


@functools.cache
def namespaces_missing() -> str | None:
    """None when a namespaced call works on this host; else why not, in a few words."""
    if sys.platform != "linux":
        return f"needs Linux, not {sys.platform}"
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux)"
    finished = run_code("print('ok')", Limits(timeout_s=20), "namespaces")
    if finished.stdout.strip() == "ok":
        return None
    reason = (finished.stderr.strip().splitlines() or [f"exit code {finished.exit_code}"])[-1]
    return reason.removeprefix("unshare: ")[:200]


def run_code(code: str, limits: Limits, mode: str, process_prelude: str = "") -> Finished:
    """Run Python `code` isolated as `mode` says; what it printed, capped, and how it ended."""
    if mode == "namespaces":
        mount_point = tempfile.mkdtemp(prefix="tandem-sandbox-")  # stays empty here: mounted on in the namespace
        try:
            return _collect(_namespaced(limits, mount_point), code, limits, cwd=None)
        finally:
            os.rmdir(mount_point)
    workdir = tempfile.mkdtemp(prefix="tandem-tool-")
    try:
        command = [sys.executable, "-I", "-c", process_prelude + "\nexec(compile(sys.stdin.read(), '<tool>', 'exec'), "
                   "{'__name__': '__main__'})"]
        return _collect(command, code, limits, cwd=workdir, preexec=functools.partial(_process_limits, limits))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _namespaced(limits: Limits, mount_point: str) -> list[str]:
    """`unshare` starting core.agent.sandbox_setup as the new namespaces' pid 1 (its argv: see its `main`)."""
    read_only = "\n".join([*SYSTEM_READ_ONLY, *_python_paths()])
    seccomp = seccomp_for_this_host()[0]
    limits_argv = [limits.memory_mb, limits.cpu_s, limits.file_mb, limits.disk_mb,
                   _processes_of_this_user() + EXTRA_PROCESSES, seccomp.hex() if seccomp else "-"]
    return ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--net", "--ipc", "--uts", "--fork",
            "--kill-child", sys.executable, "-I", "-S", str(SETUP_SCRIPT), mount_point, read_only,
            *map(str, limits_argv)]


@functools.cache
def _python_paths() -> tuple[str, ...]:
    """The interpreter and the packages the code may import (this environment's), read-only."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)),
             sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return tuple(sorted(p for p in paths if p and not p.startswith("/usr/")))


def _processes_of_this_user() -> int:
    """RLIMIT_NPROC counts every process of the user id, the trainer's included: the limit is set above that."""
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                continue
    return count


def _process_limits(limits: Limits) -> None:
    for limit, value in ((resource.RLIMIT_AS, limits.memory_mb << 20), (resource.RLIMIT_CPU, limits.cpu_s),
                         (resource.RLIMIT_FSIZE, limits.file_mb << 20), (resource.RLIMIT_NOFILE, 64),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    seccomp = seccomp_for_this_host()[0]
    if seccomp:
        install_seccomp(seccomp)


def _collect(command: list[str], code: str, limits: Limits, cwd: str | None, preexec=None) -> Finished:
    """Start `command` in its own session, feed it `code`, read both pipes up to the cap, kill at the deadline."""
    env = {"PATH": "/usr/bin:/bin", "HOME": cwd or "/scratch", "LANG": "C.UTF-8"}
    child = subprocess.Popen(command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True, env=env, preexec_fn=preexec)
    try:
        child.stdin.write(code.encode())
        child.stdin.close()
    except BrokenPipeError:
        pass
    chunks = {child.stdout: bytearray(), child.stderr: bytearray()}
    deadline = time.monotonic() + limits.timeout_s
    timed_out = cut = False
    with selectors.DefaultSelector() as selector:
        for pipe in chunks:
            selector.register(pipe, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in selector.select(timeout=left):
                data = os.read(key.fd, 1 << 16)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                chunks[key.fileobj] += data
            if sum(map(len, chunks.values())) > limits.max_output_bytes:
                cut = True
                break
    if not (timed_out or cut):  # both pipes closed; code that closed them itself may still be running
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    if timed_out or cut:
        _kill_group(child)
    returncode = child.wait()
    exit_code = None if timed_out or cut else returncode
    for pipe in chunks:
        pipe.close()
    out, err = (bytes(chunks[pipe][: limits.max_output_bytes]).decode(errors="replace")
                for pipe in (child.stdout, child.stderr))
    return Finished(out, err, exit_code, timed_out=timed_out, output_cut=cut)


def _kill_group(child: subprocess.Popen) -> None:
    """The session's group: `unshare` (whose death kills the namespace's pid 1, and so the namespace) or,
    in process mode, the interpreter and whatever stayed in its group."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
