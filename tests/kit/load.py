"""A bounded keep-alive HTTP load on 127.0.0.1, and what it saw.

Each client thread keeps one connection open and records every request: when it
started and ended, its status, and which version of the example app answered.
The load stops by itself after `max_seconds` or `max_requests`.

Like browsers (RFC 9112 9.3.1), a client retries an idempotent GET once when the
server closed an idle keep-alive connection before sending any byte of a response:
that is a connection the old nginx worker retired, not a failed request. Retries
are counted and reported.
"""

from __future__ import annotations

import http.client
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

VERSION = re.compile(r"version (\S+) \(email v(\S+)\)")


def set_version(app: Path, version: str) -> None:
    """The example app answers `version X (email vY)`, X and Y from two files, so a response
    that mixes two releases shows it. Backdated like files from a real build: opcache does
    not cache a script modified less than opcache.file_update_protection (2 s) before it
    is compiled."""
    old = time.time() - 60
    for name in ("Email.php", "Notification.php"):
        f = app / "src" / name
        f.write_text(
            re.sub(r"const VERSION = '[^']*';", f"const VERSION = '{version}';", f.read_text())
        )
        os.utime(f, (old, old))


@dataclass(frozen=True)
class Sample:
    start: float  # time.monotonic()
    end: float
    status: int  # 0: no response at all
    body: str
    retried: bool = False

    @property
    def versions(self) -> tuple[str, str] | None:
        m = VERSION.search(self.body)
        return (m.group(1), m.group(2)) if m else None

    @property
    def version(self) -> str | None:
        v = self.versions
        return v[0] if v and v[0] == v[1] else None

    @property
    def mixed(self) -> bool:
        v = self.versions
        return "mixed versions" in self.body or (v is not None and v[0] != v[1])


@dataclass
class Load:
    url: str
    clients: int = 4
    max_seconds: float = 60.0
    max_requests: int = 200_000
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._path = parts.path or "/"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> Load:
        self._deadline = time.monotonic() + self.max_seconds
        for i in range(self.clients):
            t = threading.Thread(target=self._client, name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        return self.samples

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _done(self) -> bool:
        return (
            self._stop.is_set()
            or time.monotonic() > self._deadline
            or len(self.samples) >= self.max_requests
        )

    def _client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._done():
            start = time.monotonic()
            retried = False
            for attempt in (0, 1):
                reused = conn is not None
                if conn is None:
                    conn = http.client.HTTPConnection(self._host, self._port, timeout=10)
                try:
                    conn.request("GET", self._path, headers={"Connection": "keep-alive"})
                    resp = conn.getresponse()
                    body = resp.read().decode("utf-8", "replace")
                    sample = Sample(start, time.monotonic(), resp.status, body, retried)
                    if resp.will_close:
                        conn.close()
                        conn = None
                    break
                except (
                    http.client.RemoteDisconnected,
                    ConnectionResetError,
                    BrokenPipeError,
                ) as exc:
                    conn.close()
                    conn = None
                    if attempt == 0 and reused:
                        retried = True
                        continue
                    sample = Sample(start, time.monotonic(), 0, f"{type(exc).__name__}: {exc}")
                except OSError as exc:
                    if conn is not None:
                        conn.close()
                    conn = None
                    sample = Sample(start, time.monotonic(), 0, f"{type(exc).__name__}: {exc}")
                    break
            with self._lock:
                self.samples.append(sample)
        if conn is not None:
            conn.close()


@dataclass(frozen=True)
class Verdict:
    requests: int
    failed: int  # not 200, or no response
    mixed: int  # files of two versions in one response
    stale_after_return: int  # started after the deploy returned, answered by another version
    retried: int
    seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def stale_samples(samples: list[Sample], returned_at: float, expected: str) -> list[Sample]:
    """The responses that started after the deploy returned and show another version."""
    return [s for s in samples if s.start > returned_at and s.version != expected]


def judge(
    samples: list[Sample], *, returned_at: float | None = None, expected: str | None = None
) -> Verdict:
    """Count what matters: failures, mixed responses, and stale ones after the return."""
    if not samples:
        return Verdict(0, 0, 0, 0, 0, 0.0)
    stale = 0
    if returned_at is not None and expected is not None:
        stale = len(stale_samples(samples, returned_at, expected))
    span = max(s.end for s in samples) - min(s.start for s in samples)
    return Verdict(
        requests=len(samples),
        failed=sum(1 for s in samples if s.status != 200),
        mixed=sum(1 for s in samples if s.mixed),
        stale_after_return=stale,
        retried=sum(1 for s in samples if s.retried),
        seconds=span,
    )
