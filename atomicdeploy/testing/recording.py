"""A Remote that records instead of running: test what your steps and hooks would send to a
host, with no host and no network."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import IO

from ..inventory import HostConfig
from ..remote import Remote


class RecordingRemote(Remote):
    """Every script (with its step) and every Python hook call is appended to `sent`;
    nothing runs. `answers` maps a step to the stdout its script answers with (default:
    empty), as a step that reads a host's output would get it; the status is always 0.

        remote = RecordingRemote(HostConfig(name="web1", hostname="web1", deploy_path="/srv"))
        hook.run_plan(remote, cfg, plan, "build")
        assert remote.sent[0][0] == "hook after_upload"
    """

    def __init__(self, host: HostConfig, answers: Mapping[str, str] | None = None) -> None:
        super().__init__(host, conn=None)  # type: ignore[arg-type]
        self.sent: list[tuple[str, str]] = []
        self.answers = dict(answers or {})
        self.out = self.err = lambda line: None

    def run(
        self,
        script: str,
        step: str,
        *,
        ok: tuple[int, ...] = (0,),
        stdin: IO[str] | None = None,
        out: IO[str] | None = None,
        read_only: bool = False,
        stand_in: str | None = None,
    ) -> tuple[int, str]:
        self.sent.append((step, script))
        answer = self.answers.get(step, "")
        if out is not None and answer:
            out.write(answer)
        return 0, answer

    def call(self, step: str, what: str, fn: Callable[[], object]) -> None:
        self.sent.append((step, f"python: {what}(c, cfg)"))

    def close(self) -> None:
        pass
