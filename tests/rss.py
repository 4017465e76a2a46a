"""This process's resident memory, sampled while something runs.

A test of a bound on memory looks at the peak during the work: what is left after
it says little, since freed memory is returned to the system late or not at all.
"""

import threading
import time


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class PeakRSS:
    """with PeakRSS() as memory: ...  then memory.growth: peak minus the start."""

    def __init__(self, every_s: float = 0.002):
        self.every_s = every_s
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_bytes())
            time.sleep(self.every_s)

    def __enter__(self) -> "PeakRSS":
        self.start = self.peak = resident_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.start
