"""Runs as the first process of a fresh user, mount, pid, net, ipc and uts namespace (started by `unshare`,
core.agent.sandbox): builds a root file system of read-only binds and a small writable tmpfs, moves into it,
then starts the model's code in a child that holds no capabilities, under rlimits, and waits for it.

It is executed as a script (`python -I -S sandbox_setup.py ROOT READ_ONLY LIMITS... SECCOMP`, see `main`) and
imports nothing of Tandem but its sibling seccomp_filter (standard library only), nor json (10 ms of a call's
~35): the model's code then runs in a forked child of this same interpreter, so a call starts one Python, not
two. Being pid 1 of the namespace matters: when it exits, or `unshare` above it is killed at the deadline (its
parent-death signal), the kernel kills every process left in the namespace, setsid()-ed or not.
"""

import ctypes
import os
import resource
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 32, 4096, 8192, 16384
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_PRIVATE = 1024, 2048, 1 << 21, 1 << 18
# statvfs flag -> mount flag: a bind inherits these from its source and, in a user namespace, must keep them
LOCKED = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC, os.ST_NOATIME: MS_NOATIME,
          os.ST_NODIRATIME: MS_NODIRATIME, os.ST_RELATIME: MS_RELATIME}
PR_SET_NO_NEW_PRIVS, PR_SET_SECUREBITS, PR_CAPBSET_DROP = 38, 28, 24
SECBIT_NOROOT_ALL_LOCKED = 0x3F  # exec as uid 0 grants no capabilities, and this cannot be undone
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")

libc = ctypes.CDLL(None, use_errno=True)


def mount(source, target, fstype, flags, data=None):
    encoded = [s.encode() if s is not None else None for s in (source, target, fstype, data)]
    if libc.mount(encoded[0], encoded[1], encoded[2], ctypes.c_ulong(flags), encoded[3]) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def bind(source, target, read_only=True):
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        kept = sum(flag for st, flag in LOCKED.items() if os.statvfs(source).f_flag & st)
        mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)


def build_root(root, read_only, disk_mb):
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path in read_only:
        if os.path.exists(path):
            bind(path, root + path)
    for device in DEVICES:
        if os.path.exists(device):
            bind(device, root + device, read_only=False)
    os.makedirs(root + "/scratch")
    mount("tmpfs", root + "/scratch", "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_mb}m,mode=777")
    if not os.path.exists(root + "/tmp"):  # else a bind lives under /tmp (a venv there): TMPDIR says /scratch
        os.symlink("/scratch", root + "/tmp")
    os.makedirs(root + "/proc")
    try:  # a container that masks parts of its own /proc forbids a new one; Python runs without it
        mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass
    try:  # no nested user namespace: inside one the code would hold capabilities again (over its own copies)
        with open(root + "/proc/sys/user/max_user_namespaces", "w") as limit:
            limit.write("0")
    except OSError:
        pass
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    os.chdir(root)
    mount(root, "/", None, MS_MOVE)
    os.chroot(".")
    os.chdir("/scratch")


def drop_privileges(memory_mb, cpu_s, file_mb, processes):
    """No capabilities now or after exec, no way to regain any, and the run's resource limits."""
    libc.prctl(PR_SET_SECUREBITS, SECBIT_NOROOT_ALL_LOCKED, 0, 0, 0)
    for capability in range(64):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    if libc.capset(header, (ctypes.c_uint32 * 6)()) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")
    for limit, value in ((resource.RLIMIT_AS, memory_mb << 20), (resource.RLIMIT_CPU, cpu_s),
                         (resource.RLIMIT_FSIZE, file_mb << 20), (resource.RLIMIT_NOFILE, 64),
                         (resource.RLIMIT_NPROC, processes), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))


def run_model_code():
    """In the child, without privileges: the environment a fresh `python -I` would have, then the code."""
    os.closerange(3, 1 << 16)
    os.environ.clear()
    os.environ.update(PATH="/usr/bin:/bin", HOME="/scratch", TMPDIR="/scratch", LANG="C.UTF-8")
    sys.argv = [""]
    import site  # this interpreter started with -S (no site-packages): the code may import the environment's

    site.main()
    code = sys.stdin.read()
    exec(compile(code, "<tool>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})


def main():
    root, read_only, memory_mb, cpu_s, file_mb, disk_mb, processes, seccomp = sys.argv[1:9]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # read now: the new root will not hold it
    from seccomp_filter import install as install_seccomp

    build_root(root, read_only.split("\n"), int(disk_mb))
    child = os.fork()
    if child == 0:
        drop_privileges(int(memory_mb), int(cpu_s), int(file_mb), int(processes))
        if seccomp != "-":  # last: the filter refuses mount and chroot, which the steps before needed
            install_seccomp(bytes.fromhex(seccomp))
        run_model_code()
        sys.exit(0)
    os.close(0)
    while True:  # as pid 1, orphans are ours to reap; the run ends with the model's own process
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)  # killed by signal N: 128 + N, as shells say


if __name__ == "__main__":
    main()
