"""Running untrusted Python in a sandbox: Debian's bubblewrap, as nobody.

What the code gets: the system's /usr, /bin and /lib read-only, its own /proc, a
read-only /dev and root, and two empty size-capped in-memory filesystems, /tmp (its
working directory) and /dev/shm. No network (a fresh, empty network namespace), no
project files, no home, no /etc, no environment.
What bounds it: a cgroup of its own (cgroup.py: its processes and memory, tmpfs pages
included); rlimits (CPU seconds, address space, file size, open files) set before
bubblewrap starts and inherited by everything inside; a wall-clock limit and a cap on
what it may print, past either of which everything it started is killed. Its kernel
surface is narrowed: no user namespaces of its own (--disable-userns) and a seccomp
filter (seccomp.py) that refuses namespace, mount, keyring, BPF and tracing calls.
It runs as uid 65534, never as the worker's user.

However the call ends (the program exits, a limit, or the caller is cancelled by a
Stop or a deadline), nothing the program started outlives it: the process group and
the cgroup are killed, waited for, and the cgroup removed. Without a writable cgroup
(no root, no delegation) a warning is logged once and the per-uid process limit is the
only process bound, shared by every run on the host (docs/SEAT_TOOLS.md).

There is never a fallback: without bubblewrap the tool is unavailable and says so.
"""

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import seccomp
from .cgroup import ENTER_FAILED, RunCgroup

log = logging.getLogger(__name__)

NOBODY = "65534"
PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class SandboxLimits:
    wall_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 512  # address space, and the cgroup's memory (tmpfs pages included)
    processes: int = 32  # the program's own; the cgroup allows bubblewrap's few more
    file_mb: int = 16  # the largest file it may write, and the size of its /tmp
    shm_mb: int = 64  # the size of its /dev/shm
    output_bytes: int = 32_000  # stdout and stderr, each


SANDBOX_PROCESSES = 4  # bubblewrap's own, counted in the run's cgroup
SUPERVISION_GRACE_S = 15.0  # past the wall limit, for killing, draining and reaping


@dataclass
class Execution:
    stdout: str
    stderr: str
    exit_code: int | None
    duration_ms: int
    ended: str  # "exited" | "timed_out" | "output_limit" | "unavailable"
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.ended == "exited" and self.exit_code == 0

    def summary(self) -> str:
        """What happened, in words a model (and a person) can act on."""
        if self.ended == "unavailable":
            return self.stderr
        if self.ended == "timed_out":
            return "The code was stopped: it ran past its time limit."
        if self.ended == "output_limit":
            return "The code was stopped: it printed more than the output limit."
        # bubblewrap reports a signal as 128 + its number, the shell's way.
        signalled = -self.exit_code if self.exit_code and self.exit_code < 0 else None
        if self.exit_code and 128 < self.exit_code < 128 + 65:
            signalled = self.exit_code - 128
        if signalled:
            name = signal.Signals(signalled).name
            why = {
                "SIGXCPU": "it used up its CPU time",
                "SIGKILL": "it was killed at a limit (CPU time or memory)",
                "SIGSEGV": "it crashed",
            }.get(name, name)
            return f"The code was stopped: {why}."
        if self.exit_code:
            return f"The code exited with status {self.exit_code}."
        return "The code ran to the end."


def unavailable_reason() -> str | None:
    """Why code cannot run here, or None when it can."""
    for tool in ("bwrap", "setpriv", "prlimit"):
        if shutil.which(tool) is None:
            package = {"bwrap": "bubblewrap"}.get(tool, "util-linux")
            return (
                f"Running code is unavailable on this server: `{tool}` is not installed "
                f"(Debian/Ubuntu: apt-get install {package}). Code never runs outside the "
                "sandbox."
            )
    if not Path(PYTHON).exists():
        return f"Running code is unavailable on this server: {PYTHON} is missing."
    return seccomp.unavailable_reason()


def command(limits: SandboxLimits, seccomp_fd: int, cgroup: RunCgroup | None) -> list[str]:
    """The run's command line: into its cgroup, as nobody, under its rlimits, inside
    bubblewrap's namespaces and capped filesystems, Python reading the program."""
    return [
        *(cgroup.enter_prefix() if cgroup else []),
        *_as_nobody_with_rlimits(limits, cgroup),
        *_bwrap(limits, seccomp_fd),
        PYTHON,
        "-I",  # isolated: no user site, no environment variables, no cwd on sys.path
        "-",  # the program comes on stdin
    ]


def _as_nobody_with_rlimits(limits: SandboxLimits, cgroup: RunCgroup | None) -> list[str]:
    # With a cgroup of its own the run's processes are bounded there; the per-uid
    # limit, shared by every run on the host, is left as the worker's.
    nproc = [] if cgroup else [f"--nproc={limits.processes}"]
    return [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--",
        "prlimit",
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_mb * 1024 * 1024}",
        *nproc,
        f"--fsize={limits.file_mb * 1024 * 1024}",
        "--nofile=64",
        "--core=0",
        "--",
    ]


def _bwrap(limits: SandboxLimits, seccomp_fd: int) -> list[str]:
    mounts = []
    for path in ("/usr", "/bin", "/lib", "/lib64", "/lib32"):
        if Path(path).exists():
            mounts += ["--ro-bind", path, path]
    return [
        "bwrap",
        "--unshare-all",  # network, pid, ipc, uts, cgroup, user namespaces of its own
        "--unshare-user",
        "--disable-userns",  # and it may make no more
        "--die-with-parent",
        "--new-session",
        *mounts,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.shm_mb * 1024 * 1024),
        "--tmpfs",
        "/dev/shm",
        "--size",
        str(limits.file_mb * 1024 * 1024),
        "--tmpfs",
        "/tmp",
        # The root and /dev are bubblewrap's own uncapped tmpfs: read-only once built.
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
        "--seccomp",
        str(seccomp_fd),
        "--chdir",
        "/tmp",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "HOME",
        "/tmp",
        "--setenv",
        "PYTHONDONTWRITEBYTECODE",
        "1",
        "--",
    ]


async def _read_capped(stream: asyncio.StreamReader, cap: int, over: asyncio.Event) -> bytes:
    """Up to `cap` bytes; past it, say so and keep draining until the process is gone
    (a full pipe left unread would keep a killed process's pipes from closing)."""
    data = bytearray()
    while chunk := await stream.read(65536):
        conversation = cap - len(data)
        if conversation > 0:
            data += chunk[:conversation]
        if len(chunk) > conversation:
            over.set()
    return bytes(data)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _kill_all(process: asyncio.subprocess.Process, cgroup: RunCgroup | None) -> None:
    """SIGKILL the run: its process group, and its cgroup, which also holds what
    bubblewrap started in a session of its own (--new-session)."""
    _kill_group(process.pid)
    if cgroup:
        cgroup.kill()


async def run_python(code: str, limits: SandboxLimits | None = None) -> Execution:
    """Run `code` in the sandbox and say what happened; never raises for what the
    code does. Cancelling the call ends the program and everything it started."""
    limits = limits or SandboxLimits()
    if reason := unavailable_reason():
        return Execution("", reason, None, 0, "unavailable")
    started = time.monotonic()
    memory = (limits.memory_mb + limits.shm_mb + limits.file_mb) * 1024 * 1024
    cgroup = RunCgroup.create(limits.processes + SANDBOX_PROCESSES, memory)
    filter_fd = seccomp.memfd()
    try:
        process = await asyncio.create_subprocess_exec(
            *command(limits, filter_fd, cgroup),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, killed as a whole
            cwd="/",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            pass_fds=(filter_fd,),
        )
    except BaseException:
        if cgroup:
            await _shielded(cgroup.remove())
        raise
    finally:
        os.close(filter_fd)
    try:
        # The limits below end the program; this one ends the supervision itself, so a
        # pipe held open or a wait that never returns cannot keep a run waiting forever.
        async with asyncio.timeout(limits.wall_s + SUPERVISION_GRACE_S):
            return await _supervise(process, code, limits, started, cgroup)
    except TimeoutError:
        log.error(
            "run_python: the sandbox was still running %.0f s past its wall limit; killed",
            SUPERVISION_GRACE_S,
        )
        return Execution("", "", None, int((time.monotonic() - started) * 1000), "timed_out")
    finally:
        # Every path out, cancellation included: kill now (no await between here and
        # the signals), then wait for the processes and remove the cgroup even if the
        # caller is cancelled again meanwhile.
        _kill_all(process, cgroup)
        await _shielded(_reap(process, cgroup))


async def _supervise(
    process: asyncio.subprocess.Process,
    code: str,
    limits: SandboxLimits,
    started: float,
    cgroup: RunCgroup | None,
) -> Execution:
    assert process.stdin and process.stdout and process.stderr
    process.stdin.write(code.encode("utf-8", "replace"))
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await process.stdin.drain()
    process.stdin.close()
    over = asyncio.Event()
    reading: asyncio.Future[tuple[bytes, bytes]] = asyncio.gather(
        _read_capped(process.stdout, limits.output_bytes, over),
        _read_capped(process.stderr, limits.output_bytes, over),
    )
    watch_output: asyncio.Future[Any] = asyncio.ensure_future(over.wait())
    ended = "exited"
    try:
        done, _ = await asyncio.wait(
            {reading, watch_output}, timeout=limits.wall_s, return_when=asyncio.FIRST_COMPLETED
        )
        if watch_output in done:
            ended = "output_limit"
        elif reading not in done:
            ended = "timed_out"
        if ended != "exited":
            _kill_all(process, cgroup)
        stdout, stderr = await reading
    finally:
        watch_output.cancel()
        reading.cancel()  # a no-op once read; on cancellation, stops the readers
        reading.add_done_callback(_retrieve)
    exit_code: int | None
    try:
        exit_code = await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        _kill_all(process, cgroup)
        exit_code = await process.wait()
    if exit_code == ENTER_FAILED:
        log.error("run_python: the sandbox could not join its cgroup: %s", stderr[-500:])
    if ended != "exited":
        exit_code = None
    return Execution(
        stdout=stdout.decode("utf-8", "replace"),
        stderr=stderr.decode("utf-8", "replace"),
        exit_code=exit_code,
        duration_ms=int((time.monotonic() - started) * 1000),
        ended=ended,
        truncated=over.is_set(),
    )


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a cancelled reader's outcome as seen (asyncio logs it otherwise)."""
    if not future.cancelled():
        future.exception()


async def _reap(process: asyncio.subprocess.Process, cgroup: RunCgroup | None) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), 5)
    if cgroup:
        await cgroup.remove()


_cleanups: set[asyncio.Task[Any]] = set()


async def _shielded(cleanup: Any) -> None:
    """Run `cleanup` to its end even if the caller is cancelled while it runs."""
    task = asyncio.ensure_future(cleanup)
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)
    await asyncio.shield(task)
