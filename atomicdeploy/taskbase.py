"""What every task does around its body: choose the inventory and the stage, and turn an
expected failure into one line per host and an exit code (never a traceback).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fabric import Connection
from invoke import Context, Exit

from . import inventory as inventory_mod
from . import pipeline, plan, secrets
from .errors import EXIT_INTERRUPTED, EXIT_USAGE, AtomicDeployError, ConfigError, FleetError
from .hooks import Hooks
from .inventory import HostConfig, Inventory
from .layout import check_release_name
from .report import Reporter

ENV_INVENTORY = "ATOMICDEPLOY_INVENTORY"
DEFAULT_INVENTORY = "inventory.yml"


def default_inventory_path() -> Path:
    return Path(os.environ.get(ENV_INVENTORY) or DEFAULT_INVENTORY)


def selection(c: Context, stage: str | None, inventory: str | None) -> tuple[Inventory, str]:
    """Which inventory and stage this task runs on: options first, then the stage task."""
    if isinstance(c, Connection):
        raise Exit(
            "atomicdeploy takes its hosts from the inventory: do not combine it with -H",
            code=EXIT_USAGE,
        )
    chosen = c.config.get("atomicdeploy") or {}
    path = Path(inventory or chosen.get("inventory") or default_inventory_path())
    stage = stage or chosen.get("stage")
    inv = chosen.get("loaded")
    if not isinstance(inv, Inventory) or inv.path.resolve() != path.resolve():
        try:
            inv = inventory_mod.load(path)
        except AtomicDeployError as exc:
            raise Exit(str(exc), code=exc.exit_code) from None
    if not stage:
        stages = ", ".join(sorted(inv.stages)) or "none defined"
        raise Exit(
            f"no stage selected: run e.g. `fab {next(iter(sorted(inv.stages)), 'prod')}"
            f" deploy` (stages: {stages})",
            code=EXIT_USAGE,
        )
    return inv, stage


def release_option(release: str | None) -> str | None:
    """`--release` names one directory under releases/: checked before any host is contacted."""
    if release is None:
        return None
    try:
        return check_release_name(release)
    except ConfigError as exc:
        raise Exit(f"--release: {exc.message}", code=EXIT_USAGE) from None


def python_hooks(c: Context) -> Hooks:
    """Python hooks given to `namespace(hooks=...)`/`install(...)`, else none."""
    found = (c.config.get("atomicdeploy") or {}).get("hooks")
    return found if isinstance(found, Hooks) else Hooks()


def _masker(hosts: Sequence[HostConfig]) -> Callable[[str], str]:
    """Webhook URLs, `secrets:` values and the passwords inside the health-check and opcache
    URLs become *** in everything we print (any other URL's password too: see Masker.mask)."""
    values = [v for h in hosts for v in (*h.webhook, *h.secrets.values())]
    urls = [h.healthcheck.url for h in hosts if h.healthcheck]
    urls += [h.opcache.url for h in hosts if h.opcache.url]
    urls += [h.repository for h in hosts if h.repository]
    return secrets.Masker.of([*values, *secrets.url_passwords(urls)]).mask


def stage_hosts(inv: Inventory, stage: str) -> tuple[HostConfig, ...]:
    try:
        return inv.stage(stage)
    except AtomicDeployError as exc:
        raise Exit(str(exc), code=exc.exit_code) from None


def _report_failure(reporter: Reporter, exc: AtomicDeployError) -> None:
    if isinstance(exc, FleetError):
        for name, err in exc.failures.items():
            reporter.error(_one_line(name, err))
    reporter.error(f"atomicdeploy: {exc.message if isinstance(exc, FleetError) else exc}")


def _one_line(name: str, err: BaseException) -> str:
    if isinstance(err, AtomicDeployError):
        where = f" at step '{err.step}'" if err.step else ""
        live = "live" if err.live else "not live"
        return f"[{name}] failed{where} ({live}): {err.message}"
    return f"[{name}] failed: {type(err).__name__}: {err}"


def guarded(body: Callable[[Reporter], Any], hosts: Sequence[HostConfig] = ()) -> Any:
    """Run a task body: expected failures become one line per host and an exit code.

    SIGTERM (a cancelled CI job) is handled like Ctrl-C: the pipeline cleans up what
    it started (or finishes a go-live it began) and we exit 130.
    """
    reporter = Reporter(mask=_masker(hosts))
    old = _sigterm_as_interrupt()
    try:
        return body(reporter)
    except AtomicDeployError as exc:
        reporter.end_progress()
        _report_failure(reporter, exc)
        raise Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        reporter.end_progress()
        reporter.error(
            "atomicdeploy: interrupted; see the lines above for what each host"
            " was left with (exit 130)"
        )
        raise Exit(code=EXIT_INTERRUPTED) from None
    finally:
        reporter.end_progress()
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


HOSTS_HELP = "comma-separated host names of the stage (default: every host)"
ROLES_HELP = "comma-separated roles: only the stage's hosts with one of them"


def chosen_hosts(
    inv: Inventory, stage: str, hosts: str | None, roles: str | None
) -> tuple[HostConfig, ...]:
    """The stage's hosts picked by `--hosts`/`--roles`: bad names stop here, exit 2, before
    any host is contacted."""
    try:
        return plan.select(stage_hosts(inv, stage), stage, hosts, roles)
    except ConfigError as exc:
        raise Exit(exc.message, code=EXIT_USAGE) from None


def say_split(
    c: Context,
    reporter: Reporter,
    inv: Inventory,
    stage: str,
    live: dict[str, str],
) -> None:
    """After a run on part of the stage: where every host of the stage is now, read from
    the hosts left out (read-only), if they are not all on the same release."""
    others = tuple(h for h in stage_hosts(inv, stage) if h.name not in live)
    if not others:
        return
    states, failures = pipeline.read_states(others, reporter, stage=stage, fabric_config=c.config)
    for name, exc in failures.items():
        reporter.warn(name, f"could not read which release is live: {exc}")
    where: dict[str, str | None] = {**live, **{n: st.current for n, st in states.items()}}
    if len(set(where.values())) > 1:
        reporter.line(f"stage {stage} is split on purpose: {plan.split_line(where, list(live))}")
