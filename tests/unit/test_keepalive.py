"""The keepalive gives a silent host up after count_max unanswered intervals, never one that
answers, and one thread keeps the time for all of a run's connections (no hosts: stand-in
transports)."""

from __future__ import annotations

import threading
import time

from atomicdeploy.keepalive import Keepalives


class Transport:
    def __init__(self, answers: bool) -> None:
        self.answers, self.closed, self.asked = answers, threading.Event(), 0

    def is_active(self) -> bool:
        return not self.closed.is_set()

    def global_request(self, kind: str, wait: bool = True) -> None:
        assert kind == "keepalive@openssh.com" and wait
        self.asked += 1
        if not self.answers:
            self.closed.wait()  # as paramiko does: returns once the transport is gone

    def close(self) -> None:
        self.closed.set()


def test_a_silent_host_is_given_up_after_its_intervals():
    t = Transport(answers=False)
    alive = Keepalives().watch(t, 0.05, 3)  # type: ignore[arg-type]
    assert t.closed.wait(2)
    assert alive.silent == 0.05 * 4
    assert t.asked == 1  # one question at a time, unanswered


def test_a_host_that_answers_is_never_given_up():
    t = Transport(answers=True)
    alive = Keepalives().watch(t, 0.02, 2)  # type: ignore[arg-type]
    time.sleep(0.4)
    alive.stop()
    assert not t.closed.is_set() and alive.silent is None and t.asked >= 5


def clocks(before: frozenset[threading.Thread] = frozenset()) -> set[threading.Thread]:
    """The clock threads alive now, but those of `before` (other tests' may still end)."""
    return {t for t in threading.enumerate() if t.name == "atomicdeploy-alive"} - before


def test_one_thread_keeps_the_time_of_every_connection_and_ends_with_the_last():
    """Ten connections of a run: one clock thread. The silent ones are given up on time
    while the others go on being asked; the thread ends once the last one is closed."""
    before = frozenset(clocks())
    run = Keepalives()
    silent = [Transport(answers=False) for _ in range(3)]
    talking = [Transport(answers=True) for _ in range(7)]
    watched = [run.watch(t, 0.03, 2) for t in silent + talking]  # type: ignore[arg-type]
    assert len(clocks(before)) == 1
    for t in silent:
        assert t.closed.wait(2)
    assert [a.silent for a in watched[:3]] == [0.03 * 3] * 3
    time.sleep(0.2)
    assert all(not t.closed.is_set() and t.asked >= 3 for t in talking)
    assert len(clocks(before)) == 1
    for alive in watched[3:]:
        alive.stop()
    assert ended(before)
    late = run.watch(Transport(answers=True), 60, 2)  # type: ignore[arg-type]
    assert len(clocks(before)) == 1  # a clock again, for a connection opened later
    late.stop()
    assert ended(before)  # woken by the stop, not 60 s later at its next interval


def ended(before: frozenset[threading.Thread]) -> bool:
    deadline = time.monotonic() + 1
    while clocks(before) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not clocks(before)
