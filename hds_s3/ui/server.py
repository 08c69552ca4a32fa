"""Running the app with uvicorn on a socket we bind, so ``port=0`` can report the port it got."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: any free port).

    Raises:
        OSError: the address cannot be bound (in use, or not an address of this machine).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    """The http URL a browser opens for a socket from :func:`bind`."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._ready()


def run(app: Starlette, *, host: str, port: int, on_ready: Callable[[str], object] | None = None) -> None:
    """Serve ``app`` on ``host:port`` until interrupted (Ctrl-C or SIGTERM).

    Raises:
        OSError: the address cannot be bound.
    """
    sock = bind(host, port)
    url = url_of(sock)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")

    def ready() -> None:
        if on_ready is not None:
            on_ready(url)

    try:
        _Server(config, ready).run(sockets=[sock])
    finally:
        sock.close()


__all__ = ["bind", "run", "url_of"]
