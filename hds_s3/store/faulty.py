"""A store wrapper that fails the k-th request, for fault-injection tests.

Wrapping a store in :class:`FaultyStore` and running one transition with ``fail_at`` set to every
``k`` in turn checks that a failure at any request leaves the store before or after the transition.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Literal, TypeVar

from hds_s3.errors import HdsError, StorageError
from hds_s3.store.base import ObjectInfo, ObjectStore

_T = TypeVar("_T")


class FaultyStore:
    """Wrap ``inner`` and raise :class:`~hds_s3.errors.StorageError` at request number ``fail_at``.

    Every call of ``get``, ``get_range``, ``head``, ``put``, ``list`` (once per call, however many
    objects it yields) and ``delete`` is one request. When the request number (1-based) equals
    ``fail_at``, the request raises ``StorageError("injected fault at request k: <op> <key>")``:
    in mode ``"before"`` without reaching ``inner``; in mode ``"after"`` once ``inner`` has performed
    it (a lost response: a put has landed, yet the caller sees an error). Requests after the fault
    pass through, so a test can check what a retry or a later reader does.

    Attributes:
        inner: the wrapped store.
        fail_at: the request number to fail, or ``None`` to fail none; may be changed at any time.
        mode: ``"before"`` or ``"after"``.
        count: the number of requests so far.
        log: ``(op, key)`` of every request so far, in order (for ``list`` the key is the prefix).

    Raises:
        ValueError: ``mode`` is neither ``"before"`` nor ``"after"``, or ``fail_at`` is below 1.
    """

    def __init__(
        self, inner: ObjectStore, fail_at: int | None = None, mode: Literal["before", "after"] = "before"
    ) -> None:
        if mode not in ("before", "after"):
            raise ValueError(f"FaultyStore mode must be 'before' or 'after', not {mode!r}")
        if fail_at is not None and fail_at < 1:
            raise ValueError(f"FaultyStore fail_at counts requests from 1, got {fail_at}")
        self.inner = inner
        self.fail_at = fail_at
        self.mode: Literal["before", "after"] = mode
        self.count = 0
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The wrapped store's URL."""
        return self.inner.url

    def _request(self, op: str, key: str, perform: Callable[[], _T]) -> _T:
        with self._lock:
            self.count += 1
            number = self.count
            self.log.append((op, key))
        if number != self.fail_at:
            return perform()
        fault = StorageError(f"injected fault at request {number}: {op} {key}")
        if self.mode == "after":
            try:
                perform()
            except HdsError:
                pass  # the response, success or failure, is lost either way
        raise fault

    def get(self, key: str) -> tuple[bytes, str]:
        """Forward ``get`` (one request).

        Raises:
            StorageError: this is the failing request.
            NotFoundError: as the inner store.
        """
        return self._request("get", key, lambda: self.inner.get(key))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Forward ``get_range`` (one request).

        Raises:
            StorageError: this is the failing request.
            NotFoundError: as the inner store.
        """
        return self._request("get_range", key, lambda: self.inner.get_range(key, start, length))

    def head(self, key: str) -> ObjectInfo:
        """Forward ``head`` (one request).

        Raises:
            StorageError: this is the failing request.
            NotFoundError: as the inner store.
        """
        return self._request("head", key, lambda: self.inner.head(key))

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Forward ``put`` (one request).

        Raises:
            StorageError: this is the failing request (in mode ``"after"`` the write has landed).
            ConflictError: as the inner store.
            NotFoundError: as the inner store.
            ValidationError: as the inner store.
        """
        return self._request(
            "put", key, lambda: self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Forward ``list`` (one request, counted when called; the listing is read at once).

        Raises:
            StorageError: this is the failing request.
        """
        items = self._request("list", prefix, lambda: list(self.inner.list(prefix)))
        return iter(items)

    def delete(self, key: str) -> None:
        """Forward ``delete`` (one request).

        Raises:
            StorageError: this is the failing request (in mode ``"after"`` the object is gone).
        """
        self._request("delete", key, lambda: self.inner.delete(key))

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r}, fail_at={self.fail_at!r}, mode={self.mode!r})"


__all__ = ["FaultyStore"]
