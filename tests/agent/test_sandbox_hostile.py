"""Hostile model-written code against the python tool's namespaced sandbox (agent.sandbox=namespaces).

Each snippet tries to leave a trace outside: a file in a directory of the host, a connection to a listener
of the host, a process still alive after the call, the trainer's environment in its output. The tests look
for that evidence, not for the error message; they also check that the model reads a one-line error.
Skipped, with the reason, on hosts without user namespaces.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from core.agent.python_tool import PythonExecutor
from core.agent.sandbox import namespaces_missing

pytestmark = pytest.mark.skipif(namespaces_missing() is not None,
                                reason=f"no namespaced sandbox on this host: {namespaces_missing()}")

TOKEN = "4242.1357"  # `sleep TOKEN`: a process the code starts, looked for on the host afterwards


@pytest.fixture
def host(tmp_path):
    """A host directory with one file, a TCP, a UNIX and an abstract UNIX listener; `evidence()` lists traces."""
    keep = tmp_path / "keep.txt"
    keep.write_text("keep")
    os.chmod(keep, 0o600)
    listeners = []
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    unix_path = str(tmp_path / "listener.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(unix_path)
    abstract_name = f"tandem-test-{os.getpid()}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + abstract_name)
    for listener in (tcp, unix, abstract):
        listener.listen(8)
        listener.setblocking(False)
        listeners.append(listener)

    def evidence() -> list[str]:
        found = []
        entries = sorted(os.listdir(tmp_path))
        if entries != ["keep.txt", "listener.sock"]:
            found.append(f"host directory now holds {entries}")
        if keep.exists() and (keep.read_text() != "keep" or (keep.stat().st_mode & 0o777) != 0o600):
            found.append("keep.txt changed")
        for listener in listeners:
            try:
                listener.accept()
                found.append(f"a connection reached {listener.getsockname()!r}")
            except BlockingIOError:
                pass
        found += [f"process alive: {cmd}" for cmd in _processes_with(TOKEN)]
        return found

    host = type("Host", (), {})()
    host.dir, host.keep, host.evidence = str(tmp_path), str(keep), evidence
    host.tcp_port, host.unix_path, host.abstract = tcp.getsockname()[1], unix_path, abstract_name
    yield host
    for listener in listeners:
        listener.close()


def _processes_with(token: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                text = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if token in text and "pytest" not in text:
            found.append(text)
    return found


HOSTILE = {
    "write a file": "open('{dir}/pwned', 'w').write('x')",
    "write through dir_fd": ("import os; fd = os.open('{dir}', os.O_RDONLY); "
                             "os.open('pwned', os.O_CREAT | os.O_WRONLY, dir_fd=fd)"),
    "hard link": "import os; os.link('{keep}', '{dir}/pwned')",
    "symlink": "import os; os.symlink('/etc/passwd', '{dir}/pwned')",
    "fifo": "import os; os.mkfifo('{dir}/pwned')",
    "device node": "import os, stat; os.mknod('{dir}/pwned', stat.S_IFCHR | 0o666, os.makedev(1, 3))",
    "sqlite": "import sqlite3; sqlite3.connect('{dir}/pwned').execute('create table t (x)')",
    "delete": "import os; os.remove('{keep}')",
    "delete the tree": "import shutil; shutil.rmtree('{dir}')",
    "chmod": "import os; os.chmod('{keep}', 0o777)",
    "xattr": "import os; os.setxattr('{keep}', 'user.pwned', b'1')",
    "rename": "import os; os.rename('{keep}', '{dir}/pwned')",
    "tcp": "import socket; socket.create_connection(('127.0.0.1', {tcp_port}), timeout=1)",
    "unix socket": "import socket; s = socket.socket(socket.AF_UNIX); s.connect('{unix_path}')",
    "abstract unix socket": "import socket; s = socket.socket(socket.AF_UNIX); s.connect('\\0{abstract}')",
    "subprocess": "import subprocess; subprocess.run(['touch', '{dir}/pwned'], check=True)",
    "fork_exec": textwrap.dedent("""\
        import _posixsubprocess, os
        r, w = os.pipe()
        _posixsubprocess.fork_exec([b'/usr/bin/touch', b'{dir}/pwned'], [b'/usr/bin/touch'], True, (), None, None,
                                   -1, -1, -1, -1, -1, -1, r, w, True, False, 0, None, None, None, -1, None, False)
        import time; time.sleep(0.5)"""),
    "a setsid child outlives the call": textwrap.dedent("""\
        import os, subprocess
        subprocess.Popen(['sleep', '{token}'], start_new_session=True)
        print('started')"""),
    "a child escapes the deadline": textwrap.dedent("""\
        import os
        if os.fork() == 0:
            os.setsid()
            os.execv('/bin/sleep', ['sleep', '{token}'])
        while True:
            pass"""),
    "fork bomb": textwrap.dedent("""\
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass"""),
    "memory bomb": "x = bytearray(4 << 30)",
    "kill pid 1, then start a process": ("import os, subprocess; os.kill(1, 9); "
                                         "subprocess.Popen(['sleep', '{token}'], start_new_session=True)"),
    "escape the chroot": "import os; os.mkdir('x'); os.chroot('x'); os.chdir('../../../..'); open('{dir}/pwned', 'w')",
    "unmount the read-only root": textwrap.dedent("""\
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        for target in (b'/usr', b'/', b'/proc'):
            libc.umount2(target, 2)
        open('{dir}/pwned', 'w')"""),
    "a user namespace of its own": textwrap.dedent("""\
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x10000000 | 0x00020000) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        open('{dir}/pwned', 'w')"""),
    "trace the parent": "import ctypes, os; libc = ctypes.CDLL(None); assert libc.ptrace(16, os.getppid(), 0, 0) == 0",
}


@pytest.mark.parametrize("name", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_code_leaves_no_evidence(name, host):
    code = HOSTILE[name].format(token=TOKEN, **{k: v for k, v in vars(host).items() if not callable(v)})
    started = time.monotonic()
    reply = _run(code, timeout_s=3.0)
    time.sleep(0.3)  # a process that survived would have had time to act
    assert host.evidence() == [], f"{name}: {reply!r}"
    assert time.monotonic() - started < 3.0 + 5.0
    assert reply.strip() and len(reply.splitlines()) <= 2, reply  # the model reads one error line (+ output)


def _run(code: str, timeout_s: float) -> str:
    try:
        return PythonExecutor(timeout_s=timeout_s, memory_mb=256).run(code)
    except TimeoutError as exc:
        return f"error: {exc}"


def test_the_trainers_environment_cannot_be_read(monkeypatch):
    monkeypatch.setenv("TANDEM_TEST_SECRET", "s3cr3t-value")
    code = textwrap.dedent("""\
        import os
        print(dict(os.environ))
        for pid in os.listdir('/proc'):
            try:
                print(open(f'/proc/{pid}/environ').read())
            except OSError:
                pass
        print(os.listdir('/proc'))""")
    reply = PythonExecutor().run(code)
    assert "s3cr3t-value" not in reply and "TANDEM_TEST_SECRET" not in reply


def test_an_output_flood_is_cut_while_read(tmp_path):
    """300 MB printed: the trainer reads at most the cap and stops the code (its peak memory barely moves)."""
    probe = textwrap.dedent("""\
        import resource, time
        from core.agent.python_tool import PythonExecutor
        tool = PythonExecutor(timeout_s=20)
        tool.run("print(1)")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        reply = tool.run("import sys\\nfor _ in range(300):\\n    sys.stdout.write('x' * (1 << 20))")
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(len(reply), reply.endswith("was stopped)"), round(grown_mb, 1), round(time.monotonic() - started, 1))""")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120).stdout.split()
    length, flagged, grown_mb, seconds = int(out[0]), out[1] == "True", float(out[2]), float(out[3])
    assert length < 2200 and flagged and grown_mb < 20 and seconds < 10, out


def test_the_code_still_computes_reads_the_standard_library_and_writes_its_scratch_space():
    code = textwrap.dedent("""\
        import json, math, os, tempfile
        open('notes.txt', 'w').write(json.dumps({'x': math.factorial(10)}))
        print(open(os.path.join(tempfile.gettempdir(), 'notes.txt')).read(), os.getcwd())""")
    assert PythonExecutor().run(code) == '{"x": 3628800} /scratch'


def test_an_environment_under_tmp_is_bound_and_tmpdir_still_writable(tmp_path, monkeypatch):
    """A checkout (and its .venv) under /tmp, as on CI: its bind occupies /tmp in the new root."""
    from core.agent import sandbox

    library = tmp_path / "lib"
    library.mkdir()
    (library / "helper_for_sandbox.py").write_text("VALUE = 42\n")
    paths = (*sandbox._python_paths(), str(library))  # tmp_path is under /tmp
    monkeypatch.setattr(sandbox, "_python_paths", lambda: paths)
    code = (f"import sys, tempfile; sys.path.insert(0, {str(library)!r}); import helper_for_sandbox; "
            "open(tempfile.gettempdir() + '/x', 'w').write('ok'); print(helper_for_sandbox.VALUE, tempfile.gettempdir())")
    assert PythonExecutor().run(code) == "42 /scratch"
