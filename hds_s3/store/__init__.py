"""Object stores: the only place where bytes meet a medium (S3, a local folder, memory).

:class:`S3Store` (and with it boto3, a large import) is loaded only when an ``s3://`` store is opened
or the name is used: a local folder or memory store never imports it.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from hds_s3.errors import ValidationError
from hds_s3.store.base import ObjectInfo, ObjectStore
from hds_s3.store.faulty import FaultyStore
from hds_s3.store.local import LocalStore
from hds_s3.store.memory import MemoryStore
from hds_s3.store.readonly import ReadOnlyStore

if TYPE_CHECKING:
    from hds_s3.store.s3 import S3Store

_ACCEPTED = "s3://bucket[/prefix], memory://name, file:///absolute/path or a plain folder path"


def open_store(url: str | os.PathLike[str]) -> ObjectStore:
    """Open the store a URL names.

    ``s3://bucket[/prefix]`` gives an :class:`S3Store` (endpoint and credentials from the environment:
    ``HDS_S3_ENDPOINT_URL``, ``AWS_ENDPOINT_URL``, the standard AWS chain; options in the query,
    ``?sse=aws:kms&sse_kms_key_id=...&max_attempts=...&read_timeout=...``, go to
    :meth:`S3Store.from_url`); ``memory://name`` the
    process-wide :class:`MemoryStore` of that name; ``file:///path`` or a plain path a
    :class:`LocalStore`.

    Raises:
        ValidationError: the URL is empty, has another scheme, or lacks a bucket name.
    """
    text = os.fspath(url)
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"store URL {url!r} is empty; accepted forms: {_ACCEPTED}")
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        if text.lower().startswith("file:"):
            return LocalStore(url2pathname(unquote(text[len("file:") :])))
        return LocalStore(text)
    scheme = scheme.lower()
    if scheme in ("s3", "s3a"):
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValidationError(f"store URL {text!r} has no bucket name; accepted forms: {_ACCEPTED}")
        from hds_s3.store.s3 import S3Store

        return S3Store.from_url(text)
    if scheme == "memory":
        return MemoryStore.named(rest)
    if scheme == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise ValidationError(
                f"store URL {text!r} names host {parts.netloc!r}; "
                "use file:///absolute/path for a local folder"
            )
        return LocalStore(url2pathname(unquote(parts.path)))
    raise ValidationError(
        f"store URL {text!r} has unsupported scheme {scheme!r}; accepted forms: {_ACCEPTED}"
    )


def __getattr__(name: str) -> Any:
    """Import :class:`S3Store` on first use.

    Raises:
        AttributeError: any other unknown name.
    """
    if name == "S3Store":
        return importlib.import_module("hds_s3.store.s3").S3Store
    raise AttributeError(f"module 'hds_s3.store' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"S3Store"})


__all__ = [
    "FaultyStore",
    "LocalStore",
    "MemoryStore",
    "ObjectInfo",
    "ObjectStore",
    "ReadOnlyStore",
    "S3Store",
    "open_store",
]
