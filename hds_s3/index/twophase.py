"""Two-phase writes in the open: segments written anywhere, listed once by one commit.

:meth:`hds_s3.api.DatasetVersion.write_segments` (any worker) writes a draft's frames as segments
and commits nothing; it returns :class:`PendingSegment` references, which travel as JSON (or pickled)
to whoever commits. :meth:`hds_s3.api.DatasetVersion.commit_segments` (one driver) checks them with
:func:`check_pending` (each lies under the version and exists with its recorded size, in a footer
that says it is an hds_s3 segment of that many rows) and appends them to the version's manifest
in one commit, in the order of :func:`commit_order`, recording the caller's transaction id in each
segment's manifest entry (:func:`landed`), so a commit repeated with that id, after a lost
response or a driver restart, finds it landed and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hds_s3.errors import HdsError, NotFoundError, StorageError, ValidationError
from hds_s3.format import layout
from hds_s3.format.docs import SegmentRef
from hds_s3.index import segments
from hds_s3.index.frameindex import FrameIndex
from hds_s3.index.ingest import FailedFrame
from hds_s3.model.names import check_name, preview

PENDING_KIND = "hds_s3.pending-segment"
#: The manifest entry field (a ``SegmentRef`` extra) holding the transaction id that committed it.
TXN_FIELD = "txn"
#: A part number is below this (the task or partition index of a job).
MAX_PART = 2**63 - 1
_THREADS = 8


@dataclass(frozen=True)
class PendingSegment:
    """A segment written for a version and not yet committed: what a worker hands to the committer.

    ``part`` is the worker's share of the job (its task or partition index) and ``seq`` the
    segment's place among that worker's segments: the commit orders segments by them, so a frame
    id written by two workers resolves to the same row on every run of the job (a later part
    replaces an earlier one, as a later frame replaces an earlier one in ``add_frames``).
    """

    dataset_id: str
    version_id: str
    key: str
    kind: str
    rows: int
    size: int
    min_id: str | None = None
    max_id: str | None = None
    part: int = 0
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The reference as JSON-ready data (what :meth:`to_json` writes)."""
        return {
            "kind": PENDING_KIND,
            "dataset_id": self.dataset_id,
            "version_id": self.version_id,
            "key": self.key,
            "segment_kind": self.kind,
            "rows": self.rows,
            "size": self.size,
            "min_id": self.min_id,
            "max_id": self.max_id,
            "part": self.part,
            "seq": self.seq,
        }

    def to_json(self) -> str:
        """The reference as a JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: object) -> PendingSegment:
        """Read a reference back from :meth:`to_dict`'s data.

        Raises:
            ValidationError: not such data (a missing field, a field of the wrong type, a key that
                is not a segment key of the dataset and version it names).
        """
        if not isinstance(data, Mapping) or data.get("kind") != PENDING_KIND:
            raise ValidationError(f"not a pending segment reference: {preview(data)}")
        strings = ("dataset_id", "version_id", "key", "segment_kind")
        counts = ("rows", "size", "part", "seq")
        for name in strings:
            if not isinstance(data.get(name), str):
                raise ValidationError(f"pending segment reference: {name} is {preview(data.get(name))}")
        for name in counts:
            value = data.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_PART:
                raise ValidationError(f"pending segment reference: {name} is {preview(value)}, not a count")
        for name in ("min_id", "max_id"):
            if data.get(name) is not None and not isinstance(data.get(name), str):
                raise ValidationError(f"pending segment reference: {name} is {preview(data.get(name))}")
        ref = cls(
            dataset_id=data["dataset_id"],
            version_id=data["version_id"],
            key=data["key"],
            kind=data["segment_kind"],
            rows=data["rows"],
            size=data["size"],
            min_id=data.get("min_id"),
            max_id=data.get("max_id"),
            part=data["part"],
            seq=data["seq"],
        )
        ref.check_shape()
        return ref

    @classmethod
    def from_json(cls, text: str | bytes) -> PendingSegment:
        """Read a reference back from :meth:`to_json`'s text.

        Raises:
            ValidationError: not JSON, or not a reference (see :meth:`from_dict`).
        """
        return cls.from_dict(loads_text(text))

    def check_shape(self) -> None:
        """Check the fields agree with one another (the key is a segment key of the ids named).

        Raises:
            ValidationError: naming the key and what is wrong.
        """
        parts = layout.parse_key(self.key) if isinstance(self.key, str) else None
        if parts is None or parts.kind != "segment":
            raise ValidationError(f"pending segment reference: {preview(self.key)} is not a segment key")
        if (parts.dataset_id, parts.version_id) != (self.dataset_id, self.version_id):
            raise ValidationError(
                f"pending segment reference: {self.key} lies under another dataset or version than "
                f"the one it names ({self.dataset_id}/{self.version_id})"
            )
        if self.kind not in ("frames", "deletes"):
            raise ValidationError(
                f"pending segment reference: kind {preview(self.kind)} is not frames or deletes"
            )
        if not isinstance(self.part, int) or isinstance(self.part, bool) or not 0 <= self.part <= MAX_PART:
            raise ValidationError(f"pending segment reference: part {preview(self.part)} is not a count")

    def sort_key(self) -> tuple[int, int, str, str, int, str]:
        """The commit order: by part, then place within the part, then content bounds, then key."""
        return (self.part, self.seq, self.min_id or "", self.max_id or "", self.rows, self.key)

    def ref(self, txn_id: str | None = None) -> SegmentRef:
        """The manifest entry this segment gets when committed (by ``txn_id``, recorded when given)."""
        return SegmentRef(
            key=self.key,
            kind=self.kind,
            rows=self.rows,
            size=self.size,
            version=self.version_id,
            min_id=self.min_id,
            max_id=self.max_id,
            extra={TXN_FIELD: txn_id} if txn_id is not None else {},
        )

    @classmethod
    def of(cls, ref: SegmentRef, dataset_id: str, *, part: int, seq: int) -> PendingSegment:
        """The pending reference of a segment just written."""
        return cls(
            dataset_id=dataset_id,
            version_id=ref.version,
            key=ref.key,
            kind=ref.kind,
            rows=ref.rows,
            size=ref.size,
            min_id=ref.min_id,
            max_id=ref.max_id,
            part=part,
            seq=seq,
        )


@dataclass
class WrittenSegments:
    """What :meth:`hds_s3.api.DatasetVersion.write_segments` wrote: segments, and the frames that failed.

    Give it (or its ``segments``, or several of either) to ``commit_segments``.
    """

    segments: list[PendingSegment] = field(default_factory=list)
    failed: list[FailedFrame] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows written (frames; an id written twice by one call counts once)."""
        return sum(s.rows for s in self.segments)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: the references, and each failed frame's dict (or its preview) and reason."""
        return {
            "segments": [s.to_dict() for s in self.segments],
            "failed": [{"frame": _jsonable(f.frame), "reason": f.reason} for f in self.failed],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as a JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: object) -> WrittenSegments:
        """Read :meth:`to_dict`'s data back (failed frames come back as dicts or previews).

        Raises:
            ValidationError: not such data.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("segments"), list):
            raise ValidationError(f"not a list of written segments: {preview(data)}")
        failed = data.get("failed", [])
        if not isinstance(failed, list) or not all(
            isinstance(f, Mapping) and isinstance(f.get("reason"), str) for f in failed
        ):
            raise ValidationError(f"written segments: failed is {preview(failed)}")
        return cls(
            [PendingSegment.from_dict(s) for s in data["segments"]],
            [FailedFrame(f.get("frame"), f["reason"]) for f in failed],
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> WrittenSegments:
        """Read :meth:`to_json`'s text back.

        Raises:
            ValidationError: not JSON, or not such data.
        """
        return cls.from_dict(loads_text(text))


def loads_text(text: object) -> Any:
    """Parse JSON text given by a caller (a worker's message, a serialised task).

    Raises:
        ValidationError: ``text`` is not text, or not JSON (also when it nests too deep to parse).
    """
    if not isinstance(text, (str, bytes)):
        raise ValidationError(f"expected JSON text, got a {type(text).__name__}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"not valid JSON: {str(exc)[:200]}") from None


def _jsonable(frame: object) -> Any:
    try:
        json.dumps(frame, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return preview(frame)
    return frame


def flatten(items: Iterable[object]) -> list[PendingSegment]:
    """The pending segments of ``items``: references, their dicts or JSON, or :class:`WrittenSegments`.

    Raises:
        ValidationError: an item is none of those.
    """
    if isinstance(items, (str, bytes, Mapping, PendingSegment, WrittenSegments)):
        items = [items]
    if not isinstance(items, Iterable):
        raise ValidationError(f"give pending segments (a list of them), got {preview(items)}")
    out: list[PendingSegment] = []
    for item in items:
        if isinstance(item, PendingSegment):
            item.check_shape()
            out.append(item)
        elif isinstance(item, WrittenSegments):
            out.extend(flatten(item.segments))
        elif isinstance(item, (str, bytes)):
            data = loads_text(item)
            out.extend(flatten([data]))
        elif isinstance(item, Mapping) and "segments" in item:
            out.extend(WrittenSegments.from_dict(item).segments)
        elif isinstance(item, Mapping):
            out.append(PendingSegment.from_dict(item))
        else:
            raise ValidationError(
                f"give pending segments (from write_segments), got a {type(item).__name__}: {preview(item)}"
            )
    return out


def check_txn_id(txn_id: object) -> str:
    """Return a caller's transaction id: a name (1 to 255 bytes of UTF-8, no control characters).

    Raises:
        ValidationError: anything else.
    """
    return check_name("transaction", txn_id)


def commit_order(pending: Sequence[PendingSegment], dataset_id: str, version_id: str) -> list[PendingSegment]:
    """The segments in commit order (:meth:`PendingSegment.sort_key`), each once.

    Raises:
        ValidationError: a segment lies under another dataset or version, or one key is given twice
            with different contents.
    """
    seen: dict[str, PendingSegment] = {}
    for p in pending:
        if (p.dataset_id, p.version_id) != (dataset_id, version_id):
            raise ValidationError(
                f"segment {p.key} was written for version {p.version_id} of dataset {p.dataset_id}, "
                f"not for this one ({version_id} of {dataset_id}); nothing was committed"
            )
        other = seen.get(p.key)
        if other is not None and other != p:
            raise ValidationError(
                f"segment {p.key} is given twice, with different contents; nothing was committed"
            )
        seen[p.key] = p
    return sorted(seen.values(), key=PendingSegment.sort_key)


def check_pending(frames: FrameIndex, pending: Sequence[PendingSegment]) -> None:
    """Check every segment exists with its recorded size, and its footer says the recorded rows and kind.

    One HEAD and one ranged GET (the footer, cached for the readers) per segment, in parallel.

    Raises:
        ValidationError: a segment is missing, of another size, or not the segment its reference
            says (nothing was committed).
        StorageError: the store failed.
    """

    def check(p: PendingSegment) -> str | None:
        try:
            info = frames.store.head(p.key)
        except NotFoundError:
            return f"segment {p.key} does not exist (never written, or removed: was it leased?)"
        if info.size != p.size:
            return f"segment {p.key} holds {info.size} bytes, its reference says {p.size}"
        try:
            meta = frames._footer(p.ref())
        except StorageError:
            raise
        except (HdsError, OSError, ValueError, TypeError, KeyError) as exc:
            return f"segment {p.key} is not a readable hds_s3 segment ({exc})"
        fmt = (meta.metadata or {}).get(b"hds_s3", b"").decode("utf-8", "replace")
        want = (
            (segments.SEGMENT_FORMAT, segments.INDEXED_FORMAT)
            if p.kind == "frames"
            else (segments.DELETES_FORMAT,)
        )
        if fmt not in want:
            return f"segment {p.key} is a {fmt or 'foreign'} file, its reference says {p.kind}"
        if meta.num_rows != p.rows:
            return f"segment {p.key} holds {meta.num_rows} rows, its reference says {p.rows}"
        return None

    if not pending:
        return
    with ThreadPoolExecutor(max_workers=min(_THREADS, len(pending))) as pool:
        problems = [p for p in pool.map(check, pending) if p is not None]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValidationError(f"{problems[0]}{more}; nothing was committed")


@dataclass(frozen=True)
class SegmentCommit:
    """What ``commit_segments`` did.

    Attributes:
        txn_id: the caller's transaction id.
        committed: True when this call committed; False when the transaction had landed before
            (a repeat after a lost response or a restart) or there was nothing to commit.
        segments: segments the transaction committed (now or before).
        rows: rows those segments hold.
    """

    txn_id: str
    committed: bool
    segments: int
    rows: int


@dataclass
class WriteSummary:
    """What a distributed ``write_frames`` did (``hds_s3.ray``, ``hds_s3.dask``).

    Attributes:
        commit: the commit (``committed`` False when the job's ``txn_id`` had landed before).
        failed: the frames workers refused, each with the reason (as a dict, or a preview).
        segments: segments the workers wrote in this run.
    """

    commit: SegmentCommit
    failed: list[FailedFrame] = field(default_factory=list)
    segments: int = 0


def landed(refs: Sequence[SegmentRef], version_id: str, txn_id: str) -> list[SegmentRef]:
    """The segments of a manifest that transaction ``txn_id`` committed to ``version_id``."""
    return [r for r in refs if r.version == version_id and r.extra.get(TXN_FIELD) == txn_id]


__all__ = [
    "PendingSegment",
    "SegmentCommit",
    "WriteSummary",
    "WrittenSegments",
    "check_pending",
    "check_txn_id",
    "commit_order",
    "flatten",
    "landed",
]
