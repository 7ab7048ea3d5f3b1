"""The controller's memory between runs: what glibc keeps of it, and how to have it back.

A run's threads (a worker and an SSH transport per host) allocate from glibc's per-thread
arenas, 8 per core. When a run ends, each arena keeps the free top of its heap for its next
allocation: all of it while it is below the trim threshold, else down to the top pad. The
threshold starts at 128 KiB and glibc raises it as large blocks are freed (408 KiB once
atomicdeploy is imported, read with gdb), the pad is 128 KiB, and `malloc_trim` leaves these
tops alone. A `fab` run is one process per deploy and never sees this. A process that deploys
again and again (a CI runner, a chat bot) does: measured with bench/soak.py on 10 hosts, it
held 2-3.3 MiB more after 100 to 300 runs than after the first, levelling off, though nothing
the runs made was left (the C heap in use and Python's blocks stayed level).
`keep_memory_flat` is for that process.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable
from typing import Any

# mallopt parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2


def give_back_memory() -> None:
    """Hand the run's freed memory back to the system (glibc's malloc_trim; elsewhere,
    nothing). Called as each run ends: the free pages between used blocks, in every arena,
    go back. Measured in bench/soak.py: 1.2-1.5 MiB less resident at each mark, for about
    2 ms per run."""
    trim = _libc_function("malloc_trim", ctypes.c_size_t)
    if trim is not None:
        trim(0)


def keep_memory_flat() -> bool:
    """Have glibc give freed memory back to the system at once, for the whole process:
    the trim threshold and top pad of every arena set to 0, then one trim.

    For a process that deploys again and again: its resident memory then stays level from
    the first run (bench/soak.py, 100 cycles on 10 hosts: 49.0 / 49.2 / 49.3 MiB at cycles
    1 / 50 / 100, against 49.9 / 51.4 / 52.0 without it), and the soak ran no slower (2.93
    s a cycle, against 2.94). Call it once, at the start. `MALLOC_TRIM_THRESHOLD_=0
    MALLOC_TOP_PAD_=0` in the environment does the same from the process's start, for a
    process whose environment you choose.

    The library never calls it on its own: it changes how every thread of the process
    allocates, and it stops glibc's sliding mmap threshold where it stands (a program that
    allocates and frees larger blocks in a loop may then map and unmap each one). Returns
    whether glibc took both settings: False off glibc (musl, macOS), where nothing changes.
    Under an allocator put in with LD_PRELOAD (jemalloc, tcmalloc) glibc takes them and
    they change nothing: that allocator has its own settings."""
    mallopt = _libc_function("mallopt", ctypes.c_int, ctypes.c_int)
    if mallopt is None:
        return False
    took = [mallopt(M_TRIM_THRESHOLD, 0), mallopt(M_TOP_PAD, 0)]
    give_back_memory()
    return all(took)


@functools.cache
def _libc_function(name: str, *argtypes: type) -> Callable[..., int] | None:
    """glibc's `name`, with its argument types; None where there is no such C library
    function (not Linux, musl, no C library to load)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function: Any = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):  # no such symbol (musl), or no C library to load
        return None
    function.argtypes, function.restype = list(argtypes), ctypes.c_int
    return function  # type: ignore[no-any-return]
