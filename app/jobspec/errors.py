"""The error every check on a job's inputs raises, in the API and in the engine alike."""

from __future__ import annotations


class EngineInputError(Exception):
    """Something about the inputs that the user can fix (bad labels, unsupported model...).

    ``code`` is stable and machine-readable; the message says what to change; ``param``
    names the request field at fault where one is (the API answers 422 with it).
    """

    def __init__(self, code: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
