"""One way to register the engine's parts by name: criteria, losses, tasks, strategies
and model families each keep a ``Registry``, filled where each part is defined, and
looked up by the name a request gives (``app/jobspec/vocabulary.py`` lists the names; a test
checks that each registry holds exactly those, tests/engine/test_registries.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from app.jobspec.errors import EngineInputError

T = TypeVar("T")
_MISSING: Any = object()


class Registry(dict[str, T]):
    """Parts by name, in registration order. A dict, so a test can swap a part in with
    ``monkeypatch.setitem``; ``get`` without a default raises the error a user sees."""

    def __init__(self, what: str, *, param: str | None = None) -> None:
        super().__init__()
        self.what = what  # as a message names it: "importance", "loss", "task", ...
        self.param = param  # the request field that names a part, if any

    def add(self, name: str, item: T) -> T:
        if name in self:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self[name] = item
        return item

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` on a function or class, or
        ``@REGISTRY.register()`` on a class that says its own ``name``."""

        def add(item: T) -> T:
            return self.add(name if name is not None else item.name, item)  # type: ignore[attr-defined]

        return add

    def get(self, name: str, default: Any = _MISSING) -> T:  # type: ignore[override]
        """The part called ``name``; without a default, an unknown name is an
        ``EngineInputError`` that lists the known ones."""
        if name in self:
            return self[name]
        if default is not _MISSING:
            return default
        known = ", ".join(repr(n) for n in self) or "none"
        raise EngineInputError(
            "not_supported_yet",
            f"{self.what} {name!r} is not available; available: {known}.",
            param=self.param,
        )

    def names(self) -> tuple[str, ...]:
        return tuple(self)
