"""Which store the API talks to: ``connect(url)`` and the process-wide default client.

The default comes from ``HDS_STORE`` (``s3://bucket/prefix``, a folder, ``memory://name``); without
it, a local folder (``$XDG_DATA_HOME/hds_s3`` or ``~/.local/share/hds_s3``), so the library works
with no server and no credentials. S3 endpoints come from ``HDS_S3_ENDPOINT_URL`` or
``AWS_ENDPOINT_URL``, credentials from the standard AWS chain.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from hds_s3.errors import ValidationError

if TYPE_CHECKING:
    from hds_s3.format.catalog import Catalog
    from hds_s3.index.frameindex import FrameIndex
    from hds_s3.index.plan import StoreSpec
    from hds_s3.store.base import ObjectStore


def default_store_url() -> str:
    """Return ``HDS_STORE`` if set, else the embedded default folder."""
    url = os.environ.get("HDS_STORE")
    if url:
        return url
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "hds_s3")


class Client:
    """A handle on one store; every API call takes ``client=`` to pick one, else the default.

    ``frames`` shares a frame index (and its catalog and caches) kept for the store elsewhere. The
    store is reached on first use.

    Raises:
        ValidationError: ``frames`` is the frame index of another store.
    """

    def __init__(self, store: ObjectStore, *, frames: FrameIndex | None = None) -> None:
        # imported here: the hds command reads default_store_url without loading pyarrow
        from hds_s3.format.catalog import Catalog
        from hds_s3.index.frameindex import FrameIndex

        self.store = store
        if frames is not None and frames.store is not store:
            raise ValidationError(f"the frame index given is of {frames.store.url}, not of {store.url}")
        self.catalog: Catalog = frames.catalog if frames is not None else Catalog(store)
        self.frames: FrameIndex = frames if frames is not None else FrameIndex(self.catalog)

    @property
    def url(self) -> str:
        """Where the store lives (no credentials)."""
        return self.store.url

    def __repr__(self) -> str:
        return f"Client({self.store.url!r})"


def connect(url: str | None = None) -> Client:
    """Open the store at ``url`` (default: ``HDS_STORE`` or the local default folder).

    Accepted: ``s3://bucket[/prefix]``, ``memory://name``, ``file:///path`` or a plain path.

    Raises:
        ValidationError: the URL has an unsupported form.
    """
    from hds_s3.store import open_store

    return Client(open_store(default_store_url() if url is None else url))


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """Return the process-wide default client, connecting on first use.

    Raises:
        ValidationError: ``HDS_STORE`` has an unsupported form.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = connect()
        return _default


def set_default_client(client: Client | str | None) -> None:
    """Make ``client`` (or the store at a URL) the default; ``None`` re-reads ``HDS_STORE`` next time.

    Raises:
        ValidationError: a URL with an unsupported form.
    """
    global _default
    new = connect(client) if isinstance(client, str) else client
    with _default_lock:
        _default = new


def resolve(client: Client | None) -> Client:
    """Return ``client`` or the default one.

    Raises:
        ValidationError: ``HDS_STORE`` has an unsupported form.
    """
    return client if client is not None else default_client()


def worker_client(spec: StoreSpec) -> Client:
    """A client of a store in this worker process, on the store's kept frame index.

    It shares :func:`hds_s3.index.plan.frame_index` (one per store in the process), so its footers
    and ids stay cached for the tasks that follow, whichever of them reads.

    Raises:
        ValidationError: the store's URL has an unsupported form.
    """
    from hds_s3.index.plan import frame_index

    index = frame_index(spec)
    return Client(index.store, frames=index)
