"""Reading the bytes of frame sources from any URL, with a bounded cache and parallel read-ahead.

A frame never holds raw bytes, only source URIs (docs/design.md, section 6). :class:`SourceFetcher` reads
them with fsspec (``s3://``, ``gs://``, ``https://``, ``file://``, ``memory://``, chained URLs such as
``simplecache::s3://...`` and plain local paths; ``file://`` URLs are percent-decoded as RFC 8089
says, as ``SingleFrame.get_local_source`` does), each protocol with its own storage options::

    fetcher = SourceFetcher({"s3": {"endpoint_url": "http://127.0.0.1:9000", "key": "...", "secret": "..."}})
    data = fetcher.fetch("s3://bucket/images/0001.jpg")

Read bytes are kept in memory in a least-recently-used cache bounded in bytes (``cache_bytes``;
``0`` turns it off); an object larger than the whole cache is returned but not kept. For a cache on
disk, use fsspec's own caching with a chained URL (``filecache::s3://...``).

``s3://`` uses s3fs when it is installed. Without it, the URL is read with the S3 client hds_s3
already uses for its own store (boto3), which understands the s3fs options ``key``, ``secret``,
``token``, ``endpoint_url`` and ``client_kwargs={"endpoint_url", "region_name"}``.

:func:`prefetch` runs a function over an iterable in a thread pool, a bounded number of items ahead
of the consumer, and yields the results in order; an exception is raised in the consumer when it
reaches the item that failed.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

from cachetools import LRUCache

from hds_s3.errors import HdsError, NotFoundError, StorageError, ValidationError

_T = TypeVar("_T")
_R = TypeVar("_R")

#: Default bound of the in-memory source cache: 256 MiB.
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
#: Default number of items :func:`prefetch` keeps in flight ahead of the consumer.
DEFAULT_PREFETCH = 16
#: Default number of threads reading sources.
DEFAULT_THREADS = 8

StorageOptions = Mapping[str, Mapping[str, Any]]
"""Storage options per protocol, e.g. ``{"s3": {"endpoint_url": ...}, "gs": {"token": ...}}``."""


@dataclass(frozen=True)
class CacheInfo:
    """Counters of a :class:`SourceFetcher` cache.

    Attributes:
        hits: reads answered from the cache.
        misses: reads that went to the source's storage.
        currsize: bytes held now (never more than ``maxsize``).
        maxsize: the bound, in bytes.
        items: number of sources held now.
    """

    hits: int
    misses: int
    currsize: int
    maxsize: int
    items: int


class _Reader(Protocol):
    """Reads whole objects of one protocol."""

    def path(self, uri: str) -> str:
        """The path the reader takes for ``uri``."""
        ...

    def read(self, path: str) -> bytes:
        """Return all bytes of the object."""
        ...

    def size(self, path: str) -> int:
        """Return the object's size in bytes."""
        ...


class _FsspecReader:
    """A reader over one fsspec filesystem instance."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def path(self, uri: str) -> str:
        if uri.startswith("file://"):  # an RFC 8089 URL is percent-encoded (Path.as_uri() encodes)
            parts = urlsplit(uri)
            if parts.netloc in ("", "localhost"):
                uri = url2pathname(parts.path)
        return str(self.fs._strip_protocol(uri))

    def read(self, path: str) -> bytes:
        return bytes(self.fs.cat_file(path))

    def size(self, path: str) -> int:
        info = self.fs.info(path)
        if info.get("type") == "directory":
            raise IsADirectoryError(path)
        size = info.get("size")
        if size is None:
            return len(self.read(path))
        return int(size)


class _ChainedReader:
    """A reader for chained URLs (``simplecache::s3://...``): fsspec resolves the chain per call."""

    def __init__(self, options: StorageOptions) -> None:
        self.options = {k: dict(v) for k, v in options.items()}

    def path(self, uri: str) -> str:
        return uri

    def _fs(self, uri: str) -> tuple[Any, str]:
        from fsspec.core import url_to_fs

        fs, inner = url_to_fs(uri, **copy.deepcopy(self.options))
        return fs, str(inner)

    def read(self, path: str) -> bytes:
        fs, inner = self._fs(path)
        return bytes(fs.cat_file(inner))

    def size(self, path: str) -> int:
        fs, inner = self._fs(path)
        return int(fs.size(inner))


class _S3StoreReader:
    """``s3://`` without s3fs: whole-object reads through hds_s3's own S3 client (boto3)."""

    _KNOWN = frozenset({"key", "secret", "token", "endpoint_url", "client_kwargs", "region_name"})

    def __init__(self, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - self._KNOWN)
        if unknown:
            raise ValidationError(
                f"s3 storage options {unknown} need s3fs (pip install s3fs); without it hds_s3 "
                f"reads s3:// sources itself and understands only {sorted(self._KNOWN)}"
            )
        client_kwargs = dict(options.get("client_kwargs") or {})
        self._endpoint: str | None = options.get("endpoint_url") or client_kwargs.get("endpoint_url")
        self._region: str | None = options.get("region_name") or client_kwargs.get("region_name")
        self._key: str | None = options.get("key")
        self._secret: str | None = options.get("secret")
        self._token: str | None = options.get("token")
        self._stores: dict[str, Any] = {}
        self._lock = threading.Lock()

    def path(self, uri: str) -> str:
        return uri

    def _split(self, uri: str) -> tuple[Any, str]:
        rest = uri.split("://", 1)[1] if "://" in uri else uri
        bucket, _, key = rest.partition("/")
        if not bucket or not key:
            raise ValidationError(f"source {uri!r} is not an s3://bucket/key URL")
        with self._lock:
            store = self._stores.get(bucket)
            if store is None:
                from hds_s3.store.s3 import S3Store

                store = self._stores[bucket] = S3Store(
                    bucket,
                    endpoint_url=self._endpoint,
                    region_name=self._region,
                    aws_access_key_id=self._key,
                    aws_secret_access_key=self._secret,
                    aws_session_token=self._token,
                )
        return store, key

    def read(self, path: str) -> bytes:
        store, key = self._split(path)
        data, _ = store.get(key)
        return bytes(data)

    def size(self, path: str) -> int:
        store, key = self._split(path)
        return int(store.head(key).size)


def _protocol(uri: str) -> str:
    from fsspec.utils import get_protocol

    return str(get_protocol(uri))


class SourceFetcher:
    """Read source bytes from URLs with fsspec, keeping recently read ones in a bounded memory cache.

    Thread-safe. It can be pickled (for DataLoader workers started with ``spawn``): the copy has
    the same options and an empty cache; a forked process also starts with an empty cache.

    Args:
        storage_options: options per protocol, passed to that protocol's fsspec filesystem, e.g.
            ``{"s3": {"endpoint_url": "http://127.0.0.1:9000", "key": "...", "secret": "..."}}``.
            Chained URLs (``simplecache::s3://...``) receive the whole mapping, as fsspec expects.
        cache_bytes: bound of the cache in bytes; ``0`` disables it.

    Raises:
        ValidationError: ``storage_options`` is not a mapping of mappings, or ``cache_bytes`` < 0.
    """

    def __init__(
        self, storage_options: StorageOptions | None = None, *, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        options = dict(storage_options or {})
        for protocol, value in options.items():
            if not isinstance(protocol, str) or not isinstance(value, Mapping):
                raise ValidationError(
                    f"storage_options must map a protocol to its options, e.g. "
                    f"{{'s3': {{'endpoint_url': ...}}}}; got {protocol!r}: {value!r}"
                )
        if not isinstance(cache_bytes, int) or isinstance(cache_bytes, bool) or cache_bytes < 0:
            raise ValidationError(f"cache_bytes must be an integer >= 0, got {cache_bytes!r}")
        self._options: dict[str, dict[str, Any]] = {k: dict(v) for k, v in options.items()}
        self._cache_bytes = cache_bytes
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._readers: dict[str, _Reader] = {}
        self._cache: LRUCache[str, bytes] = LRUCache(maxsize=max(self._cache_bytes, 1), getsizeof=len)
        self._hits = 0
        self._misses = 0

    def _check_process(self) -> None:
        if self._pid != os.getpid():  # forked: clients, locks and the cache belong to the parent
            self._reset()

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self._options, "cache_bytes": self._cache_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._options = state["options"]
        self._cache_bytes = state["cache_bytes"]
        self._reset()

    def __repr__(self) -> str:
        return f"SourceFetcher(protocols={sorted(self._options)}, cache_bytes={self._cache_bytes})"

    @property
    def storage_options(self) -> dict[str, dict[str, Any]]:
        """A copy of the per-protocol storage options."""
        return copy.deepcopy(self._options)

    # ------------------------------------------------------------------ reading

    def _reader(self, uri: str) -> _Reader:
        if "::" in uri:
            key = "::"
        else:
            key = _protocol(uri)
        with self._lock:
            reader = self._readers.get(key)
        if reader is not None:
            return reader
        reader = self._make_reader(key, uri)
        with self._lock:
            return self._readers.setdefault(key, reader)

    def _make_reader(self, protocol: str, uri: str) -> _Reader:
        if protocol == "::":
            return _ChainedReader(self._options)
        import fsspec

        options = self._options.get(protocol, {})
        try:
            cls = fsspec.get_filesystem_class(protocol)
        except ImportError as exc:
            if protocol in ("s3", "s3a") and importlib.util.find_spec("s3fs") is None:
                return _S3StoreReader(options)
            raise StorageError(
                f"cannot read source {uri!r}: fsspec needs a package for {protocol!r} URLs ({exc}); "
                "install it in this environment"
            ) from exc
        except ValueError as exc:
            raise ValidationError(
                f"cannot read source {uri!r}: fsspec knows no protocol {protocol!r} ({exc})"
            ) from exc
        try:
            return _FsspecReader(cls(**options))
        except ImportError as exc:
            raise StorageError(
                f"cannot read source {uri!r}: fsspec needs a package for {protocol!r} URLs ({exc}); "
                "install it in this environment"
            ) from exc
        except TypeError as exc:
            raise ValidationError(
                f"storage options {sorted(options)} for {protocol!r} are not accepted by "
                f"{cls.__name__}: {exc}"
            ) from exc

    def _guard(self, uri: str, what: str, call: Callable[[_Reader, str], _T]) -> _T:
        if not isinstance(uri, str) or not uri:
            raise ValidationError(f"source URI must be a non-empty string, got {uri!r}")
        reader = self._reader(uri)
        try:
            return call(reader, reader.path(uri))
        except HdsError as exc:
            if isinstance(exc, NotFoundError):
                raise NotFoundError(f"source {uri!r} does not exist ({exc})") from exc
            if isinstance(exc, ValidationError):
                raise
            raise StorageError(f"cannot {what} source {uri!r}: {exc}") from exc
        except FileNotFoundError as exc:
            raise NotFoundError(f"source {uri!r} does not exist ({exc})") from exc
        except IsADirectoryError as exc:
            raise ValidationError(f"source {uri!r} is a directory, not an object") from exc
        except Exception as exc:
            raise StorageError(f"cannot {what} source {uri!r}: {type(exc).__name__}: {exc}") from exc

    def fetch(self, uri: str) -> bytes:
        """Return all bytes of the source at ``uri`` (from the cache when it holds them).

        Raises:
            NotFoundError: nothing exists at ``uri`` (a ``FileNotFoundError``).
            ValidationError: ``uri`` is not a string, names a directory, or an unknown protocol,
                or the protocol's storage options are not accepted.
            StorageError: the read failed, or the protocol needs a package that is not installed.
        """
        self._check_process()
        if self._cache_bytes:
            with self._lock:
                cached = self._cache.get(uri)
                if cached is not None:
                    self._hits += 1
                    return cached
        data = self._guard(uri, "read", lambda reader, path: reader.read(path))
        with self._lock:
            self._misses += 1
            if self._cache_bytes and len(data) <= self._cache_bytes:
                self._cache[uri] = data
        return data

    def size(self, uri: str) -> int:
        """Return the size in bytes of the source at ``uri`` (without reading it when the cache lacks it).

        Raises:
            NotFoundError: nothing exists at ``uri``.
            ValidationError: see :meth:`fetch`.
            StorageError: see :meth:`fetch`.
        """
        self._check_process()
        with self._lock:
            cached = self._cache.get(uri) if self._cache_bytes else None
        if cached is not None:
            return len(cached)
        return self._guard(uri, "stat", lambda reader, path: reader.size(path))

    def fetch_many(self, uris: Sequence[str], *, threads: int = DEFAULT_THREADS) -> list[bytes]:
        """Return the bytes of every URI, in order, read by up to ``threads`` threads.

        Raises:
            NotFoundError, ValidationError, StorageError: as :meth:`fetch`, for the first URI that failed.
        """
        uris = list(uris)
        if len(uris) <= 1 or threads <= 1:
            return [self.fetch(u) for u in uris]
        with ThreadPoolExecutor(max_workers=min(threads, len(uris)), thread_name_prefix="hds-fetch") as pool:
            return list(pool.map(self.fetch, uris))

    def load_frame(
        self, frame: Mapping[str, Any], *, masks: bool = False, previews: bool = False
    ) -> dict[str, Any]:
        """Return a copy of a frame dict whose sources carry their bytes under ``"data"``.

        With ``masks`` each mask dict of a source gets its ``"data"`` too, and with ``previews`` the
        source's ``"preview"`` dict. The frame given is not changed.

        Raises:
            NotFoundError: a source does not exist (the message names the frame and the URI).
            ValidationError: a source has no URI, or see :meth:`fetch`.
            StorageError: a read failed.
        """
        out = dict(frame)
        sources: list[dict[str, Any]] = []
        for src in frame.get("sources") or ():
            item = dict(src)
            item["data"] = self._frame_read(frame, item, "source")
            if masks and item.get("masks"):
                item["masks"] = [dict(m, data=self._frame_read(frame, m, "mask")) for m in item["masks"]]
            if previews and item.get("preview"):
                item["preview"] = dict(
                    item["preview"], data=self._frame_read(frame, item["preview"], "preview")
                )
            sources.append(item)
        out["sources"] = sources
        return out

    def _frame_read(self, frame: Mapping[str, Any], item: Mapping[str, Any], what: str) -> bytes:
        uri = item.get("uri")
        where = f"frame {frame.get('id')!r} {what} {item.get('id')!r}"
        if not uri:
            raise ValidationError(f"{where} has no URI")
        try:
            return self.fetch(uri)
        except NotFoundError as exc:
            raise NotFoundError(f"{where}: {exc}") from exc
        except StorageError as exc:
            raise StorageError(f"{where}: {exc}") from exc

    # ------------------------------------------------------------------ the cache

    def cache_info(self) -> CacheInfo:
        """Return the cache counters (hits, misses, bytes held, bound, items)."""
        self._check_process()
        with self._lock:
            return CacheInfo(
                hits=self._hits,
                misses=self._misses,
                currsize=int(self._cache.currsize),
                maxsize=self._cache_bytes,
                items=len(self._cache),
            )

    def clear_cache(self) -> None:
        """Drop every cached source and reset the counters."""
        self._check_process()
        with self._lock:
            self._cache.clear()
            self._hits = 0
            self._misses = 0


def prefetch(
    items: Iterable[_T],
    fn: Callable[[_T], _R],
    *,
    ahead: int = DEFAULT_PREFETCH,
    threads: int = DEFAULT_THREADS,
) -> Iterator[_R]:
    """Yield ``fn(item)`` for every item, in order, computed by a thread pool ahead of the consumer.

    At most ``ahead`` items are submitted beyond the one being consumed, so memory stays bounded
    whatever the length of ``items`` (which is iterated in the consumer's thread). When ``fn``
    raises, the exception is raised here when the consumer reaches that item; closing the
    generator early cancels what has not started.

    Raises:
        ValidationError: ``ahead`` or ``threads`` is below 1.
        Exception: whatever ``fn`` or iterating ``items`` raised.
    """
    if ahead < 1 or threads < 1:
        raise ValidationError(f"prefetch needs ahead >= 1 and threads >= 1, got {ahead} and {threads}")
    return _prefetch(items, fn, ahead, threads)


def _prefetch(items: Iterable[_T], fn: Callable[[_T], _R], ahead: int, threads: int) -> Iterator[_R]:
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hds-prefetch")
    pending: deque[Future[_R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


__all__ = [
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_PREFETCH",
    "DEFAULT_THREADS",
    "CacheInfo",
    "SourceFetcher",
    "StorageOptions",
    "prefetch",
]
