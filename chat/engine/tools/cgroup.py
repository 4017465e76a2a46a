"""A cgroup of its own for each sandboxed run: its process and memory budget, and the
handle that ends everything it started.

All sandboxes run as the same uid, so a per-uid limit (RLIMIT_NPROC) is one budget
shared by every run on the host: one run's 29 sleeping children made everyone else's
code fail to start. A cgroup leaf per run gives each run its own `pids.max` and
`memory.max` (tmpfs pages written by the run are charged to it too), and killing
every process listed in it ends the run whatever it forked or however it detached.

Where the leaf is made:
- cgroup v2 (one unified hierarchy at /sys/fs/cgroup): under
  /sys/fs/cgroup/fusionroom-sandbox, or `FUSIONROOM_SANDBOX_CGROUP` (a directory
  inside the cgroup2 mount, e.g. one systemd delegated to the worker), with `pids`
  and `memory` switched on in its subtree_control.
- cgroup v1 (separate `pids` and `memory` hierarchies): a leaf beside nothing else,
  directly under the worker's own cgroup in each hierarchy, so the run stays inside
  whatever limits the worker itself is held to.
When neither is writable (no root, no delegation) `RunCgroup.create` returns None and
says so in the log once; the sandbox then falls back to its per-uid rlimits.

The child moves itself into the leaf before it starts bubblewrap (`enter_prefix`):
a tiny /bin/sh writes its own pid to each `cgroup.procs` and only then execs, so no
line of the untrusted program ever runs outside the cgroup.
"""

import asyncio
import contextlib
import logging
import os
import signal
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path("/sys/fs/cgroup")
_warned = False

# Runs its arguments up to "--" as cgroup.procs files to join, then execs the rest.
_ENTER = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
ENTER_FAILED = 125  # the exit status when the child could not join its cgroup


def _own_path(controller: str | None) -> str | None:
    """This process's cgroup path in the v1 hierarchy of `controller`, or in v2 (None)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller is None and controllers == "":
                return path
            if controller is not None and controller in controllers.split(","):
                return path
    return None


def _v2_parent() -> Path | None:
    if not (ROOT / "cgroup.controllers").exists():
        return None
    parent = Path(os.environ.get("FUSIONROOM_SANDBOX_CGROUP") or ROOT / "fusionroom-sandbox")
    parent.mkdir(exist_ok=True)
    enabled = (parent / "cgroup.subtree_control").read_text().split()
    if not {"pids", "memory"} <= set(enabled):
        (parent / "cgroup.subtree_control").write_text("+pids +memory")
    return parent


class RunCgroup:
    """One run's leaf: one directory on v2, one per controller (pids, memory) on v1."""

    def __init__(self, leaves: list[Path], v2: bool):
        self.leaves = leaves
        self.v2 = v2

    @classmethod
    def create(cls, processes: int, memory_bytes: int) -> "RunCgroup | None":
        name = f"fusionroom-sandbox-{uuid.uuid4().hex[:12]}"
        made: list[Path] = []
        try:
            if parent := _v2_parent():
                leaf = parent / name
                leaf.mkdir()
                made.append(leaf)
                (leaf / "pids.max").write_text(str(processes))
                (leaf / "memory.max").write_text(str(memory_bytes))
                with contextlib.suppress(FileNotFoundError):  # no swap accounting
                    (leaf / "memory.swap.max").write_text("0")
                return cls(made, v2=True)
            for controller in ("pids", "memory"):
                own = _own_path(controller)
                if own is None or not (ROOT / controller / "cgroup.procs").exists():
                    raise OSError(f"no cgroup v1 {controller} hierarchy")
                leaf = ROOT / controller / own.lstrip("/") / name
                leaf.mkdir()
                made.append(leaf)
            pids, memory = made
            (pids / "pids.max").write_text(str(processes))
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            with contextlib.suppress(FileNotFoundError):  # memory+swap, where accounted
                (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            return cls(made, v2=False)
        except OSError as error:
            for leaf in made:
                with contextlib.suppress(OSError):
                    leaf.rmdir()
            _warn_once(error)
            return None

    def enter_prefix(self) -> list[str]:
        """The command prefix that moves the child into this cgroup, then execs."""
        procs = [str(leaf / "cgroup.procs") for leaf in self.leaves]
        return ["/bin/sh", "-c", _ENTER, "sh", *procs, "--"]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for leaf in self.leaves:
            with contextlib.suppress(OSError, ValueError):
                found |= {int(p) for p in (leaf / "cgroup.procs").read_text().split()}
        return found

    def kill(self) -> None:
        """SIGKILL every process in the run (cgroup.kill where the kernel has it)."""
        if self.v2 and (self.leaves[0] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.leaves[0] / "cgroup.kill").write_text("1")
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def remove(self, timeout_s: float = 5.0) -> bool:
        """Kill until nothing is left, then remove the leaf. False if it would not go."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # Killing is repeated: a process forked between reading cgroup.procs and the
        # kill is in the next reading (pids.max bounds how many there can be).
        while self.pids() and loop.time() < deadline:
            self.kill()
            await asyncio.sleep(0.01)
        removed = True
        for leaf in self.leaves:
            while True:
                try:
                    leaf.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while the last ones are being reaped
                    if loop.time() >= deadline:
                        log.error("sandbox cgroup %s could not be removed", leaf)
                        removed = False
                        break
                    self.kill()
                    await asyncio.sleep(0.01)
        return removed


def _warn_once(error: OSError) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "run_python: no cgroup of its own for each run (%s). Every sandbox shares the "
            "per-uid process limit of uid 65534, so one run's processes can keep another's "
            "from starting. Run the worker as root or delegate a cgroup v2 subtree "
            "(FUSIONROOM_SANDBOX_CGROUP); see docs/SEAT_TOOLS.md.",
            error,
        )
