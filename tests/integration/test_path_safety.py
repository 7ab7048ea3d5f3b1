"""Leftovers, planted symlinks and hostile names never reach outside deploy_path.

Each scenario plants a sentinel in `shared/`, applies one fault, records it in the
fault report and then checks the same invariants on every host: `current` points to
a real release logged live, no lock is left behind, the sentinel is intact, and the
next `fab test deploy` succeeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests import faults

from .conftest import FAB, write_app

pytestmark = pytest.mark.integration

SENTINEL = "shared/SENTINEL"
GOOD_STATES = ("live", "complete")


# --- what every scenario checks afterwards ----------------------------------------------------


def plant_sentinels(project) -> None:
    for h in project.hosts:
        f = project.deploy_path(h.name) / SENTINEL
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"sentinel of {h.name}\n")


def last_state(project, host: str, release: str) -> str | None:
    states = [e["state"] for e in project.log(host) if e["release"] == release]
    return states[-1] if states else None


def _host_problems(project, *, expect_current: bool) -> list[str]:
    problems = []
    for h in project.hosts:
        path = project.deploy_path(h.name)
        target = project.current(h.name)
        if target is None:
            if expect_current:
                problems.append(f"{h.name}: no current link")
        else:
            name = target.rsplit("/", 1)[-1]
            release = path / "releases" / name
            if target != f"releases/{name}":
                problems.append(f"{h.name}: current -> {target}, not releases/<name>")
            if release.is_symlink() or not release.is_dir():
                problems.append(f"{h.name}: current -> {target}, not a real release directory")
            state = last_state(project, h.name, name)
            if state not in GOOD_STATES:
                problems.append(f"{h.name}: current release {name} is logged {state!r}")
        if project.locked(h.name):
            problems.append(f"{h.name}: lock left in .dep/deploy.lock")
        sentinel = path / SENTINEL
        if not sentinel.is_file() or sentinel.read_text() != f"sentinel of {h.name}\n":
            problems.append(f"{h.name}: the sentinel in shared/ is gone or changed")
    return problems


def violations(project, *, expect_current: bool = True) -> list[str]:
    """The invariants on every host, then again after the next plain `fab test deploy`."""
    problems = _host_problems(project, expect_current=expect_current)
    proc = project.fab("test", "deploy")
    if proc.returncode != 0:
        problems.append(f"the next deploy exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    again = _host_problems(project, expect_current=True)
    return problems + [f"after the next deploy: {p}" for p in again]


def outcome(v: list[str], fine: str) -> str:
    """The fault report's "what happened": `fine`, or the first violation on one line."""
    if not v:
        return fine
    first = " ".join(v[0].split()).replace("|", "/")
    return f"{len(v)} violation(s), e.g. {first[:100]}"


def tree(root: Path) -> dict[str, tuple]:
    """Every path under `root` (links not followed): mode, owner, content or link target, ACL."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                body = "-> " + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                body = p.read_text()
            else:
                body = "dir"
            xattrs = sorted(
                (a, os.getxattr(p, a, follow_symlinks=False))
                for a in os.listxattr(p, follow_symlinks=False)
            )
            out[str(p.relative_to(root))] = (oct(st.st_mode), st.st_uid, st.st_gid, body, xattrs)
    return out


def changed(before: tuple | None, after: tuple | None) -> str:
    """Which of `tree`'s fields differ, e.g. `owner 0 -> 65534`."""
    if before is None or after is None:
        return "created" if before is None else "deleted"
    before = (*before[:4], [name for name, _ in before[4]])  # xattrs: their names suffice
    after = (*after[:4], [name for name, _ in after[4]])
    fields = ("mode", "owner", "group", "content", "xattrs")
    return ", ".join(
        f"{f} {b} -> {a}" for f, b, a in zip(fields, before, after, strict=True) if b != a
    )


def outside_dir(tmp_path: Path) -> Path:
    """A directory outside every deploy_path, read-only, as a target for planted links."""
    out = tmp_path / "outside"
    (out / "sub").mkdir(parents=True)
    (out / "precious.txt").write_text("do not touch\n")
    (out / "sub" / "deep.txt").write_text("nor this\n")
    for f in (out / "precious.txt", out / "sub" / "deep.txt"):
        f.chmod(0o400)
    (out / "sub").chmod(0o500)
    out.chmod(0o500)
    return out


# --- 1. a deploy killed in the middle ---------------------------------------------------------


def kill_leftover_hook_processes(srv: Path) -> None:
    """The killed deploy's remote shells and `sleep 30` (they run in our srv dir): SIGKILL."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            if str(srv) in cmdline or cwd.startswith(str(srv) + "/"):
                pids.append(int(entry.name))
    # Stop them all first, so no shell goes on to its next command when its child dies.
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def test_a_deploy_killed_during_prepare_leaves_a_lock_and_a_release_rollback_never_picks(
    project, tmp_path
):
    project.ok("test", "deploy")
    write_app(project.app, "2")
    project.ok("test", "deploy")
    plant_sentinels(project)
    before = {h.name: (project.current(h.name), project.served(h.name)) for h in project.hosts}
    previous = {h.name: project.releases(h.name)[0] for h in project.hosts}

    write_app(project.app, "3")
    project.config["hooks"] = {"before_switch": ["sleep 30"]}
    project.write_inventory()
    out = tmp_path / "killed.out"
    with out.open("w") as sink:
        # As project.fab runs it: same argv, cwd and environment, stdin closed.
        proc = subprocess.Popen(
            [*FAB, "test", "deploy"],
            cwd=project.dir,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )
    leftover: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 30
        while len(leftover) < len(project.hosts) and time.monotonic() < deadline:
            for h in project.hosts:
                for name in project.releases(h.name):
                    # Building, with its shared links made: the hook is sleeping now.
                    if (
                        f"releases/{name}" != before[h.name][0]
                        and last_state(project, h.name, name) == "building"
                        and (project.deploy_path(h.name) / "releases" / name / ".env").is_symlink()
                    ):
                        leftover[h.name] = name
            time.sleep(0.1)
        assert len(leftover) == len(project.hosts), out.read_text()
    finally:
        proc.send_signal(signal.SIGKILL)  # no clean-up can run
        proc.wait(10)
        kill_leftover_hook_processes(project.srv)
    name = leftover[project.hosts[0].name]
    assert set(leftover.values()) == {name}
    problems = []
    for h in project.hosts:
        if (project.current(h.name), project.served(h.name)) != before[h.name]:
            problems.append(f"{h.name}: current or the served files changed")
        if not project.locked(h.name):
            problems.append(f"{h.name}: no lock left by the killed deploy")

    del project.config["hooks"]
    locked = project.fab("test", "deploy")
    told = (
        locked.returncode == 1
        and f"(pid {proc.pid})" in locked.stderr
        and "fab test unlock" in locked.stderr
    )
    if not told:
        problems.append(f"deploy on the stale lock: exit {locked.returncode}: {locked.stderr}")
    assert "removed the lock of" in project.ok("test", "unlock").stdout

    project.ok("test", "rollback")
    for h in project.hosts:
        if project.current(h.name) != f"releases/{previous[h.name]}":
            problems.append(f"{h.name}: rollback went to {project.current(h.name)}")
        if name not in project.releases(h.name):
            problems.append(f"{h.name}: the leftover vanished before cleanup ran")
    for args in (("rollback", "--release", name), ("switch", "--release", name)):
        refused = project.fab("test", *args)
        why = f"release {name} is building, not complete: refusing"
        if refused.returncode != 1 or why not in refused.stderr:
            problems.append(f"{args[0]} --release <leftover>: exit {refused.returncode}")
    if any(project.current(h.name) == f"releases/{name}" for h in project.hosts):
        problems.append("the leftover went live")

    project.config["keep_releases"] = 1
    project.ok("test", "deploy")
    problems += [
        f"{h.name}: cleanup kept the leftover"
        for h in project.hosts
        if name in project.releases(h.name)
    ]
    v = problems + violations(project)
    faults.record(
        "fault",
        "deploy SIGKILLed in prepare (half-built release, lock left)",
        violations=len(v),
        outcome=outcome(
            v, "lock kept and named; unlock works; rollback skips the leftover; cleanup removes it"
        ),
    )
    assert v == []


# --- 2. symlinks planted in releases/ ---------------------------------------------------------


def test_symlinks_planted_in_releases_are_never_followed_nor_rolled_back_to(project, tmp_path):
    outside = outside_dir(tmp_path)
    untouched = tree(outside)
    planted_link, planted_dir = "20200101T000000Z", "20200102T000000Z"
    for h in project.hosts:
        path = project.deploy_path(h.name)
        (path / "releases" / planted_dir / "public").mkdir(parents=True)
        (path / "releases" / planted_dir / "public" / "index.php").write_text("<?php echo 'old';\n")
        (path / "releases" / planted_dir / "evil").symlink_to(outside)
        (path / "releases" / planted_link).symlink_to(outside)
        (path / ".dep").mkdir()
        (path / ".dep" / "releases.log").write_text(
            "".join(
                f'{{"release": "{n}", "state": "complete", "time": "2020-01-02T00:00:00Z"}}\n'
                for n in (planted_link, planted_dir)
            )
        )
    plant_sentinels(project)
    project.config["keep_releases"] = 1
    for version in ("1", "2", "3"):
        write_app(project.app, version)
        project.ok("test", "deploy")
    problems = []
    for h in project.hosts:
        if planted_dir in project.releases(h.name):
            problems.append(f"{h.name}: cleanup kept the old release holding `evil`")
    project.ok("test", "rollback")
    problems += [
        f"{h.name}: rollback served {project.served(h.name)!r}"
        for h in project.hosts
        if project.served(h.name) != "<?php echo 'version 2';\n"
    ]
    # Nothing older is left but the planted link: it must not be a rollback target.
    again = project.fab("test", "rollback")
    if again.returncode != 1 or "no complete release older than" not in again.stderr:
        problems.append(f"a second rollback: exit {again.returncode}: {again.stderr}")
    named = project.fab("test", "rollback", "--release", planted_link)
    if named.returncode != 1 or "does not exist on this host" not in named.stderr:
        problems.append(f"rollback --release <planted link>: exit {named.returncode}")
    problems += [
        f"{h.name}: current -> {project.current(h.name)}"
        for h in project.hosts
        if planted_link in (project.current(h.name) or "")
    ]
    v = problems + violations(project)
    if tree(outside) != untouched:
        v.append("the directory outside deploy_path changed")
    faults.record(
        "path safety",
        "symlinks planted in releases/ (a release, and inside one)",
        violations=len(v),
        outcome=outcome(
            v,
            "cleanup removed the real release without following its"
            " link; the planted link never listed nor rolled back to",
        ),
    )
    assert v == []


# --- 3. a symlink planted in shared/ ----------------------------------------------------------


# acl and chown once followed every link below the shared dirs (`-L -R`): found by this test.
@pytest.mark.parametrize("mode", ["chmod", "acl", "chown"])
def test_a_symlink_planted_in_shared_never_lets_a_deploy_change_anything_outside(
    project, tmp_path, mode
):
    outside = outside_dir(tmp_path)
    untouched = tree(outside)
    project.config.update(writable_mode=mode, http_user="nobody", keep_releases=1)
    project.ok("test", "deploy")
    plant_sentinels(project)
    for h in project.hosts:
        storage = project.deploy_path(h.name) / "shared" / "storage"
        (storage / "outside").symlink_to(outside)
        (storage / "logs" / "outside-file").symlink_to(outside / "precious.txt")
    write_app(project.app, "2")
    project.ok("test", "deploy")
    project.ok("test", "rollback")
    write_app(project.app, "3")
    project.ok("test", "deploy")  # keep_releases 1: cleanup removes both earlier releases
    v = violations(project)
    after = tree(outside)
    v += [
        f"outside dir, {p}: {changed(untouched.get(p), after.get(p))}"
        for p in sorted(set(untouched) | set(after))
        if untouched.get(p) != after.get(p)
    ]
    for h in project.hosts:
        if not (project.deploy_path(h.name) / "shared" / "storage" / "outside").is_symlink():
            v.append(f"{h.name}: the planted link in shared/ was removed")
    faults.record(
        "path safety",
        f"symlink planted in shared/storage (writable_mode {mode})",
        violations=len(v),
        outcome=outcome(v, "deploys, rollback, cleanup: outside dir untouched"),
    )
    assert v == []


def victim_dir(tmp_path: Path) -> Path:
    """The deploy user's own private files outside deploy_path: a 700 dir, a 600 key file."""
    victim = tmp_path / "home" / ".ssh"
    victim.mkdir(parents=True)
    (victim / "authorized_keys").write_text("ssh-ed25519 AAAA deploy\n")
    (victim / "authorized_keys").chmod(0o600)
    victim.chmod(0o700)
    return victim


WRITABLE_CASES = [("chmod", False), ("acl", False), ("chown", False), ("chown", True)]


@pytest.mark.parametrize("planted", ["storage/logs", "storage/framework"])
@pytest.mark.parametrize(
    ("mode", "sudo"), WRITABLE_CASES, ids=["chmod", "acl", "chown", "sudo chown"]
)
def test_a_link_planted_below_a_shared_dir_never_redirects_a_writable_mode(
    project, tmp_path, mode, sudo, planted
):
    """The web server can write below shared/storage; with writable_dirs below it, a leaf
    (`logs`) or a middle part (`framework`) it replaced by a link to the deploy user's files
    fails the deploy before go-live with one line naming the link, and changes nothing."""
    victim = victim_dir(tmp_path)
    project.config.update(
        writable_mode=mode,
        writable_use_sudo=sudo,
        http_user="nobody",
        writable_dirs=["storage/logs", "storage/framework/cache"],
    )
    project.ok("test", "deploy")
    live = {h.name: project.current(h.name) for h in project.hosts}
    plant_sentinels(project)
    untouched = tree(victim)
    web1 = project.hosts[0].name
    link = project.deploy_path(web1) / "shared" / planted
    if link.is_dir():
        for p in sorted(link.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        link.rmdir()
    link.symlink_to(victim)
    write_app(project.app, "2")
    proc = project.fab("test", "deploy")
    problems = []
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"[{web1}]")]
    expected = f"{link} is a symbolic link: refusing to follow it"
    if proc.returncode != 1 or len(errors) != 1 or expected not in errors[0]:
        problems.append(f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    elif "(not live)" not in errors[0] or "writable" not in errors[0]:
        problems.append(f"the line does not say step and not live: {errors[0]}")
    problems += [
        f"{h.name}: current -> {project.current(h.name)}"
        for h in project.hosts
        if project.current(h.name) != live[h.name]
    ]
    after = tree(victim)
    problems += [
        f"victim {p}: {changed(untouched.get(p), after.get(p))}"
        for p in sorted(set(untouched) | set(after))
        if untouched.get(p) != after.get(p)
    ]
    link.unlink()  # the operator removes the planted link; the next deploy works
    v = problems + violations(project)
    what = "leaf" if planted.endswith("logs") else "middle part"
    faults.record(
        "path safety",
        f"link planted as a writable dir's {what} in shared/ ({'sudo ' if sudo else ''}{mode})",
        violations=len(v),
        outcome=outcome(
            v,
            "refused before go-live, one line naming the link;"
            " the linked dir's mode, ACL and owner kept",
        ),
    )
    assert v == []


# --- 4. hostile names from the inventory and the command line --------------------------------


@pytest.mark.parametrize(
    "how",
    [
        ("shared_dirs", "../x"),
        ("shared_dirs", "/etc"),
        ("shared_files", "config/../../.env"),
        ("shared_dirs", "-rf"),
        *[
            ("cli", *args)
            for args in (
                ("rollback", "--release", "../x"),
                ("rollback", "--release", "/etc"),
                ("rollback", "--release=-rf"),
                ("switch", "--release", "../../etc", "--hosts", "web1"),
            )
        ],
    ],
    ids=lambda how: " ".join(how),
)
def test_a_hostile_path_or_release_name_is_refused_before_any_host_is_contacted(project, how):
    plant_sentinels(project)
    created_before = {h.name: os.listdir(project.deploy_path(h.name)) for h in project.hosts}
    if how[0] == "cli":
        args = how[1:]
    else:
        project.config[how[0]] = [how[1]]
        args = ("deploy",)
    proc = project.fab("test", *args)
    problems = []
    lines = proc.stderr.strip().splitlines()
    said = f"exit {proc.returncode}, {len(lines)} line(s)"
    if proc.returncode != 2 or len(lines) != 1 or "Traceback" in proc.stderr:
        problems.append(f"{said}: {proc.stderr.strip()}")
    made: set[str] = set()
    for h in project.hosts:
        new = set(os.listdir(project.deploy_path(h.name))) - set(created_before[h.name])
        made |= new
        if new:
            problems.append(f"{h.name}: created {sorted(new)}")
    project.config = {**project.config, "shared_dirs": ["storage"], "shared_files": [".env"]}
    v = problems + violations(project, expect_current=False)
    outcome = "refused: exit 2, one line, no host dir made"
    if problems:
        got = f", hosts got {', '.join(sorted(made))}" if made else ""
        outcome = f"not refused up front: {said}{got}"
    faults.record(
        "path safety", f"hostile name: {' '.join(how)}", violations=len(v), outcome=outcome
    )
    assert v == []


# --- 5. modes: secrets stay private, nothing is world-writable --------------------------------


def world_writable(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            p = Path(dirpath) / name
            st = p.lstat()
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & stat.S_IWOTH:
                found.append(f"{p} ({oct(st.st_mode & 0o7777)})")
    return found


def test_a_secret_file_is_seeded_0600_from_a_0644_source(project):
    """A developer's checkout has `.env` at 0644: the copy seeded into shared/ is 0600."""
    (project.app / ".env").chmod(0o644)
    project.config.update(shared_files=[".env", "config/public.ini"])
    (project.app / "config").mkdir()
    (project.app / "config" / "public.ini").write_text("x=1\n")
    (project.app / "config" / "public.ini").chmod(0o644)
    project.ok("test", "deploy")
    plant_sentinels(project)
    problems = []
    for h in project.hosts:
        shared = project.deploy_path(h.name) / "shared"
        files = (".env", "config/public.ini")
        modes = {f: stat.S_IMODE((shared / f).stat().st_mode) for f in files}
        if modes != {".env": 0o600, "config/public.ini": 0o644}:
            problems.append(f"{h.name}: { ({f: oct(m) for f, m in modes.items()}) }")
    project.config.update(shared_files=[".env"])
    v = problems + violations(project)
    faults.record(
        "path safety",
        "shared/.env seeded from a 0644 source",
        violations=len(v),
        outcome=outcome(v, "created 0600 (secret_files); other shared files keep their mode"),
    )
    assert v == []


def test_secrets_stay_0600_and_nothing_deployed_is_world_writable(project):
    web1 = project.hosts[0].name
    env = project.deploy_path(web1) / "shared" / ".env"
    env.parent.mkdir(parents=True)
    env.write_text("APP_KEY=host\n")  # set on the host beforehand, private
    env.chmod(0o600)
    plant_sentinels(project)
    (project.app / ".env").chmod(0o600)  # private in the source too
    # The lock and the log as they are while a deploy holds the lock.
    project.config["hooks"] = {
        "before_switch": [
            'stat -c "%a" "$DEPLOY_PATH/.dep/deploy.lock" "$DEPLOY_PATH/.dep/releases.log"'
            " > LOCK_MODES"
        ]
    }
    project.ok("test", "deploy")
    (project.app / ".env").chmod(0o644)  # a later source with a wider mode changes nothing
    write_app(project.app, "2")
    project.ok("test", "deploy")
    project.ok("test", "rollback")
    problems = []
    for h in project.hosts:
        path = project.deploy_path(h.name)
        shared_env = path / "shared" / ".env"
        mode = stat.S_IMODE(shared_env.stat().st_mode)
        content = "APP_KEY=host\n" if h.name == web1 else "APP_KEY=secret\n"
        if mode != 0o600 or shared_env.read_text() != content:
            problems.append(f"{h.name}: shared/.env is {oct(mode)}, {shared_env.read_text()!r}")
        if not (path / "current" / ".env").is_symlink():
            problems.append(f"{h.name}: the release's .env is not the link to shared/.env")
        problems += world_writable(path / "releases") + world_writable(path / "shared")
        problems += world_writable(path / ".dep")
        for release in project.releases(h.name):
            for m in (path / "releases" / release / "LOCK_MODES").read_text().split():
                if int(m, 8) & stat.S_IWOTH:
                    problems.append(f"{h.name}: lock or log was {m} during the deploy")
    del project.config["hooks"]
    v = problems + violations(project)
    faults.record(
        "path safety",
        "modes: shared/.env 0600 (source, host), lock, log, releases",
        violations=len(v),
        outcome=outcome(v, "0600 kept; nothing world-writable (host umask 022)"),
    )
    assert v == []


# --- 6. text from hosts reaches the terminal escaped ------------------------------------------

HOSTILE_TEXT = "\x1b]0;owned\x07\x1b[2J\rspoofed\u202e"


FORGED = "[web2] live: nothing of the kind"  # a line a host must not be able to print


def raw_controls(text: str) -> list[str]:
    return sorted({repr(c) for c in text if not (c.isprintable() or c in "\n\t")})


def test_control_characters_from_a_host_reach_the_terminal_escaped(project):
    """A release directory, a lock owner and a hook's stderr carrying terminal escapes (clear
    the screen, retitle the window, overwrite the line, reverse the text) are printed with
    their control characters escaped, and a newline in them never prints a line of its own."""
    project.ok("test", "deploy")
    plant_sentinels(project)
    web1 = project.hosts[0].name
    path = project.deploy_path(web1)
    (path / "releases" / f"20000101T000000Z{HOSTILE_TEXT}").mkdir()
    (path / "releases" / f"x\n{FORGED}\n@@ad:lock@@\n{FORGED}").mkdir()
    held = path / ".dep" / "deploy.lock"
    held.mkdir()
    (held / "owner").write_text(
        json.dumps({"user": f"eve{HOSTILE_TEXT}\n{FORGED}", "host": "h", "pid": 1, "time": "t"})
    )
    outputs = {}
    for args in (("releases",), ("status",), ("deploy",), ("unlock",)):
        proc = project.fab("test", *args)
        outputs[" ".join(args)] = proc
    project.config["hooks"] = {"before_switch": [f"printf '%s\\n' '{HOSTILE_TEXT}' >&2; exit 3"]}
    outputs["deploy, hook fails"] = project.fab("test", "deploy")
    del project.config["hooks"]
    problems = [
        f"fab test {what}: raw {raw_controls(p.stdout + p.stderr)}"
        for what, p in outputs.items()
        if raw_controls(p.stdout + p.stderr)
    ]
    problems += [
        f"fab test {what}: a line of the host's: {line!r}"
        for what, p in outputs.items()
        for line in (p.stdout + p.stderr).splitlines()
        if line.lstrip().startswith(FORGED)
    ]
    if "\\x1b]0;owned\\x07" not in outputs["deploy"].stderr:
        problems.append(f"the lock owner is not shown escaped: {outputs['deploy'].stderr[-300:]}")
    if outputs["deploy"].returncode != 1:
        problems.append("the held lock did not stop the deploy")
    v = problems + violations(project)
    faults.record(
        "security",
        "terminal escapes and newlines in a release name, a lock owner, a hook's stderr",
        violations=len(v),
        outcome=outcome(
            v,
            "printed escaped (\\x1b..., \\x0a); nothing reached the"
            " terminal raw; no line of the host's making",
        ),
    )
    assert v == []


def test_a_placeholder_holding_shell_text_is_data_in_a_hook(project):
    """`{{application}}` in a hook command stands for one word, quoted: the `touch` inside the
    value is printed, never run."""
    project.config.update(
        application="shop; touch pwned-by-placeholder",
        hooks={"after_switch": ["echo {{application}} > APPNAME"]},
    )
    project.ok("test", "deploy")
    problems = []
    for h in project.hosts:
        path = project.deploy_path(h.name)
        said = (path / "current" / "APPNAME").read_text()
        if said != "shop; touch pwned-by-placeholder\n":
            problems.append(f"{h.name}: the hook printed {said!r}")
        problems += [f"{h.name}: {p} exists" for p in path.rglob("pwned-by-placeholder")]
    faults.record(
        "bad input",
        "{{application}} holding '; touch x' in a hook, on real hosts",
        violations=len(problems),
        outcome=outcome(problems, "printed as one word; the touch never ran"),
    )
    assert problems == []


@pytest.mark.parametrize(
    ("how", "hook"),
    [
        ("in single quotes", "echo '{{application}}' > APPNAME"),
        ("in double quotes", 'echo "{{application}}" > APPNAME'),
        ("in a here-document", "cat > APPNAME <<EOF\n{{application}}\nEOF"),
    ],
    ids=lambda x: x.split()[-1] if x.startswith("in ") else "",
)
def test_a_placeholder_written_inside_quotes_is_refused_before_any_host_is_contacted(
    project, how, hook
):
    """Inside quotes or a here-document a shell-quoted value is read as code (`'{{x}}'` with
    `x: "a'; touch y; '"`): such a hook is refused at load, exit 2, one line; the deploy
    that follows once it is written unquoted prints the value and never runs it."""
    project.ok("test", "deploy")
    plant_sentinels(project)
    before = {h.name: project.current(h.name) for h in project.hosts}
    project.config.update(
        application="shop; touch pwned-by-placeholder $(touch pwned-by-it)",
        hooks={"after_switch": [hook]},
    )
    proc = project.fab("test", "deploy")
    problems = []
    lines = proc.stderr.strip().splitlines()
    if proc.returncode != 2 or len(lines) != 1 or "stands inside" not in proc.stderr:
        problems.append(f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    problems += [
        f"{h.name}: now on {project.current(h.name)}"
        for h in project.hosts
        if project.current(h.name) != before[h.name]
    ]
    project.config["hooks"] = {"after_switch": ["echo {{application}} > APPNAME"]}
    write_app(project.app, "2")
    project.ok("test", "deploy")
    for h in project.hosts:
        path = project.deploy_path(h.name)
        said = (path / "current" / "APPNAME").read_text()
        if said != "shop; touch pwned-by-placeholder $(touch pwned-by-it)\n":
            problems.append(f"{h.name}: the hook printed {said!r}")
        problems += [f"{h.name}: {p} exists" for p in path.rglob("pwned-by-*")]
    del project.config["hooks"]
    v = problems + violations(project)
    faults.record(
        "bad input",
        f"{{{{application}}}} holding shell code, {how} in a hook, on real hosts",
        violations=len(v),
        outcome=outcome(
            v,
            "refused at load (exit 2, one line, no host touched);"
            " written unquoted, printed as one word",
        ),
    )
    assert v == []


def test_a_logged_release_named_like_an_option_is_left_alone_and_the_lock_released(project):
    """A `.dep/releases.log` line for a directory named `-x` (not a name we make) must not stop
    cleanup before its unlock: the name is left alone with a warning, the rest goes on."""
    project.config["keep_releases"] = 1
    project.ok("test", "deploy")
    plant_sentinels(project)
    web1 = project.hosts[0].name
    path = project.deploy_path(web1)
    (path / "releases" / "-x").mkdir()
    (path / "releases" / "-x" / "keep.txt").write_text("mine\n")
    with (path / ".dep" / "releases.log").open("a") as log:
        log.write('{"release": "-x", "state": "complete", "time": "2000-01-01T00:00:00Z"}\n')
    write_app(project.app, "2")
    proc = project.fab("test", "deploy")
    problems = []
    if proc.returncode != 0:
        problems.append(f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    if "left '-x' alone" not in proc.stderr:
        problems.append(f"no warning naming '-x': {proc.stderr.strip()[-300:]}")
    if project.locked(web1):
        problems.append("the lock was left held")
    if (path / "releases" / "-x" / "keep.txt").read_text() != "mine\n":
        problems.append("'-x' was touched")
    v = problems + violations(project)
    faults.record(
        "path safety",
        "a logged release directory named '-x'",
        violations=len(v),
        outcome=outcome(v, "left alone with a warning; cleanup and unlock went on"),
    )
    assert v == []


def test_a_long_releases_log_is_compacted_and_still_chooses_the_right_releases(project):
    """20,000 lines of releases long gone: the next deploy reads only the log's tail, cleanup
    keeps only the lines the releases still on the host are read from, and rollback still
    finds its target."""
    project.config["keep_releases"] = 2
    project.ok("test", "deploy")
    plant_sentinels(project)
    first = {h.name: project.current(h.name) for h in project.hosts}
    old = "".join(
        f'{{"release": "19990101T{i:06d}Z", "state": "complete", "time": "x"}}\n'
        for i in range(20_000)
    )
    for h in project.hosts:
        log = project.deploy_path(h.name) / ".dep" / "releases.log"
        log.write_text(old + log.read_text())
    write_app(project.app, "2")
    project.ok("test", "deploy")
    problems = []
    for h in project.hosts:
        entries = project.log(h.name)
        names = {e["release"] for e in entries}
        if len(entries) > 20 or names != set(project.releases(h.name)):
            problems.append(f"{h.name}: {len(entries)} log lines for {sorted(names)[:3]}...")
    project.ok("test", "rollback")
    problems += [
        f"{h.name}: rolled back to {project.current(h.name)}"
        for h in project.hosts
        if project.current(h.name) != first[h.name]
    ]
    v = problems + violations(project)
    faults.record(
        "fault",
        "releases.log with 20,000 lines of removed releases",
        violations=len(v),
        outcome=outcome(
            v,
            "compacted by cleanup to the lines of the releases on the host;"
            " rollback target still right",
        ),
    )
    assert v == []


def test_every_script_runs_with_the_configured_umask(project):
    """What atomicdeploy's scripts create (the log, the shared dirs it makes) has the modes
    the `umask` setting gives, whatever the account's login settings."""
    project.config.update(umask="027", shared_dirs=["storage", "var/sessions"])
    project.ok("test", "deploy")
    problems = []
    for h in project.hosts:
        path = project.deploy_path(h.name)
        modes = {
            p: stat.S_IMODE((path / p).stat().st_mode)
            for p in (".dep/releases.log", "shared/var/sessions", "shared/var")
        }
        want = {".dep/releases.log": 0o640, "shared/var/sessions": 0o750, "shared/var": 0o750}
        if modes != want:
            problems.append(f"{h.name}: { ({p: oct(m) for p, m in modes.items()}) }")
    assert problems == []
