"""The fleet: a bounded pool over the hosts of a stage, phase by phase.

Fabric's ThreadingGroup starts one thread per host with no bound and keys results
by resolved address, merging hosts that share one; here each host gets its own
Connection (never used by two threads at once), at most `parallel` hosts work at
a time, and results are keyed by inventory name. A phase returns only when every
host has finished it: that is the barrier between phases. One pool of threads serves
every phase of a run, where a pool per phase started a thread per host per phase (44
for a deploy of 10 hosts; each thread started is C memory the allocator may keep).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from fabric import Config as FabricConfig

from .connection import Shared, connect
from .dryrun import DryRemote
from .inventory import HostConfig
from .memory import give_back_memory
from .remote import Remote
from .report import Reporter

T = TypeVar("T")
WIDE = 128  # workers for the phases that send one short command per host


class Fleet:
    def __init__(
        self,
        hosts: Sequence[HostConfig],
        reporter: Reporter,
        *,
        parallel: int | None = None,
        fabric_config: FabricConfig | None = None,
        dry: bool = False,
    ) -> None:
        self.hosts = {h.name: h for h in hosts}
        self.dry = dry
        self.reporter = reporter
        self.parallel = max(1, parallel or min(h.parallel for h in hosts))
        # Cloned before any Connection exists: a shared Config accumulates key files.
        self._base = (fabric_config or FabricConfig()).clone()
        self._shared = Shared()
        self._remotes: dict[str, Remote] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._inside = threading.local()  # .host: the host this thread works for, if any
        # seconds each host spent in each phase, for the summary table
        self.timings: dict[str, dict[str, float]] = {name: {} for name in self.hosts}

    @property
    def names(self) -> list[str]:
        return list(self.hosts)

    def remote(self, name: str) -> Remote:
        with self._lock:
            if name not in self._remotes:
                host = self.hosts[name]
                conn = connect(host, self._base, self._shared)
                kind = DryRemote if self.dry else Remote
                self._remotes[name] = kind(host, conn)
                remote = self._remotes[name]
                remote.out = lambda line, n=name: self.reporter.line(f"[{n}] {line}")
                remote.err = lambda line, n=name: self.reporter.error(f"[{n}] {line}")
            return self._remotes[name]

    def peek(self, name: str) -> Remote | None:
        """The host's Remote if it was ever connected (dry-run records live there)."""
        with self._lock:
            return self._remotes.get(name)

    def each(
        self,
        fn: Callable[[Remote], T],
        names: Iterable[str] | None = None,
        *,
        phase: str = "",
        wide: bool = False,
    ) -> tuple[dict[str, T], dict[str, BaseException]]:
        """Run `fn` on each host (at most `parallel` at once); wait for all of them.

        `wide` phases (lock, go-live, revert, finish) are one short command per host:
        they run on every host at once (up to WIDE), so the whole stage switches in
        one round of SSH round trips instead of `hosts / parallel` rounds.
        """
        names = list(self.hosts if names is None else names)
        if getattr(self._inside, "host", None) is not None:
            return self._each_here(fn, names, phase)
        results: dict[str, T] = {}
        failures: dict[str, BaseException] = {}
        waiting = iter(names)
        running: dict[Future[T], str] = {}

        def start(count: int) -> None:
            for name in itertools.islice(waiting, count):
                # Recorded before it is handed to a thread: an interrupt between the two
                # (Ctrl-C lands between any two bytecodes) cannot leave a host working
                # that the wait below does not know of.
                future: Future[T] = Future()
                running[future] = name
                work = self._workers().submit(self._fulfil, future, fn, name, phase)
                work.add_done_callback(functools.partial(_cancelled_with, future))

        try:
            start(max(self.parallel, WIDE) if wide else self.parallel)
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    try:
                        results[name] = future.result()
                    except Exception as exc:
                        failures[name] = exc
                start(len(done))
        except BaseException:
            # Interrupted: hosts not started yet are not started (a queued one is
            # cancelled); running ones finish their current step (a thread cannot be
            # killed), then the caller cleans up.
            # A cancelled future is not done for `wait` until a thread takes it (and
            # skips it): wait only for the hosts that did start.
            wait([future for future in running if not future.cancel()])
            raise
        # Keep inventory order, whatever order the hosts finished in.
        return (
            {n: results[n] for n in names if n in results},
            {n: failures[n] for n in names if n in failures},
        )

    def _each_here(
        self, fn: Callable[[Remote], T], names: list[str], phase: str
    ) -> tuple[dict[str, T], dict[str, BaseException]]:
        """`each` called by a host's own work (its unlock after a failed hook): run in
        this thread, host after host. The pool's threads may all be busy with the outer
        phase, each waiting for this call: a task queued behind them would never run."""
        results: dict[str, T] = {}
        failures: dict[str, BaseException] = {}
        for name in names:
            try:
                results[name] = self._call(fn, name, phase)
            except Exception as exc:
                failures[name] = exc
        return results, failures

    def _workers(self) -> ThreadPoolExecutor:
        """The run's threads, started as hosts need them and kept for the next phase.
        One per host at most: phases run at once (`Run.first_then_the_rest`) on
        different hosts, so a host's work never waits for a free thread."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=len(self.hosts), thread_name_prefix="atomicdeploy"
                )
            return self._pool

    def _fulfil(self, future: Future[T], fn: Callable[[Remote], T], name: str, phase: str) -> None:
        """Run host `name`'s work in a pool thread and settle `future` with its outcome;
        nothing, if `each` cancelled it (interrupted) before this thread took it."""
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = self._call(fn, name, phase)
        except BaseException as exc:
            future.set_exception(exc)
            # The traceback holds this frame: without this, future -> exception ->
            # frame -> future is a cycle, and the host's connection lives until the
            # cyclic collector runs (Python's own executor breaks it the same way).
            del future
        else:
            future.set_result(result)

    def _call(self, fn: Callable[[Remote], T], name: str, phase: str) -> T:
        outer, self._inside.host = getattr(self._inside, "host", None), name
        try:
            if not phase:
                return fn(self.remote(name))
            with self.timing(name, phase):
                return fn(self.remote(name))
        finally:
            self._inside.host = outer

    @contextlib.contextmanager
    def timing(self, name: str, phase: str) -> Iterator[None]:
        """Count the block as host `name`'s time in `phase`, for the summary and the live
        table (a run whose phases follow each other within one pass per host uses it)."""
        start = self.started(name, phase)
        ok = False
        try:
            yield
            ok = True
        finally:
            self.spent(name, phase, start, ok=ok)

    def started(self, name: str, phase: str) -> float:
        """Host `name` starts `phase` now (the live table says so); returns the time."""
        self.reporter.progress(name, phase, "running")
        return time.monotonic()

    def spent(self, name: str, phase: str, start: float, *, ok: bool = True) -> None:
        """Count the time since `start` as host `name`'s time in `phase`."""
        spent = time.monotonic() - start
        self.timings[name][phase] = self.timings[name].get(phase, 0.0) + spent
        self.reporter.progress(name, phase, f"{'done' if ok else 'failed'} ({spent:.1f}s)")

    def close(self) -> None:
        """End the run's threads and connections, then collect its garbage.

        paramiko's transports are reference cycles (each holds a table of its own
        methods), and so are its host key lookups: they hold a run's buffers and ciphers
        until the cyclic collector runs, which is when enough new objects were made. A
        process that deploys again and again (a CI runner, a chat bot) then held several
        runs at once, and its memory grew with them. One collection here (a few ms)
        frees them as the run ends."""
        pool, self._pool = self._pool, None
        try:
            if pool is not None:  # after an interrupt, hosts may still be running: their
                pool.shutdown(wait=False, cancel_futures=True)  # commands end as we hang up
            self._hang_up_and_close()
            if pool is not None:
                pool.shutdown(wait=True)
        finally:
            gc.collect()
            give_back_memory()

    def _hang_up_and_close(self) -> None:
        """Every connection hung up first, then closed: their threads end together. (A
        function of its own: none of them is left in a local when the run collects.)"""
        remotes = list(self._remotes.values())
        self._remotes.clear()
        for remote in remotes:
            with contextlib.suppress(Exception):
                remote.hang_up()
        for remote in remotes:
            with contextlib.suppress(Exception):
                remote.close()


def _cancelled_with(future: Future[T], work: Future[None]) -> None:
    """A queued host's work that close() cancelled (it cancels what has not started):
    cancel its future too, and tell its waiter now, since no thread ever will."""
    if work.cancelled() and future.cancel():
        future.set_running_or_notify_cancel()
