"""Real nginx + php-fpm for one fake host, serving its deploy_path on 127.0.0.1.

opcache is on with `validate_timestamps=0`, as on a tuned production server: a
changed file at the same path is never re-read, which is what makes a plain
`current` swap serve stale code. Own config, pid, log, temp and socket files under
`base`; no systemd: the daemons are started directly and stopped by PID.

Modes (the nginx site):
  include   `include <deploy_path>/root_dir.nginx.conf; root $root_dir;` (atomicdeploy's way)
  current   `root <deploy_path>/current/public;` with $document_root (the naive way)
  realpath  `root <deploy_path>/current/public;` with $realpath_root (Deployer's docs)
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from atomicdeploy.testing.hosts import (
    HostGroup,
    LogMark,
    PortTaken,
    free_port,
    free_ports,
    pid_in,
    start_on_a_free_port,
)

NGINX = "/usr/sbin/nginx"
PHP_FPM = "/usr/sbin/php-fpm8.2"
FASTCGI_PARAMS = "/etc/nginx/fastcgi_params"
OPCACHE = {
    "opcache.enable": "1",
    "opcache.enable_cli": "0",
    "opcache.validate_timestamps": "0",
    "opcache.revalidate_path": "0",
    "opcache.memory_consumption": "64",
    "opcache.max_accelerated_files": "20000",
    "display_errors": "0",
    "log_errors": "1",
}


@dataclass
class WebHost:
    """nginx + php-fpm for one fake host, serving `deploy_path` on 127.0.0.1:port."""

    name: str
    base: Path
    deploy_path: Path
    port: int = 0
    mode: str = "include"
    fpm_children: int = 4
    nginx_workers: int = 2
    extra: str = ""  # more lines for the server block (e.g. `deny` rules)
    # A port the kit chose may be chosen again if another process took it meanwhile.
    chosen_port: bool = False
    _procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.base = Path(self.base)
        self.deploy_path = Path(self.deploy_path)
        if not self.port:
            self.port, self.chosen_port = free_port(), True

    # --- paths ---------------------------------------------------------------------------
    @property
    def root_file(self) -> Path:
        return self.deploy_path / "root_dir.nginx.conf"

    @property
    def fpm_socket(self) -> Path:
        return self.base / "php-fpm.sock"

    @property
    def fpm_conf(self) -> Path:
        return self.base / "php-fpm.conf"

    @property
    def fpm_pid_file(self) -> Path:
        return self.base / "php-fpm.pid"

    @property
    def nginx_conf(self) -> Path:
        return self.base / "nginx.conf"

    @property
    def nginx_pid_file(self) -> Path:
        return self.base / "nginx.pid"

    @property
    def nginx_error_log(self) -> Path:
        return self.base / "nginx-error.log"

    @property
    def fpm_error_log(self) -> Path:
        return self.base / "php-fpm-error.log"

    @property
    def fpm_log(self) -> Path:
        """php-fpm's own log: started with -O, it writes its log (a worker that died) here."""
        return self.base / "php-fpm.log"

    @property
    def php_error_log(self) -> Path:
        return self.base / "php-errors.log"

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # --- commands a deploy runs on the host -----------------------------------------------
    def nginx_test_command(self) -> str:
        return shlex.join([NGINX, "-t", "-q", "-c", str(self.nginx_conf)])

    def nginx_reload_command(self) -> str:
        return shlex.join([NGINX, "-s", "reload", "-c", str(self.nginx_conf)])

    def inventory_settings(self, **nginx: object) -> dict:
        """The inventory keys that point a deploy at this host's nginx and php-fpm (a new
        dict each time: tests change it); `nginx` adds or overrides nginx keys."""
        return {
            "nginx": {
                "test": self.nginx_test_command(),
                "reload": self.nginx_reload_command(),
                "pid_file": str(self.nginx_pid_file),
                "reload_timeout": 30,
                **nginx,
            },
            "opcache": {"strategy": "fcgi", "socket": str(self.fpm_socket)},
        }

    def fpm_reload_command(self) -> str:
        return f"kill -USR2 $(cat {shlex.quote(str(self.fpm_pid_file))})"

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> WebHost:
        self.base.mkdir(parents=True, exist_ok=True)
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.base / "tmp" / d).mkdir(parents=True, exist_ok=True)
        self.deploy_path.mkdir(parents=True, exist_ok=True)
        if self.mode == "include" and not self.root_file.exists():
            self.root_file.write_text(f"set $root_dir {self.deploy_path}/current/public;\n")
        self._write_fpm_conf()
        self._write_nginx_conf()
        try:
            args = [PHP_FPM, "-F", "-O", "-y", str(self.fpm_conf)]
            if os.geteuid() == 0:
                args.append("-R")
            for key, value in {**OPCACHE, "error_log": str(self.php_error_log)}.items():
                args += ["-d", f"{key}={value}"]
            self._spawn(args, "php-fpm.log")
            self._wait(
                lambda: _accepts_unix(self.fpm_socket),
                "php-fpm",
                ["php-fpm.log", self.fpm_error_log.name],
            )
            start_on_a_free_port(self._start_nginx, self._move_nginx, self.chosen_port)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        self._procs.clear()

    def __enter__(self) -> WebHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def nginx_worker_pids(self) -> set[int]:
        """Children of the nginx master, read from /proc (no signals needed)."""
        try:
            master = int(self.nginx_pid_file.read_text().strip())
        except (OSError, ValueError):
            return set()
        return children(master)

    def fcgi(
        self, script_filename: str, *, uri: str = "/", document_root: str | None = None
    ) -> tuple[int, dict[str, str], str]:
        """One FastCGI request straight to php-fpm, as cachetool makes; (status, headers, body)."""
        path, _, query = uri.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SCRIPT_FILENAME": script_filename,
            "SCRIPT_NAME": "/" + Path(script_filename).name,
            "REQUEST_URI": uri,
            "DOCUMENT_URI": path,
            "QUERY_STRING": query,
            "DOCUMENT_ROOT": document_root or str(Path(script_filename).parent),
            "REQUEST_METHOD": "GET",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REDIRECT_STATUS": "200",
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "HTTP_HOST": "localhost",
        }
        out = subprocess.run(
            ["cgi-fcgi", "-bind", "-connect", str(self.fpm_socket)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
        head, _, body = out.replace("\r\n", "\n").partition("\n\n")
        headers = {}
        for line in head.splitlines():
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        status = int(headers.get("status", "200").split()[0])
        return status, headers, body

    # --- internals ---------------------------------------------------------------------------
    def _start_nginx(self) -> None:
        mark = LogMark(self.base / "nginx.log", self.nginx_error_log)
        self._spawn([NGINX, "-c", str(self.nginx_conf)], "nginx.log")
        master = self._procs[-1].pid
        # Config errors go to stderr (nginx.log): error_log is not open yet. The pid
        # file is written once nginx listens: naming our master, it proves that the
        # answer on the port is ours, not another server's on the same port.
        try:
            self._wait(
                lambda: pid_in(self.nginx_pid_file) == master and _accepts_tcp(self.port),
                "nginx",
                ["nginx.log", self.nginx_error_log.name],
            )
        except RuntimeError as exc:
            if mark.says_port_taken() and self._procs[-1].poll() is not None:
                self._procs.pop()
                raise PortTaken(f"port {self.port} is taken: {exc}") from None
            raise

    def _move_nginx(self, port: int) -> None:
        self.port = port
        self._write_nginx_conf()

    def _spawn(self, args: list[str], log: str) -> None:
        out = open(self.base / log, "ab")  # noqa: SIM115 - lives as long as the daemon
        self._procs.append(
            subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        )
        out.close()

    def _wait(self, ready, what: str, logs: list[str], timeout: float = 15.0) -> None:
        proc = self._procs[-1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if ready():
                return
            time.sleep(0.05)
        tail = ""
        for log in logs:
            with contextlib.suppress(OSError):
                tail += (self.base / log).read_text(errors="replace")[-800:]
        raise RuntimeError(f"{what} for {self.name} did not start: {tail}")

    def _write_fpm_conf(self) -> None:
        user = ""
        if os.geteuid() == 0:
            user = f"user = {getpass.getuser()}\ngroup = {grp.getgrgid(os.getgid()).gr_name}\n"
        self.fpm_conf.write_text(
            "[global]\n"
            f"pid = {self.fpm_pid_file}\n"
            f"error_log = {self.fpm_error_log}\n"
            "daemonize = no\n"
            # USR2 (fpm_reload_command) waits this long for busy workers; with the default 0
            # it kills them at once and nginx answers 502 to the requests they had accepted.
            "process_control_timeout = 10s\n\n"
            "[www]\n"
            f"{user}"
            f"listen = {self.fpm_socket}\n"
            "listen.mode = 0666\n"
            "pm = static\n"
            f"pm.max_children = {self.fpm_children}\n"
            "catch_workers_output = yes\n"
            "clear_env = no\n"
        )

    def _write_nginx_conf(self) -> None:
        if self.mode == "include":
            root = f"include {self.root_file};\n        root $root_dir;"
            doc = "$document_root"
        elif self.mode in ("current", "realpath"):
            root = f"root {self.deploy_path}/current/public;"
            doc = "$realpath_root" if self.mode == "realpath" else "$document_root"
        else:
            raise ValueError(f"unknown mode {self.mode!r}")
        user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
        tmp = self.base / "tmp"
        self.nginx_conf.write_text(f"""daemon off;
master_process on;
worker_processes {self.nginx_workers};
{user}pid {self.nginx_pid_file};
error_log {self.nginx_error_log} warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {tmp / "client_body"};
    proxy_temp_path {tmp / "proxy"};
    fastcgi_temp_path {tmp / "fastcgi"};
    uwsgi_temp_path {tmp / "uwsgi"};
    scgi_temp_path {tmp / "scgi"};
    keepalive_timeout 65;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{self.port};
        {root}
        index index.php;
        {self.extra}
        location / {{ try_files $uri /index.php$is_args$args; }}
        location ~ \\.php$ {{
            include {FASTCGI_PARAMS};
            fastcgi_param SCRIPT_FILENAME {doc}$fastcgi_script_name;
            fastcgi_param DOCUMENT_ROOT {doc};
            fastcgi_pass unix:{self.fpm_socket};
        }}
    }}
}}
""")


def children(ppid: int) -> set[int]:
    """Live children of `ppid` from /proc (zombies count as gone)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == ppid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def _accepts_unix(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class WebHosts(HostGroup[WebHost]):
    """N web hosts: `with WebHosts(base, [deploy_path, ...]) as webs: ...`."""

    def __init__(
        self,
        base: Path,
        deploy_paths: list[Path],
        *,
        mode: str = "include",
        names: list[str] | None = None,
        ports: list[int] | None = None,
        extra: str = "",
    ) -> None:
        names = names or [f"web{i + 1}" for i in range(len(deploy_paths))]
        chosen = not ports
        ports = ports or free_ports(len(deploy_paths))
        self.hosts = [
            WebHost(
                name=n,
                base=Path(base) / n,
                deploy_path=Path(p),
                mode=mode,
                port=ports[i],
                chosen_port=chosen,
                extra=extra,
            )
            for i, (n, p) in enumerate(zip(names, deploy_paths, strict=True))
        ]
