"""Why an input of a workflow cannot be used. Each kind maps to one HTTP status in the API."""

from __future__ import annotations

from typing import Any


class InputError(Exception):
    """An input was refused or could not be had. `where` names it in the workflow (set by the
    caller that knows the node and input), `source` says what it was, the reason says why."""

    type = "input_error"

    def __init__(self, reason: str, *, where: str = "", source: str = ""):
        self.reason, self.where, self.source = reason, where, source
        super().__init__(self._text())

    def _text(self) -> str:
        head = " ".join(p for p in (self.where, f"({self.source})" if self.source else "") if p)
        return f"{head}: {self.reason}" if head else self.reason

    def at(self, where: str, source: str) -> "InputError":
        """The same failure named for one place in one workflow (a shared download's error is
        re-raised for each request that waited on it)."""
        return type(self)(self.reason, where=where, source=source)

    def details(self) -> dict[str, Any]:
        return {"input": self.where, "source": self.source, "reason": self.reason}


class InputRefused(InputError):
    """Not allowed to be fetched at all: scheme, address, redirect; nothing was fetched."""

    type = "input_refused"


class InputTooLarge(InputError):
    type = "input_too_large"


class InputWrongType(InputError):
    """Declared as an image (by its input, URL, header or data: URI) but its content is not one."""

    type = "input_type"


class InputInvalid(InputError):
    """Malformed: a data: URI that does not decode, an asset reference that is not one."""

    type = "input_invalid"


class InputUnavailable(InputError):
    """Allowed, but could not be had: the server answered an error, was too slow, went away."""

    type = "input_unavailable"
