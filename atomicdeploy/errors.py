"""Errors that carry data: which host, which step, whether anything went live.

Only the task layer turns them into one line and an exit code; everything below raises.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Exit codes, documented in the README and docs/operations.md.
EXIT_FAILED = 1  # failed before go-live: nothing changed on any host
EXIT_USAGE = 2  # bad inventory, bad option, no stage: nothing was contacted
EXIT_PARTIAL = 3  # some hosts are live on the new release, others are not
EXIT_LIVE_HOOK_FAILED = 4  # live on every host, but a hook after the switch failed
EXIT_INTERRUPTED = 130


class AtomicDeployError(Exception):
    """Base of every expected failure. `str()` is the one line the user reads."""

    exit_code = EXIT_FAILED

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        step: str | None = None,
        live: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.host = host
        self.step = step
        self.live = live

    def __str__(self) -> str:
        where = []
        if self.host:
            where.append(self.host)
        if self.step:
            where.append(self.step)
        prefix = f"[{' '.join(where)}] " if where else ""
        return f"{prefix}{self.message}"


class ConfigError(AtomicDeployError):
    """Bad inventory or bad option, found before any host is contacted."""

    exit_code = EXIT_USAGE


class RemoteError(AtomicDeployError):
    """A remote command exited non-zero (or the host could not be reached)."""

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        step: str | None = None,
        command: str | None = None,
        exit_status: int | None = None,
        stderr: str = "",
        stdout: str = "",
    ) -> None:
        super().__init__(message, host=host, step=step)
        self.command = command
        self.exit_status = exit_status
        self.stderr = stderr
        self.stdout = stdout


class LockHeld(AtomicDeployError):
    """Another deploy holds the lock on a host; we never take it from them."""


class FleetError(AtomicDeployError):
    """One or more hosts failed; `failures` maps inventory host name to its error."""

    def __init__(
        self, message: str, failures: dict[str, BaseException], *, exit_code: int = EXIT_FAILED
    ) -> None:
        super().__init__(message)
        self.failures = failures
        self.exit_code = exit_code


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest valid name, or "": for one-line errors."""
    hint = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""
