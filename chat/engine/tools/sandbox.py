"""Running untrusted Python in a sandbox: Debian's bubblewrap, as nobody.

What the code gets: the system's /usr, /bin and /lib read-only, its own /proc and
/dev, and an empty size-capped /tmp as its working directory. No network (a fresh,
empty network namespace), no project files, no home, no /etc, no environment.
What bounds it: rlimits (CPU seconds, address space, processes, file size, open
files) set before bubblewrap starts and inherited by everything inside; a
wall-clock limit, after which the whole process group is killed; and a cap on what
it may print, past which it is killed too. It runs as uid 65534, never as the
worker's user, so the process limit holds even when the worker runs as root.

There is never a fallback: without bubblewrap the tool is unavailable and says so.
"""

import asyncio
import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOBODY = "65534"
PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 512  # address space
    processes: int = 32
    file_mb: int = 16  # the largest file it may write, and the size of its /tmp
    output_bytes: int = 32_000  # stdout and stderr, each


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
    return None


def command(limits: Limits) -> list[str]:
    mounts = []
    for path in ("/usr", "/bin", "/lib", "/lib64", "/lib32"):
        if Path(path).exists():
            mounts += ["--ro-bind", path, path]
    return [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--",
        "prlimit",
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_mb * 1024 * 1024}",
        f"--nproc={limits.processes}",
        f"--fsize={limits.file_mb * 1024 * 1024}",
        "--nofile=64",
        "--core=0",
        "--",
        "bwrap",
        "--unshare-all",  # network, pid, ipc, uts, cgroup, user namespaces of its own
        "--die-with-parent",
        "--new-session",
        *mounts,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.file_mb * 1024 * 1024),
        "--tmpfs",
        "/tmp",
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
        PYTHON,
        "-I",  # isolated: no user site, no environment variables, no cwd on sys.path
        "-",  # the program comes on stdin
    ]


async def _read_capped(stream: asyncio.StreamReader, cap: int, over: asyncio.Event) -> bytes:
    """Up to `cap` bytes; past it, say so and keep draining until the process is gone
    (a full pipe left unread would keep a killed process's pipes from closing)."""
    data = bytearray()
    while chunk := await stream.read(65536):
        room = cap - len(data)
        if room > 0:
            data += chunk[:room]
        if len(chunk) > room:
            over.set()
    return bytes(data)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_python(code: str, limits: Limits | None = None) -> Execution:
    """Run `code` in the sandbox and say what happened; never raises for what the
    code does."""
    limits = limits or Limits()
    if reason := unavailable_reason():
        return Execution("", reason, None, 0, "unavailable")
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *command(limits),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, killed as a whole
        cwd="/",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
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
    finally:
        if ended != "exited":
            _kill_group(process.pid)
        watch_output.cancel()
    stdout, stderr = await reading
    exit_code: int | None
    try:
        exit_code = await asyncio.wait_for(process.wait(), 5)
    except TimeoutError:
        _kill_group(process.pid)
        exit_code = await process.wait()
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
