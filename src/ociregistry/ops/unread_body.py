"""Read the rest of a request body the app answered without reading, before the answer.

A registry often answers a request without its body: a chunk sent again at the wrong offset
(416), a push without a token (401), a manifest PUT refused before parsing. Talking to a client
directly that is harmless: uvicorn throws away what follows and keeps the connection. Behind
nginx with `proxy_request_buffering off` (deploy/nginx-ociregistry.conf) it is not: when the
answer leaves before nginx has passed the whole body on, nginx answers the client with
`Connection: keep-alive` and then, now and then, closes that connection, so the client's next
request on it fails with "server disconnected without sending a response". About one retried
5 MiB chunk in ten did that in our cluster test (the official suite's "Retry previous blob
chunk" followed by the next chunk).

So before an answer starts, this pure ASGI middleware reads whatever the client is still
sending for the request and drops it. It costs nothing the client was not sending anyway: the
bytes reach the server either way, and only the answer waits for them. It leaves alone a
client that asked `Expect: 100-continue` and whose body nobody read: that client waits for our
answer before sending, and reading would invite it to. And it reads at most DRAIN_LIMIT bytes:
past that (a whole layer pushed to an upload that is gone), an early answer the client can act
on is worth more than the connection.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
DRAIN_LIMIT = 64 * 1024 * 1024  # more than any chunk a client sends again


class ReadUnreadBody:
    """Wraps `receive` to see whether the body has ended, and `send` to finish it first."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODILESS:
            await self.app(scope, receive, send)
            return
        state = _BodyState(scope)

        async def receive_tracked() -> Message:
            message = await receive()
            state.saw(message)
            return message

        async def send_after_body(message: Message) -> None:
            if message["type"] == "http.response.start":
                drained = 0
                while state.unread() and drained <= DRAIN_LIMIT:
                    rest = await receive()
                    state.saw(rest)
                    drained += len(rest.get("body", b""))
            await send(message)

        await self.app(scope, receive_tracked, send_after_body)


class _BodyState:
    """Whether the request body has ended (or the client gone) as far as `receive` has said."""

    def __init__(self, scope: Scope) -> None:
        self.ended = False
        self.started = False
        headers = dict(scope["headers"])
        self.awaits_continue = headers.get(b"expect", b"").lower() == b"100-continue"

    def saw(self, message: Message) -> None:
        self.started = True
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.ended = True

    def unread(self) -> bool:
        if self.ended:
            return False
        return self.started or not self.awaits_continue
