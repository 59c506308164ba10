"""The one exception type for mistakes a user can make (bad spec, missing data, no daemon...).

The CLI turns it into one line on stderr and exit code 2, never a traceback. Anything else that
raises is a bug and may show one.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. `where` names the place: a JSON path, a file, a URI."""

    def __init__(self, message: str, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text
