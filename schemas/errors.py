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

    def each(self) -> list[UserError]:
        """The single problems this error stands for (one line each on stderr)."""
        return [self]


class UserErrors(UserError):
    """Several problems found in one pass (every error of a spec), reported together, first one first."""

    def __init__(self, errors: list[UserError]):
        if not errors:
            raise ValueError("UserErrors needs at least one error")
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.message, where=first.where, hint=first.hint)

    def __str__(self) -> str:
        return "\n".join(UserError.__str__(e) for e in self.errors)

    def each(self) -> list[UserError]:
        return list(self.errors)


def raise_all(errors: list[UserError]) -> None:
    """Raise nothing, the one error, or all of them together."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise UserErrors(errors)
