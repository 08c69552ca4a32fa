"""``hds ui``: a frame browser and annotator served from the user's own process.

There is no server of ours: the app reads the store with the user's own client and credentials
(an S3 bucket, MinIO, a folder), and the browser talks only to this process. The pages are plain
HTML, CSS and JavaScript modules shipped in the package (``static/``): no build step, no CDN.
Starlette, uvicorn and Pillow come with the ``ui`` extra (``pip install 'hds_s3[ui]'``) and are
imported only in this subpackage.

    from hds_s3 import connect
    from hds_s3.ui import create_app, serve

    serve(connect("s3://bucket/datasets"), port=8765)          # blocks; read-only
    app = create_app(connect("/data/hds"), write=True)          # an ASGI app, e.g. for TestClient
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from hds_s3.client import Client


#: The addresses for which only the matching Host headers are answered (see :func:`serve`).
LOOPBACK = ("127.0.0.1", "localhost")


def create_app(
    client: Client, *, write: bool = False, allowed_hosts: Sequence[str] | None = None
) -> Starlette:
    """The ASGI app over ``client``'s store (see :mod:`hds_s3.ui.app`); read-only unless ``write``.

    Raises:
        ImportError: the ``ui`` extra is not installed.
    """
    from hds_s3.ui.app import create_app as make

    return make(client, write=write, allowed_hosts=allowed_hosts)


def serve(
    client: Client,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    write: bool = False,
    on_ready: Callable[[str], object] | None = None,
) -> None:
    """Serve the app with uvicorn until interrupted; ``port=0`` picks a free port.

    ``on_ready`` is called with the URL once the server listens. On 127.0.0.1 or localhost only
    requests naming one of those hosts are answered (no DNS rebinding).

    Raises:
        ImportError: the ``ui`` extra is not installed.
        OSError: the address cannot be bound.
    """
    from hds_s3.ui.server import run

    hosts = list(LOOPBACK) if host in LOOPBACK else None
    run(create_app(client, write=write, allowed_hosts=hosts), host=host, port=port, on_ready=on_ready)


__all__ = ["LOOPBACK", "create_app", "serve"]
