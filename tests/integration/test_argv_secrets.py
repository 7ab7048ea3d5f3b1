"""No secret ever appears in a process's arguments, on the host or on the controller.

Any local user can read every process's arguments (`ps`, /proc/<pid>/cmdline). A sampler
reads them all, as fast as it can, while a deploy runs a hook holding a token and a health
check and an opcache reset whose URLs carry a password. The fake hosts run on this
machine, so the sampler sees the hosts' processes and the controller's alike.
"""

from __future__ import annotations

import base64
import os
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests import faults

pytestmark = pytest.mark.integration

TOKEN = "s3cr3t-hook-token-4f9a"
PASSWORD = "pw-5ecr3t-77c1"


class AuthServer:
    """A health endpoint that answers 200 only to the right basic-auth password."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        expected = "Basic " + base64.b64encode(f"deploy:{PASSWORD}".encode()).decode()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = self.headers.get("Authorization") == expected
                outer.hits[self.path if ok else "unauthorized"] += 1
                self.send_response(200 if ok else 401)
                self.end_headers()
                self.wfile.write(b"healthy" if ok else b"who are you")

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://deploy:{PASSWORD}@127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Sampler(threading.Thread):
    """Reads every process's command line until stopped; keeps those holding a secret."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__(daemon=True)
        self.needles = tuple(s.encode() for s in secrets)
        self.stop = threading.Event()
        self.leaks: set[str] = set()
        self.passes = 0
        self.seen: set[bytes] = set()

    def run(self) -> None:
        me = str(os.getpid())
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == me:
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmdline = f.read()
                except OSError:
                    continue
                self.seen.add(cmdline.split(b"\0", 1)[0])
                if any(n in cmdline for n in self.needles):
                    self.leaks.add(cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
            self.passes += 1


@pytest.fixture
def auth_server():
    server = AuthServer()
    yield server
    server.close()


def test_a_deploy_puts_no_secret_in_any_process_arguments(project, auth_server):
    project.config.update(
        hooks={"after_upload": [f'TOKEN={TOKEN}; export TOKEN; sleep 0.3; [ "$TOKEN" = {TOKEN} ]']},
        healthcheck={"url": f"{auth_server.base}/health", "contains": "healthy"},
        opcache={"strategy": "http", "url": f"{auth_server.base}/opcache"},
        secrets={"hook_token": TOKEN},
    )
    sampler = Sampler((TOKEN, PASSWORD))
    sampler.start()
    try:
        proc = project.fab("test", "deploy")
    finally:
        sampler.stop.set()
        sampler.join()
    problems = [f"in a process's arguments: {leak}" for leak in sorted(sampler.leaks)]
    if proc.returncode != 0:
        problems.append(f"deploy exited {proc.returncode}: {proc.stderr[-300:]}")
    hosts = len(project.hosts)
    if auth_server.hits["/health"] < hosts or auth_server.hits["/opcache"] < hosts:
        problems.append(f"the URLs were not all requested with the password: {auth_server.hits}")
    if b"curl" not in {os.path.basename(c) for c in sampler.seen}:
        problems.append(f"the sampler never saw curl run ({sampler.passes} passes)")
    output = proc.stdout + proc.stderr
    problems += [
        f"{what} printed" for what, s in (("token", TOKEN), ("password", PASSWORD)) if s in output
    ]
    faults.record(
        "security",
        "secrets in process arguments during a deploy (hook token,"
        " health and opcache URL passwords)",
        tries=sampler.passes,
        violations=len(problems),
        outcome="never seen in /proc/*/cmdline; the URLs still authenticated"
        if not problems
        else problems[0][:100],
    )
    assert problems == []
