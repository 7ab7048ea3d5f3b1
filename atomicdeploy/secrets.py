"""Secrets: find them in the inventory, and hide them in every line we print or send.

Pure: no I/O. The task layer builds one Masker from the inventory's webhook URLs, `secrets:`
values and URL passwords; the reporter and the notifier call `Masker.mask` on every line that
leaves the process (terminal, CI log, webhook payload).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

MASK = "***"

# `scheme://user:password@host`: the password part, wherever a URL appears in a line. As in
# urlsplit, the authority ends at `/`, `?` or `#` and the password at its last `@`: a
# password holding a raw `@` (`u:p@ss@host`) is masked whole, not up to its first `@`.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:)(?P<pw>[^\s/?#]*)@")


def redact_url_passwords(text: str) -> str:
    """Every `scheme://user:password@` in `text` with the password replaced by `***`.

    A URL in a health check, an opcache URL or a git remote carries its credential
    inline; it reaches messages ("health check: https://u:pw@host/ answered 503")
    without anyone listing it under `secrets:`.
    """
    return _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)


def url_passwords(urls: Iterable[str]) -> list[str]:
    """The passwords inside `urls` (as written and decoded), for `Masker.of`: a password
    can also appear without its URL, e.g. in a server's error page echoed back."""
    found: list[str] = []
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password:
            found += [password, unquote(password)]
    return found


# Shorter values are not masked: hiding "a" or "42" would mangle every line of output while
# protecting nothing, since a secret that short can be guessed anyway.
MIN_SECRET_LENGTH = 3


@dataclass(frozen=True)
class Masker:
    """Replaces every known secret, and its URL- and shell-quoted forms, with `***`.

    Build it with `Masker.of(values)`. Its repr never shows the secrets, so a Masker that ends
    up in a traceback or a debug print does not leak what it is meant to hide.
    """

    # Longest first: a secret that contains another is then found whole.
    needles: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, values: Iterable[str]) -> Masker:
        """A masker for `values`; empty and too-short values are skipped (see MIN_SECRET_LENGTH)."""
        forms: set[str] = set()
        for value in values:
            if len(value) < MIN_SECRET_LENGTH:
                continue
            # A secret also reaches logs inside URLs (webhooks, git remotes) and inside the
            # shell commands we echo, where it appears quoted rather than verbatim.
            forms.update((value, quote(value, safe=""), shlex.quote(value)))
        return cls(tuple(sorted(forms, key=lambda s: (-len(s), s))))

    def __bool__(self) -> bool:
        return bool(self.needles)

    def __repr__(self) -> str:
        return f"Masker(<{len(self.needles)} forms hidden>)"

    def mask(self, text: str) -> str:
        """`text` with every character that belongs to a secret occurrence replaced.

        Occurrences are found first, overlapping ones (of the same or different secrets) merged,
        and each merged run becomes one `***`: replacing secrets one after the other would let a
        later secret's tail survive when an earlier one had eaten its head ("abc" + "bcdef" in
        "abcdef" would leave "def" visible).
        """
        text = redact_url_passwords(text)
        if not self.needles:
            return text
        while True:
            masked = self._mask_once(text)
            # A secret containing "*" can re-form across a fresh mask ("a**" in "aa**" gives
            # "a***"): mask again until nothing changes. Each pass that changes the text
            # shortens it or turns a character into "*", so this ends.
            if masked == text:
                return masked
            text = masked

    def _mask_once(self, text: str) -> str:
        spans = sorted(_occurrences(text, self.needles))
        if not spans:
            return text
        out: list[str] = []
        done = 0  # text[:done] is already emitted
        start, end = spans[0]
        for s, e in spans[1:]:
            if s < end:  # overlapping: one run
                end = max(end, e)
                continue
            out += [text[done:start], MASK]
            done = end
            start, end = s, e
        out += [text[done:start], MASK, text[end:]]
        return "".join(out)


def _occurrences(text: str, needles: Iterable[str]) -> Iterator[tuple[int, int]]:
    """Every (start, end) of every needle in `text`, overlapping occurrences included."""
    for needle in needles:
        i = text.find(needle)
        while i != -1:
            yield i, i + len(needle)
            i = text.find(needle, i + 1)
