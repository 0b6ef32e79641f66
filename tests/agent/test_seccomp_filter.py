"""The python tool's seccomp filter: the kernel's attack surface refused, everything Python does still works.

The probes run model-written code through both sandboxes and read what the kernel answered each system call
(EPERM is errno 1, ENOSYS 38); a call that had gone through would have returned a file descriptor or 0.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap

import pytest

from core.agent.sandbox import Limits, namespaces_missing, run_code
from core.agent.seccomp_filter import DENIED, X86_ONLY_DENIED, for_this_host, program_for

pytestmark = pytest.mark.skipif(for_this_host()[0] is None, reason=f"no seccomp filter here: {for_this_host()[1]}")

# (name, x86_64 number, its arguments): each would give the code a kernel object or state change
KERNEL_SURFACE = [("io_uring_setup", 425, "8, None"), ("bpf", 321, "0, None, 0"), ("userfaultfd", 323, "0"),
                  ("perf_event_open", 298, "None, 0, -1, -1, 0"), ("keyctl", 250, "0, 0, 0, 0"),
                  ("unshare", 272, "0x10000000"), ("mount", 165, "b'none', b'/scratch', b'tmpfs', 0, None"),
                  ("ptrace", 101, "16, 1, 0, 0"), ("clone(CLONE_NEWUSER)", 56, "0x10000000 | 17, 0, 0, 0, 0"),
                  ("clone3", 435, "None, 0")]
PROBE = textwrap.dedent("""\
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for name, number, args in {calls}:
        result = libc.syscall(number, *args)
        print(name, result, ctypes.get_errno() if result < 0 else 0)
    import os, threading
    thread = threading.Thread(target=print, args=('a thread ran',))
    thread.start(); thread.join()
    child = os.fork()
    if child == 0:
        os._exit(7)
    print('a fork exited', os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))""")


def _probe(mode: str) -> dict[str, tuple[int, int]]:
    calls = [(name, number, eval(f"({args},)")) for name, number, args in KERNEL_SURFACE]
    finished = run_code(PROBE.format(calls=calls), Limits(timeout_s=20), mode,
                        process_prelude="import sys")  # the process mode's audit hook is not under test here
    assert finished.exit_code == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert lines[-2:] == ["a thread ran", "a fork exited 7"]  # clone3 refused: glibc fell back to clone
    return {line.rsplit(" ", 2)[0]: tuple(map(int, line.rsplit(" ", 2)[1:])) for line in lines[:-2]}


@pytest.mark.skipif(sys.platform != "linux" or __import__("os").uname().machine != "x86_64",
                    reason="the probe's system call numbers are x86_64's")
@pytest.mark.parametrize("mode", ["process", "namespaces"])
def test_the_kernels_attack_surface_is_refused_and_python_still_works(mode):
    if mode == "namespaces" and namespaces_missing():
        pytest.skip(f"no namespaces here: {namespaces_missing()}")
    answers = _probe(mode)
    expected = {name: (-1, 38 if name == "clone3" else 1) for name, _, _ in KERNEL_SURFACE}
    assert answers == expected


def test_the_program_by_hand():
    """x86_64: 3 head instructions (load arch, check it, load nr), the x32 check, one per denied call, 4 for
    clone/clone3, 3 returns; every jump lands on a return."""
    program = program_for("x86_64")
    denied = len(DENIED) + len(X86_ONLY_DENIED)
    rows = [struct.unpack("<HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    assert len(rows) == 3 + 1 + denied + 4 + 3
    assert rows[0] == (0x20, 0, 0, 4) and rows[1] == (0x15, 0, len(rows) - 4, 0xC000003E)  # else: deny,
    # which is row len - 2 (allow, deny, enosys close the program), counted from row 2
    allow, deny, enosys = (row[3] for row in rows[-3:])
    assert (allow, deny, enosys) == (0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38)
    for index, (code, true, false, _) in enumerate(rows[:-3]):
        for offset in (true, false):
            assert offset == 0 or index + 1 + offset >= len(rows) - 3, (index, rows[index])
    assert len(program_for("aarch64")) == (3 + len(DENIED) + 4 + 3) * 8  # no x32, no iopl/ioperm
    assert program_for("riscv64") is None


def test_the_setup_script_finds_the_filter_without_tandem_on_its_path():
    """sandbox_setup runs as `python -I -S` (no site-packages): it loads seccomp_filter from beside itself."""
    from core.agent.sandbox import SETUP_SCRIPT

    code = (f"import sys; sys.path.insert(0, {str(SETUP_SCRIPT.parent)!r}); import seccomp_filter; "
            "print(seccomp_filter.program_for('x86_64') is not None)")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
