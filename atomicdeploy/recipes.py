"""Recipes: the usual framework steps as hook commands users opt into.

`recipes: [composer, laravel]` in the inventory adds these commands at their hook
points, before the inventory's own hooks. Each command names the file it needs, so
a recipe never fails on a release that does not use it: the composer step runs only
when `composer.json` is in the release, artisan commands only when `artisan` is.
Pure data: `shell.hook` turns them into shell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .hooks import HookCommand

RECIPES = ("composer", "laravel", "symfony")
COMPOSER_OPTIONS = (
    "install --no-dev --prefer-dist --no-interaction --optimize-autoloader --no-progress"
)

Recipe = Mapping[str, tuple[HookCommand, ...]]

# The settings Deployer 7's recipes set (recipe/laravel.php, recipe/symfony.php): used for a
# host that lists the recipe and does not set the key itself, at `config:` or on the host.
DEFAULTS: Mapping[str, Mapping[str, list[str]]] = {
    "laravel": {
        "shared_dirs": ["storage"],
        "shared_files": [".env"],
        "writable_dirs": [
            "bootstrap/cache",
            "storage",
            "storage/app",
            "storage/app/public",
            "storage/framework",
            "storage/framework/cache",
            "storage/framework/sessions",
            "storage/framework/views",
            "storage/logs",
        ],
    },
    "symfony": {
        "shared_dirs": ["var/log", "var/sessions"],
        "shared_files": [".env.local"],
        "writable_dirs": ["var"],
    },
}


def with_defaults(raw: Mapping[str, object]) -> dict[str, object]:
    """A host's keys with the defaults of the recipes it lists filled in where unset."""
    out = dict(raw)
    recipes = raw.get("recipes")
    for name in recipes if isinstance(recipes, list) else ():
        for key, value in DEFAULTS.get(name, {}).items() if isinstance(name, str) else ():
            out.setdefault(key, list(value))
    return out


def composer(binary: str, options: str) -> Recipe:
    """Deployer's deploy:vendors: install the release's own vendors on the host."""
    run = f"{binary} {options}"
    return {"after_vendors": (HookCommand(run, requires="composer.json", source="composer"),)}


def laravel(workers: bool = False, php: str = "php") -> Recipe:
    """Deployer's laravel recipe: storage link and caches on every host, migrations once;
    once live, `queue:restart` so queue workers leave the old release's code (on the hosts
    with the role `worker` when the run has any, else on every host)."""

    def artisan(args: str, once: bool = False, roles: tuple[str, ...] = ()) -> HookCommand:
        return HookCommand(
            f"{php} artisan {args} --no-interaction",
            once=once,
            roles=roles,
            requires="artisan",
            source="laravel",
        )

    return {
        "after_vendors": (
            artisan("storage:link"),
            artisan("config:cache"),
            artisan("route:cache"),
            artisan("view:cache"),
            artisan("event:cache"),
        ),
        "before_switch": (artisan("migrate --force", once=True),),
        "after_switch": (artisan("queue:restart", roles=("worker",) if workers else ()),),
    }


def symfony(php: str = "php") -> Recipe:
    """Deployer's symfony recipe: a warm cache in the release before it goes live."""

    def console(args: str) -> HookCommand:
        return HookCommand(
            f"{php} bin/console {args} --no-interaction --env=prod",
            requires="bin/console",
            source="symfony",
        )

    return {"after_vendors": (console("cache:clear --no-warmup"), console("cache:warmup"))}


def commands_for(
    names: Sequence[str],
    *,
    composer_bin: str = "composer",
    composer_options: str = COMPOSER_OPTIONS,
    workers: bool = False,
    php: str = "php",
    built: bool = False,
) -> dict[str, tuple[HookCommand, ...]]:
    """Every recipe's commands by hook point, in the order the recipes are listed.
    `workers`: some host of the run has the role `worker`. `built`: the release was built
    on the controller (`build:`), vendors included, so composer does not run on the hosts.

    laravel and symfony need vendors, so they bring composer along if it is not listed.
    """
    wanted = list(dict.fromkeys(names))
    if any(n in ("laravel", "symfony") for n in wanted) and "composer" not in wanted:
        wanted.insert(0, "composer")
    out: dict[str, tuple[HookCommand, ...]] = {}
    for name in wanted:
        if name == "composer":
            parts = {} if built else composer(composer_bin, composer_options)
        elif name == "laravel":
            parts = laravel(workers, php)
        elif name == "symfony":
            parts = symfony(php)
        else:
            raise ValueError(f"unknown recipe {name!r} (valid: {', '.join(RECIPES)})")
        for point, cmds in parts.items():
            out[point] = out.get(point, ()) + cmds
    return out
