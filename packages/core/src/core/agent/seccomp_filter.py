"""A seccomp filter for model-written code: the kernel's rarely-needed, often-exploited system calls fail.

The namespaces take away what the code may *reach*; this takes away kernel code it may *run*. Local root
exploits mostly go through a handful of interfaces no arithmetic snippet needs -- io_uring, eBPF, user-space
page faults, perf events, the key store, module loading, mount and namespace calls -- so each call of the
python tool gets a classic BPF filter, installed after `no_new_privs`, that answers them EPERM. A deny list
(Docker's default profile is the model): everything Python itself does stays allowed. Also refused:

- a syscall of another ABI (x86's 32-bit `int 0x80` or x32 numbers: a deny list by number would not hold);
- `clone` with a CLONE_NEW* flag (a namespace of its own); `clone3`, whose flags sit behind a pointer the filter
  cannot read, answers ENOSYS, on which glibc falls back to `clone` for threads and processes.

Built here, in the trainer (`for_this_host`), and handed to the sandbox as hex; `install` needs only the
standard library, so core.agent.sandbox_setup loads this file by its path, before it leaves the host's file
system. On machines whose numbers are not listed, or a kernel without seccomp, there is no filter and the
run says so once (core.agent.sandbox.resolve_mode).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct

# name -> (x86_64 number, aarch64 number); from the kernel's unistd_64.h and asm-generic/unistd.h
DENIED = {
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "unshare": (272, 97), "setns": (308, 268), "open_tree": (428, 428), "move_mount": (429, 429),
    "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433),
    "mount_setattr": (442, 442), "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282), "fanotify_init": (300, 262),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "reboot": (169, 142), "swapon": (167, 224),
    "swapoff": (168, 225), "acct": (163, 89), "quotactl": (179, 60), "syslog": (103, 116),
    "settimeofday": (164, 170), "clock_settime": (227, 112), "clock_adjtime": (305, 266), "adjtimex": (159, 171),
    "pidfd_getfd": (438, 438),
}
X86_ONLY_DENIED = {"iopl": 172, "ioperm": 173}
CLONE, CLONE3 = (56, 220), (435, 435)
ARCHES = {"x86_64": (0xC000003E, 0), "aarch64": (0xC00000B7, 1)}  # machine -> (AUDIT_ARCH_*, column of DENIED)
X32_SYSCALL_BIT = 0x40000000
CLONE_NEW_FLAGS = 0x7E020080  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME

LOAD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|{JEQ,JGE,JSET}|K, BPF_RET|K
NR_OFFSET, ARCH_OFFSET, ARG0_OFFSET = 0, 4, 16  # struct seccomp_data: nr, arch, args[0] (its low word)
RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


@functools.cache
def for_this_host() -> tuple[bytes | None, str | None]:
    """(the filter for this machine, None) or (None, why there is none)."""
    machine = os.uname().machine
    if machine not in ARCHES:
        return None, f"no system call numbers for {machine}"
    try:
        with open("/proc/self/status") as status:
            supported = any(line.startswith("Seccomp:") for line in status)
    except OSError:
        supported = False
    return (program_for(machine), None) if supported else (None, "the kernel has no seccomp")


def program_for(machine: str) -> bytes | None:
    """The filter for `machine` (`uname -m`) as packed `struct sock_filter`s; None if its numbers are unknown."""
    if machine not in ARCHES:
        return None
    audit_arch, column = ARCHES[machine]
    denied = sorted({numbers[column] for numbers in DENIED.values()}
                    | (set(X86_ONLY_DENIED.values()) if machine == "x86_64" else set()))
    # (code, jump-if-true label, jump-if-false label, k); labels resolve to the three returns at the end
    body = [(LOAD, None, None, ARCH_OFFSET), (JEQ, None, "deny", audit_arch), (LOAD, None, None, NR_OFFSET)]
    if machine == "x86_64":
        body.append((JGE, "deny", None, X32_SYSCALL_BIT))
    body += [(JEQ, "deny", None, number) for number in denied]
    body += [(JEQ, "enosys", None, CLONE3[column]), (JEQ, None, "allow", CLONE[column]),
             (LOAD, None, None, ARG0_OFFSET), (JSET, "deny", "allow", CLONE_NEW_FLAGS)]
    returns = {"allow": RET_ALLOW, "deny": RET_ERRNO | errno.EPERM, "enosys": RET_ERRNO | errno.ENOSYS}
    at = {label: len(body) + i for i, label in enumerate(returns)}
    packed = [struct.pack("<HBBI", code, _offset(at, true, i), _offset(at, false, i), k)
              for i, (code, true, false, k) in enumerate(body)]
    packed += [struct.pack("<HBBI", RET, 0, 0, value) for value in returns.values()]
    return b"".join(packed)


def _offset(at: dict[str, int], label: str | None, index: int) -> int:
    """A jump to `label` from instruction `index`: BPF counts from the next instruction, in a byte."""
    if label is None:
        return 0
    offset = at[label] - index - 1
    assert 0 <= offset < 256, "the filter outgrew BPF's 8-bit jumps"
    return offset


def install(program: bytes) -> None:
    """Filter this process and every process it starts from now on; irrevocable. Sets no_new_privs first,
    which the kernel requires of a process without CAP_SYS_ADMIN."""

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    fprog = SockFprog(len(program) // 8, program)
    zero = ctypes.c_ulong(0)
    for args in ((ctypes.c_int(PR_SET_NO_NEW_PRIVS), ctypes.c_ulong(1), zero, zero, zero),
                 (ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog), zero, zero)):
        if libc.prctl(*args) != 0:
            raise OSError(ctypes.get_errno(), f"seccomp filter not installed: {os.strerror(ctypes.get_errno())}")
