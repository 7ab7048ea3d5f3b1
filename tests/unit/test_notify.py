"""notify: the payload, and a real local HTTP server answering 200, 500, late or not at all.

Every failure must become one warning that never names the URL, and nothing may raise.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from atomicdeploy.notify import Event, message, notify, send
from tests import faults

TOKEN = "XoXoSeCrEtToKeN42"
PATH = f"/services/T0001/B0002/{TOKEN}"

START = Event(
    kind="start",
    stage="prod",
    revision="abc1234def5678",
    user="alice",
    release="20261124T150000Z",
    hosts=("web1", "web2"),
)
SUCCESS = Event(**{**START.__dict__, "kind": "success", "duration": 12.34})
FAILURE = Event(
    **{**START.__dict__, "kind": "failure", "duration": 3.14, "error": "[web2 upload] rsync: 23"}
)


class Recorder(ThreadingHTTPServer):
    """A webhook receiver: records each request and answers as `mode` says."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = "ok"  # "ok" | "error" | "slow" | "redirect"
        self.requests: list[dict[str, Any]] = []
        self.location = "/elsewhere"  # where "redirect" sends the client

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{PATH}"


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(length)}
        )
        try:
            if self.server.mode == "slow":
                time.sleep(1.0)
            if self.server.mode == "redirect":
                self.send_response(302)
                self.send_header("Location", self.server.location)
            else:
                self.send_response(500 if self.server.mode == "error" else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:  # the client gave up (timeout test)
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would swallow requests meant for 127.0.0.1."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def server() -> Iterator[Recorder]:
    srv = Recorder()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def closed_url() -> Iterator[str]:
    """A port that is bound but not listening: connecting to it is refused, and holding it
    bound keeps another test from taking it meanwhile."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}{PATH}"
    finally:
        sock.close()


def run(urls: list[str], event: Event = START, timeout: float = 5.0) -> list[str]:
    warnings: list[str] = []
    notify(urls, event, warnings.append, timeout=timeout)
    return warnings


def assert_no_url(warnings: list[str], url: str) -> None:
    for text in warnings:
        assert not url or url not in text
        assert TOKEN not in text
        assert "services" not in text


# --- message ----------------------------------------------------------------------------------


def test_start_message_names_release_short_revision_stage_user_and_hosts():
    assert message(START)["text"] == (
        "atomicdeploy: deploy of 20261124T150000Z (rev abc1234) to prod by alice"
        " started on web1, web2"
    )


def test_success_message_says_how_long_it_took():
    assert message(SUCCESS)["text"] == (
        "atomicdeploy: deploy of 20261124T150000Z (rev abc1234) to prod by alice"
        " succeeded in 12.3 s"
    )


def test_failure_message_gives_the_error():
    assert message(FAILURE)["text"] == (
        "atomicdeploy: deploy of 20261124T150000Z (rev abc1234) to prod by alice"
        " FAILED after 3.1 s: [web2 upload] rsync: 23"
    )


def test_failure_text_keeps_one_line_and_data_keeps_everything():
    event = Event(**{**FAILURE.__dict__, "error": "first line\nsecond line"})
    payload = message(event)
    assert payload["text"].endswith("FAILED after 3.1 s: first line")
    assert payload["atomicdeploy"]["error"] == "first line\nsecond line"


def test_data_carries_the_full_revision_and_every_field():
    assert message(FAILURE)["atomicdeploy"] == {
        "action": "deploy",
        "kind": "failure",
        "stage": "prod",
        "revision": "abc1234def5678",
        "user": "alice",
        "release": "20261124T150000Z",
        "hosts": ["web1", "web2"],
        "duration_s": 3.14,
        "error": "[web2 upload] rsync: 23",
    }


def test_message_without_revision_or_release_still_reads():
    event = Event("success", "prod", "", "bob", "", ("web1",), None)
    assert (
        message(event)["text"] == "atomicdeploy: deploy of a new release to prod by bob succeeded"
    )


def test_rollback_and_switch_messages_name_the_target_once_it_is_known():
    start = Event("start", "prod", "", "alice", "", ("web1", "web2"), action="rollback")
    assert message(start)["text"] == (
        "atomicdeploy: rollback of prod by alice started on web1, web2"
    )
    done = Event("success", "prod", "", "alice", "R1", ("web1",), 0.84, action="rollback")
    assert message(done)["text"] == (
        "atomicdeploy: rollback of prod to R1 by alice succeeded in 0.8 s"
    )
    assert message(done)["atomicdeploy"]["action"] == "rollback"
    failed = Event(
        "failure", "prod", "", "bob", "R2", ("web1",), 1.0, "[web1 switch] boom", action="switch"
    )
    assert message(failed)["text"] == (
        "atomicdeploy: switch of prod to R2 by bob FAILED after 1.0 s: [web1 switch] boom"
    )


def test_payload_is_json_serialisable():
    for event in (START, SUCCESS, FAILURE):
        assert json.loads(json.dumps(message(event))) == message(event)


# --- send and notify against a real server ----------------------------------------------------


def test_payload_is_posted_as_json(server):
    assert run([server.url], SUCCESS) == []
    [request] = server.requests
    assert request["path"] == PATH
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"] == "atomicdeploy"
    assert json.loads(request["body"]) == message(SUCCESS)


def test_send_returns_none_on_2xx(server):
    assert send(server.url, {"text": "hi"}) is None


def test_http_500_becomes_a_warning(server):
    server.mode = "error"
    warnings = run([server.url])
    assert warnings == ["notification to webhook #1 failed: HTTP 500 Internal Server Error"]
    assert_no_url(warnings, server.url)


@pytest.mark.parametrize("location", ["/elsewhere", "file:///etc/passwd", "ftp://127.0.0.1/x"])
def test_redirect_is_not_followed(server, location):
    server.mode = "redirect"
    server.location = location
    warnings = run([server.url])
    assert warnings == ["notification to webhook #1 failed: HTTP 302 Found"]
    assert len(server.requests) == 1


def test_connection_refused_becomes_a_warning(closed_url):
    warnings = run([closed_url])
    assert warnings == ["notification to webhook #1 failed: connection refused"]
    assert_no_url(warnings, closed_url)


def test_no_answer_within_the_timeout_becomes_a_warning(server):
    server.mode = "slow"
    started = time.monotonic()
    warnings = run([server.url], timeout=0.3)
    assert time.monotonic() - started < 0.9
    assert warnings == ["notification to webhook #1 failed: no answer within 0.3 s"]
    assert_no_url(warnings, server.url)


def test_every_webhook_is_tried_and_failures_are_numbered(server, closed_url):
    warnings = run([closed_url, server.url, "ftp://example.com/x"])
    assert len(server.requests) == 1
    assert warnings == [
        "notification to webhook #1 failed: connection refused",
        "notification to webhook #3 failed: refused: scheme 'ftp' is not http or https",
    ]


def test_a_bare_string_is_one_url_not_a_list_of_letters(server):
    assert run(server.url) == []  # type: ignore[arg-type]
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        f"FILE:///tmp{PATH}",
        f"ftp://127.0.0.1{PATH}",
        f"data:text/plain,{TOKEN}",
    ],
)
def test_non_http_schemes_are_refused(url):
    problem = send(url, {"text": "x"})
    assert problem is not None
    assert problem.startswith("refused: scheme")
    assert TOKEN not in problem


@pytest.mark.parametrize(
    "url",
    [
        "",
        PATH,
        "http://",
        f"http:///{TOKEN}",
        f"http://127.0.0.1:notaport{PATH}",
        f"http://127.0.0.1:1/{TOKEN} with spaces",
        f"http://127.0.0.1:1/{TOKEN}\r\nX-Injected: 1",
        f"http://[::1{PATH}",
    ],
)
def test_malformed_urls_become_warnings_that_never_quote_them(url):
    warnings = run([url], timeout=0.5)
    assert len(warnings) == 1
    assert warnings[0].startswith("notification to webhook #1 failed: ")
    assert_no_url(warnings, url)


def test_unresolvable_host_is_a_warning(monkeypatch):
    def no_dns(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    warnings = run([f"https://hooks.invalid{PATH}"])
    assert warnings == ["notification to webhook #1 failed: host name not found"]


def test_send_never_raises_even_on_an_unserialisable_payload(server):
    problem = send(server.url, {"text": object()})
    assert problem == "unexpected error (TypeError)"
    assert server.requests == []


def test_no_urls_no_warnings():
    assert run([]) == []


def test_the_notifier_times_the_run_masks_the_error_and_lists_each_hosts_failure(server):
    from atomicdeploy.errors import AtomicDeployError, FleetError
    from atomicdeploy.notify import Notifier

    warnings: list[str] = []
    notifier = Notifier(
        [server.url],
        stage="prod",
        revision="abc",
        user="alice",
        hosts=("web1", "web2"),
        warn=warnings.append,
        mask=lambda t: t.replace("hunter2", "***"),
    )
    notifier("start", "R1")
    failure = FleetError(
        "prepare failed on 1/2 host(s): web2",
        {"web2": AtomicDeployError("password hunter2 refused", host="web2", step="hook")},
    )
    notifier("failure", "R1", failure)
    notifier.close()
    start, failed = (json.loads(r["body"])["atomicdeploy"] for r in server.requests)
    assert start["duration_s"] is None and failed["duration_s"] >= 0
    assert failed["error"] == (
        "prepare failed on 1/2 host(s): web2; [web2 hook] password *** refused"
    )
    assert [w.split(":")[0] for w in warnings] == ["webhook #1 is plain http"]
    warnings.clear()
    Notifier([], stage="s", revision="", user="u", hosts=(), warn=warnings.append, mask=str)(
        "start", "R1"
    )  # no URL: nothing sent, nothing said
    assert len(server.requests) == 2 and warnings == []


def _notifier(urls, warnings, **kw):
    from atomicdeploy.notify import Notifier

    return Notifier(
        urls,
        stage="prod",
        revision="abc",
        user="alice",
        hosts=("web1",),
        warn=warnings.append,
        mask=str,
        **kw,
    )


def test_a_hanging_webhook_never_holds_the_deploy_and_the_run_waits_a_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
):
    """A name lookup has no timeout of its own: the notification is sent off the deploy's
    path, and at the end of the run it is waited for `total` seconds at most."""
    hang = threading.Event()

    def stuck_lookup(*args: Any, **kwargs: Any) -> Any:
        hang.wait(30)
        raise socket.gaierror("never")

    monkeypatch.setattr(socket, "getaddrinfo", stuck_lookup)
    warnings: list[str] = []
    notifier = _notifier(["https://hooks.example.invalid/T0/B0/s3cr3t"], warnings, total=0.5)
    began = time.monotonic()
    notifier("start", "R1")
    assert time.monotonic() - began < 0.2  # the deploy goes on at once
    notifier("success", "R1")
    notifier.close()
    took = time.monotonic() - began
    hang.set()
    assert 0.5 <= took < 2
    assert warnings == ["a webhook did not answer within 0.5 s: not waiting for it"]
    faults.record(
        "fault",
        "webhook whose DNS lookup hangs",
        tries=1,
        outcome="deploy not held; the run waited 0.5 s (total) and warned",
    )


def test_notifications_arrive_in_order_and_https_gets_no_warning(server):
    warnings: list[str] = []
    notifier = _notifier([server.url.replace("http://", "HTTP://")], warnings)
    assert len(warnings) == 1  # the scheme is case-insensitive
    for kind in ("start", "failure", "success"):
        notifier(kind, "R1")
    notifier.close()
    kinds = [json.loads(r["body"])["atomicdeploy"]["kind"] for r in server.requests]
    assert kinds == ["start", "failure", "success"]
    quiet: list[str] = []
    _notifier(["https://hooks.example/x"], quiet)
    assert quiet == []
