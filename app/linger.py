"""Refusing a body while the client is still sending it, so that the client reads the refusal.

Closing a TCP connection with unread bytes in its receive buffer makes the kernel answer
with a reset, and a reset discards what the client had not yet read: a client that sends
its whole body before it reads (urllib, http.client, requests) then sees
ConnectionResetError instead of our 413. So, like nginx's lingering close, the refusal is
sent first, complete, and then the rest of the body is read and dropped before the
connection closes, within MODELPRESS_MAX_DRAIN_BYTES and MODELPRESS_DRAIN_SECONDS.

The response is sent before the first receive(), so uvicorn sends no ``100 Continue``: a
client that waits for one (curl, for large bodies) reads the refusal and never sends the
body. A client that reads while it sends (curl) stops at the refusal, and closes. A body
longer than the cap still ends in a reset for clients that read only at the end; a cap of
some sort is what keeps a client from making the server read forever.

The response stays open (``more_body``) while the body is drained, because once it is
complete uvicorn's receive() reports a disconnect and never hands over another byte.
"""

from __future__ import annotations

import anyio
from starlette.types import Message, Receive, Send

from app.settings import get_settings


class LingeringSend:
    """A send() for a refusal: ``Connection: close``, then the body drained, then closed.

    ``pending`` is how many body bytes the client declared and has not sent yet (None:
    unknown, a chunked body); a declared rest over the cap is not drained at all, since
    the connection would be reset anyway.
    """

    def __init__(self, receive: Receive, send: Send, *, pending: int | None) -> None:
        self._receive = receive
        self._send = send
        self._pending = pending

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            await self._send({**message, "more_body": True})
            await self._drain()
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await self._send(message)

    async def _drain(self) -> int:
        settings = get_settings()
        cap = settings.max_drain_bytes
        if self._pending is not None and self._pending > cap:
            return 0
        drained = 0
        with anyio.move_on_after(settings.drain_seconds):
            while drained <= cap:
                message = await self._receive()
                if message["type"] != "http.request":
                    break  # the client went away: nothing left to protect
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        return drained
