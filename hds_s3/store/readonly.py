"""A store wrapper that refuses every write, as read-only credentials would.

Open a store through :class:`ReadOnlyStore` to make sure a program (a training job, a report)
only ever reads; hds_s3's read paths never write (docs/design.md invariant 6), and the tests use this
wrapper to prove it.
"""

from __future__ import annotations

from collections.abc import Iterator

from hds_s3.errors import StorageError
from hds_s3.store.base import ObjectInfo, ObjectStore


class ReadOnlyStore:
    """Pass reads to ``inner``; refuse ``put`` and ``delete`` with :class:`~hds_s3.errors.StorageError`."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    @property
    def url(self) -> str:
        """The wrapped store's URL."""
        return self.inner.url

    def get(self, key: str) -> tuple[bytes, str]:
        """Read an object (see :class:`~hds_s3.store.base.ObjectStore`)."""
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Read part of an object."""
        return self.inner.get_range(key, start, length)

    def head(self, key: str) -> ObjectInfo:
        """Describe an object."""
        return self.inner.head(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """List objects under a prefix."""
        return self.inner.list(prefix)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Refuse the write.

        Raises:
            StorageError: always, naming the key (AccessDenied, as read-only credentials answer).
        """
        raise StorageError(f"AccessDenied: the store {self.url} is read-only; cannot write {key}")

    def delete(self, key: str) -> None:
        """Refuse the removal.

        Raises:
            StorageError: always, naming the key.
        """
        raise StorageError(f"AccessDenied: the store {self.url} is read-only; cannot delete {key}")

    def __repr__(self) -> str:
        return f"ReadOnlyStore({self.inner!r})"
