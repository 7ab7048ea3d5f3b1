"""`{{key}}` references: one value pasted into another, shell-quoted in shell text."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from .quoting import quoted_refs

_REF = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)?)\s*\}\}")

# Placeholders known only while a deploy runs (Deployer's names): left in place here and
# filled in, shell-quoted, when a hook command is sent (steps/hook.py).
RUNTIME = ("release_path", "release_name", "previous_release", "current_path")
_RUNTIME_REF = re.compile(r"\{\{\s*(" + "|".join(RUNTIME) + r")\s*\}\}")
# Commands, pasted as written (like `composer`): `{{bin/php}} artisan migrate`.
COMMANDS = {"bin/php": "php", "bin/composer": "composer"}
PLACEHOLDERS = (
    "release_path",
    "release_name",
    "previous_release",
    "deploy_path",
    "current_path",
    "bin/php",
    "bin/composer",
)


# Values that are shell text: there a `{{key}}` stands for one word and is pasted
# shell-quoted, so `application: "shop; touch x"` is data in `echo {{application}}`.
# (A plain value such as /srv/shop or web1 is pasted as it is.)
_SHELL_TEXT = {
    ("nginx", "test"),
    ("nginx", "reload"),
    ("opcache", "reload"),
    ("opcache", "cachetool"),
    ("composer",),
    ("composer_options",),
}


def fill_runtime(text: str, values: Mapping[str, str], when: str) -> str:
    """The per-deploy placeholders left in shell text at load, each pasted shell-quoted (one
    word, whatever the path holds); one `values` has none for is refused, naming `when`."""

    def paste(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise ConfigError(f"{when}: {m.group(0)} is not known when the {when} runs")
        return shlex.quote(values[m.group(1)])

    return _RUNTIME_REF.sub(paste, text)


def _is_shell_text(keys: tuple[str, ...]) -> bool:
    """Whether the value at `keys` (map keys, `*` for list items) is shell text: hook
    commands (not their `once`/`roles`) and the command settings in _SHELL_TEXT."""
    if keys[0] == "hooks":
        return keys[-1] not in ("once", "roles")
    return keys[0] == "build" or keys in _SHELL_TEXT


def _refuse_quoted(
    where: str, value: str, keys: tuple[str, ...], scalar: Callable[[str], str]
) -> None:
    """Shell text with a `{{key}}` inside quotes or a here-document, whose value is no plain
    word: refused, since its shell-quoted value would be read as code there (see quoting).
    A plain value (`/srv/shop`, `web1`) is the same quoted or not, so it is let through."""
    for match, inside in quoted_refs(value, _REF):
        pasted = scalar(match.group(1))
        if shlex.quote(pasted) != pasted:
            field = ".".join(k for k in keys if k not in ("*", "run"))
            raise ConfigError(
                f"{where}: {field}: {match.group(0)} stands inside {inside},"
                " where its value would be read as code: write it without"
                ' quotes (`cd {{deploy_path}}/x`, not `cd "{{deploy_path}}/x"`):'
                " it is pasted shell-quoted, as one word"
            )


MAX_EXPANDED_NODES = 100_000  # values after YAML aliases are expanded, per host


MAX_VALUE_CHARS = 100_000  # one string after `{{key}}` expansion


def _resolve_refs(where: str, name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Expand `{{key}}` in string values (also inside lists and maps) from other keys;
    shell-quoted where the value is shell text (see _is_shell_text).

    YAML aliases share one object: a recursive alias (`&x [*x]`) is refused, and an
    alias bomb or a `{{key}}` bomb stops at a size limit instead of filling memory.
    """
    expander = _Expander(where, {"alias": name, "hostname": name, **COMMANDS, **raw})
    if raw.get("hostname") is None:
        expander.scope["hostname"] = name
    return {key: expander.expand(value, (key,), (), (key,)) for key, value in raw.items()}


class _Expander:
    """One host's `{{key}}` expansion: the keys in scope, what is expanded already, and how
    many values were visited (the bound on alias bombs)."""

    def __init__(self, where: str, scope: dict[str, Any]) -> None:
        self.where, self.scope = where, scope
        self.cache: dict[str, str] = {}
        self.nodes = 0

    def scalar(self, key: str, chain: tuple[str, ...]) -> str:
        where = self.where
        if key in chain:
            raise ConfigError(
                f"{where}: {{{{{key}}}}} refers to itself ({' -> '.join((*chain, key))})"
            )
        if key in RUNTIME:
            return f"{{{{{key}}}}}"
        if key not in self.cache:
            value = self.scope.get(key)
            if value is None:
                raise ConfigError(
                    f"{where}: {{{{{key}}}}} refers to a key that is not set"
                    f" (placeholders: {', '.join(PLACEHOLDERS)}, or any key of the host)"
                )
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ConfigError(f"{where}: {{{{{key}}}}} must refer to a string or number")
            self.cache[key] = self.expand(str(value), (*chain, key))
        return self.cache[key]

    def expand(
        self,
        value: Any,
        chain: tuple[str, ...],
        path: tuple[int, ...] = (),
        keys: tuple[str, ...] = (),
    ) -> Any:
        self.nodes += 1
        if self.nodes > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{self.where}: more than {MAX_EXPANDED_NODES} values once YAML"
                " aliases are expanded"
            )
        if isinstance(value, str):
            return self._string(value, chain, keys)
        if isinstance(value, list | dict):
            if id(value) in path:
                raise ConfigError(f"{self.where}: {chain[0]}: a YAML alias refers to itself")
            inner = (*path, id(value))
            if isinstance(value, list):
                return [self.expand(v, chain, inner, (*keys, "*")) for v in value]
            return {k: self.expand(v, chain, inner, (*keys, str(k))) for k, v in value.items()}
        return value

    def _string(self, value: str, chain: tuple[str, ...], keys: tuple[str, ...]) -> str:
        shell_text = bool(keys) and _is_shell_text(keys)
        if shell_text:
            _refuse_quoted(self.where, value, keys, lambda key: self.scalar(key, chain))
        out = _REF.sub(lambda m: self._paste(m, chain, shell_text), value)
        if "{{" in value and len(out) > MAX_VALUE_CHARS:
            raise ConfigError(
                f"{self.where}: a value is longer than {MAX_VALUE_CHARS}"
                " characters once {{key}} references are expanded"
            )
        return out

    def _paste(self, m: re.Match[str], chain: tuple[str, ...], shell_text: bool) -> str:
        """One `{{key}}`: shell-quoted in shell text (a command key as written), a runtime
        placeholder left for the deploy to fill in."""
        key = m.group(1)
        if key in RUNTIME:
            if not shell_text:
                raise ConfigError(
                    f"{self.where}: {{{{{key}}}}} is known only while a deploy runs:"
                    " use it in hook or build commands"
                )
            return m.group(0)
        value = self.scalar(key, chain)
        return shlex.quote(value) if shell_text and key not in COMMANDS else value
