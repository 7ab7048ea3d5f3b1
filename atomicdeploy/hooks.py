"""Hooks: the user's own work at named points of a deploy, without forking the recipe.

Deployer users write `after('deploy:shared', ...)`, Capistrano users `before :publishing`.
Here a hook point is `before_<step>` or `after_<step>` for a step of `STEPS`, plus
`on_failure`. Hooks come from two places, run in this order at each point:

1. recipes the inventory opts into (`recipes: [composer, laravel]`), then
2. the inventory's `hooks:` shell commands (run in the release directory), then
3. Python functions registered on a `Hooks` object: `fn(c, cfg)`, where `c` is the
   host's Fabric Connection and `cfg` the frozen `Config` (host, release, previous).

Everything before `switch` runs while the release is prepared, before the barrier:
a failing hook there fails the deploy and nothing goes live anywhere. `after_switch`
and the cleanup hooks run once every host of the stage is live and healthy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, did_you_mean

# The deploy's steps, in the order they run on each host.
STEPS = ("release", "upload", "shared", "writable", "vendors", "warmup", "switch", "cleanup")
# Points that run before the barrier (prepare) and after it (finish).
PREPARE_POINTS = (
    *(f"{w}_{s}" for s in STEPS[:-2] for w in ("before", "after")),
    "before_switch",
)
FINISH_POINTS = ("after_switch", "before_cleanup", "after_cleanup")
FAILURE = "on_failure"
POINTS = (*PREPARE_POINTS, *FINISH_POINTS, FAILURE)

HookFn = Callable[..., Any]


@dataclass(frozen=True)
class HookCommand:
    """A shell command from the inventory or a recipe, run in the release directory.

    `once`: only on the run's first host (Deployer's `once()`), e.g. database
    migrations, which must not run on every web node at the same time.
    `roles`: only on hosts with one of these roles (none: every host); with `once`, on the
    run's first host that has one.
    """

    run: str
    once: bool = False
    roles: tuple[str, ...] = ()
    requires: str = ""  # a file of the release; the command is skipped when it is absent
    source: str = "inventory"  # or the recipe's name, for messages


def for_roles(only: Iterable[str], roles: Iterable[str]) -> bool:
    """Whether something limited to the roles `only` (none: no limit) is for a host that has
    `roles`."""
    only = tuple(only)
    return not only or bool(set(only) & set(roles))


def unknown_point(point: object) -> str:
    """The message for a hook point that does not exist, naming the valid ones."""
    return f"unknown hook point {point!r}{did_you_mean(point, POINTS)}; valid: {', '.join(POINTS)}"


def check_point(point: str, where: str = "hook") -> str:
    """A valid hook point, or a ConfigError naming the valid ones."""
    if point in POINTS:
        return point
    raise ConfigError(f"{where}: {unknown_point(point)}")


def point_name(when: str, step: str) -> str:
    """`before`/`after` + a step name, checked: `before("switch")` -> `before_switch`."""
    if step not in STEPS:
        also = did_you_mean(step, STEPS)
        raise ConfigError(f"{when}({step!r}): unknown step{also}; valid steps: {', '.join(STEPS)}")
    return check_point(f"{when}_{step}")


class Hooks:
    """Python hooks, registered in a fabfile and passed to the tasks (no module global).

        hooks = Hooks()

        @hooks.after("upload")
        def build_assets(c, cfg):
            c.run(f"cd {cfg.release_path} && npm ci && npm run build")

        hooks.before("switch", notify_team)
        ns = namespace(hooks=hooks)

    A mistake in a step name is kept and reported by `check()` when a task starts,
    as one line with exit code 2, instead of a traceback while `fab` loads the fabfile.
    """

    def __init__(self) -> None:
        self._at: dict[str, list[tuple[HookFn, tuple[str, ...]]]] = {}
        self._problems: list[str] = []

    def before(self, step: str, fn: HookFn | None = None, *, roles: Iterable[str] = ()) -> Any:
        """`fn(c, cfg)` before `step`; with `roles`, only on hosts that have one of them."""
        return self._register("before", step, fn, roles)

    def after(self, step: str, fn: HookFn | None = None, *, roles: Iterable[str] = ()) -> Any:
        """`fn(c, cfg)` after `step`; with `roles`, only on hosts that have one of them."""
        return self._register("after", step, fn, roles)

    def on_failure(self, fn: HookFn) -> HookFn:
        """`fn(c, cfg, error)` on every host after a failed deploy has been cleaned up."""
        self._at.setdefault(FAILURE, []).append((fn, ()))
        return fn

    def _register(self, when: str, step: str, fn: HookFn | None, roles: Iterable[str]) -> Any:
        if callable(step):  # `@hooks.after` without a step name
            self._problems.append(
                f"@hooks.{when} needs a step name, e.g. @hooks.{when}('upload')"
                f"; valid steps: {', '.join(STEPS)}"
            )
            return step

        wanted = (roles,) if isinstance(roles, str) else tuple(roles)

        def add(f: HookFn) -> HookFn:
            try:
                self._at.setdefault(point_name(when, step), []).append((f, wanted))
            except ConfigError as exc:
                self._problems.append(exc.message)
            return f

        return add if fn is None else add(fn)

    def check(self) -> None:
        if self._problems:
            raise ConfigError(self._problems[0])

    def at(self, point: str, roles: Iterable[str] | None = None) -> tuple[HookFn, ...]:
        """The functions at `point`; given a host's `roles`, only those meant for it."""
        entries = self._at.get(point, ())
        if roles is None:
            return tuple(fn for fn, _ in entries)
        return tuple(fn for fn, only in entries if for_roles(only, roles))

    def __bool__(self) -> bool:
        return any(self._at.values())

    def __copy__(self) -> Hooks:
        # Invoke copies config values; a registry must stay one object.
        return self


def describe(fn: HookFn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
