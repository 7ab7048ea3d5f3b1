"""The deploy as a run: a short script of phases, each a method that raises when the deploy
stops.

    lock+read -> (already live? stop) -> name the release -> prepare (barrier) -> once
    -> go-live (golive.py) -> finish

Nothing goes live anywhere unless every host has prepared; a failure before the switch
removes the new release and releases the lock on every host.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

from . import golive, plan
from .errors import EXIT_LIVE_HOOK_FAILED, AtomicDeployError
from .releases import HostState, new_release_name
from .remote import Remote, RsyncStats
from .run import Run, fail
from .steps import build, cleanup, hook, upload


class Deploy(Run):
    """One deploy. `cfgs` learn the release's name (and each host's live one) once it is
    chosen, so the `on_failure` hooks that run after a failure see them."""

    def run(self) -> None:
        states = self.lock_and_read(upload=True)
        if self.already_live(states):
            return
        name = self.name_release(states)
        for line in hook.unmatched_once(list(self.cfgs.values())):
            self.reporter.line(line)
        created = self.prepare()
        self.once(created)
        interrupted = golive.deploy(self, name)
        self.finish(states, name, interrupted)

    def already_live(self, states: dict[str, HostState]) -> bool:
        """This revision already live everywhere: unlock, say so, and do nothing."""
        revision = self.opts.revision
        if not plan.already_live(states, revision, self.opts.force):
            return False
        self.unlock(self.names)
        for n, state in states.items():
            self.outcome.release[n] = state.current or "-"
            self.outcome.result[n] = "already live"
        self.outcome.unchanged = True
        self.reporter.line(
            f"revision {revision[:12]} is already live on every host of"
            f" {self.opts.stage}: nothing to do (--force deploys it again)"
        )
        return True

    def name_release(self, states: dict[str, HostState]) -> str:
        """One name for every host, computed here; the configs learn it and the live one."""
        taken = {r.name for s in states.values() for r in s.releases}
        name = new_release_name(datetime.now(UTC), taken, self.opts.tag)
        self.cfgs = {
            n: replace(c, release=name, previous=states[n].current, host_rsync=states[n].rsync)
            for n, c in self.cfgs.items()
        }
        for n, c in self.cfgs.items():
            self.outcome.release[n], self.outcome.previous[n] = name, c.previous
        revision = next(iter(self.cfgs.values())).run.revision
        rev = f" (revision {revision[:12]})" if revision else ""
        dry = " (dry run: nothing is changed)" if self.opts.dry_run else ""
        self.reporter.line(
            f"deploying release {name}{rev} to {self.opts.stage}: {', '.join(self.cfgs)}{dry}"
        )
        return name

    def prepare(self) -> set[str]:
        """Every host builds the release; if any fails, none keeps it. Returns the hosts that
        started one (all of them, once this returns)."""
        created: set[str] = set()
        guard = threading.Lock()
        verb = "would upload" if self.opts.dry_run else "uploaded"

        def prepare(r: Remote) -> RsyncStats:
            cfg = self.cfgs[r.name]
            with guard:  # known even if this host fails: its half-made release is removed
                created.add(r.name)
            build.begin(r, cfg, self.hooks)
            stats = upload.upload(r, cfg)
            sent = f"{stats.files_transferred} changed file(s), {stats.bytes_sent} bytes"
            self.reporter.host(r.name, f"{verb} {sent}")
            build.build(r, cfg, self.hooks)
            return stats

        try:
            uploads, failures = self.fleet.each(prepare, phase="prepare")
        except KeyboardInterrupt:
            self.abort(self.names, created, "interrupted")
            self.reporter.error(
                "interrupted during prepare: nothing went live; the unactivated"
                " release was removed and our locks released"
            )
            raise
        self.outcome.uploads.update(uploads)
        if failures:
            self.abort(self.names, created, "another host failed" if uploads else "failed")
            raise fail("prepare", failures, len(self.cfgs))
        return created

    def once(self, created: set[str]) -> None:
        """before_switch's `once` commands (e.g. `artisan migrate`), after every host has
        prepared: a database is never migrated for a release that another host then fails
        to build. They run on the run's first host (or first host of their roles)."""
        scripts = {n: hook.script(c, "before_switch", once=True) for n, c in self.cfgs.items()}
        where = [n for n, text in scripts.items() if text]
        if not where:
            return

        def once(r: Remote) -> None:
            plan = [("hook before_switch (once)", scripts[r.name])]
            hook.run_plan(r, self.cfgs[r.name], plan, "hook before_switch")

        _, failures = self.fleet.each(once, where, phase="once")
        if failures:
            self.abort(self.names, created, "a once hook failed")
            raise fail("before_switch (once)", failures, len(self.cfgs))

    def finish(self, states: dict[str, HostState], name: str, interrupted: bool) -> None:
        """The release is live: after-switch hooks, cleanup and unlock on every host."""
        # The release is live: an interrupt now waits for after-switch hooks, cleanup and
        # unlock on every host (command_timeout bounds them), so no lock is left behind.
        with golive.deferred_interrupts() as late:
            removed, failures = self.fleet.each(
                lambda r: self._finish(r, states[r.name]), phase="finish", wide=True
            )
        self.outcome.removed.update({n: v for n, v in removed.items() if v is not None})
        hook_failures = {
            n: e
            for n, e in failures.items()
            if isinstance(e, AtomicDeployError) and (e.step or "").startswith("hook")
        }
        for n, exc in failures.items():
            if n not in hook_failures:
                self.reporter.warn(n, f"after go-live: {exc}")
        results = plan.finish_results(self.names, list(hook_failures), self.opts.dry_run)
        self.outcome.result.update(results)
        self.summary()
        if interrupted or late:
            when = "during go-live" if interrupted else "after go-live"
            self.reporter.error(
                f"interrupted {when}: release {name} is live on every host"
                " and our locks are released"
            )
            raise KeyboardInterrupt
        if hook_failures:
            raise fail(
                "after go-live",
                hook_failures,
                len(self.cfgs),
                note=f"; release {name} is live on every host",
                exit_code=EXIT_LIVE_HOOK_FAILED,
            )

    def _finish(self, r: Remote, state: HostState) -> list[str] | None:
        """One host: after-switch hooks, cleanup, unlock, after-cleanup hooks. Returns the
        releases cleanup removed (None if it failed)."""
        cfg = self.cfgs[r.name]
        try:
            build.after_switch(r, cfg, self.hooks)
        except AtomicDeployError as exc:
            exc.live = True
            self.unlock([r.name])
            raise
        removed = self._cleanup(r, state)
        try:
            build.after_cleanup(r, cfg, self.hooks)
        except AtomicDeployError as exc:
            exc.live = True
            raise
        return removed

    def _cleanup(self, r: Remote, state: HostState) -> list[str] | None:
        """Cleanup and unlock; trouble is a warning, since the release is live."""
        cfg = self.cfgs[r.name]
        victims, odd = cleanup.victims_after_go_live(state, cfg)
        self.warn_left_alone(r.name, odd)
        try:
            cleanup.cleanup_and_unlock(r, cfg, victims, state)
        except AtomicDeployError as exc:
            self.reporter.warn(r.name, f"cleanup failed (the deploy is live): {exc.message}")
            return None
        if victims:
            verb = "would remove" if self.opts.dry_run else "removed"
            self.reporter.host(r.name, f"cleanup: {verb} {', '.join(victims)}")
        return victims
