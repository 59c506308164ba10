"""Command lines for people and shells (dry runs, resume hints): one line per command, values byte for byte."""
from __future__ import annotations

import csv
import io
import shlex

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", "'": "\\'"}


def shell_quote(value: str) -> str:
    """shlex.quote, but text with characters a terminal would break a line at or hide (newline, U+2028,
    U+0085, other controls) as bash's $'...' escapes, so every command stays on one visible line."""
    if value.isprintable():
        return shlex.quote(value)
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\x{ord(char):02x}" if ord(char) < 0x80 else f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF
                       else f"\\U{ord(char):08x}")
    return f"$'{''.join(out)}'"


def mount_option(source: str, target: str, read_only: bool) -> str:
    """`--mount type=bind,source=…,target=…` for docker run: unlike `-v a:b:rw`, a path holding `:` cannot
    split it; docker reads the value as CSV, so a field with `,` or `"` is CSV-quoted, then the whole is shell-quoted."""
    fields = ["type=bind", f"source={source}", f"target={target}"] + (["readonly"] if read_only else [])
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(fields)
    return f"--mount {shell_quote(buf.getvalue())}"
