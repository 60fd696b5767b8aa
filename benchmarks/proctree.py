"""Running one measured child process: its wall time, exit status and the peak RSS of its whole process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 0.05


@dataclass(frozen=True)
class ChildResult:
    """What the parent saw of one child process."""

    returncode: int
    wall_seconds: float
    peak_tree_rss_bytes: int  # the largest sum of VmRSS over the child and its descendants, sampled
    max_process_rss_bytes: int  # the largest VmHWM (the kernel's per-process high-water mark) seen in the tree
    samples: int
    cpu_seconds: float  # user + system time of the child and the descendants it waited for
    load_before: float  # the machine's 1-minute load average when the child started: was it shared?
    log: Path

    @property
    def peak_rss_bytes(self) -> int:
        # The sampled sum can miss a spike shorter than the sampling interval; the kernel's per-process
        # high-water mark cannot, so the larger of the two is the honest lower bound of the tree's peak.
        return max(self.peak_tree_rss_bytes, self.max_process_rss_bytes)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _parents() -> dict[int, int]:
    """pid -> ppid of every process visible in /proc."""
    links: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # the process ended between the listing and the read
            continue
        # The command name in parentheses may itself hold spaces or parentheses; the fields after the last
        # ')' are fixed: state, ppid, ...
        fields = stat[stat.rindex(")") + 2 :].split()
        links[int(entry.name)] = int(fields[1])
    return links


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants, found through the ppid links in /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def memory_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of one process: its resident set now and its high-water mark since it started its
    program; (0, 0) if it is gone or a zombie (which has neither line)."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, hwm


def tree_memory_bytes(root: int) -> tuple[int, int]:
    """The sum of VmRSS over `root` and its descendants, and the largest VmHWM among them."""
    figures = [memory_bytes(pid) for pid in tree_pids(root)]
    return sum(rss for rss, _ in figures), max((hwm for _, hwm in figures), default=0)


def run_measured(
    command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path, timeout_seconds: float
) -> ChildResult:
    """Run `command` to its end, sampling its process tree's RSS every SAMPLE_SECONDS; stdout and stderr go
    to `log`. On timeout the child's whole process group is killed and the result has returncode -9."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peak = high_water = samples = 0
    load_before = os.getloadavg()[0]
    with open(log, "wb") as out:
        started = time.perf_counter()
        # A session of its own, so that a timeout can kill exactly this child and what it started.
        child = subprocess.Popen(
            list(command), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        while True:
            # wait4 rather than Popen.wait: it also returns the CPU times. Its ru_maxrss is no use here: the
            # kernel starts a spawned child's count at the RSS of this process, the harness, at the spawn.
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            tree_rss, tree_high_water = tree_memory_bytes(child.pid)
            peak, high_water = max(peak, tree_rss), max(high_water, tree_high_water)
            samples += 1
            if time.perf_counter() - started > timeout_seconds:
                os.killpg(child.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(SAMPLE_SECONDS)
        wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)  # tell Popen the child is reaped
    return ChildResult(
        returncode=child.returncode,
        wall_seconds=wall,
        peak_tree_rss_bytes=peak,
        max_process_rss_bytes=high_water,
        samples=samples,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        load_before=load_before,
        log=log,
    )
