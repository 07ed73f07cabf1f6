"""Interleaved timing and peak-memory sampling shared by the benchmark scripts."""

import ctypes
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakRss:
    """Highest RSS seen (sampled every ``interval`` s) while the context is open, minus
    the RSS when it opened: what the enclosed call added, transient buffers included."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRss":
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def added_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def cpu_usage() -> tuple[float, float, int]:
    """This process's ``(user CPU s, kernel CPU s, minor page faults)`` so far, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def interleave(fns: dict[str, Callable[[], object]], *, reps: int, warmup: int = 1) -> dict:
    """Runs every function ``warmup`` times, then ``reps`` rounds of one call each, the order
    rotating every round (so no contender always follows the same one).

    Around every timed call it also reads the process's CPU accounting: the user and kernel
    CPU time of all threads and the minor page faults (a fresh page touched for the first
    time). The contenders run one at a time and each returns only when its work is done, so
    the differences belong to that call (give or take OpenMP threads still spinning after
    the previous one).

    Returns:
      ``{name: {'median_s', 'min_s', 'max_s', 'times_s', 'user_s', 'sys_s',
      'minor_faults'}}``; the last three are medians per call.
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times = {k: [] for k in names}
    usage = {k: [] for k in names}
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            u0, t0 = cpu_usage(), time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
            usage[name].append([b - a for a, b in zip(u0, cpu_usage(), strict=True)])
    out = {}
    for k, v in times.items():
        user, sys_, faults = (statistics.median(col) for col in zip(*usage[k], strict=True))
        out[k] = {
            "median_s": statistics.median(v),
            "min_s": min(v),
            "max_s": max(v),
            "times_s": v,
            "user_s": user,
            "sys_s": sys_,
            "minor_faults": faults,
        }
    return out


def per_step(result: dict, steps: int) -> dict:
    """One contender's :func:`interleave` result for calls of ``steps`` steps, per step."""
    out = {k: v / steps for k, v in result.items() if k != "times_s"}
    return dict(out, times_s=[t / steps for t in result["times_s"]])


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def peak_memory(fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """RSS added during one call of each function, MiB (call this after the timing).

    glibc keeps freed blocks for reuse and raises its mmap threshold as large blocks come
    and go, so a framework's second step often adds no RSS at all. Fixing the threshold at
    1 MiB (``mallopt``) and trimming the heap before each call makes every large buffer a
    fresh mapping that is returned when freed, so the RSS high-water mark during the call
    is what the call needs on top of what was live before. Both frameworks are measured
    the same way; the setting stays for the rest of the process, which is why it is done
    after the timing, not during it.
    """
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    out = {}
    for name, fn in fns.items():
        fn()  # allocations made under the new threshold from here on
        libc.malloc_trim(0)
        with PeakRss() as mem:
            fn()
        out[name] = mem.added_mib
    return out


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
