"""The JSON documents kept in the store, as frozen dataclasses, parsed and written in one place.

Every document carries ``format_version``; fields this version does not know are kept in ``extra``
and written back unchanged, so an older client never drops what a newer one wrote.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any

from hds_s3.errors import CorruptObjectError
from hds_s3.format.layout import FORMAT_VERSION

DRAFT = "draft"
PUBLISHED = "published"
STATUSES = (DRAFT, PUBLISHED)


def now_ms() -> int:
    """Milliseconds since the epoch, the time unit of every document."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Aggregates:
    """What the tree's rules need to know of all of a dataset's versions, kept up to date by commits.

    ``drafts`` maps each draft's id to ``(depth, created)``: the current version is the deepest
    draft (newest on ties). ``latest`` is ``(id, published, created)`` of the most recently
    published version, the current one when there is no draft. ``branching`` counts the versions
    with two or more children. A snapshot needs one draft, one root and no branching version.
    """

    versions: int = 0
    roots: int = 0
    branching: int = 0
    latest: tuple[str, int, int] | None = None
    drafts: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def current_id(self) -> str | None:
        """The id of the current version, or None when the dataset has no version."""
        if self.drafts:
            return max(self.drafts.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0]))[0]
        return self.latest[0] if self.latest is not None else None


@dataclass(frozen=True)
class VersionEntry:
    """One node of a dataset's version tree, as stored in the dataset document.

    ``frames`` is the version's frame index pointer (its current manifest key and counts), empty
    while the version has no frames of its own; a child starts from its parent's pointer.

    Format 2 keeps each version in a record of its own and adds what a commit needs to answer the
    tree's rules without reading the other versions: ``depth`` (ancestors), ``children`` (how many
    direct children), ``seq`` (the log entry that last changed it), and who created and published
    it. ``stats`` is stored apart in format 2 (None in a record); ``counts`` keeps the few numbers a
    listing shows (frames, annotated, ROIs) of a published version, set by its publication.
    """

    id: str
    name: str
    parent: str | None
    status: str
    created: int
    published: int | None = None
    comment: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    frames: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] | None = None
    depth: int = 0
    children: int = 0
    seq: int = 0
    created_by: str = ""
    published_by: str | None = None
    counts: dict[str, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_draft(self) -> bool:
        """True while the version can still change."""
        return self.status == DRAFT


@dataclass(frozen=True)
class DatasetDoc:
    """The dataset document: the dataset's own fields and its whole version tree.

    Every change of the tree is one compare-and-swap of this document; ``txn`` names the call that
    wrote it, so a writer whose response was lost can tell that its write landed.
    """

    id: str
    name: str
    created: int
    updated: int
    description: str = ""
    project: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    versions: tuple[VersionEntry, ...] = ()
    deleted: bool = False
    txn: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def _by_id(self) -> dict[str, VersionEntry]:
        return {entry.id: entry for entry in self.versions}

    @cached_property
    def _by_name(self) -> dict[str, VersionEntry]:
        by_name: dict[str, VersionEntry] = {}
        for entry in self.versions:
            by_name.setdefault(entry.name, entry)
        return by_name

    @cached_property
    def _children(self) -> dict[str | None, list[VersionEntry]]:
        kids: dict[str | None, list[VersionEntry]] = {}
        for entry in self.versions:
            kids.setdefault(entry.parent, []).append(entry)
        return kids

    def version(self, version_id: str) -> VersionEntry | None:
        """Return the entry with this id, or None."""
        return self._by_id.get(version_id)

    def version_named(self, name: str) -> VersionEntry | None:
        """Return the entry with this name, or None (names are unique within a dataset)."""
        return self._by_name.get(name)

    def children(self, version_id: str | None) -> list[VersionEntry]:
        """Return the direct children of a version (of ``None``: the roots), oldest first."""
        return list(self._children.get(version_id, ()))

    @cached_property
    def _depths(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        for entry in self.versions:  # parents come before their children in a written document
            if entry.parent is None:
                depths[entry.id] = 0
            elif entry.parent in depths:
                depths[entry.id] = depths[entry.parent] + 1
        return depths

    def depth(self, version_id: str) -> int:
        """Return the number of ancestors of a version (a root has depth 0)."""
        known = self._depths.get(version_id)
        if known is not None:
            return known
        by_id = self._by_id  # a document whose entries are out of order: walk up (iteratively)
        depth, seen = 0, set()
        entry = by_id.get(version_id)
        while entry is not None and entry.parent is not None and entry.parent not in seen:
            seen.add(entry.parent)
            entry = by_id.get(entry.parent)
            depth += 1
        return depth

    def head(self) -> VersionEntry | None:
        """The current version: the draft with the longest path to the root (newest on ties).

        Without drafts, the most recently published version; without versions, None.
        """
        current = self.aggregates().current_id()
        return self.version(current) if current is not None else None

    def subtree(self, version_id: str) -> list[VersionEntry]:
        """Return the version and all its descendants."""
        out: list[VersionEntry] = []
        pending = [version_id]
        while pending:
            vid = pending.pop()
            entry = self.version(vid)
            if entry is not None:
                out.append(entry)
                pending.extend(c.id for c in self.children(vid))
        return out

    def with_version(self, entry: VersionEntry) -> DatasetDoc:
        """Return a copy in which ``entry`` replaces the entry with its id (or is appended)."""
        if self.version(entry.id) is None:
            return replace(self, versions=(*self.versions, entry))
        return replace(self, versions=tuple(entry if v.id == entry.id else v for v in self.versions))

    @cached_property
    def _aggregates(self) -> Aggregates:
        # depth and children counted from the tree itself: a document built in memory may not say
        kids = {vid: len(children) for vid, children in self._children.items() if vid is not None}
        counted = {
            v.id: replace(v, depth=self.depth(v.id), children=kids.get(v.id, 0)) for v in self.versions
        }
        return whole_aggregates(counted)

    def aggregates(self) -> Aggregates:
        """The aggregates of the tree (counted once per document)."""
        return self._aggregates

    def whole(self) -> DatasetDoc:
        """The whole tree: this document."""
        return self

    @property
    def version_count(self) -> int:
        """The number of versions."""
        return len(self.versions)

    def draft_ids(self) -> list[str]:
        """The ids of the drafts, the current one (deepest, newest) first."""
        drafts = self.aggregates().drafts
        return sorted(drafts, key=lambda v: (drafts[v][0], drafts[v][1], v), reverse=True)

    def stats_of(self, version_id: str) -> dict[str, Any] | None:
        """The statistics stored with a published version, or None."""
        found = self.version(version_id)
        return found.stats if found is not None else None


@dataclass(frozen=True)
class DatasetClaim:
    """The object that gives a dataset name to one dataset id; ``dataset_id=None`` means released."""

    name: str
    dataset_id: str | None
    txn: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)


#: The deepest nesting a stored document may have: its own structure plus metadata nested as deep as
#: the write path allows (:data:`hds_s3.model.names.MAX_METADATA_DEPTH`). Anything deeper is damage.
MAX_DOCUMENT_DEPTH = 48


def load_json(data: bytes, key: str) -> Any:
    """Parse the JSON of a stored object, refusing what no hds_s3 writes (any depth, any number).

    Raises:
        CorruptObjectError: naming ``key``: not UTF-8 JSON, nested deeper than
            :data:`MAX_DOCUMENT_DEPTH`, or holding a number Python will not convert (thousands of
            digits).
    """
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and integers of 4,300+ digits
        raise CorruptObjectError(f"{key}: not valid JSON ({str(exc)[:200]}); the object is damaged") from exc
    except RecursionError:
        raise CorruptObjectError(
            f"{key}: the JSON nests deeper than {MAX_DOCUMENT_DEPTH} levels; the object is damaged"
        ) from None
    stack: list[tuple[Any, int]] = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DOCUMENT_DEPTH:
            raise CorruptObjectError(
                f"{key}: the JSON nests deeper than {MAX_DOCUMENT_DEPTH} levels; the object is damaged"
            )
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values() if isinstance(item, (dict, list)))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value if isinstance(item, (dict, list)))
    return raw


#: The field holding a document's digest: the SHA-256 (first 32 hex digits) of the document's
#: canonical JSON without it. A document read whose digest does not match was changed by hand or
#: damaged, and is refused as such instead of being served.
DIGEST = "digest"


def _digest_of(obj: Mapping[str, Any]) -> str:
    canon = json.dumps(
        {k: v for k, v in obj.items() if k != DIGEST},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canon.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def dumps_with_digest(obj: Mapping[str, Any]) -> bytes:
    """Serialise a document (UTF-8 JSON) with its :data:`DIGEST`."""
    out = {k: v for k, v in obj.items() if k != DIGEST}
    out[DIGEST] = _digest_of(out)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def check_digest(raw: Mapping[str, Any], key: str, *, required: bool) -> None:
    """Refuse a parsed document whose digest is missing (when ``required``) or does not match.

    Documents written before digests existed have none; their kinds pass ``required=False``.

    Raises:
        CorruptObjectError: naming ``key``.
    """
    digest = raw.get(DIGEST)
    if digest is None and not required:
        return
    if not isinstance(digest, str) or digest != _digest_of(raw):
        raise CorruptObjectError(
            f"{key}: its content does not match its digest: it was changed by hand or damaged "
            "(hds fsck tells what else is)"
        )


def _load(data: bytes, key: str) -> dict[str, Any]:
    raw = load_json(data, key)
    if not isinstance(raw, dict):
        raise CorruptObjectError(f"{key}: expected a JSON object, found {type(raw).__name__}")
    check_digest(raw, key, required=False)
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise CorruptObjectError(
            f"{key}: format_version {version!r} is not supported by this hds_s3 (it reads "
            f"{FORMAT_VERSION}); upgrade hds_s3 if a newer one wrote it"
        )
    return raw


def _split(cls: type, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = {f.name for f in fields(cls)} - {"extra"}
    known = {k: v for k, v in raw.items() if k in names}
    extra = {k: v for k, v in raw.items() if k not in names and k != DIGEST}
    return known, extra


def _dump(obj: Any, **known: Any) -> dict[str, Any]:
    out = dict(copy.deepcopy(obj.extra))
    out.update(known)
    return out


def _entry_from(raw: dict[str, Any], key: str) -> VersionEntry:
    """A version of a format-1 document, its fields type-checked as a format-2 record's are."""
    from hds_s3.format.records import record_from  # the same checks (records imports this module)

    if not isinstance(raw, dict):
        raise CorruptObjectError(f"{key}: a version entry is not an object ({raw!r:.80})")
    stats = raw.get("stats")
    if stats is not None and not isinstance(stats, dict):
        raise CorruptObjectError(
            f"{key}: the dataset document is malformed: a version's stats is {stats!r:.80}"
        )
    entry = record_from({k: v for k, v in raw.items() if k != "stats"}, key)
    return replace(entry, stats=stats)


def _entry_to(entry: VersionEntry) -> dict[str, Any]:
    from hds_s3.format.records import record_to  # the same fields (records imports this module)

    return {**record_to(entry), "stats": entry.stats}


def parse_dataset_doc(data: bytes, key: str) -> DatasetDoc:
    """Parse a dataset document of store format 1 (the whole tree in one document).

    Each version's ``depth`` and ``children`` are counted from the tree, as format 2 keeps them.

    Raises:
        CorruptObjectError: naming ``key``, when the bytes are not a valid version-1 document.
    """
    raw = _load(data, key)
    known, extra = _split(DatasetDoc, raw)
    try:
        if not isinstance(known.get("versions", ()), (list, tuple)):
            raise TypeError(f"versions is a {type(known['versions']).__name__}, not a list")
        if not isinstance(known.get("tags", ()), (list, tuple)):
            raise TypeError(f"tags is a {type(known['tags']).__name__}, not a list")
        known["versions"] = tuple(_entry_from(v, key) for v in known.get("versions", ()))
        known["tags"] = tuple(known.get("tags", ()))
        doc = DatasetDoc(**known, extra=extra)
    except (TypeError, AttributeError) as exc:
        raise CorruptObjectError(f"{key}: the dataset document is malformed ({exc})") from exc
    return _with_tree_counts(doc)


def _with_tree_counts(doc: DatasetDoc) -> DatasetDoc:
    """``doc`` with every version's depth and number of children counted (iteratively)."""
    kids: dict[str, int] = {}
    for ver in doc.versions:
        if ver.parent is not None:
            kids[ver.parent] = kids.get(ver.parent, 0) + 1
    versions = tuple(replace(v, depth=doc.depth(v.id), children=kids.get(v.id, 0)) for v in doc.versions)
    return replace(doc, versions=versions)


def dump_dataset_doc(doc: DatasetDoc) -> bytes:
    """Serialise a dataset document (UTF-8 JSON)."""
    out = _dump(
        doc,
        format_version=doc.format_version,
        id=doc.id,
        name=doc.name,
        description=doc.description,
        project=doc.project,
        tags=list(doc.tags),
        metadata=doc.metadata,
        created=doc.created,
        updated=doc.updated,
        deleted=doc.deleted,
        txn=doc.txn,
        versions=[_entry_to(v) for v in doc.versions],
    )
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_claim(data: bytes, key: str) -> DatasetClaim:
    """Parse a dataset name claim.

    Raises:
        CorruptObjectError: naming ``key``, when the bytes are not a valid version-1 claim.
    """
    raw = _load(data, key)
    known, extra = _split(DatasetClaim, raw)
    try:
        return DatasetClaim(**known, extra=extra)
    except TypeError as exc:
        raise CorruptObjectError(f"{key}: the name claim is malformed ({exc})") from exc


def dump_claim(claim: DatasetClaim) -> bytes:
    """Serialise a dataset name claim."""
    out = _dump(
        claim,
        format_version=claim.format_version,
        name=claim.name,
        dataset_id=claim.dataset_id,
        txn=claim.txn,
    )
    return dumps_with_digest(out)


@dataclass(frozen=True)
class SegmentRef:
    """One immutable Parquet segment in a version's frame index.

    ``kind`` is ``frames`` (rows that add or replace frames) or ``deletes`` (tombstoned ids);
    ``version`` is the id of the version that wrote it; ``min_id``/``max_id`` bound its ids so a
    point look-up can skip it.
    """

    key: str
    kind: str
    rows: int
    size: int
    version: str
    min_id: str | None = None
    max_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ManifestDoc:
    """The frame index of a version at one moment: every segment in effect, oldest first.

    Immutable once written; a version's entry in the dataset document points at its current one.
    A child's manifest lists its parents' segments by reference, so readers never walk the chain.

    ``disjoint`` counts the leading segments known to be frames segments no two of which hold the
    same id (a published version that had no replaced or deleted rows, or a compaction's output):
    a reader then only needs the ids of the segments after them to find which of their rows are
    replaced or deleted. 0 when nothing is known (manifests written before the field existed).
    """

    dataset_id: str
    version_id: str
    segments: tuple[SegmentRef, ...]
    created: int
    disjoint: int = 0
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_manifest_fields(manifest: ManifestDoc, key: str) -> None:
    """Check the types of the manifest fields readers use (JSON itself keeps whatever it finds).

    ``dataset_id`` and ``version_id`` are strings, ``created`` a count, ``disjoint`` a count of
    leading frames segments; each segment reference has
    string ``key`` and ``version``, ``kind`` ``frames`` or ``deletes``, counts ``rows`` and ``size``,
    and ``min_id``/``max_id`` that are strings or null.

    Raises:
        CorruptObjectError: naming ``key`` and the first bad field.
    """
    problems = []
    if not isinstance(manifest.dataset_id, str):
        problems.append(f"dataset_id is {manifest.dataset_id!r}")
    if not isinstance(manifest.version_id, str):
        problems.append(f"version_id is {manifest.version_id!r}")
    if not _is_count(manifest.created):
        problems.append(f"created is {manifest.created!r}")
    if not _is_count(manifest.disjoint) or manifest.disjoint > len(manifest.segments):
        problems.append(f"disjoint is {manifest.disjoint!r}, not a count of its segments")
    elif any(ref.kind != "frames" for ref in manifest.segments[: manifest.disjoint]):
        problems.append(f"disjoint counts {manifest.disjoint} segments, not all of them frames segments")
    for i, ref in enumerate(manifest.segments):
        if not isinstance(ref.key, str) or not isinstance(ref.version, str):
            problems.append(f"segment {i}: key {ref.key!r} or version {ref.version!r} is not a string")
        if ref.kind not in ("frames", "deletes"):
            problems.append(f"segment {i}: kind {ref.kind!r} is neither 'frames' nor 'deletes'")
        if not _is_count(ref.rows):
            problems.append(f"segment {i}: rows {ref.rows!r} is not a count")
        if not _is_count(ref.size):
            problems.append(f"segment {i}: size {ref.size!r} is not a count")
        for name, value in (("min_id", ref.min_id), ("max_id", ref.max_id)):
            if value is not None and not isinstance(value, str):
                problems.append(f"segment {i}: {name} {value!r} is not a string")
    if problems:
        raise CorruptObjectError(f"{key}: the frame manifest is malformed ({problems[0]})")


def parse_manifest(data: bytes, key: str) -> ManifestDoc:
    """Parse a frame manifest and check the types of its fields (see :func:`check_manifest_fields`).

    Raises:
        CorruptObjectError: naming ``key`` (and the bad field, if one is), when the bytes are not a
            valid version-1 manifest.
    """
    raw = _load(data, key)
    known, extra = _split(ManifestDoc, raw)
    try:
        refs = []
        for item in known.get("segments", ()):
            ref_known, ref_extra = _split(SegmentRef, item)
            refs.append(SegmentRef(**ref_known, extra=ref_extra))
        known["segments"] = tuple(refs)
        manifest = ManifestDoc(**known, extra=extra)
    except (TypeError, AttributeError) as exc:
        raise CorruptObjectError(f"{key}: the frame manifest is malformed ({exc})") from exc
    check_manifest_fields(manifest, key)
    return manifest


def dump_manifest(doc: ManifestDoc) -> bytes:
    """Serialise a frame manifest."""
    segments = [
        _dump(
            ref,
            key=ref.key,
            kind=ref.kind,
            rows=ref.rows,
            size=ref.size,
            version=ref.version,
            min_id=ref.min_id,
            max_id=ref.max_id,
        )
        for ref in doc.segments
    ]
    out = _dump(
        doc,
        format_version=doc.format_version,
        dataset_id=doc.dataset_id,
        version_id=doc.version_id,
        created=doc.created,
        disjoint=doc.disjoint,
        segments=segments,
    )
    return dumps_with_digest(out)


def whole_aggregates(versions: Mapping[str, VersionEntry]) -> Aggregates:
    """The aggregates of a whole tree held in memory (a format-1 document, a checkpoint)."""
    drafts: dict[str, tuple[int, int]] = {}
    latest: tuple[str, int, int] | None = None
    roots = branching = 0
    for ver in versions.values():
        roots += ver.parent is None
        branching += ver.children >= 2
        if ver.is_draft:
            drafts[ver.id] = (ver.depth, ver.created)
        elif ver.published is not None:
            cand = (ver.id, ver.published, ver.created)
            if latest is None or (cand[1], cand[2], cand[0]) > (latest[1], latest[2], latest[0]):
                latest = cand
    return Aggregates(versions=len(versions), roots=roots, branching=branching, latest=latest, drafts=drafts)
