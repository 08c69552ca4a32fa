"""Uploading the local files of frames (sources, previews, masks) while they are registered.

``DatasetVersion.add_frames(frames, auto_upload_destination=..., local_dataset_root_path=...)`` and
``HyperDataset.add_data_entries(..., upload_local_files_destination=...)`` call :class:`Uploader`:
every URI of a frame that names a local file (a plain path or ``file://``) is copied to the
destination, any fsspec URL (``s3://bucket/prefix``, ``gs://...``, a folder, ``memory://...``), and the
frame is registered with the uploaded URI instead. What it does, where the reference's client is
silent or buggy:

* **Layout.** A file under ``local_dataset_root_path`` keeps its path relative to it
  (``root/a/b.jpg`` goes to ``<destination>/a/b.jpg``); without a root, a file goes to
  ``<destination>/<sha256 of its content>/<its name>``, so two files of one name never overwrite each
  other (the reference keeps only the file name). A file outside the given root fails its frame.
* **Parallel, retried, resumable.** Files are copied by ``workers`` threads; a failed copy is tried
  again up to ``retries`` times with exponential backoff (tenacity); a file already at its
  destination with the same size is not copied again, so running an interrupted registration again
  resumes it. A frame any of whose files could not be uploaded is not registered and is reported
  among the failures with the reason (a FrameGroup fails whole), as the reference documents.
* **De-duplication** (``hash_sources``): the SHA-256 of every local file is kept in its source's
  metadata (``meta.hash.source``, ``meta.hash.preview_source``, ``meta.hash.masks.<mask id>``), and
  a file whose hash is already known (``known``: hash to URI, from every version of the dataset, and
  every file uploaded by this call) is not uploaded again: the frame gets the URI it has.
* **Masks and previews** are uploaded like sources (the reference forgets masks).
* **Progress**: a tqdm bar of files when asked.

Frames may be frame objects (their URIs are changed in place, as the reference's ``set_source``
does) or frame dicts (a copy with the new URIs is registered).
"""

from __future__ import annotations

import copy
import hashlib
import os
import posixpath
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from hds_s3.errors import StorageError, ValidationError
from hds_s3.model.frames import FrameGroup, SingleFrame, expand_shorthand, local_path
from hds_s3.model.names import preview

#: Files hashed and copied by default at once.
DEFAULT_WORKERS = 8
#: Frames taken from the input at a time: their files are uploaded together, then they go on.
CHUNK_FRAMES = 256
_HASH_BLOCK = 1 << 20


def sha256_file(path: str) -> str:
    """The SHA-256 of a file's content, as 64 hex digits.

    Raises:
        StorageError: the file cannot be read.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as src:
            while block := src.read(_HASH_BLOCK):
                digest.update(block)
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    return digest.hexdigest()


@dataclass
class _Slot:
    """One URI of a frame that names a local file, and how to put the uploaded URI in its place."""

    path: str
    kind: str  # "source", "preview_source" or "masks.<mask id>"
    set_uri: Callable[[str], None]
    meta: dict[str, Any]  # the source's metadata (the hash goes there)
    uri: str = ""
    digest: str | None = None


@dataclass
class _Item:
    """One frame of the input: what is registered, and its local files."""

    given: object
    frame: object
    slots: list[_Slot] = field(default_factory=list)
    error: str | None = None


def _slots_of_object(frame: SingleFrame | FrameGroup) -> list[_Slot]:
    members = [frame] if isinstance(frame, SingleFrame) else list(frame.values())
    out: list[_Slot] = []
    for member in members:
        if not isinstance(member, SingleFrame):
            continue  # validation reports it
        meta = member.source_meta if isinstance(member.source_meta, dict) else {}

        def set_source(uri: str, m: SingleFrame = member) -> None:
            m.source = uri

        def set_preview(uri: str, m: SingleFrame = member) -> None:
            assert m.preview is not None
            m.preview.uri = uri

        if isinstance(member.source, str):
            out.append(_Slot(member.source, "source", set_source, meta))
        if member.preview is not None and isinstance(member.preview.uri, str):
            out.append(_Slot(member.preview.uri, "preview_source", set_preview, meta))
        for mask in member.masks:
            if isinstance(mask.uri, str):

                def set_mask(uri: str, m: Any = mask) -> None:
                    m.uri = uri

                out.append(_Slot(mask.uri, f"masks.{mask.id}", set_mask, meta))
    return out


def _setter(holder: dict[str, Any], key: str) -> Callable[[str], None]:
    def set_uri(uri: str) -> None:
        holder[key] = uri

    return set_uri


def _slots_of_dict(frame: dict[str, Any]) -> list[_Slot]:
    out: list[_Slot] = []
    sources = frame.get("sources")
    if not isinstance(sources, list):
        return out
    for src in sources:
        if not isinstance(src, dict):
            continue
        if not isinstance(src.get("meta"), dict):
            src["meta"] = {}
        meta = src["meta"]
        if isinstance(src.get("uri"), str):
            out.append(_Slot(src["uri"], "source", _setter(src, "uri"), meta))
        prev = src.get("preview")
        if isinstance(prev, dict) and isinstance(prev.get("uri"), str):
            out.append(_Slot(prev["uri"], "preview_source", _setter(prev, "uri"), meta))
        for mask in src.get("masks") or ():
            if isinstance(mask, dict) and isinstance(mask.get("uri"), str):
                out.append(_Slot(mask["uri"], f"masks.{mask.get('id')}", _setter(mask, "uri"), meta))
    return out


def _set_hash(slot: _Slot, digest: str) -> None:
    hashes = slot.meta.get("hash")
    if not isinstance(hashes, dict):
        hashes = {}
        slot.meta["hash"] = hashes
    if slot.kind.startswith("masks."):
        masks = hashes.get("masks")
        if not isinstance(masks, dict):
            masks = {}
            hashes["masks"] = masks
        masks[slot.kind[len("masks.") :]] = digest
    else:
        hashes[slot.kind] = digest


class Uploader:
    """Uploads the local files of frames to one destination (see the module docstring).

    Args:
        destination: any fsspec URL or a folder.
        root: the local folder whose layout is kept under the destination (None: by content hash).
        retries: attempts per file (at least 1).
        workers: threads hashing and copying files.
        hash_sources: keep each file's SHA-256 in its source's metadata and reuse known uploads.
        known: SHA-256 to URI of files uploaded before (to every version of the dataset).
        force_upload: copy files even when their hash is known or they are at the destination.
        progress: a tqdm bar advanced per file, or None.
        storage_options: passed to fsspec for the destination.

    Raises:
        ValidationError: a destination fsspec does not know, a root that is not a folder, or a
            bad number of retries or workers.
    """

    def __init__(
        self,
        destination: str,
        *,
        root: str | os.PathLike[str] | None = None,
        retries: int = 3,
        workers: int | None = None,
        hash_sources: bool = False,
        known: Mapping[str, str] | None = None,
        force_upload: bool = False,
        progress: Any | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(destination, str) or not destination.strip():
            raise ValidationError(
                f"auto_upload_destination must be a URL or a folder, got {preview(destination)}"
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
            raise ValidationError(f"upload_retries must be a whole number >= 1, got {preview(retries)}")
        workers = DEFAULT_WORKERS if workers is None else workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValidationError(f"upload workers must be a whole number >= 1, got {preview(workers)}")
        self.root: str | None = None
        if root is not None:
            root_path = Path(root).expanduser()
            if not root_path.is_dir():
                raise ValidationError(f"local_dataset_root_path {str(root)!r} is not a folder")
            self.root = str(root_path.resolve())
        try:
            self.fs, base = fsspec.core.url_to_fs(destination, **dict(storage_options or {}))
        except (ValueError, ImportError) as exc:
            raise ValidationError(f"cannot upload to {destination!r}: {exc}") from exc
        self.base = base.rstrip("/")
        self.destination = destination.rstrip("/")
        self.retries = retries
        self.workers = workers
        self.hash_sources = hash_sources
        self.known: dict[str, str] = dict(known or {})
        self.force = force_upload
        self.progress = progress
        self._lock = threading.Lock()
        self.uploaded = 0
        self.reused = 0

    # ------------------------------------------------------------------ where a file goes

    def _relative(self, path: str, digest: str | None) -> str:
        absolute = str(Path(path).resolve())
        if self.root is not None:
            rel = os.path.relpath(absolute, self.root)
            if rel.startswith(os.pardir + os.sep) or rel == os.pardir or os.path.isabs(rel):
                raise ValidationError(f"{path} is not under local_dataset_root_path {self.root}")
            return Path(rel).as_posix()
        assert digest is not None
        return f"{digest}/{Path(absolute).name}"

    def _target(self, rel: str) -> tuple[str, str]:
        """(the fsspec path to write, the URI frames get)."""
        path = posixpath.join(self.base, rel) if self.base else rel
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        if protocol in ("file", "local"):
            return path, path
        return path, self.fs.unstrip_protocol(path)

    # ------------------------------------------------------------------ one file

    def _copy(self, local: str, remote: str) -> None:
        for attempt in Retrying(
            stop=stop_after_attempt(self.retries),
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception_type(OSError),
            reraise=True,
        ):
            with attempt:
                if not self.force:
                    try:
                        if self.fs.size(remote) == os.path.getsize(local):
                            return  # there already (an earlier, interrupted run): resume
                    except (FileNotFoundError, OSError):
                        pass
                parent = posixpath.dirname(remote)
                if parent:
                    self.fs.makedirs(parent, exist_ok=True)
                self.fs.put_file(local, remote)

    def _upload(self, slot: _Slot) -> None:
        digest = sha256_file(slot.path) if (self.hash_sources or self.root is None) else None
        slot.digest = digest
        if digest is not None and self.hash_sources and not self.force:
            with self._lock:
                reuse = self.known.get(digest)
            if reuse is not None:
                slot.uri = reuse
                with self._lock:
                    self.reused += 1
                return
        remote, uri = self._target(self._relative(slot.path, digest))
        try:
            self._copy(slot.path, remote)
        except OSError as exc:
            raise StorageError(
                f"uploading {slot.path} to {uri} failed after {self.retries} attempts: {exc}"
            ) from exc
        slot.uri = uri
        with self._lock:
            self.uploaded += 1
            if digest is not None:
                self.known.setdefault(digest, uri)

    # ------------------------------------------------------------------ frames

    def _item(self, given: object) -> _Item:
        if isinstance(given, (SingleFrame, FrameGroup)):
            item = _Item(given, given, _slots_of_object(given))
        elif isinstance(given, Mapping):
            frame = copy.deepcopy(dict(expand_shorthand(given)))
            item = _Item(given, frame, _slots_of_dict(frame))
        else:
            return _Item(given, given)  # not a frame: ingest reports it
        item.slots = [s for s in item.slots if (p := local_path(s.path)) is not None and os.path.isfile(p)]
        for slot in item.slots:
            slot.path = local_path(slot.path) or slot.path
        return item

    def upload(self, frames: Iterable[object], failed: Callable[[object, str], None]) -> Iterator[object]:
        """Yield the frames of ``frames``, their local files uploaded and their URIs replaced.

        Frames are taken :data:`CHUNK_FRAMES` at a time; a frame whose upload failed is not
        yielded: ``failed(frame, reason)`` is called for it instead.
        """
        source = iter(frames)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="hds-upload") as pool:
            while True:
                chunk = [self._item(f) for f in _take(source, CHUNK_FRAMES)]
                if not chunk:
                    return
                slots = [(item, slot) for item in chunk for slot in item.slots]
                # one file shared by several frames (or several slots) is uploaded once
                unique: dict[str, list[_Slot]] = {}
                for _, slot in slots:
                    unique.setdefault(slot.path, []).append(slot)
                errors: dict[str, str] = {}

                def run(
                    path: str, unique: dict[str, list[_Slot]] = unique, errors: dict[str, str] = errors
                ) -> None:
                    try:
                        self._upload(unique[path][0])
                    except (StorageError, ValidationError) as exc:
                        errors[path] = str(exc)
                    finally:
                        if self.progress is not None:
                            self.progress.update(1)

                list(pool.map(run, list(unique)))
                for group in unique.values():
                    first = group[0]
                    for other in group[1:]:
                        other.uri, other.digest = first.uri, first.digest
                for item, slot in slots:
                    if slot.path in errors:
                        item.error = errors[slot.path]
                for item in chunk:
                    if item.error is not None:
                        failed(item.given, item.error)
                        continue
                    for slot in item.slots:
                        slot.set_uri(slot.uri)
                        if self.hash_sources and slot.digest is not None:
                            _set_hash(slot, slot.digest)
                    yield item.frame


def _take(source: Iterator[object], n: int) -> list[object]:
    out: list[object] = []
    for item in source:
        out.append(item)
        if len(out) >= n:
            break
    return out


def known_hashes(
    source_metas: Iterable[Mapping[str, Any]], uris: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """SHA-256 to URI from sources as stored (``meta.hash`` beside each source's URIs).

    ``source_metas`` and ``uris`` run in step: a source's parsed metadata and the source dict.
    """
    out: dict[str, str] = {}
    for meta, src in zip(source_metas, uris, strict=False):
        hashes = meta.get("hash") if isinstance(meta, Mapping) else None
        if not isinstance(hashes, Mapping):
            continue
        h = hashes.get("source")
        if isinstance(h, str) and isinstance(src.get("uri"), str):
            out.setdefault(h, src["uri"])
        h = hashes.get("preview_source")
        prev = src.get("preview")
        if isinstance(h, str) and isinstance(prev, Mapping) and isinstance(prev.get("uri"), str):
            out.setdefault(h, prev["uri"])
        masks = hashes.get("masks")
        if isinstance(masks, Mapping):
            by_id = {m.get("id"): m.get("uri") for m in src.get("masks") or () if isinstance(m, Mapping)}
            for mask_id, mh in masks.items():
                target = by_id.get(mask_id)
                if isinstance(mh, str) and isinstance(target, str):
                    out.setdefault(mh, target)
    return out


__all__ = ["CHUNK_FRAMES", "DEFAULT_WORKERS", "Uploader", "known_hashes", "sha256_file"]
