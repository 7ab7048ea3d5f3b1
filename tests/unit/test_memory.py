"""What the controller keeps of its memory between runs: the trim at each run's end, and
`keep_memory_flat` for a process that deploys again and again. The last test runs real
threads in a child process, so its allocator settings stay out of the suite's."""

from __future__ import annotations

import ctypes
import io
import os
import platform
import subprocess
import sys
from pathlib import Path

import atomicdeploy
from atomicdeploy import memory, runner
from atomicdeploy.inventory import HostConfig
from atomicdeploy.report import Reporter

ROOT = Path(__file__).resolve().parents[2]
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_a_run_gives_its_freed_memory_back_where_the_c_library_can(monkeypatch):
    """glibc's malloc_trim, called as a fleet closes; a C library without it is skipped."""
    calls = []
    monkeypatch.setattr(memory, "_libc_function", lambda *a: calls.append(a[0]) or (lambda p: 1))
    hosts = [HostConfig(name="web", deploy_path="/srv/app", hostname="h")]
    runner.Fleet(hosts, Reporter(io.StringIO(), io.StringIO(), live=False)).close()
    assert calls == ["malloc_trim"]
    monkeypatch.setattr(memory, "_libc_function", lambda *a: None)
    memory.give_back_memory()  # nothing to call: no error
    monkeypatch.undo()
    memory._libc_function.cache_clear()
    found = memory._libc_function("malloc_trim", ctypes.c_size_t)
    assert (found is not None) == GLIBC


def test_keep_memory_flat_sets_both_thresholds_to_zero_then_trims(monkeypatch):
    calls: list[tuple[str, tuple[int, ...]]] = []

    def libc(name: str, *argtypes: type):
        return lambda *args: calls.append((name, args)) or 1

    monkeypatch.setattr(memory, "_libc_function", libc)
    assert atomicdeploy.keep_memory_flat() is True
    assert calls == [
        ("mallopt", (memory.M_TRIM_THRESHOLD, 0)),
        ("mallopt", (memory.M_TOP_PAD, 0)),
        ("malloc_trim", (0,)),
    ]


def test_keep_memory_flat_says_so_where_it_cannot_apply(monkeypatch):
    monkeypatch.setattr(memory, "_libc_function", lambda *a: None)
    assert memory.keep_memory_flat() is False  # musl, macOS: nothing changed, no error
    monkeypatch.setattr(memory, "_libc_function", lambda *a: lambda *args: 0)
    assert memory.keep_memory_flat() is False  # glibc refused a setting


PROBE = r"""
import re, sys, threading
from atomicdeploy.memory import give_back_memory, keep_memory_flat

def thread_heaps():
    # Resident KiB of each of glibc's per-thread heaps (anonymous, aligned to 64 MiB).
    heaps, start = {}, None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = re.match(r"^([0-9a-f]+)-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$", line)
            if head:
                start, perms, path = int(head[1], 16), head[2], head[3].strip()
                if path or start % (64 << 20) or perms == "---p":
                    start = None
            elif start is not None and line.startswith("Rss:"):
                heaps[start] = heaps.get(start, 0) + int(line.split()[1])
    return heaps

def work():
    blocks = [bytes(2000) for _ in range(2000)]  # 4 MiB, from this thread's own arena
    del blocks

applied = keep_memory_flat() if sys.argv[1] == "flat" else None
before = thread_heaps()
thread = threading.Thread(target=work)
thread.start()
thread.join()
give_back_memory()  # what every run does as it ends
print(applied, sum(kib for at, kib in thread_heaps().items() if at not in before))
"""


def kept_by_a_finished_thread(mode: str) -> tuple[str, int]:
    # The allocator as glibc starts it: no setting of the suite's own environment.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    return out[0], int(out[1])


def test_with_keep_memory_flat_a_finished_threads_heap_is_given_back():
    """The cause of a long-lived controller's rise, on a real glibc: a thread's heap keeps
    its free top (trim threshold + top pad), which malloc_trim leaves alone. With
    keep_memory_flat it goes back to the system as the thread frees it."""
    applied, flat = kept_by_a_finished_thread("flat")
    _, default = kept_by_a_finished_thread("default")
    if not GLIBC:
        assert applied == "False"
        return
    assert applied == "True"
    assert flat <= 64, f"{flat} KiB left in the thread's heap"
    assert default >= flat + 64, f"glibc's defaults kept {default} KiB, with it {flat} KiB"
