"""A parser for ``text/event-stream`` (the WHATWG server-sent events format)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str  # "message" when the stream names none
    data: str
    id: str | None
    retry: int | None  # reconnection delay the server asks for, in ms


def iter_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Messages from the stream's lines (without their line endings)."""
    event, data, id_, retry = "", [], None, None
    for line in lines:
        if line == "":
            if data or event or retry is not None or id_ is not None:
                yield ServerSentEvent(event or "message", "\n".join(data), id_, retry)
            event, data, id_, retry = "", [], None, None
            continue
        if line.startswith(":"):
            continue  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            id_ = value
        elif name == "retry" and value.isdigit():
            retry = int(value)
