"""Frontend (Build) vars as a dotenv file that python-dotenv reads back exactly.

Every value is double-quoted, one line per var. Backslash, double quote, line breaks and the
other control characters python-dotenv knows (\\a \\b \\f \\v) are escaped, and it decodes them
back; `$`, `#`, `'` and unicode need nothing inside double quotes. python-dotenv interpolates
`${...}` by default and has no escape for it, so a literal `${` is written as `${:-$}{`: a
reference to the variable with the empty name (which never exists) whose default is `$`,
followed by `{`. With interpolation on (the default), that reads back as `${`.
"""

from collections.abc import Iterable

_ESCAPES = str.maketrans(
    {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\v": "\\v", "\f": "\\f", "\a": "\\a", "\b": "\\b"}
)
_LITERAL_DOLLAR_BRACE = "${:-$}{"


def quote(value: str) -> str:
    return '"' + value.translate(_ESCAPES).replace("${", _LITERAL_DOLLAR_BRACE) + '"'


def render(pairs: Iterable[tuple[str, str]], *, header: str = "") -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"{name}={quote(value)}" for name, value in pairs]
    return "".join(line + "\n" for line in lines)
