"""A store wrapper that fails the k-th request, or kills the process there, for fault-injection tests.

Wrapping a store in :class:`FaultyStore` and running one transition with ``fail_at`` set to every
``k`` in turn checks that a failure at any request leaves the store before or after the transition.
The crash modes end the whole process at request ``k`` (``os._exit``: no exception handler, no
``finally``, no atexit hook runs), which is what a killed writer looks like to the store.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Literal, NoReturn, TypeVar

from hds_s3.errors import HdsError, StorageError
from hds_s3.store.base import ObjectInfo, ObjectStore

_T = TypeVar("_T")

FaultMode = Literal["before", "after", "crash", "crash-after"]
MODES: tuple[FaultMode, ...] = ("before", "after", "crash", "crash-after")

#: The exit status of a process that a crash mode ended (tests tell it from other deaths by it).
CRASH_EXIT_CODE = 86


class FaultyStore:
    """Wrap ``inner`` and fail request number ``fail_at``, or end the process there.

    Every call of ``get``, ``get_range``, ``head``, ``put``, ``list`` (once per call, however many
    objects it yields) and ``delete`` is one request. When the request number (1-based) equals
    ``fail_at``, depending on ``mode``:

    ``"before"``
        the request raises ``StorageError("injected fault at request k: <op> <key>")`` without
        reaching ``inner``;
    ``"after"``
        ``inner`` performs it, then it raises that error (a lost response: a put has landed, yet
        the caller sees an error);
    ``"crash"``
        the process ends with ``os._exit(CRASH_EXIT_CODE)`` before the request reaches ``inner``;
    ``"crash-after"``
        ``inner`` performs it (success or failure), then the process ends the same way.

    Before a crash, ``crash_note`` (if set) is written to standard error with the request, so a
    test can see where a child died. Requests after a fault pass through, so a test can check what
    a retry or a later reader does. Requests made concurrently by several threads are numbered in
    the order they reach the wrapper.

    Attributes:
        inner: the wrapped store.
        fail_at: the request number to fail, or ``None`` to fail none; may be changed at any time.
        mode: one of :data:`MODES`.
        count: the number of requests so far.
        log: ``(op, key)`` of every request so far, in order (for ``list`` the key is the prefix).
        crash_note: a label printed to standard error when a crash mode ends the process.

    Raises:
        ValueError: ``mode`` is not one of :data:`MODES`, or ``fail_at`` is below 1.
    """

    def __init__(
        self,
        inner: ObjectStore,
        fail_at: int | None = None,
        mode: FaultMode = "before",
        *,
        crash_note: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"FaultyStore mode must be one of {', '.join(map(repr, MODES))}, not {mode!r}")
        if fail_at is not None and fail_at < 1:
            raise ValueError(f"FaultyStore fail_at counts requests from 1, got {fail_at}")
        self.inner = inner
        self.fail_at = fail_at
        self.mode: FaultMode = mode
        self.crash_note = crash_note
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
        what = f"request {number}: {op} {key}"
        if self.mode in ("after", "crash-after"):
            try:
                perform()
            except HdsError:
                pass  # the response, success or failure, is lost either way
        if self.mode in ("crash", "crash-after"):
            self._crash(what)
        raise StorageError(f"injected fault at {what}")

    def _crash(self, what: str) -> NoReturn:
        if self.crash_note is not None:
            try:
                sys.stderr.write(f"[{self.crash_note}] crash ({self.mode}) at {what}\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass  # no usable stderr: crash all the same
        os._exit(CRASH_EXIT_CODE)

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


__all__ = ["CRASH_EXIT_CODE", "MODES", "FaultMode", "FaultyStore"]
