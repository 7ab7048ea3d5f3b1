"""The keepalive gives a silent host up after count_max unanswered intervals, never one that
answers (no hosts: a stand-in transport)."""

from __future__ import annotations

import threading
import time

from atomicdeploy.keepalive import Keepalive


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
    alive = Keepalive(t, 0.05, 3).start()  # type: ignore[arg-type]
    assert t.closed.wait(2)
    assert alive.silent == 0.05 * 4
    assert t.asked == 1  # one question at a time, unanswered


def test_a_host_that_answers_is_never_given_up():
    t = Transport(answers=True)
    alive = Keepalive(t, 0.02, 2).start()  # type: ignore[arg-type]
    time.sleep(0.4)
    alive.stop()
    assert not t.closed.is_set() and alive.silent is None and t.asked >= 5
