"""The system calls sandboxed code may not make, as a seccomp filter for bubblewrap.

Bubblewrap already drops every capability; this filter removes the kernel surface
that is left to an unprivileged process and that untrusted code has no use for:
new namespaces (the way into most local kernel exploits), mounts, keyrings, BPF,
tracing, performance counters, kernel modules. Denied calls fail with EPERM, so a
program sees an ordinary error. `clone3` fails with ENOSYS, because its flags are in
memory a filter cannot read; the C library then falls back to `clone`, whose flags
are checked here. Built with libseccomp (the `pyseccomp` binding) for the machine's
own architecture; other architectures' system calls (i386 on x86-64) are refused.
"""

import errno
import functools
import os
import tempfile

DENIED = (
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "perf_event_open",
    "userfaultfd",
    "name_to_handle_at",
    "open_by_handle_at",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "acct",
    "quotactl",
    "lookup_dcookie",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
)

# clone's flags that make a namespace (CLONE_NEWTIME is 0x80, which clone reads as
# part of the exit signal; unshare, where it means a namespace, is denied whole).
CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)


def unavailable_reason() -> str | None:
    try:
        program()
    except (ImportError, OSError, RuntimeError) as error:
        return (
            "Running code is unavailable on this server: the sandbox's seccomp filter "
            f"cannot be built ({error}). Install libseccomp2 (Debian: apt-get install "
            "libseccomp2) and the pyseccomp package."
        )
    return None


@functools.cache
def program() -> bytes:
    """The compiled BPF program, as bubblewrap's --seccomp reads it."""
    import pyseccomp as seccomp  # ctypes over libseccomp.so.2

    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    # The filter's default for a foreign architecture is to kill the call.
    rules.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    for name in DENIED:  # libseccomp knows every name, on every architecture
        rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in CLONE_NAMESPACE_FLAGS:
        rules.add_rule(
            seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag)
        )
    with tempfile.TemporaryFile() as file:
        rules.export_bpf(file)
        file.seek(0)
        return file.read()


def memfd() -> int:
    """A file descriptor holding the program, read from its start (bwrap --seccomp FD)."""
    # Close-on-exec: only the sandbox it is passed to (pass_fds) may inherit it, not
    # a process another thread starts meanwhile.
    fd = os.memfd_create("fusionroom-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
