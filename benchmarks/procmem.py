"""Peak memory of a whole process tree, for comparing frameworks that fork helpers (Ray's GCS, raylet,
workers) with single-process ones: every ~50 ms, sum the RSS of a root process and all its descendants.

Processes once seen stay counted while alive even if re-parented (e.g. Ray daemons orphaned while the
driver shuts down). Summed RSS counts shared pages (libraries, Ray's object store) once per process, so
it overstates the physical total; it is the conventional, easily reproduced figure. Needs only psutil.

    with PeakTreeRSS() as m:            # this process and its children
        ...
    m.peak_rss_mb

    run_measured([sys.executable, "x.py"])  # {"wall_s", "peak_rss_mb", "returncode", "stdout", ...}
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import psutil

MB = 1024 * 1024


class PeakTreeRSS:
    """Background sampler of the summed RSS of `pid` (default: this process) and all its descendants."""

    def __init__(self, pid: int | None = None, interval: float = 0.05) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.interval = interval
        self.peak_rss_bytes = 0
        self.peak_processes = 0
        self.samples = 0
        self._root = psutil.Process(self.pid)
        self._seen: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_bytes / MB

    def sample(self) -> int:
        """Take one sample now; return the summed RSS in bytes (also folded into the peak)."""
        try:
            tree = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:  # root gone: fall back to what we have seen
            tree = []
        for p in tree:
            self._seen.setdefault(p.pid, p)  # keep the first object: it pins the create time
        total, alive = 0, 0
        for pid, p in list(self._seen.items()):
            try:
                if not p.is_running():  # exited, or pid reused by an unrelated process
                    raise psutil.NoSuchProcess(pid)
                total += p.memory_info().rss
                alive += 1
            except psutil.Error:
                del self._seen[pid]
        self.samples += 1
        if total > self.peak_rss_bytes:
            self.peak_rss_bytes, self.peak_processes = total, alive
        return total

    def alive_pids(self) -> list[int]:
        """Processes of the tree (including re-parented ones) still running at the last sample."""
        return sorted(self._seen)

    def kill_alive(self, exclude: int | None = None) -> None:
        """SIGKILL the tree's processes still alive (via the pinned objects: never a reused pid)."""
        for pid, p in list(self._seen.items()):
            if pid != exclude:
                try:
                    p.kill()
                except psutil.Error:
                    pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> PeakTreeRSS:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="PeakTreeRSS", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> PeakTreeRSS:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.sample()
        self.stop()


def _kill_tree(proc: psutil.Process, extra: Sequence[int] = ()) -> None:
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        procs = []
    for pid in extra:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            pass
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)


def run_measured(
    cmd: list[str],
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    interval: float = 0.05,
    linger: float = 10.0,
) -> dict[str, Any]:
    """Run `cmd` to completion, sampling its process tree's summed RSS; return wall time, peak and output.

    `env` replaces the environment (as in subprocess). On timeout the whole tree is killed and
    "timed_out" is True. After the root exits, waits up to `linger` s for descendants it left behind
    (Ray daemons) so the next measurement starts clean; "leftover_pids" lists any still alive (killed).
    """
    t0 = time.perf_counter()
    popen = subprocess.Popen(
        cmd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    meter = PeakTreeRSS(popen.pid, interval).start()
    timed_out = False
    try:
        stdout, stderr = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_tree(psutil.Process(popen.pid), meter.alive_pids())
        stdout, stderr = popen.communicate()
    wall = time.perf_counter() - t0
    meter.stop()
    deadline = time.monotonic() + linger
    while meter.alive_pids() and time.monotonic() < deadline:
        meter.sample()
        time.sleep(0.2)
    leftovers = [pid for pid in meter.alive_pids() if pid != popen.pid]
    meter.kill_alive(exclude=popen.pid)
    return {
        "wall_s": wall,
        "peak_rss_mb": meter.peak_rss_mb,
        "peak_processes": meter.peak_processes,
        "returncode": popen.returncode,
        "stdout": stdout,
        "stderr": stderr,
        "timed_out": timed_out,
        "leftover_pids": leftovers,
    }
