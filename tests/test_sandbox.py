"""run_python's sandbox, on the real bubblewrap: every escape and exhaustion attempt
is contained within its limits and reported in words; the machine is unharmed."""

import asyncio
import os
import shutil

import pytest

from chat.engine.tools.sandbox import SandboxLimits, run_python, unavailable_reason

if unavailable_reason():
    if os.environ.get("CI"):
        pytest.fail(unavailable_reason() or "", pytrace=False)
    pytest.skip(unavailable_reason() or "", allow_module_level=True)

FAST = SandboxLimits(wall_s=4, cpu_s=2, memory_mb=256, processes=16, file_mb=4, output_bytes=4000)


def run(code: str, limits: SandboxLimits = FAST):
    return asyncio.run(run_python(code, limits))


def test_ordinary_code_runs_and_both_streams_come_back():
    result = run("import sys\nprint(sum(range(10)))\nprint('warn', file=sys.stderr)")
    assert result.ok and result.stdout == "45\n" and result.stderr == "warn\n"
    assert result.summary() == "The code ran to the end."


def test_no_network_not_even_loopback():
    result = run("import socket\nsocket.create_connection(('127.0.0.1', 6379), 1)")
    assert not result.ok
    assert "Connection refused" in result.stderr or "unreachable" in result.stderr


def test_no_host_files():
    code = (
        "import os\n"
        "print([p for p in ('/work', '/root', '/home', '/etc/passwd', '/proc/1/root/work')"
        " if os.path.exists(p)])\n"
        "print(os.getuid())\n"
        "open(os.path.expanduser('~/.ssh/id_rsa'))"
    )
    result = run(code)
    assert result.stdout.splitlines() == ["[]", "65534"]  # nothing of the host; nobody
    assert "FileNotFoundError" in result.stderr


def test_a_fork_bomb_is_contained_and_stopped(made_cgroups):
    result = run(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    )
    assert result.ended == "timed_out" and "time limit" in result.summary()
    if made_cgroups:  # the kernel removes a cgroup only once no process is left in it
        assert not [leaf for leaf in made_cgroups[0].leaves if leaf.exists()]
    else:  # no cgroup of its own (not root): no sandboxed Python is left on the host
        assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_nobody_python(p)]


def _is_nobody_python(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return "\nUid:\t65534" in status and b"python3" in cmdline and "State:\tZ" not in status


def test_a_memory_bomb_fails_inside_the_sandbox():
    result = run("x = bytearray(10 * 1024 ** 3)")
    assert result.exit_code == 1 and "MemoryError" in result.stderr


def test_printing_forever_is_cut_at_the_output_limit():
    result = run("while True:\n    print('x' * 100)")
    assert result.ended == "output_limit" and result.truncated
    assert len(result.stdout) <= FAST.output_bytes
    assert "output limit" in result.summary()


def test_sleeping_forever_is_stopped_at_the_wall_clock_limit():
    result = run("import time\ntime.sleep(600)")
    assert result.ended == "timed_out" and result.duration_ms < 8000


def test_spinning_is_stopped_at_the_cpu_limit():
    result = run("while True:\n    pass", SandboxLimits(wall_s=10, cpu_s=1))
    assert result.ended == "exited" and "limit" in result.summary()
    assert result.duration_ms < 8000


def test_a_huge_file_is_refused():
    result = run("open('/tmp/big', 'wb').write(b'0' * 50_000_000)")
    assert "File too large" in result.stderr or "No space left" in result.stderr


def test_without_bubblewrap_the_tool_says_so(monkeypatch):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "bwrap" else real(name))
    result = run("print('never runs')")
    assert result.ended == "unavailable" and "apt-get install bubblewrap" in result.summary()
    assert result.stdout == ""


def test_a_supervision_that_never_returns_is_ended_past_the_wall_limit(monkeypatch):
    """The last guard: whatever wait inside the supervision hangs (a pipe held open,
    a reap that never comes), the call returns `timed_out` soon after its wall limit
    and its processes are gone, so no run waits on the sandbox forever."""
    from chat.engine.tools import sandbox

    seen = []

    async def never_returns(process, *args):
        seen.append(process)
        await asyncio.Event().wait()

    monkeypatch.setattr(sandbox, "_supervise", never_returns)
    monkeypatch.setattr(sandbox, "SUPERVISION_GRACE_S", 1.0)
    result = run("import time\ntime.sleep(600)", SandboxLimits(wall_s=1, cpu_s=1))
    assert result.ended == "timed_out" and result.duration_ms < 6000
    assert seen and seen[0].returncode is not None  # killed and reaped
