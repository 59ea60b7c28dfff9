"""What a page served on this machine only must refuse: other names, and other pages' uploads.

An app bound to loopback (the default) can still be reached through DNS rebinding: a page on
`evil.example`, whose name then resolves to 127.0.0.1, calls the app with `Host: evil.example`.
And any page open in the same browser (another local port included) can post files to it. So,
while the app is bound to a loopback address, `LoopbackGuard` answers only requests whose Host
is a loopback name, and refuses requests that change something (POST, PUT, PATCH, DELETE) sent
from a page of another origin. Bound to another address (`--host 0.0.0.0`, a Space) it does
nothing: there the operator decides who may reach the app.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def is_loopback(host: str) -> bool:
    """Whether a host name or address (no port) names this machine."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopbackGuard:
    """ASGI middleware (see the module docstring); `enabled` when bound to loopback."""

    def __init__(self, app, enabled: bool = True) -> None:
        self.app, self.enabled = app, enabled

    async def __call__(self, scope, receive, send):
        if self.enabled and scope["type"] in ("http", "websocket"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            host = headers.get("host", "")
            why = None
            if not is_loopback(urlsplit(f"//{host}").hostname or ""):
                why = (f"this app answers to localhost only, not to {host!r}; start it with --host "
                       "to serve other names")
            elif scope.get("method", "GET") not in SAFE_METHODS and "origin" in headers:
                origin = urlsplit(headers["origin"]).netloc
                if origin.lower() != host.lower():
                    why = f"requests from another page ({headers['origin']}) are refused"
            if why is not None:
                await _refuse(send, scope, why)
                return
        await self.app(scope, receive, send)


async def _refuse(send, scope, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = message.encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
