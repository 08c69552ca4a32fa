"""Stores for the benchmark: specs that a child process can reopen, a byte-counting wrapper, moto.

A *spec* is a small JSON-able dict (``{"kind": "local", "root": ...}`` or ``{"kind": "s3",
"endpoint": ..., "bucket": ..., "prefix": ...}``) so the ingest can run in a child process against
the same store as the parent.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hds_s3.store import LocalStore, S3Store
from hds_s3.store.base import ObjectInfo, ObjectStore

FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def open_spec(spec: dict[str, Any]) -> ObjectStore:
    """Open the store a spec describes."""
    if spec["kind"] == "local":
        return LocalStore(spec["root"])
    if spec["kind"] == "s3":
        return S3Store(
            spec["bucket"],
            spec["prefix"],
            endpoint_url=spec["endpoint"],
            region_name="us-east-1",
            **FAKE_CREDENTIALS,
        )
    raise ValueError(f"unknown store spec {spec!r}")


def local_path(spec: dict[str, Any], key: str) -> Path | None:
    """The file of ``key`` in a local store (None for S3)."""
    return Path(spec["root"], *key.split("/")) if spec["kind"] == "local" else None


class CountingStore:
    """Wrap a store; count requests per operation and bytes written (put) and read (get, get_range)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.ops: Counter[str] = Counter()
            self.bytes_written = 0
            self.bytes_read = 0
            self.puts: list[tuple[str, int]] = []

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": sum(self.ops.values()),
                "ops": dict(self.ops),
                "bytes_written": self.bytes_written,
                "bytes_read": self.bytes_read,
                "puts": list(self.puts),
            }

    @property
    def url(self) -> str:
        return self.inner.url

    def get(self, key: str) -> tuple[bytes, str]:
        data, etag = self.inner.get(key)
        with self._lock:
            self.ops["get"] += 1
            self.bytes_read += len(data)
        return data, etag

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self.inner.get_range(key, start, length)
        with self._lock:
            self.ops["get_range"] += 1
            self.bytes_read += len(data)
        return data

    def head(self, key: str) -> ObjectInfo:
        with self._lock:
            self.ops["head"] += 1
        return self.inner.head(key)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        etag = self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)
        with self._lock:
            self.ops["put"] += 1
            self.bytes_written += len(data)
            self.puts.append((key, len(data)))
        return etag

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._lock:
            self.ops["list"] += 1
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        with self._lock:
            self.ops["delete"] += 1
        self.inner.delete(key)


def key_kind(key: str) -> str:
    """Classify an hds_s3 key for the write breakdown."""
    if key.endswith(".parquet"):
        return "segment"
    if "/versions/" in key:
        return "manifest"
    if key.endswith("dataset.json"):
        return "dataset_doc"
    return "other"


class MotoServer:
    """moto's ThreadedMotoServer in a process of its own (so it does not share the GIL with the bench)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("moto_server.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"moto server did not start (said {line!r})")
        self.endpoint = line

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
