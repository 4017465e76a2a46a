"""The sandbox's hardening, on the real bubblewrap and the machine's real cgroups: a
cancelled run leaves nothing behind, one run's processes cannot starve another's,
every writable filesystem is capped, and no namespace can be made inside."""

import asyncio
import os
import platform
import time
from pathlib import Path

import pytest

from chat.engine.tools import cgroup
from chat.engine.tools.sandbox import SandboxLimits, run_python, unavailable_reason

if unavailable_reason():
    if os.environ.get("CI"):
        pytest.fail(unavailable_reason() or "", pytrace=False)
    pytest.skip(unavailable_reason() or "", allow_module_level=True)

MB = 1024 * 1024


def cgroups_writable() -> bool:
    probe = cgroup.RunCgroup.create(8, 64 * MB)
    if probe is None:
        return False
    asyncio.run(probe.remove())
    return True


needs_cgroups = pytest.mark.skipif(
    not os.environ.get("CI") and not cgroups_writable(),
    reason="no writable cgroup here (not root, no delegation): the per-run budget is off",
)


_made: list = []  # the running test's cgroups, as the `made_cgroups` fixture records them


@pytest.fixture(autouse=True)
def _own_cgroups(made_cgroups):
    _made.append(made_cgroups)
    yield
    _made.clear()


def leaves() -> dict[str, Path]:
    """This test's sandbox cgroups still on the machine, by name: the pids leaf on v1,
    the leaf on v2. Another pass's runs may have theirs beside them: not counted."""
    if (cgroup.ROOT / "cgroup.controllers").exists():
        parent = Path(
            os.environ.get("FUSIONROOM_SANDBOX_CGROUP") or cgroup.ROOT / "fusionroom-sandbox"
        )
    else:
        parent = cgroup.ROOT / "pids" / (cgroup._own_path("pids") or "/").lstrip("/")
    ours = {run.leaves[0].name for runs in _made for run in runs}
    return {leaf.name: leaf for leaf in parent.glob("fusionroom-sandbox-*") if leaf.name in ours}


def memory_of(name: str) -> int:
    """What the run's cgroup is charged for (tmpfs pages included)."""
    if (cgroup.ROOT / "cgroup.controllers").exists():
        return int((leaves()[name] / "memory.current").read_text())
    own = (cgroup._own_path("memory") or "/").lstrip("/")
    return int((cgroup.ROOT / "memory" / own / name / "memory.usage_in_bytes").read_text())


def shmem_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem in /proc/meminfo")


def pids_in(leaf: Path) -> set[int]:
    return {int(p) for p in (leaf / "cgroup.procs").read_text().split()}


async def until(condition, timeout_s: float, what: str):
    """Wait for `condition()` to be true (checked every 20 ms), at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.02)
    return result


HOLD_SHM = """
import os, time
chunk = b"x" * (1024 * 1024)
with open("/dev/shm/held", "wb") as f:
    for _ in range(300):
        f.write(chunk)
for _ in range(2):
    if os.fork() == 0:
        time.sleep(600)
time.sleep(600)
"""


@needs_cgroups
def test_a_cancelled_run_ends_its_processes_and_frees_its_memory_within_two_seconds():
    limits = SandboxLimits(wall_s=120, memory_mb=512, file_mb=320, shm_mb=320)

    async def scenario():
        before = set(leaves())
        run = asyncio.create_task(run_python(HOLD_SHM, limits))
        name = await until(
            lambda: next((n for n in set(leaves()) - before if memory_of(n) >= 300 * MB), None),
            60,
            "the run holds 300 MB of /dev/shm",
        )
        leaf = leaves()[name]
        processes = await until(lambda: len(pids_in(leaf)) >= 3 and pids_in(leaf), 30, "forks")
        held = shmem_bytes()
        cancelled_at = time.monotonic()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await until(
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in processes),
            2,
            "every process of the run is gone",
        )
        await until(lambda: name not in leaves(), 2, "the run's cgroup is removed")
        await until(lambda: shmem_bytes() <= held - 250 * MB, 2, "the 300 MB of /dev/shm is back")
        assert time.monotonic() - cancelled_at < 2

    asyncio.run(scenario())


FORK_AND_SLEEP = """
import os, time
for _ in range(29):
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
print("forked", flush=True)
time.sleep(600)
"""


@needs_cgroups
def test_thirty_forking_runs_at_once_leave_space_for_a_thirty_first():
    async def scenario():
        before = set(leaves())
        forkers = [
            asyncio.create_task(run_python(FORK_AND_SLEEP, SandboxLimits(wall_s=300)))
            for _ in range(30)
        ]

        def all_forked():
            new = [leaf for n, leaf in leaves().items() if n not in before]
            return len([leaf for leaf in new if len(pids_in(leaf)) >= 30]) >= 30

        try:
            await until(all_forked, 240, "30 runs, each with 29 children")
            assert not any(task.done() for task in forkers)
            result = await run_python("print('still conversation')", SandboxLimits(wall_s=60))
            assert result.ok, result.stderr
            assert result.stdout == "still conversation\n"
        finally:
            for task in forkers:
                task.cancel()
            await asyncio.gather(*forkers, return_exceptions=True)
        assert not set(leaves()) - before

    asyncio.run(scenario())


WRITE_A_GIGABYTE = """
import errno
chunk = b"x" * (1024 * 1024)
written = 0
try:
    with open("/dev/shm/big", "wb") as f:
        for _ in range(1024):
            f.write(chunk)
            f.flush()
            written += len(chunk)
except OSError as error:
    print(errno.errorcode[error.errno], written)
"""


def test_a_gigabyte_written_to_dev_shm_ends_at_its_cap():
    # A per-file limit as large as the write, so only /dev/shm's own size can stop it.
    limits = SandboxLimits(wall_s=30, file_mb=1024, shm_mb=64)
    result = asyncio.run(run_python(WRITE_A_GIGABYTE, limits))
    assert result.ok, result.stderr
    code, written = result.stdout.split()
    assert code == "ENOSPC"
    assert 32 * MB <= int(written) <= 64 * MB


def test_the_root_and_dev_are_read_only_and_tmp_is_capped():
    code = """
import errno
for path in ("/x", "/dev/x", "/usr/x"):
    try:
        open(path, "w")
        print(path, "written")
    except OSError as error:
        print(path, errno.errorcode[error.errno])
written = 0
try:
    for i in range(64):
        with open(f"/tmp/{i}", "wb") as f:
            f.write(b"x" * (1024 * 1024))
        written += 1
except OSError as error:
    print("/tmp", errno.errorcode[error.errno], written)
"""
    result = asyncio.run(run_python(code, SandboxLimits(wall_s=30, file_mb=8)))
    assert result.ok, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["/x EROFS", "/dev/x EROFS", "/usr/x EROFS"]
    label, code_name, megabytes = lines[3].split()
    assert (label, code_name) == ("/tmp", "ENOSPC") and int(megabytes) <= 8


NAMESPACES = """
import ctypes, errno, os, shutil, subprocess
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x40000000, 17

def outcome(returned):
    return "allowed" if returned >= 0 else errno.errorcode[ctypes.get_errno()]

print("unshare", outcome(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET)))
print("clone", outcome(libc.syscall(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)))
print("mount", outcome(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
print("keyctl", outcome(libc.syscall(250, 0, 0, 0, 0, 0)))
print("unshare -U", subprocess.run(["unshare", "-U", "true"]).returncode)
if shutil.which("bwrap"):
    nested = subprocess.run(["bwrap", "--unshare-user", "--ro-bind", "/", "/", "true"])
    print("bwrap", nested.returncode)
print("fork", subprocess.run(["true"]).returncode)
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="raw x86-64 system call numbers")
def test_no_namespace_can_be_made_inside_the_sandbox():
    result = asyncio.run(run_python(NAMESPACES, SandboxLimits(wall_s=30)))
    assert result.ok, result.stderr
    seen = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines())
    assert seen["unshare"] == "EPERM"
    assert seen["clone"] == "EPERM"
    assert seen["mount"] == "EPERM"
    assert seen["keyctl"] == "EPERM"
    assert seen["unshare -U"] != "0"
    assert seen.get("bwrap", "1") != "0"
    assert Path("/usr/bin/bwrap").exists() and "bwrap" in seen  # /usr is bound inside
    assert seen["fork"] == "0"  # ordinary processes still start (clone3 falls back)


@needs_cgroups
def test_a_run_that_ends_on_its_own_leaves_no_cgroup_behind():
    before = set(leaves())
    result = asyncio.run(run_python("import os\nos.fork()\nprint('done')", SandboxLimits()))
    assert result.ok
    assert not set(leaves()) - before
