"""Notifications: a Slack-compatible webhook told of the start, success and failure of a
deploy, a rollback or a `switch` (Deployer's slack recipe tells of rollbacks too).

A notification never fails a deploy: every problem becomes a warning. The warning never shows
the URL, because a webhook URL carries its credential in the path: webhooks are named by their
position ("webhook #1") and every error text is scrubbed of the URL's parts.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from .errors import FleetError
from .secrets import Masker

SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Event:
    """One moment of a deploy worth telling people about."""

    kind: str  # "start" | "success" | "failure"
    stage: str
    revision: str
    user: str
    release: str
    hosts: tuple[str, ...]
    duration: float | None = None  # seconds since the start; None for "start"
    error: str = ""  # one line, already masked by the caller
    action: str = "deploy"  # "deploy" | "rollback" | "switch"


def message(event: Event) -> dict[str, Any]:
    """The JSON payload: Slack reads only `text`; `atomicdeploy` carries the facts as data.

    Never raises, even for an unknown kind: a typo in a caller must not fail the deploy.
    """
    rev = f" (rev {event.revision[:7]})" if event.revision else ""
    if event.action == "deploy":
        what = f"deploy of {event.release or 'a new release'}{rev} to {event.stage}"
    else:  # the target is known only once every host has been read
        to = f" to {event.release}" if event.release else ""
        what = f"{event.action} of {event.stage}{to}"
    what += f" by {event.user}"
    if event.kind == "start":
        outcome = f"started on {', '.join(event.hosts) or 'no hosts'}"
    elif event.kind == "success":
        outcome = "succeeded" + _took(" in", event.duration)
    elif event.kind == "failure":
        # Slack shows one line well; the full error stays in the data below.
        first = event.error.strip().splitlines()[0] if event.error.strip() else "unknown error"
        outcome = "FAILED" + _took(" after", event.duration) + f": {first}"
    else:
        outcome = event.kind
    data = {
        "action": event.action,
        "kind": event.kind,
        "stage": event.stage,
        "revision": event.revision,
        "user": event.user,
        "release": event.release,
        "hosts": list(event.hosts),
        "duration_s": None if event.duration is None else round(event.duration, 3),
        "error": event.error,
    }
    return {"text": f"atomicdeploy: {what} {outcome}", "atomicdeploy": data}


def _took(word: str, duration: float | None) -> str:
    return "" if duration is None else f"{word} {duration:.1f} s"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook answers, it does not redirect: following one would re-send our payload to a
    place the user never configured (urllib would even follow a redirect to ftp://)."""

    def http_error_302(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def send(url: str, payload: dict[str, Any], *, timeout: float = 5.0) -> str | None:
    """POST `payload` as JSON; None on a 2xx answer, else one line saying what went wrong.

    Never raises, and the line never contains the URL. `timeout` bounds the whole request:
    the name lookup, the connection, TLS, sending and the answer's headers together.
    """
    try:
        problem = _check_url(url) or _post(url, json.dumps(payload).encode(), timeout)
    except Exception as exc:  # a notification must never fail the deploy
        problem = f"unexpected error ({type(exc).__name__})"
    return None if problem is None else _scrub(problem, url)


def _check_url(url: str) -> str | None:
    """Why `url` is not one we send to, or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return "invalid URL"
    # Only http(s): urllib would happily read file:///etc/passwd or an ftp:// listing.
    if not parts.scheme:
        return "invalid URL: no http:// or https:// scheme"
    if parts.scheme.lower() not in SCHEMES:
        return f"refused: scheme {parts.scheme!r} is not http or https"
    if not host:
        return "invalid URL: no host"
    return None


def _post(url: str, body: bytes, timeout: float) -> str | None:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "atomicdeploy"},
    )
    deadline = _Deadline(timeout)
    opener = urllib.request.build_opener(_NoRedirect, _HTTP(deadline), _HTTPS(deadline))
    try:
        with opener.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response; closing avoids a ResourceWarning
        # The standard phrase, not the server's: its text is not ours to print.
        return f"HTTP {exc.code} {_phrase(exc.code)}".rstrip()
    except urllib.error.URLError as exc:
        return deadline.explain(exc.reason)
    except (OSError, http.client.HTTPException) as exc:
        return deadline.explain(exc)
    finally:
        deadline.close()
    return None if 200 <= status < 300 else f"HTTP {status}"


class _LookupTimeout(TimeoutError):
    """The host name was not resolved in time (getaddrinfo itself cannot be interrupted)."""


class _Deadline:
    """The end of one request, and a watchdog that shuts its connection when it passes.

    A socket timeout bounds each read, not the exchange: a server that sends one byte every
    few seconds would hold a reader for ever. At the deadline the watchdog shuts the socket
    down (through a duplicate we own, still valid once TLS has wrapped the original), so
    whatever read or write is blocked on it returns at once.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._guards: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        """Seconds left; TimeoutError once there are none."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer within {self.seconds:g} s")
        return left

    def guard(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                raise TimeoutError(f"no answer within {self.seconds:g} s")
            self._guards.append(sock.dup())

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._guards:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._guards:
                sock.close()
            self._guards.clear()

    def explain(self, reason: object) -> str:
        """The failure in words: past the deadline, whatever the socket said, a timeout."""
        if self.expired and not isinstance(reason, _LookupTimeout):
            return f"no answer within {self.seconds:g} s"
        return _describe(reason, self.seconds)


def _lookup(host: str, port: int, seconds: float) -> list[Any]:
    """getaddrinfo, waited for `seconds` at most: the C call cannot be interrupted and follows
    resolv.conf's timeouts and retries (tens of seconds), so it runs in a thread of its own,
    left to finish on its own if it is late."""
    answer: list[Any] = []

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # handed to the caller
            answer.append(exc)

    thread = threading.Thread(target=lookup, name="notify-dns", daemon=True)
    thread.start()
    thread.join(seconds)
    if not answer:
        raise _LookupTimeout("host name lookup timed out")
    if isinstance(answer[0], BaseException):
        raise answer[0]
    return answer[0]


def _connector(deadline: _Deadline) -> Callable[..., socket.socket]:
    """`socket.create_connection` within `deadline`, the name lookup included."""

    def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        host, port = address
        error: OSError = OSError("no address for the host name")
        for family, kind, proto, _, sockaddr in _lookup(host, port, deadline.left()):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(deadline.left())
                sock.connect(sockaddr)
                deadline.guard(sock)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error

    return connect


class _Bounded(urllib.request.AbstractHTTPHandler):
    """Opens connections whose every step counts against one `_Deadline`."""

    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
        def bounded(*args: Any, **kw: Any) -> http.client.HTTPConnection:
            conn = http_class(*args, **kw)
            # http.client's own seam for how a connection is made (its tests use it too);
            # HTTPSConnection wraps what it returns in TLS.
            conn._create_connection = _connector(self.deadline)
            return conn

        return super().do_open(bounded, req, **kwargs)


class _HTTP(_Bounded, urllib.request.HTTPHandler):
    pass


class _HTTPS(_Bounded, urllib.request.HTTPSHandler):
    pass


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


# Network failures by type, first match wins (a subclass before its base class).
_FAILURES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (_LookupTimeout, "host name not resolved within {timeout:g} s"),
    ((TimeoutError, socket.timeout), "no answer within {timeout:g} s"),
    (ConnectionRefusedError, "connection refused"),
    (socket.gaierror, "host name not found"),
    (ssl.SSLCertVerificationError, "TLS certificate not trusted: {verify}"),
    (ssl.SSLError, "TLS error"),
    (http.client.RemoteDisconnected, "connection closed without an answer"),
    (http.client.InvalidURL, "invalid URL"),  # its message quotes the URL
)


def _describe(reason: object, timeout: float) -> str:
    """A short, URL-free phrase for a network failure."""
    for kind, text in _FAILURES:
        if isinstance(reason, kind):
            verify = getattr(reason, "verify_message", "")
            return text.format(timeout=timeout, verify=verify)
    if isinstance(reason, OSError) and reason.strerror:
        return f"connection failed: {reason.strerror}"
    if isinstance(reason, str) and "timed out" in reason:
        return f"no answer within {timeout:g} s"
    return f"connection failed ({type(reason).__name__})"


def _scrub(text: str, url: str) -> str:
    """Belt and braces: hide every part of the URL that could carry its credential."""
    try:
        parts = urlsplit(url)
        pieces = [url, parts.netloc, parts.path, parts.query, parts.fragment]
        pieces += [segment for segment in parts.path.split("/") if segment]
    except ValueError:
        pieces = [url]
    return Masker.of(pieces).mask(" ".join(text.split()))


def notify(
    urls: Sequence[str],
    event: Event,
    warn: Callable[[str], None],
    *,
    timeout: float = 5.0,
) -> None:
    """Send `event` to every URL in turn; each failure becomes one `warn` line, never an error.

    Webhooks are named by position (#1, #2...) in the order given, since the URL is a secret.
    """
    if isinstance(urls, str):  # one URL passed bare would otherwise be sent to letter by letter
        urls = [urls]
    try:
        payload = message(event)
    except Exception as exc:  # a notification must never fail the deploy
        warn(f"notification not sent: {type(exc).__name__}")
        return
    for number, url in enumerate(urls, 1):
        problem = send(url, payload, timeout=timeout)
        if problem is not None:
            warn(f"notification to webhook #{number} failed: {problem}")


class Notifier:
    """A run's notifications: start, success, failure, with the time since start.

    Each webhook has a background thread of its own that sends its notifications in order,
    each request bounded by `timeout` (name lookup included): a slow or hanging webhook never
    holds the deploy, nor delays another webhook. `close()` waits for the last ones at most
    `total` seconds (more than a hanging start and a hanging last word take together), then
    lets the process end without them. `mask` hides secrets in the error text (a hook's
    stderr may echo one) before it leaves this machine.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        stage: str,
        revision: str,
        user: str,
        hosts: tuple[str, ...],
        warn: Callable[[str], None],
        mask: Callable[[str], str],
        action: str = "deploy",
        timeout: float = 5.0,
        total: float = 15.0,
    ) -> None:
        self.urls, self.stage, self.revision, self.user = list(urls), stage, revision, user
        self.hosts, self.warn, self.mask, self.action = hosts, warn, mask, action
        self.timeout, self.total = timeout, total
        self.started = time.monotonic()
        self._senders: list[tuple[threading.Thread, queue.Queue[dict[str, Any] | None]]] = []
        for number, url in enumerate(self.urls, 1):
            if url.lower().startswith("http://"):
                warn(
                    f"webhook #{number} is plain http://: its URL, which is its password,"
                    " and the deploy's details cross the network unencrypted; use https://"
                )

    def __call__(self, kind: str, release: str, error: BaseException | None = None) -> None:
        if not self.urls:
            return
        event = Event(
            kind=kind,
            stage=self.stage,
            revision=self.revision,
            user=self.user,
            release=release,
            hosts=self.hosts,
            duration=None if kind == "start" else time.monotonic() - self.started,
            error=self.mask(error_text(error)),
            action=self.action,
        )
        try:
            payload = message(event)
        except Exception as exc:  # a notification must never fail the deploy
            self.warn(f"notification not sent: {type(exc).__name__}")
            return
        if not self._senders:
            self._senders = [self._sender(number, url) for number, url in enumerate(self.urls, 1)]
        for _, inbox in self._senders:
            inbox.put(payload)

    def _sender(self, number: int, url: str) -> tuple[threading.Thread, queue.Queue[Any]]:
        inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()

        def send_all() -> None:
            while (payload := inbox.get()) is not None:
                problem = send(url, payload, timeout=self.timeout)
                if problem is not None:
                    self.warn(f"notification to webhook #{number} failed: {problem}")

        thread = threading.Thread(target=send_all, name=f"notify-{number}", daemon=True)
        thread.start()
        return thread, inbox

    def close(self) -> None:
        """Wait (at most `total` seconds) until every notification is sent or has failed."""
        senders, self._senders = self._senders, []
        end = time.monotonic() + self.total
        for _, inbox in senders:
            inbox.put(None)
        for thread, _ in senders:
            thread.join(max(0.0, end - time.monotonic()))
        if any(thread.is_alive() for thread, _ in senders):
            self.warn(f"a webhook did not answer within {self.total:g} s: not waiting for it")


def error_text(error: BaseException | None) -> str:
    """The failure in words: a fleet failure with each host's own line."""
    if error is None:
        return ""
    if isinstance(error, FleetError):
        return "; ".join([error.message, *(str(e) for e in error.failures.values())])
    return str(error) or type(error).__name__
