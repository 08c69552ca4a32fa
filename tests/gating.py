"""A store that holds some reads until others have been asked for: concurrency shown by its absence.

A test arms it with the keys whose reads wait (``gated``) and the keys all of which must have been
asked for first (``awaited``). Reads made one after another then wait in vain (for a timeout), and
the keys that did are listed in ``waited_out``; reads made at once pass.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from hds_s3.store.base import ObjectInfo, ObjectStore


class Gated:
    """Passes everything through; a read of a ``gated`` key waits until every ``awaited`` key was asked."""

    def __init__(self, inner: ObjectStore, timeout: float = 5.0) -> None:
        self.inner, self.timeout = inner, timeout
        self.lock = threading.Lock()
        self.gated: set[str] = set()
        self.awaited: set[str] = set()
        self.asked: set[str] = set()
        self.all_asked = threading.Event()
        self.waited_out: list[str] = []

    @property
    def url(self) -> str:
        return self.inner.url

    def arm(self, gated: set[str], awaited: set[str]) -> None:
        with self.lock:
            self.gated, self.awaited, self.asked, self.waited_out = gated, awaited, set(), []
            self.all_asked.clear()

    def _ask(self, key: str) -> None:
        with self.lock:
            self.asked.add(key)
            if self.gated and self.awaited <= self.asked:
                self.all_asked.set()
        if key in self.gated and not self.all_asked.wait(timeout=self.timeout):
            with self.lock:
                self.waited_out.append(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self._ask(key)
        return self.inner.get_range(key, start, length)

    def get(self, key: str) -> tuple[bytes, str]:
        self._ask(key)
        return self.inner.get(key)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def put(self, key: str, data: bytes, **kwargs: Any) -> str:
        return self.inner.put(key, data, **kwargs)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
