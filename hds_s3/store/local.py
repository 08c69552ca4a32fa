"""The embedded default store: objects are files in a folder.

A key ``a/b/c`` is the file ``<root>/a/b/c``. Every write is atomic (a temp file in the target folder,
then ``os.link`` for create-only or ``os.replace`` otherwise), and every write and delete holds a
cross-process lock of the key's stripe (``<root>/.hds-locks/<2 hex digits of the key's sha1>.lock``,
a :class:`filelock.FileLock`: 256 lock files however many keys are written), so create-only and
compare-and-swap are atomic across processes and threads. Reads take no lock: a
reader sees either the old or the new file, never a partial one.

Names starting with ``.`` are reserved (temp files, the lock folder), so no key component may start
with ``.``; ``..``, empty components and backslashes are refused too, which keeps every key inside
the root.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock

from hds_s3.errors import ConflictError, HdsError, NotFoundError, StorageError, ValidationError
from hds_s3.store.base import ObjectInfo, check_put_args, content_etag

LOCK_DIR = ".hds-locks"
#: Lock files in ``LOCK_DIR``: keys share them by the first two hex digits of their sha1.
LOCK_STRIPES = 256
_MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR})
_CHUNK = 1 << 20
_ETAG_CACHE_LIMIT = 100_000


def _read_at(fd: int, start: int, length: int) -> bytes:
    """``length`` bytes of the open file ``fd`` from ``start`` (fewer at its end), read exactly."""
    if not hasattr(os, "pread"):  # pragma: no cover - Windows
        os.lseek(fd, start, os.SEEK_SET)
        return _read_all(lambda n, _at: os.read(fd, n), start, length)
    return _read_all(lambda n, at: os.pread(fd, n, at), start, length)


def _read_all(read: Callable[[int, int], bytes], start: int, length: int) -> bytes:
    """Call ``read(n, offset)`` until ``length`` bytes came or the file ended (a read may return fewer)."""
    parts: list[bytes] = []
    got = 0
    while got < length:
        part = read(length - got, start + got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _file_etag(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class LocalStore:
    """Objects as files under a folder, with atomic create-only and compare-and-swap writes.

    The folder is created on the first write. The etag of an object is the MD5 hex of its content
    (:func:`~hds_s3.store.base.content_etag`), as for simple S3 PUTs.

    Args:
        root: the folder holding the store.
        fsync: flush each written file (and its folder) to disk before it becomes visible, so a
            machine crash cannot leave a committed document empty. Turn off only for throw-away data.

    Raises:
        ValidationError: ``root`` is empty.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        if not os.fspath(root):
            raise ValidationError("LocalStore root folder is empty: give a folder path")
        self._root = Path(root).expanduser().absolute()
        self._fsync = fsync
        self._etag_cache: dict[tuple[str, int, int, int, int], str] = {}
        self._cache_lock = threading.Lock()

    @property
    def url(self) -> str:
        """``file://`` URL of the root folder."""
        return self._root.as_uri()

    @property
    def root(self) -> Path:
        """The absolute root folder."""
        return self._root

    # ------------------------------------------------------------------ keys and paths

    def _check_parts(self, key: str, what: str = "key") -> list[str]:
        parts = key.split("/")
        for part in parts:
            if not part or part in (".", "..") or part.startswith(".") or "\\" in part or "\0" in part:
                raise ValidationError(
                    f"{self.url}: {what} {key!r} is not allowed: components must be non-empty, must not "
                    "be '.' or '..', must not start with '.' (reserved) and must not contain '\\' or NUL"
                )
        return parts

    def _path(self, key: str) -> Path:
        if not key:
            raise ValidationError(f"{self.url}: object key is empty")
        return self._root.joinpath(*self._check_parts(key))

    def _lock(self, key: str) -> FileLock:
        # One lock per stripe of keys, not per key: the folder keeps LOCK_STRIPES files at most.
        name = hashlib.sha1(key.encode("utf-8"), usedforsecurity=False).hexdigest()[:2]
        lock_dir = self._root / LOCK_DIR
        try:
            lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._storage_error("lock", key, exc) from exc
        return FileLock(str(lock_dir / f"{name}.lock"))

    def _storage_error(self, op: str, key: str, exc: OSError) -> StorageError:
        return StorageError(f"{self.url}: {op} {key!r} failed: {exc.strerror or exc} ({type(exc).__name__})")

    def _not_found(self, key: str) -> NotFoundError:
        return NotFoundError(f"{self.url}: no object {key!r}")

    # ------------------------------------------------------------------ reads

    def get(self, key: str) -> tuple[bytes, str]:
        """Return the bytes and etag of ``key``.

        Raises:
            NotFoundError: no object has this key.
            ValidationError: the key is not allowed.
            StorageError: the file cannot be read.
        """
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS:
                raise self._not_found(key) from exc
            raise self._storage_error("get", key, exc) from exc
        return data, content_etag(data)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes of ``key`` from offset ``start`` (fewer at its end).

        Raises:
            NotFoundError: no object has this key.
            ValidationError: the key is not allowed, or ``start`` or ``length`` is negative.
            StorageError: the file cannot be read.
        """
        path = self._path(key)
        if start < 0 or length < 0:
            raise ValidationError(
                f"{self.url}: get_range {key!r}: start={start} and length={length} must be >= 0"
            )
        try:
            # unbuffered, one pread: a buffered file reads whole blocks past the range (about 4 KB
            # more per range, a tenth of a publish's reads), and a pread needs no seek
            with open(path, "rb", buffering=0) as f:
                return _read_at(f.fileno(), start, length)
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS:
                raise self._not_found(key) from exc
            raise self._storage_error("get_range", key, exc) from exc

    def _info(self, key: str, path: Path) -> ObjectInfo:
        """Size, etag and mtime of one file, hashing it unless this exact file was hashed before."""
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file", str(path))
            cache_key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            with self._cache_lock:
                etag = self._etag_cache.get(cache_key)
            if etag is None:
                digest = hashlib.md5(usedforsecurity=False)
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                etag = digest.hexdigest()
                with self._cache_lock:
                    if len(self._etag_cache) >= _ETAG_CACHE_LIMIT:
                        self._etag_cache.clear()
                    self._etag_cache[cache_key] = etag
        return ObjectInfo(key, st.st_size, etag, st.st_mtime)

    def head(self, key: str) -> ObjectInfo:
        """Return the size, etag and modification time of ``key``.

        Raises:
            NotFoundError: no object has this key.
            ValidationError: the key is not allowed.
            StorageError: the file cannot be read.
        """
        path = self._path(key)
        try:
            return self._info(key, path)
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS:
                raise self._not_found(key) from exc
            raise self._storage_error("head", key, exc) from exc

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in key order.

        Only the folder named by the prefix's directory part is walked; dot-entries are skipped.

        Raises:
            ValidationError: the directory part of the prefix is not an allowed key path.
            StorageError: a folder cannot be read.
        """
        folder, _, stem = prefix.rpartition("/")
        if folder:
            self._check_parts(folder, "prefix")
        base = self._root.joinpath(*folder.split("/")) if folder else self._root
        key_base = f"{folder}/" if folder else ""
        return self._walk(base, key_base, stem, prefix)

    def _walk(self, folder: Path, key_base: str, stem: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(folder) as it:
                entries = [
                    (e.name, e.is_dir()) for e in it if not e.name.startswith(".") and e.name.startswith(stem)
                ]
        except OSError as exc:
            if exc.errno in _MISSING_ERRNOS:
                return
            raise self._storage_error("list", prefix, exc) from exc
        # A folder "a" holds keys "a/...", which sort after "a-b": order folders as "a/".
        entries.sort(key=lambda e: e[0] + "/" if e[1] else e[0])
        for name, is_dir in entries:
            key = key_base + name
            path = folder / name
            if is_dir:
                yield from self._walk(path, key + "/", "", prefix)
                continue
            try:
                yield self._info(key, path)
            except OSError as exc:
                if exc.errno in _MISSING_ERRNOS:
                    continue  # deleted while listing
                raise self._storage_error("list", prefix, exc) from exc

    # ------------------------------------------------------------------ writes

    def _write_temp(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if self._fsync:
                    f.flush()
                    os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _sync_folder(self, folder: Path) -> None:
        if not self._fsync or os.name != "posix":
            return
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _create(self, key: str, path: Path, tmp: Path) -> None:
        """Move ``tmp`` to ``path`` only if ``path`` does not exist (caller holds the key lock)."""
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise ConflictError(f"{self.url}: {key!r} exists already") from exc
        except (NotImplementedError, PermissionError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno in _MISSING_ERRNOS:
                raise
            # No hard links on this file system: the key lock makes check-then-replace safe.
            if os.path.lexists(path):
                raise ConflictError(f"{self.url}: {key!r} exists already") from exc
            os.replace(tmp, path)

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Write ``key`` atomically and return its etag; see :meth:`hds_s3.store.base.ObjectStore.put`.

        Raises:
            ConflictError: the precondition failed; the object is unchanged.
            NotFoundError: ``if_match`` was given and the key does not exist.
            ValidationError: contradictory preconditions, or the key is not allowed.
            StorageError: the file system failed (e.g. a key component is an existing object's file).
        """
        check_put_args(key, if_none_match, if_match)
        path = self._path(key)
        body = bytes(data)
        etag = content_etag(body)
        try:
            with self._lock(key):
                if if_match is not None:
                    try:
                        current = _file_etag(path)
                    except OSError as exc:
                        if exc.errno in _MISSING_ERRNOS:
                            raise NotFoundError(f"{self.url}: no object {key!r} to replace") from exc
                        raise
                    if current != if_match:
                        raise ConflictError(f"{self.url}: {key!r} changed since it was read")
                elif if_none_match and os.path.lexists(path):
                    raise ConflictError(f"{self.url}: {key!r} exists already")
                tmp = self._write_temp(path, body)
                try:
                    if if_none_match:
                        self._create(key, path, tmp)
                    else:
                        os.replace(tmp, path)
                finally:
                    tmp.unlink(missing_ok=True)
                self._sync_folder(path.parent)
        except HdsError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
                raise StorageError(
                    f"{self.url}: cannot store {key!r}: a part of its path is an existing object or folder "
                    f"({exc.strerror})"
                ) from exc
            raise self._storage_error("put", key, exc) from exc
        return etag

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error.

        Raises:
            ValidationError: the key is not allowed.
            StorageError: the file cannot be removed.
        """
        path = self._path(key)
        try:
            with self._lock(key):
                try:
                    if os.path.isdir(path):
                        return
                    os.unlink(path)
                except OSError as exc:
                    if exc.errno in _MISSING_ERRNOS:
                        return
                    raise
                self._sync_folder(path.parent)
        except HdsError:
            raise
        except OSError as exc:
            raise self._storage_error("delete", key, exc) from exc

    def __repr__(self) -> str:
        return f"LocalStore({str(self._root)!r})"


__all__ = ["LOCK_DIR", "LocalStore"]
