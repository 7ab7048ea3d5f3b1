"""Where a `{{key}}` stands in shell text: in a plain word, or inside quotes.

A placeholder in shell text is pasted shell-quoted (`'shop; touch x'`), which is one word
only where the shell reads it unquoted. Written inside quotes it turns inside out: in
`echo '{{application}}'` the quotes close around nothing and `; touch x` runs; in
`echo "{{application}}"` a `$(...)` in the value runs; in a here-document body, the same.
So such a placeholder is refused when the inventory is loaded. Pure: no I/O.

The scan follows POSIX sh quoting far enough for that: single and double quotes, backslash,
`$(...)` and backticks (whose inside is read afresh, even within double quotes) and
here-documents (`<<EOF`, `<<-EOF`, `<<'EOF'`). A placeholder in a comment counts as plain.
"""

from __future__ import annotations

import re

PLAIN, SINGLE, DOUBLE, HEREDOC = "", "'", '"', "<<"

_WORD_END = " \t\n;&|<>()"


def quoted_refs(text: str, ref: re.Pattern[str]) -> list[tuple[re.Match[str], str]]:
    """(match, where it stands) for each `ref` match in `text` that is not in a plain word:
    where is "quotes" or "a here-document"."""
    where = _Scan(text).contexts()
    return [
        (m, "a here-document" if where[m.start()] == HEREDOC else "quotes")
        for m in ref.finditer(text)
        if where[m.start()] != PLAIN
    ]


class _Scan:
    """One pass over `text`, noting for each character the quoting it stands in."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        # Open contexts: PLAIN at the bottom and for `$(`/backticks, SINGLE, DOUBLE; ")" and
        # "`" mark what closes a command substitution.
        self.stack: list[str] = [PLAIN]
        self.where = [PLAIN] * len(text)
        self.heredocs: list[tuple[str, bool]] = []  # (delimiter, tabs stripped) pending

    def contexts(self) -> list[str]:
        while self.i < len(self.text):
            top = self.stack[-1]
            if top == SINGLE:
                self._single()
            elif top == DOUBLE:
                self._double()
            else:
                self._plain()
        return self.where

    def _mark(self, n: int, context: str) -> None:
        self.where[self.i : self.i + n] = [context] * len(self.where[self.i : self.i + n])
        self.i += n

    def _single(self) -> None:
        if self.text[self.i] == "'":
            self.stack.pop()
        self._mark(1, SINGLE)

    def _double(self) -> None:
        text, i = self.text, self.i
        if text[i] == "\\":
            self._mark(2, DOUBLE)
        elif text[i] == '"':
            self.stack.pop()
            self._mark(1, DOUBLE)
        elif text.startswith("$(", i) or text[i] == "`":
            self._open_substitution()
        else:
            self._mark(1, DOUBLE)

    def _open_substitution(self) -> None:
        """`$(` or a backtick: its inside is read as plain shell text again."""
        n = 2 if self.text[self.i] == "$" else 1
        self.stack.append(")" if n == 2 else "`")
        self._mark(n, PLAIN)

    def _plain(self) -> None:
        text, i, top = self.text, self.i, self.stack[-1]
        c = text[i]
        if c == "\\":
            self._mark(2, PLAIN)
        elif c in "'\"":
            self.stack.append(c)
            self._mark(1, PLAIN)
        elif c == top and c in ")`":
            self.stack.pop()
            self._mark(1, PLAIN)
        elif text.startswith("$(", i) or c == "`":
            self._open_substitution()
        elif c == "(" and top == ")":
            self._nest()
        elif text.startswith("<<", i):
            self._heredoc_operator()
        elif c == "#" and (i == 0 or text[i - 1] in _WORD_END):
            self._comment()
        else:
            self._mark(1, PLAIN)
            if c == "\n" and self.heredocs:
                self._heredoc_bodies()

    def _comment(self) -> None:
        """Up to the end of the line: a quote in `# don't` opens nothing."""
        end = self.text.find("\n", self.i)
        self._mark((len(self.text) if end == -1 else end) - self.i, PLAIN)

    def _nest(self) -> None:
        """A `(` inside `$(...)`: its `)` is not the one that ends the substitution."""
        self.stack.append(")")
        self._mark(1, PLAIN)

    def _heredoc_operator(self) -> None:
        """`<<WORD` or `<<-WORD`: the body starts on the next line. (`<<<` is bash's
        here-string: the word after it is an ordinary word.)"""
        if self.text.startswith("<<<", self.i):
            self._mark(3, PLAIN)
            return
        self._mark(2, PLAIN)
        strip = self.text.startswith("-", self.i)
        if strip:
            self._mark(1, PLAIN)
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self._mark(1, PLAIN)
        start = self.i
        while self.i < len(self.text) and self.text[self.i] not in _WORD_END:
            self._mark(1, PLAIN)
        word = re.sub(r"[\\'\"]", "", self.text[start : self.i])
        self.heredocs.append((word, strip))

    def _heredoc_bodies(self) -> None:
        """After the newline that ends a here-document's command: each body, up to its
        delimiter line, one after the other."""
        for delimiter, strip in self.heredocs:
            while self.i < len(self.text):
                end = self.text.find("\n", self.i)
                end = len(self.text) if end == -1 else end + 1
                line = self.text[self.i : end].rstrip("\n")
                done = (line.lstrip("\t") if strip else line) == delimiter
                self._mark(end - self.i, PLAIN if done else HEREDOC)
                if done:
                    break
        self.heredocs = []
