"""An in-process store: a dict behind a lock, with exact conditional-write semantics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from hds_s3.errors import ConflictError, NotFoundError
from hds_s3.store.base import ObjectInfo, check_put_args, content_etag

_REGISTRY: dict[str, MemoryStore] = {}
_REGISTRY_LOCK = threading.Lock()


class MemoryStore:
    """Objects in a dict, guarded by one lock; for unit tests, examples and throw-away work.

    ``MemoryStore.named("x")`` returns the same store every time it is called with ``"x"`` in this
    process, which is what ``connect("memory://x")`` uses.
    """

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._objects: dict[str, tuple[bytes, str]] = {}
        self._times: dict[str, float] = {}  # key -> when it was last written (epoch seconds)
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """Return the process-wide memory store called ``name``, creating it on first use."""
        with _REGISTRY_LOCK:
            store = _REGISTRY.get(name)
            if store is None:
                store = _REGISTRY[name] = cls(name)
            return store

    @property
    def url(self) -> str:
        """``memory://<name>``."""
        return f"memory://{self._name}"

    def get(self, key: str) -> tuple[bytes, str]:
        """Return the bytes and etag of ``key``.

        Raises:
            NotFoundError: no object has this key.
        """
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                raise NotFoundError(f"{self.url}: no object {key!r}") from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes of ``key`` from ``start``.

        Raises:
            NotFoundError: no object has this key.
        """
        data, _ = self.get(key)
        return data[start : start + length]

    def head(self, key: str) -> ObjectInfo:
        """Return the size, etag and last write time of ``key``.

        Raises:
            NotFoundError: no object has this key.
        """
        with self._lock:
            try:
                data, etag = self._objects[key]
            except KeyError:
                raise NotFoundError(f"{self.url}: no object {key!r}") from None
            return ObjectInfo(key, len(data), etag, self._times[key])

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Write ``key``; see :meth:`hds_s3.store.base.ObjectStore.put`.

        Raises:
            ConflictError: the precondition failed.
            NotFoundError: ``if_match`` on a missing key.
            ValidationError: contradictory preconditions.
        """
        check_put_args(key, if_none_match, if_match)
        data = bytes(data)
        etag = content_etag(data)
        with self._lock:
            current = self._objects.get(key)
            if if_none_match and current is not None:
                raise ConflictError(f"{self.url}: {key!r} exists already")
            if if_match is not None:
                if current is None:
                    raise NotFoundError(f"{self.url}: no object {key!r} to replace")
                if current[1] != if_match:
                    raise ConflictError(f"{self.url}: {key!r} changed since it was read")
            self._objects[key] = (data, etag)
            self._times[key] = time.time()
        return etag

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Yield the objects under ``prefix`` in key order."""
        with self._lock:
            items = sorted((k, v, self._times[k]) for k, v in self._objects.items() if k.startswith(prefix))
        for key, (data, etag), written in items:
            yield ObjectInfo(key, len(data), etag, written)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        with self._lock:
            self._objects.pop(key, None)
            self._times.pop(key, None)

    def __repr__(self) -> str:
        return f"MemoryStore({self._name!r})"
