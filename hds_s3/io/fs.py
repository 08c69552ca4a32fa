"""The ``hds://`` fsspec filesystem: read dataset versions, frames and sources by URL.

Paths (every component percent-decoded with :func:`urllib.parse.unquote`, so names holding ``/``,
``@``, ``%`` or spaces are written ``%2F``, ``%40``, ``%25``, ``%20``)::

    hds://                                        the datasets (one directory each)
    hds://<dataset>@<version>/                    the version's frames, one directory per frame id,
                                                  and index.parquet
    hds://<dataset>/                              the same for the dataset's *current* version: the
                                                  draft farthest from the root, else the latest
                                                  published version (as ``Dataset.get_current()``)
    hds://<dataset>@<version>/index.parquet       the version's effective frame index as Parquet
    hds://<dataset>@<version>/<frame_id>/         the frame's sources, one file per source id
    hds://<dataset>@<version>/<frame_id>/<source_id>   the source's bytes, read from its URI

``<version>`` is a version id or a version name; an id is tried first (ids never change, names can).
At the version level, the raw name ``index.parquet`` always means the index; a frame whose id is
``index.parquet`` is listed as ``index%2Eparquet``.

The index holds the columns of :data:`hds_s3.index.segments.FRAME_SCHEMA`: the frame fields (``meta``,
``meta_blob`` and the ``meta`` of sources and ROIs as JSON text) and the derived query columns
(``labels``, ``roi_count``, ``meta_str``, ``meta_num``), so ``pandas.read_parquet``,
``polars.read_parquet`` or DuckDB (after ``duckdb.register_filesystem(fsspec.filesystem("hds"))``)
read a version by URL.

Storage options: ``store`` (a store URL, an :class:`~hds_s3.store.base.ObjectStore` or a
:class:`~hds_s3.client.Client`; default: the default client, i.e. ``HDS_STORE`` or the local
folder), ``source_options`` (per-protocol fsspec options for reading sources, see
:class:`hds_s3.io.sources.SourceFetcher`) and ``cache_bytes`` (bound of the in-memory source cache).

Freshness: every call reads the dataset document (two small GETs), so names, drafts and the current
version are seen as they are now. A version's index is built once per filesystem instance: forever
for a published version (it never changes), and again for a draft only after its frames changed.
The filesystem is read-only: writing raises :class:`PermissionError`. Anything missing raises
:class:`FileNotFoundError` (hds_s3's :class:`~hds_s3.errors.NotFoundError`).
"""

from __future__ import annotations

import datetime
import errno
import io
import os
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import quote, unquote

import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.spec import AbstractFileSystem

from hds_s3.client import Client, connect, default_client
from hds_s3.errors import NotFoundError, ValidationError
from hds_s3.format.docs import VersionEntry
from hds_s3.format.txn import TreeView
from hds_s3.index import segments
from hds_s3.index.frameindex import FrameIndex
from hds_s3.io.sources import DEFAULT_CACHE_BYTES, SourceFetcher, StorageOptions
from hds_s3.store.base import ObjectStore

#: The name of the index file in a version directory.
INDEX_NAME = "index.parquet"


def quote_name(name: str) -> str:
    """Percent-encode a dataset, version, frame or source name for one ``hds://`` path component.

    Everything but unreserved characters is encoded (``/`` and ``@`` included); a name that would read
    as ``index.parquet``, ``.`` or ``..`` gets its dots encoded too.
    """
    text = quote(name, safe="")
    if text in (INDEX_NAME, ".", ".."):
        text = text.replace(".", "%2E")
    return text


def version_url(dataset: str, version: str | None = None) -> str:
    """Return ``hds://<dataset>@<version>`` (or ``hds://<dataset>`` for the current version), encoded."""
    return f"hds://{quote_name(dataset)}" + (f"@{quote_name(version)}" if version is not None else "")


def _read_only(op: str, path: Any) -> NoReturn:
    raise PermissionError(
        errno.EROFS,
        f"hds:// is read-only: cannot {op}: {path!r}; change frames with DatasetVersion.add_frames(), "
        "update_frames() or delete_frames() on a draft",
    )


@dataclass(frozen=True)
class _Path:
    """A parsed path: root (no dataset), a version directory, or something below one."""

    path: str
    dataset: str | None = None
    version: str | None = None
    parts: tuple[str, ...] = ()  # raw (still encoded) components below the version


@dataclass
class _Index:
    """One version's index file and frame ids, made on demand without holding the version.

    ``index.parquet`` is written batch by batch (:meth:`hds_s3.index.scan.Scan.batches`) to a
    temporary file, which reads are then served from; frames are looked up by id in the store.
    """

    manifest: str | None
    frames: FrameIndex
    entry: VersionEntry
    lock: threading.Lock = field(default_factory=threading.Lock)
    _file: str | None = None
    _folder: Any = None
    _sorted: list[str] | None = None

    def parquet(self) -> str:
        """The path of the temporary file holding ``index.parquet`` (removed with this object)."""
        with self.lock:
            if self._file is None:
                folder = tempfile.TemporaryDirectory(prefix="hds-index-")
                path = os.path.join(folder.name, INDEX_NAME)
                schema = segments.FRAME_SCHEMA.remove_metadata()
                with pq.ParquetWriter(path, schema) as writer:
                    for batch in self.frames.scan(self.entry).batches(segments.FRAME_SCHEMA.names):
                        writer.write_batch(batch.replace_schema_metadata(None))
                self._folder, self._file = folder, path
            return str(self._file)

    def size(self) -> int:
        return os.path.getsize(self.parquet())

    def ids(self) -> list[str]:
        with self.lock:
            if self._sorted is None:
                ids = self.frames.effective(self.entry, ["id"]).column("id")
                self._sorted = pc.take(ids, pc.sort_indices(ids)).to_pylist()
            return self._sorted

    def frame(self, frame_id: str) -> dict[str, Any] | None:
        return self.frames.lookup(self.entry, frame_id)


class _IndexFile(io.FileIO):
    """``index.parquet`` of one version, read-only and seekable (a file on local disk)."""

    def __init__(self, fs: HdsFileSystem, path: str, local: str) -> None:
        super().__init__(local, "r")
        self.fs = fs
        self.path = path
        self.size = os.path.getsize(local)

    def write(self, data: Any) -> int:
        _read_only("write", self.path)

    def truncate(self, size: int | None = None) -> int:
        _read_only("truncate", self.path)


class _ReadOnlyFile(io.BytesIO):
    """The bytes of one ``hds://`` file, read-only and seekable."""

    def __init__(self, fs: HdsFileSystem, path: str, data: bytes) -> None:
        super().__init__(data)
        self.fs = fs
        self.path = path
        self.size = len(data)

    @property
    def mode(self) -> str:
        """Always ``rb``."""
        return "rb"

    def writable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        _read_only("write", self.path)

    def truncate(self, size: int | None = None) -> int:
        _read_only("truncate", self.path)


class HdsFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """Read-only fsspec filesystem over the datasets of one hds_s3 store (protocol ``hds``).

    See the module docstring for the paths. Registered with fsspec through the ``fsspec.specs``
    entry point, so ``fsspec.filesystem("hds", store=...)`` and ``fsspec.open("hds://...")`` work
    once hds_s3 is installed.

    Args:
        store: a store URL (``s3://bucket/prefix``, ``memory://name``, a folder), an
            :class:`~hds_s3.store.base.ObjectStore` or a :class:`~hds_s3.client.Client`; default:
            the default client (``HDS_STORE``, else the embedded local folder).
        source_options: per-protocol fsspec storage options for reading source URIs.
        cache_bytes: bound, in bytes, of the in-memory cache of source bytes.

    Raises:
        ValidationError: ``store`` is a URL of an unsupported form, or ``source_options`` is malformed.
    """

    protocol = ("hds",)
    root_marker = ""

    def __init__(
        self,
        store: str | ObjectStore | Client | None = None,
        *,
        source_options: StorageOptions | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._store_arg = store
        self._client: Client | None = None
        if isinstance(store, Client):
            self._client = store
        elif isinstance(store, str):
            self._client = connect(store)
        elif store is not None:
            if not isinstance(store, ObjectStore):
                raise ValidationError(
                    f"store must be a store URL, an ObjectStore or a Client, got {type(store).__name__}"
                )
            self._client = Client(store)
        self.fetcher = SourceFetcher(source_options, cache_bytes=cache_bytes)
        self._indexes: dict[tuple[str, str, str], _Index] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ resolution

    @property
    def client(self) -> Client:
        """The client whose store this filesystem reads (the default client when none was given).

        Raises:
            ValidationError: no store was given and ``HDS_STORE`` has an unsupported form.
        """
        return self._client if self._client is not None else default_client()

    def _parse(self, path: str) -> _Path:
        text = self._strip_protocol(path).lstrip("/")
        if not text:
            return _Path("")
        comps = text.split("/")
        if any(c == "" for c in comps):
            raise FileNotFoundError(errno.ENOENT, f"hds:// path {path!r} has an empty component ('//')")
        head = comps[0]
        ds_raw, at, ver_raw = head.partition("@")
        dataset = unquote(ds_raw)
        if not dataset:
            raise FileNotFoundError(errno.ENOENT, f"hds:// path {path!r} names no dataset before '@'")
        version = None
        if at:
            version = unquote(ver_raw)
            if not version:
                raise FileNotFoundError(
                    errno.ENOENT,
                    f"hds:// path {path!r}: give a version name or id after '@' "
                    "(or no '@' for the current version)",
                )
        return _Path(text, dataset, version, tuple(comps[1:]))

    def _version(self, p: _Path) -> tuple[Client, TreeView, VersionEntry]:
        assert p.dataset is not None
        client = self.client
        try:
            doc = client.catalog.get(name=p.dataset)
        except ValidationError as exc:
            raise NotFoundError(f"hds://{p.path}: no dataset named {p.dataset!r} ({exc})") from exc
        except NotFoundError as exc:
            raise NotFoundError(f"hds://{p.path}: {exc}") from exc
        if p.version is None:
            entry = doc.head()
            if entry is None:
                raise NotFoundError(f"hds://{p.path}: dataset {doc.name!r} has no versions")
            return client, doc, entry
        entry = doc.version(p.version) or doc.version_named(p.version)
        if entry is None:
            names = ", ".join(repr(v.name) for v in doc.versions) or "none"
            raise NotFoundError(
                f"hds://{p.path}: dataset {doc.name!r} has no version named or with id "
                f"{p.version!r} (it has: {names})"
            )
        return client, doc, entry

    def _index(self, client: Client, doc: TreeView, entry: VersionEntry) -> _Index:
        key = (client.url, doc.id, entry.id)
        manifest = entry.frames.get("manifest")
        with self._lock:
            cached = self._indexes.get(key)
        if cached is not None and (not entry.is_draft or cached.manifest == manifest):
            return cached
        index = _Index(manifest, client.frames, entry)
        with self._lock:
            self._indexes[key] = index
        return index

    def _frame(self, p: _Path) -> tuple[_Index, dict[str, Any]]:
        client, doc, entry = self._version(p)
        index = self._index(client, doc, entry)
        frame_id = unquote(p.parts[0])
        frame = index.frame(frame_id)
        if frame is None:
            raise NotFoundError(
                f"hds://{p.path}: frame {frame_id!r} is not in version {entry.name!r} of dataset {doc.name!r}"
            )
        return index, frame

    def _source(self, p: _Path) -> dict[str, Any]:
        _, frame = self._frame(p)
        source_id = unquote(p.parts[1])
        for src in frame["sources"]:
            if src.get("id") == source_id:
                return dict(src)
        have = [s.get("id") for s in frame["sources"]]
        raise NotFoundError(
            f"hds://{p.path}: frame {frame['id']!r} has no source {source_id!r} (it has: {have})"
        )

    # ------------------------------------------------------------------ reading

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """Describe one path: ``{"name", "type": "file" | "directory", "size", ...}``.

        Version directories also give ``dataset_id``, ``version_id``, ``version_name`` and
        ``status``; source files give ``uri`` and ``content_type`` (their size is the size of the
        object at the URI, asked of its storage).

        Raises:
            FileNotFoundError: no such dataset, version, frame or source.
            StorageError: the store or the source's storage failed.
        """
        p = self._parse(path)
        if p.dataset is None:
            return {"name": "", "type": "directory", "size": 0}
        if not p.parts:
            _, doc, entry = self._version(p)
            return self._version_info(p.path, doc, entry)
        if len(p.parts) == 1 and p.parts[0] == INDEX_NAME:
            client, doc, entry = self._version(p)
            size = self._index(client, doc, entry).size()
            return {"name": p.path, "type": "file", "size": size}
        if len(p.parts) == 1:
            _, frame = self._frame(p)
            return self._frame_info(p.path, frame)
        if len(p.parts) == 2:
            src = self._source(p)
            return {**self._source_info(p.path, src), "size": self.fetcher.size(src["uri"])}
        raise NotFoundError(f"hds://{p.path}: nothing lies below a source (paths end at <frame>/<source>)")

    @staticmethod
    def _version_info(name: str, doc: TreeView, entry: VersionEntry) -> dict[str, Any]:
        return {
            "name": name,
            "type": "directory",
            "size": 0,
            "dataset_id": doc.id,
            "dataset_name": doc.name,
            "version_id": entry.id,
            "version_name": entry.name,
            "status": entry.status,
        }

    @staticmethod
    def _frame_info(name: str, frame: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "type": "directory",
            "size": 0,
            "frame_id": frame["id"],
            "context_id": frame.get("context_id"),
            "timestamp": frame.get("timestamp"),
        }

    @staticmethod
    def _source_info(name: str, src: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "type": "file",
            "size": None,
            "source_id": src.get("id"),
            "uri": src.get("uri"),
            "content_type": src.get("content_type"),
            "width": src.get("width"),
            "height": src.get("height"),
        }

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """List a directory: datasets at the root, frames and the index in a version, sources in a frame.

        Listed sources have ``size: None`` (their size lives with the object at the URI; ``info``
        asks for it). Listing a file returns that file alone, as fsspec filesystems do.

        Raises:
            FileNotFoundError: no such dataset, version or frame.
            StorageError: the store failed.
        """
        p = self._parse(path)
        if p.dataset is None:
            entries = [
                {"name": quote_name(doc.name), "type": "directory", "size": 0, "dataset_id": doc.id}
                for doc in self.client.catalog.list()
            ]
        elif not p.parts:
            client, doc, entry = self._version(p)
            index = self._index(client, doc, entry)
            entries = [{"name": f"{p.path}/{INDEX_NAME}", "type": "file", "size": index.size()}]
            entries += [
                {"name": f"{p.path}/{quote_name(fid)}", "type": "directory", "size": 0, "frame_id": fid}
                for fid in index.ids()
            ]
        elif len(p.parts) == 1 and p.parts[0] != INDEX_NAME:
            _, frame = self._frame(p)
            entries = [
                self._source_info(f"{p.path}/{quote_name(src['id'])}", src) for src in frame["sources"]
            ]
        else:
            entries = [self.info(path)]
        return entries if detail else [e["name"] for e in entries]

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> _ReadOnlyFile | _IndexFile:
        """Open a file for reading (``index.parquet`` or a source).

        Raises:
            PermissionError: a mode other than ``rb`` (the filesystem is read-only).
            IsADirectoryError: the path is a directory.
            FileNotFoundError: no such dataset, version, frame or source.
            StorageError: the store or the source's storage failed.
        """
        if mode != "rb":
            _read_only(f"open with mode {mode!r}", path)
        p = self._parse(path)
        if p.dataset is None or not p.parts or (len(p.parts) == 1 and p.parts[0] != INDEX_NAME):
            self.info(path)  # a missing path says so first
            raise IsADirectoryError(errno.EISDIR, f"hds://{p.path} is a directory; list it with ls()")
        if len(p.parts) == 1:
            client, doc, entry = self._version(p)
            return _IndexFile(self, p.path, self._index(client, doc, entry).parquet())
        if len(p.parts) == 2:
            src = self._source(p)
            return _ReadOnlyFile(self, p.path, self.fetcher.fetch(src["uri"]))
        raise NotFoundError(f"hds://{p.path}: nothing lies below a source (paths end at <frame>/<source>)")

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """Return the bytes of a file, or of ``[start, end)`` of it.

        Raises:
            IsADirectoryError, FileNotFoundError, StorageError: as :meth:`_open`.
        """
        with self._open(path) as f:
            data: bytes = f.read()
        return data[start:end] if start is not None or end is not None else data

    def frame(self, path: str) -> dict[str, Any]:
        """Return the frame dict a frame directory ``<dataset>@<version>/<frame_id>`` names.

        Raises:
            FileNotFoundError: no such dataset, version or frame, or the path is not a frame directory.
        """
        p = self._parse(path)
        if p.dataset is None or len(p.parts) != 1 or p.parts[0] == INDEX_NAME:
            raise NotFoundError(f"hds://{p.path} is not a frame directory (<dataset>@<version>/<frame_id>)")
        return self._frame(p)[1]

    def modified(self, path: str) -> datetime.datetime:
        """When the version of a path last changed: its publish time, or the dataset's last change (draft).

        Raises:
            FileNotFoundError: no such dataset or version (the root has no time).
        """
        p = self._parse(path)
        if p.dataset is None:
            raise NotFoundError("hds:// (the root) has no modification time")
        _, doc, entry = self._version(p)
        ms = entry.published if entry.published is not None and not entry.is_draft else doc.updated
        return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)

    def created(self, path: str) -> datetime.datetime:
        """When the version a path lies in was created.

        Raises:
            FileNotFoundError: no such dataset or version (the root has no time).
        """
        p = self._parse(path)
        if p.dataset is None:
            raise NotFoundError("hds:// (the root) has no creation time")
        _, _, entry = self._version(p)
        return datetime.datetime.fromtimestamp(entry.created / 1000, tz=datetime.timezone.utc)

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget cached version indexes and source bytes (they are rebuilt on next use)."""
        with self._lock:
            self._indexes.clear()
        self.fetcher.clear_cache()
        super().invalidate_cache(path)

    # ------------------------------------------------------------------ writing: refused

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> NoReturn:
        """Refused: the filesystem is read-only.

        Raises:
            PermissionError: always.
        """
        _read_only("create directory", path)

    def makedirs(self, path: str, exist_ok: bool = False) -> NoReturn:
        """Refused: the filesystem is read-only.

        Raises:
            PermissionError: always.
        """
        _read_only("create directories", path)

    def rmdir(self, path: str) -> NoReturn:
        """Refused: the filesystem is read-only.

        Raises:
            PermissionError: always.
        """
        _read_only("remove directory", path)

    def rm_file(self, path: str) -> NoReturn:
        """Refused: the filesystem is read-only.

        Raises:
            PermissionError: always.
        """
        _read_only("remove", path)

    def _rm(self, path: str) -> NoReturn:
        _read_only("remove", path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> NoReturn:
        """Refused: the filesystem is read-only.

        Raises:
            PermissionError: always.
        """
        _read_only("remove", path)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> NoReturn:
        """Refused: the filesystem is read-only.

        Raises:
            PermissionError: always.
        """
        _read_only("copy to", path2)

    def mv(
        self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None, **kwargs: Any
    ) -> NoReturn:
        """Refused: the filesystem is read-only.

        Raises:
            PermissionError: always.
        """
        _read_only("move", path1)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> NoReturn:
        """Refused: the filesystem is read-only.

        Raises:
            PermissionError: always.
        """
        _read_only("write", path)

    def put_file(
        self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite", **kwargs: Any
    ) -> NoReturn:
        """Refused: the filesystem is read-only.

        Raises:
            PermissionError: always.
        """
        _read_only("upload to", rpath)

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> NoReturn:
        """Refused: the filesystem is read-only.

        Raises:
            PermissionError: always.
        """
        _read_only("touch", path)


__all__ = ["INDEX_NAME", "HdsFileSystem", "quote_name", "version_url"]
