"""The storage boundary: what every object store must do, and nothing more.

A store holds immutable-or-CAS-guarded objects under string keys. Keys are produced by
:mod:`hds_s3.format.layout` only; a store maps them onto its medium (S3 keys under a prefix, files under a
folder, a dict). The only primitives a transition may rely on are a create-only ``put``
(``if_none_match=True``) and a compare-and-swap ``put`` (``if_match=etag``); there is no
conditional delete or copy, because several S3 servers do not honour them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or ``head`` knows about one object.

    ``etag`` is opaque: pass it back unchanged as ``if_match``. ``last_modified`` is when the object
    was last written (epoch seconds), or None when the store does not say; ``gc`` and ``fsck`` use
    it to tell how old an unreferenced object is.
    """

    key: str
    size: int
    etag: str
    last_modified: float | None = None


@runtime_checkable
class ObjectStore(Protocol):
    """The contract every backend (S3, local folder, memory) fulfils.

    Errors: a missing key raises :class:`~hds_s3.errors.NotFoundError`; a failed precondition
    (create-only on an existing key, stale ``if_match``) raises :class:`~hds_s3.errors.ConflictError`
    and leaves the object as it was; ``if_match`` on a missing key raises ``NotFoundError``; anything
    else the medium reports raises :class:`~hds_s3.errors.StorageError`.
    """

    @property
    def url(self) -> str:
        """Where the store lives, for messages (never contains credentials)."""
        ...

    def get(self, key: str) -> tuple[bytes, str]:
        """Return the object's bytes and its etag.

        Raises:
            NotFoundError: no object has this key.
            StorageError: the medium failed.
        """
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes of the object from offset ``start`` (fewer at its end).

        Raises:
            NotFoundError: no object has this key.
            StorageError: the medium failed.
        """
        ...

    def head(self, key: str) -> ObjectInfo:
        """Return the object's size, etag and (if known) last-modified time without its body.

        Raises:
            NotFoundError: no object has this key.
            StorageError: the medium failed.
        """
        ...

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Write the object and return its new etag.

        ``if_none_match=True`` creates only if the key is absent; ``if_match`` replaces only if the
        current etag equals it. Both together are refused.

        Raises:
            ConflictError: the precondition failed; the object is unchanged.
            NotFoundError: ``if_match`` was given and the key does not exist.
            StorageError: the medium failed.
        """
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in key order.

        Raises:
            StorageError: the medium failed.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing key is not an error.

        Raises:
            StorageError: the medium failed.
        """
        ...


def content_etag(data: bytes) -> str:
    """Return the etag the memory and local stores give ``data``: its MD5, as S3 does for simple PUTs."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def check_put_args(key: str, if_none_match: bool, if_match: str | None) -> None:
    """Refuse contradictory preconditions (shared by every store).

    Raises:
        ValidationError: both ``if_none_match`` and ``if_match`` were given, or the key is empty.
    """
    from hds_s3.errors import ValidationError

    if not key:
        raise ValidationError("object key is empty")
    if if_none_match and if_match is not None:
        raise ValidationError(f"put {key!r}: if_none_match and if_match cannot be combined")
