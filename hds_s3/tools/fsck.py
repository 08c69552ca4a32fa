"""Checking a store: what is damaged, what a transition left to roll forward, and what is garbage.

:func:`fsck` lists the whole store once, reads every document (the store marker, every name claim,
every dataset document, every frame manifest) and checks the invariants of docs/design.md section 3:

* every document parses;
* name claims and dataset documents agree (a claim's name encodes to its key, the dataset it points
  at carries that name, no dataset is claimed twice);
* each dataset's versions form a forest: ids and names unique, parents exist, no cycle, no draft
  with children;
* for a dataset of store format 2, the tree folded from its newest checkpoint and log entries
  agrees with what is materialised: every version's record, the version-name index, the head's
  aggregates (version, root, branching and draft counts; each record's depth and child count);
* every manifest a version points at exists and belongs to its dataset, and every segment it lists
  exists with the size it recorded (``deep=True`` also reads each segment and checks its schema).

Each finding has a kind:

``damage``
    A referenced object is missing or unreadable, or documents contradict each other. Reads that
    meet it fail with :class:`~hds_s3.errors.CorruptObjectError`; nothing here repairs it.
``pending``
    A transition passed its commit point and left an idempotent roll-forward that any later caller
    may complete: a dataset marked deleted whose objects (and maybe name claim) remain, a name claim
    pointing at a dataset that is gone, the objects of a deleted version, log entries not yet
    materialised. Harmless; ``fsck(repair=True)`` completes them through the same calls the API uses.
``garbage``
    Objects no document refers to: segments and manifests an interrupted or superseded write left,
    a dataset document whose creation never claimed its name, log entries folded into a newer
    checkpoint, superseded checkpoints, the records, names and statistics of removed versions.
    Harmless; :func:`hds_s3.tools.gc.gc` removes them once they are older than its grace period.
``note``
    Keys hds_s3 never writes (left alone by every tool). DataView documents and their name entries
    are hds_s3's own but lie outside the checks above: fsck skips them and gc never touches them.

Codes, by kind: damage ``marker-missing``, ``marker-corrupt``, ``claim-corrupt``, ``claim-key``,
``claimed-twice``, ``name-mismatch``, ``document-corrupt``, ``document-id``, ``document-missing``,
``version-duplicate``, ``parent-missing``, ``cycle``, ``draft-parent``, ``manifest-missing``,
``manifest-corrupt``, ``manifest-foreign``, ``manifest-disjoint`` (deep), ``segment-missing``,
``segment-size``, ``segment-foreign``, ``segment-corrupt``, ``record-missing``, ``record-mismatch``,
``record-corrupt``, ``name-index``, ``head-aggregates``, ``stats-corrupt``, ``lease-corrupt``;
pending ``deleted-dataset``, ``stale-claim``, ``deleted-version``, ``unmaterialised-entry``; garbage
``orphan-dataset``, ``unreferenced-manifest``, ``unreferenced-segment``, ``leftover``, ``folded-entry``,
``superseded-checkpoint``, ``removed-record``, ``freed-name``, ``unreferenced-stats``,
``expired-lease``; note
``unknown-object``.

fsck only reads (unless ``repair``), so it works with read-only credentials. Run against a store
that others write to, it may see a write half-way (an object listed before a document that refers
to it was read): it confirms every "missing" with a fresh ``head`` before calling it damage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hds_s3.client import Client, resolve
from hds_s3.errors import CorruptObjectError, HdsError, NotFoundError
from hds_s3.format import layout
from hds_s3.format.catalog import Catalog, marker_format
from hds_s3.format.commit import catch_up
from hds_s3.format.docs import (
    DatasetClaim,
    DatasetDoc,
    ManifestDoc,
    SegmentRef,
    now_ms,
    parse_claim,
    parse_dataset_doc,
    parse_manifest,
    whole_aggregates,
)
from hds_s3.format.leases import parse_lease
from hds_s3.format.log import LogState, follow, load_whole
from hds_s3.format.records import document_format, parse_head, parse_name, parse_record, parse_stats
from hds_s3.index import segments
from hds_s3.store.base import ObjectInfo, ObjectStore

FindingKind = Literal["damage", "pending", "garbage", "note"]
KINDS: tuple[FindingKind, ...] = ("damage", "pending", "garbage", "note")

_THREADS = 8
_NOT_CHECKED = (layout.DATAVIEWS_PREFIX, layout.DATAVIEW_NAMES_PREFIX)
# Damage a concurrent writer can fake by changing a dataset between the listing and the reads.
_RACY = frozenset(
    {
        "document-missing",
        "manifest-missing",
        "segment-missing",
        "segment-size",
        "record-missing",
        "record-mismatch",
        "name-index",
        "head-aggregates",
        "document-corrupt",
    }
)
#: Keys of a format-2 dataset's own documents (besides its head), by :func:`layout.parse_key` kind.
_META_KINDS = frozenset({"log", "checkpoint", "record", "name", "stats", "lease"})
_SHOWN_PER_KIND = 20


@dataclass(frozen=True)
class Finding:
    """One thing fsck found.

    Attributes:
        kind: ``damage``, ``pending``, ``garbage`` or ``note`` (see the module docstring).
        code: a stable short code, e.g. ``segment-missing`` (listed in the module docstring).
        key: the object (or prefix) the finding is about.
        message: what is wrong, naming the dataset or version where known, and what to do.
        dataset_id: the dataset concerned, if any.
        objects: the stored objects the finding covers (what ``repair`` or gc would remove).
        size: their total size in bytes.
        written: for garbage, the latest time any of ``objects`` can have been written (epoch
            seconds; from the store's last-modified times, else from times the documents carry),
            or None when unknown.
        repaired: ``repair=True`` completed it.
    """

    kind: FindingKind
    code: str
    key: str
    message: str
    dataset_id: str | None = None
    objects: tuple[str, ...] = ()
    size: int = 0
    written: float | None = None
    repaired: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the finding as JSON-ready data."""
        return {
            "kind": self.kind,
            "code": self.code,
            "key": self.key,
            "message": self.message,
            "dataset_id": self.dataset_id,
            "objects": list(self.objects),
            "size": self.size,
            "written": self.written,
            "repaired": self.repaired,
        }


@dataclass(frozen=True)
class FsckReport:
    """What :func:`fsck` found in one store.

    Attributes:
        store: the store's URL.
        findings: every finding, damage first.
        objects: objects listed.
        bytes: their total size.
        datasets: live datasets (claimed, not deleted).
        versions: versions of the live datasets.
        segments: distinct segments the live versions refer to.
        repair: whether pending roll-forwards were completed.
        deep: whether segments were read and their schema checked.
    """

    store: str
    findings: tuple[Finding, ...]
    objects: int
    bytes: int
    datasets: int
    versions: int
    segments: int
    repair: bool = False
    deep: bool = False

    def of_kind(self, kind: FindingKind) -> tuple[Finding, ...]:
        """Return the findings of one kind."""
        return tuple(f for f in self.findings if f.kind == kind)

    @property
    def damage(self) -> tuple[Finding, ...]:
        """Findings of kind ``damage``."""
        return self.of_kind("damage")

    @property
    def pending(self) -> tuple[Finding, ...]:
        """Findings of kind ``pending`` (including those ``repair`` completed)."""
        return self.of_kind("pending")

    @property
    def garbage(self) -> tuple[Finding, ...]:
        """Findings of kind ``garbage``."""
        return self.of_kind("garbage")

    @property
    def ok(self) -> bool:
        """True when nothing is damaged (pending roll-forwards and garbage are harmless)."""
        return not self.damage

    @property
    def clean(self) -> bool:
        """True when there is no damage, no pending roll-forward left and no garbage."""
        return self.ok and not self.garbage and all(f.repaired for f in self.pending)

    def codes(self, kind: FindingKind | None = None) -> list[str]:
        """Return the codes of the findings (of one kind), in order, for tests and scripts."""
        return [f.code for f in self.findings if kind is None or f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data (what ``hds fsck --json`` prints)."""
        return {
            "store": self.store,
            "ok": self.ok,
            "clean": self.clean,
            "objects": self.objects,
            "bytes": self.bytes,
            "datasets": self.datasets,
            "versions": self.versions,
            "segments": self.segments,
            "repair": self.repair,
            "deep": self.deep,
            "counts": {kind: len(self.of_kind(kind)) for kind in KINDS},
            "findings": [f.to_dict() for f in self.findings],
        }

    def summary(self) -> str:
        """Return a human summary: the totals, then each finding (at most 20 per kind), then a verdict."""
        lines = [
            f"fsck {self.store}: {self.objects} objects ({_size(self.bytes)}), {self.datasets} datasets, "
            f"{self.versions} versions, {self.segments} segments in use"
        ]
        advice = {
            "damage": "referenced objects missing or unreadable; reads that meet them fail",
            "pending": "roll-forwards of finished transitions; fsck(repair=True) completes them",
            "garbage": "unreferenced; gc removes them after its grace period",
            "note": "keys hds_s3 does not write; left alone",
        }
        for kind in KINDS:
            found = self.of_kind(kind)
            if not found:
                continue
            lines.append(f"{kind}: {len(found)} ({advice[kind]})")
            for f in found[:_SHOWN_PER_KIND]:
                done = " [repaired]" if f.repaired else ""
                lines.append(f"  [{f.code}] {f.message}{done}")
            if len(found) > _SHOWN_PER_KIND:
                lines.append(f"  ... and {len(found) - _SHOWN_PER_KIND} more")
        if self.damage:
            lines.append(f"result: DAMAGED ({len(self.damage)} problems)")
        elif self.clean:
            lines.append("result: clean")
        else:
            left = sum(1 for f in self.pending if not f.repaired)
            lines.append(f"result: ok ({left} pending, {len(self.garbage)} garbage)")
        return "\n".join(lines)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def modified_time(info: ObjectInfo) -> float | None:
    """Return when the store says an object was last written (epoch seconds), or None if it does not say.

    Reads the ``last_modified`` field of :class:`~hds_s3.store.base.ObjectInfo` (epoch seconds; an
    aware ``datetime`` is accepted too); stores that do not report it give None.
    """
    value = getattr(info, "last_modified", None)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _latest(times: Iterable[float | None]) -> float | None:
    """The latest of some write times, or None if any is unknown."""
    out: float | None = None
    for t in times:
        if t is None:
            return None
        out = t if out is None else max(out, t)
    return out


@dataclass
class _DatasetState:
    """What the scan knows about one dataset id."""

    doc: DatasetDoc | None = None
    doc_etag: str | None = None
    log: LogState | None = None  # format 2: the head and the entries after it
    unreadable: bool = False  # its document or a manifest it refers to cannot be read
    claims: list[str] = field(default_factory=list)  # keys of readable claims pointing at it
    keys: list[str] = field(default_factory=list)  # listed manifests and segments under its prefix
    meta: list[str] = field(default_factory=list)  # format 2: its log, checkpoints, records, names, stats


class StoreScan:
    """The inventory of one store that :func:`fsck` and :func:`hds_s3.tools.gc.gc` work from.

    Build it with :meth:`run`; afterwards ``findings`` holds what was found, and the attributes
    below what a garbage collector needs to decide safely.

    Attributes:
        store: the store scanned.
        objects: every listed object by key.
        datasets: per dataset id, its document, claims and objects.
        manifests: every manifest read and parsed, by key.
        referenced: every manifest and segment key a live version refers to.
        claims_readable: every name claim could be read (else no dataset counts as an orphan).
        marker_ok: the store marker is absent from an empty store or names format version 1.
        findings: what the scan found, in discovery order.
    """

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.objects: dict[str, ObjectInfo] = {}
        self.datasets: dict[str, _DatasetState] = defaultdict(_DatasetState)
        self.manifests: dict[str, ManifestDoc] = {}
        self.bad_manifests: dict[str, str] = {}
        self.referenced: set[str] = set()
        self.disjoint_checked: set[tuple[str, ...]] = set()
        self.claims: dict[str, DatasetClaim] = {}
        self.claim_etags: dict[str, str] = {}
        self.claims_readable = True
        self.marker_ok = True
        self.store_format: int | None = None
        self.findings: list[Finding] = []
        self.versions = 0
        self._segment_bound: dict[str, float] = {}  # segment -> earliest manifest listing it

    # ------------------------------------------------------------------ helpers

    def _add(self, kind: FindingKind, code: str, key: str, message: str, **extra: Any) -> None:
        self.findings.append(Finding(kind, code, key, message, **extra))

    def _read_all(self, keys: list[str]) -> dict[str, tuple[bytes, str] | HdsError]:
        def read(key: str) -> tuple[bytes, str] | HdsError:
            try:
                return self.store.get(key)
            except NotFoundError as exc:
                return exc

        if not keys:
            return {}
        with ThreadPoolExecutor(max_workers=min(_THREADS, len(keys))) as pool:
            return dict(zip(keys, pool.map(read, keys), strict=True))

    def _exists(self, key: str) -> ObjectInfo | None:
        """The object's info, from the listing or (when written after it) from a fresh head."""
        info = self.objects.get(key)
        if info is not None:
            return info
        try:
            info = self.store.head(key)
        except NotFoundError:
            return None
        self.objects[key] = info
        return info

    def _size(self, key: str) -> int:
        info = self.objects.get(key)
        return info.size if info is not None else 0

    def doc_written(self, doc: DatasetDoc) -> float:
        """When a dataset document was last written (epoch seconds).

        The later of the store's last-modified time (if reported) and the document's ``updated``.
        """
        info = self.objects.get(layout.dataset_doc_key(doc.id))
        t = modified_time(info) if info is not None else None
        return max(doc.updated / 1000, t if t is not None else doc.updated / 1000)

    def written(self, key: str) -> float | None:
        """The latest time the object can have been written (epoch seconds), or None when unknown.

        The store's last-modified time if it reports one; else the ``created`` time of a manifest,
        or for a segment the earliest ``created`` of the manifests listing it (a segment is always
        written before the manifests that list it).
        """
        info = self.objects.get(key)
        if info is not None:
            t = modified_time(info)
            if t is not None:
                return t
        manifest = self.manifests.get(key)
        if manifest is not None:
            return manifest.created / 1000
        return self._segment_bound.get(key)

    # ------------------------------------------------------------------ the scan

    def run(self, *, deep: bool = False) -> StoreScan:
        """List and read the store, and record every finding.

        Raises:
            StorageError: the store failed (listing or reading).
        """
        self.objects = {info.key: info for info in self.store.list("")}
        claim_keys, doc_ids, manifest_keys = [], [], []
        for key in self.objects:
            parts = layout.parse_key(key)
            if parts is None and key.startswith(_NOT_CHECKED):
                continue  # DataViews: hds_s3 objects outside the dataset invariants checked here
            if parts is None:
                self._add("note", "unknown-object", key, f"{key}: not an object hds_s3 writes; left alone")
            elif parts.kind == "claim":
                claim_keys.append(key)
            elif parts.kind == "dataset":
                assert parts.dataset_id is not None
                doc_ids.append(parts.dataset_id)
            elif parts.kind in ("manifest", "segment"):
                assert parts.dataset_id is not None
                self.datasets[parts.dataset_id].keys.append(key)
                if parts.kind == "manifest":
                    manifest_keys.append(key)
            elif parts.kind in _META_KINDS:
                assert parts.dataset_id is not None
                self.datasets[parts.dataset_id].meta.append(key)
        self._check_marker()
        self._read_claims(claim_keys)
        self._read_docs(doc_ids)
        self._read_manifests(manifest_keys)
        for manifest in self.manifests.values():
            for ref in manifest.segments:
                t = manifest.created / 1000
                self._segment_bound[ref.key] = min(t, self._segment_bound.get(ref.key, t))
        for dataset_id, state in sorted(self.datasets.items()):
            mark = len(self.findings)
            self._check_dataset_safely(dataset_id, state, deep)
            racy = any(f.kind == "damage" and f.code in _RACY for f in self.findings[mark:])
            if racy and self._moved_on(dataset_id, state):
                # A writer changed the dataset while it was being checked: check what it is now.
                del self.findings[mark:]
                self._check_dataset_safely(dataset_id, state, deep)
        order = {kind: i for i, kind in enumerate(KINDS)}
        self.findings.sort(key=lambda f: order[f.kind])
        return self

    def _check_dataset_safely(self, dataset_id: str, state: _DatasetState, deep: bool) -> None:
        try:
            self._check_dataset(dataset_id, state, deep)
        except (TypeError, AttributeError, ValueError) as exc:
            # A document that parsed but holds values of the wrong type.
            state.unreadable = True
            key = layout.dataset_doc_key(dataset_id)
            self._add(
                "damage",
                "document-corrupt",
                key,
                f"{key}: a field of the dataset or of a manifest it refers to has the wrong type "
                f"({type(exc).__name__}: {exc})",
                dataset_id=dataset_id,
            )

    def _moved_on(self, dataset_id: str, state: _DatasetState) -> bool:
        """Re-read a dataset's document and claims; True (with ``state`` refreshed) if they changed."""
        key = layout.dataset_doc_key(dataset_id)
        try:
            data, etag = self.store.get(key)
        except NotFoundError:
            data, etag = b"", None
        changed = etag != state.doc_etag
        if changed:
            state.doc, state.doc_etag, state.log, state.unreadable = None, etag, None, False
            if etag is not None:
                try:
                    state.doc, state.log = load_dataset(self.store, dataset_id, data, etag, key)
                except CorruptObjectError:
                    state.unreadable = True
            prefix = layout.dataset_prefix(dataset_id)
            listed = [info.key for info in self.store.list(prefix)]
            self.objects.update({info.key: info for info in self.store.list(prefix)})
            state.keys = [
                k for k in listed if (p := layout.parse_key(k)) and p.kind in ("manifest", "segment")
            ]
            state.meta = [k for k in listed if (p := layout.parse_key(k)) and p.kind in _META_KINDS]
        for claim_key in list(state.claims):
            try:
                claim = parse_claim(self.store.get(claim_key)[0], claim_key)
            except (NotFoundError, CorruptObjectError):
                claim = None
            if claim is None or claim.dataset_id != dataset_id:
                state.claims.remove(claim_key)
                changed = True
        return changed

    def _check_marker(self) -> None:
        info = self.objects.get(layout.STORE_MARKER)
        if info is None:
            if any(layout.parse_key(k) is not None for k in self.objects):
                self._add(
                    "damage",
                    "marker-missing",
                    layout.STORE_MARKER,
                    f"{layout.STORE_MARKER}: the store marker is missing although the store holds hds_s3 "
                    "objects; fsck(repair=True) writes it again",
                )
            return
        try:
            data, _ = self.store.get(layout.STORE_MARKER)
            self.store_format = marker_format(data, layout.STORE_MARKER)
        except NotFoundError:
            return
        except CorruptObjectError as exc:
            self.marker_ok = False
            self._add("damage", "marker-corrupt", layout.STORE_MARKER, str(exc))

    def _read_claims(self, keys: list[str]) -> None:
        for key, got in self._read_all(keys).items():
            if isinstance(got, HdsError):
                continue  # removed since the listing
            data, etag = got
            try:
                claim = parse_claim(data, key)
                if not isinstance(claim.name, str) or layout.dataset_claim_key(claim.name) != key:
                    raise CorruptObjectError(
                        f"{key}: claims the name {claim.name!r}, which is kept under another key"
                    )
                if claim.dataset_id is not None:
                    layout.dataset_prefix(claim.dataset_id)  # raises on a malformed id
            except HdsError as exc:
                self.claims_readable = False
                code = "claim-key" if "kept under another key" in str(exc) else "claim-corrupt"
                self._add("damage", code, key, f"{exc}; the name it claims cannot be resolved")
                continue
            self.claims[key] = claim
            self.claim_etags[key] = etag
            if claim.dataset_id is not None:
                self.datasets[claim.dataset_id].claims.append(key)

    def _read_docs(self, ids: list[str]) -> None:
        keys = {layout.dataset_doc_key(i): i for i in ids}
        for key, got in self._read_all(list(keys)).items():
            state = self.datasets[keys[key]]
            if isinstance(got, HdsError):
                continue  # removed since the listing
            data, etag = got
            try:
                doc, log = load_dataset(self.store, keys[key], data, etag, key)
            except CorruptObjectError as exc:
                state.unreadable = True
                self._add("damage", "document-corrupt", key, str(exc), dataset_id=keys[key])
                continue
            state.doc, state.doc_etag, state.log = doc, etag, log

    def _read_manifests(self, keys: list[str]) -> None:
        for key, got in self._read_all(keys).items():
            if not isinstance(got, HdsError):
                self._parse_manifest(key, got[0])

    def _parse_manifest(self, key: str, data: bytes) -> None:
        try:
            manifest = parse_manifest(data, key)  # checks the field types too
        except CorruptObjectError as exc:
            self.bad_manifests[key] = str(exc)
            return
        self.manifests[key] = manifest

    def _manifest(self, key: str) -> ManifestDoc | str | None:
        """A manifest a version refers to: parsed, the reason it cannot be, or None when missing."""
        if key not in self.manifests and key not in self.bad_manifests:
            try:
                data, _ = self.store.get(key)  # written after the listing
            except NotFoundError:
                return None
            self._parse_manifest(key, data)
        return self.manifests.get(key) or self.bad_manifests[key]

    # ------------------------------------------------------------------ one dataset

    def _check_dataset(self, dataset_id: str, state: _DatasetState, deep: bool) -> None:
        doc_key = layout.dataset_doc_key(dataset_id)
        prefix = layout.dataset_prefix(dataset_id)
        sizes = {k: self.objects[k].size for k in state.keys if k in self.objects}
        if state.unreadable:
            return  # reported; nothing under it can be judged
        doc = state.doc
        if doc is None:
            if state.claims:
                if state.keys:
                    self._add(
                        "damage",
                        "document-missing",
                        doc_key,
                        f"{doc_key}: the dataset document is missing, yet the name claim "
                        f"{state.claims[0]} points at it and {len(state.keys)} of its objects remain",
                        dataset_id=dataset_id,
                    )
                else:
                    for key in state.claims:
                        name = self.claims[key].name
                        self._add(
                            "pending",
                            "stale-claim",
                            key,
                            f"{key}: the name {name!r} still points at dataset {dataset_id}, which is gone; "
                            "a create of that name or repair releases it",
                            dataset_id=dataset_id,
                            objects=(key,),
                        )
                return
            for key in (*state.keys, *state.meta):
                self._garbage("leftover", key, dataset_id, f"{key}: left over from a removed dataset")
            return
        if doc.id != dataset_id:
            state.unreadable = True
            self._add(
                "damage",
                "document-id",
                doc_key,
                f"{doc_key}: the document says it is dataset {doc.id}, its key says {dataset_id}",
                dataset_id=dataset_id,
            )
            return
        if doc.deleted:
            keys = (*state.keys, *state.meta, doc_key)
            release = tuple(state.claims)
            self._add(
                "pending",
                "deleted-dataset",
                doc_key,
                f"dataset {doc.name!r} ({dataset_id}) is deleted; {len(keys)} objects and "
                f"{len(release)} name claim(s) remain to be removed or released",
                dataset_id=dataset_id,
                objects=(*release, *keys),
                size=sum(sizes.values()) + self._size(doc_key),
            )
            return
        live_claims = [k for k in state.claims if self.claims[k].name == doc.name]
        for key in state.claims:
            if self.claims[key].name != doc.name:
                self._add(
                    "damage",
                    "name-mismatch",
                    key,
                    f"{key}: claims the name {self.claims[key].name!r} for dataset {dataset_id}, whose "
                    f"document names it {doc.name!r}",
                    dataset_id=dataset_id,
                )
        if len(state.claims) > 1:
            self._add(
                "damage",
                "claimed-twice",
                doc_key,
                f"dataset {doc.name!r} ({dataset_id}) is claimed by {len(state.claims)} names: "
                + ", ".join(state.claims),
                dataset_id=dataset_id,
            )
        if not live_claims and not state.claims:
            if not self.claims_readable:
                return  # an unreadable claim may be the one naming it
            keys = (*state.keys, *state.meta, doc_key)
            self._add(
                "garbage",
                "orphan-dataset",
                doc_key,
                f"dataset document {doc_key} ({doc.name!r}) was never given its name (an interrupted "
                f"create); {len(keys)} objects",
                dataset_id=dataset_id,
                objects=keys,
                size=sum(sizes.values()) + sum(self._size(k) for k in state.meta) + self._size(doc_key),
                written=_latest(
                    [self.doc_written(doc), *(self.written(k) for k in (*state.keys, *state.meta))]
                ),
            )
            return
        self._check_tree(doc)
        if state.log is not None:
            self._check_log(doc, state.log, state)
        self._check_frames(doc, state, deep)
        self._classify_objects(doc, state, prefix)

    def _check_tree(self, doc: DatasetDoc) -> None:
        key = layout.dataset_doc_key(doc.id)
        self.versions += len(doc.versions)
        by_id: dict[str, Any] = {}
        names: set[str] = set()
        for ver in doc.versions:
            if ver.id in by_id:
                self._add(
                    "damage",
                    "version-duplicate",
                    key,
                    f"dataset {doc.name!r}: version id {ver.id} appears twice",
                    dataset_id=doc.id,
                )
            if ver.name in names:
                self._add(
                    "damage",
                    "version-duplicate",
                    key,
                    f"dataset {doc.name!r}: two versions are named {ver.name!r}",
                    dataset_id=doc.id,
                )
            by_id[ver.id] = ver
            names.add(ver.name)
        for ver in doc.versions:
            if ver.parent is None:
                continue
            parent = by_id.get(ver.parent)
            if parent is None:
                self._add(
                    "damage",
                    "parent-missing",
                    key,
                    f"dataset {doc.name!r}: version {ver.name!r} names parent {ver.parent}, which is missing",
                    dataset_id=doc.id,
                )
            elif parent.is_draft:
                self._add(
                    "damage",
                    "draft-parent",
                    key,
                    f"dataset {doc.name!r}: version {ver.name!r} is a child of {parent.name!r}, a draft",
                    dataset_id=doc.id,
                )
        for ver in doc.versions:
            seen = {ver.id}
            cur = by_id.get(ver.parent) if ver.parent else None
            while cur is not None:
                if cur.id in seen:
                    self._add(
                        "damage",
                        "cycle",
                        key,
                        f"dataset {doc.name!r}: the parents of version {ver.name!r} form a cycle",
                        dataset_id=doc.id,
                    )
                    break
                seen.add(cur.id)
                cur = by_id.get(cur.parent) if cur.parent else None

    def _check_log(self, doc: DatasetDoc, log: LogState, state: _DatasetState) -> None:
        """Format 2: what is materialised (records, names, head) agrees with the folded log."""
        dataset_id, head = doc.id, log.head
        where = f"dataset {doc.name!r}"
        if log.pending:
            first = log.pending[0].seq
            self._add(
                "pending",
                "unmaterialised-entry",
                layout.log_key(dataset_id, first),
                f"{where}: {len(log.pending)} log entries from {first} on are committed but not yet "
                "materialised; the next write, or fsck(repair=True), completes them",
                dataset_id=dataset_id,
            )
        doc_key = layout.dataset_doc_key(dataset_id)
        kids = {v.id: len(doc.children(v.id)) for v in doc.versions}
        counted = {v.id: replace(v, depth=doc.depth(v.id), children=kids[v.id]) for v in doc.versions}
        for ver in doc.versions:
            if (ver.depth, ver.children) != (counted[ver.id].depth, counted[ver.id].children):
                self._add(
                    "damage",
                    "record-mismatch",
                    layout.record_key(dataset_id, ver.id),
                    f"{where}: version {ver.name!r} records depth {ver.depth} and {ver.children} children; "
                    f"the tree gives {counted[ver.id].depth} and {counted[ver.id].children}",
                    dataset_id=dataset_id,
                )
        if whole_aggregates(counted) != log.agg:
            self._add(
                "damage",
                "head-aggregates",
                doc_key,
                f"{doc_key}: the aggregates of {where} (versions, roots, drafts, branching, latest "
                "published) disagree with its tree; snapshots and the current version would be decided "
                "wrongly",
                dataset_id=dataset_id,
            )
        done = head.seq  # entries up to here are materialised: their records and names must say so
        live = {v.id: v for v in doc.versions}
        record_keys = {layout.record_key(dataset_id, vid): vid for vid in live}
        listed = {k for k in state.meta if (p := layout.parse_key(k)) is not None and p.kind == "record"}
        got = self._read_all(sorted(listed | set(record_keys)))
        for key, read in got.items():
            vid = record_keys.get(key)
            if isinstance(read, HdsError):
                gone = live.get(vid) if vid is not None else None
                if gone is not None and gone.seq <= done:
                    self._add(
                        "damage",
                        "record-missing",
                        key,
                        f"{key}: the record of version {gone.name!r} of {where} is missing",
                        dataset_id=dataset_id,
                    )
                continue
            try:
                record, seq = parse_record(read[0], key)
                keyed = layout.parse_key(key)
                if record is not None and keyed is not None and record.id != keyed.version_id:
                    raise CorruptObjectError(f"{key}: the record is of version {record.id}; it is damaged")
            except CorruptObjectError as exc:
                self._add("damage", "record-corrupt", key, str(exc), dataset_id=dataset_id)
                continue
            if seq > log.seq:
                continue  # written by a commit after this scan read the log
            if vid is None:
                self._garbage("removed-record", key, dataset_id, f"{key}: the record of a removed version")
                continue
            ver = live[vid]
            if record != ver and ver.seq <= done:
                self._add(
                    "damage",
                    "record-mismatch",
                    key,
                    f"{key}: the record of version {ver.name!r} of {where} disagrees with the log "
                    f"(it is of entry {seq}, the log's is {ver.seq})",
                    dataset_id=dataset_id,
                )
        name_keys = {layout.version_name_key(dataset_id, v.name): v for v in live.values()}
        listed = {k for k in state.meta if (p := layout.parse_key(k)) is not None and p.kind == "name"}
        for key, read in self._read_all(sorted(listed | set(name_keys))).items():
            holder = name_keys.get(key)
            entry = None
            if not isinstance(read, HdsError):
                try:
                    entry = parse_name(read[0], key)
                except CorruptObjectError as exc:
                    self._add("damage", "name-index", key, str(exc), dataset_id=dataset_id)
                    continue
                if entry.seq > log.seq:
                    continue  # written after this scan read the log
            if holder is None:
                self._garbage("freed-name", key, dataset_id, f"{key}: a version name no version holds")
            elif (entry is None or entry.version_id != holder.id) and holder.seq <= done:
                self._add(
                    "damage",
                    "name-index",
                    key,
                    f"{key}: the version-name index does not give {holder.name!r} to version {holder.id} of "
                    f"{where}; opening it by name fails",
                    dataset_id=dataset_id,
                )
        for key in state.meta:
            parts = layout.parse_key(key)
            assert parts is not None
            if parts.kind == "checkpoint" and parts.seq != head.checkpoint:
                self._garbage(
                    "superseded-checkpoint", key, dataset_id, f"{key}: a checkpoint of {where} no head uses"
                )
            elif parts.kind == "log" and head.checkpoint is not None and (parts.seq or 0) <= head.checkpoint:
                self._garbage(
                    "folded-entry", key, dataset_id, f"{key}: a log entry of {where} folded into a checkpoint"
                )
            elif parts.kind == "stats":
                owner = live.get(parts.version_id or "")
                if owner is None or owner.is_draft:
                    self._garbage(
                        "unreferenced-stats", key, dataset_id, f"{key}: statistics of no published version"
                    )
                    continue
                try:
                    parse_stats(self.store.get(key)[0], key)
                except NotFoundError:
                    continue  # removed since the listing
                except CorruptObjectError as exc:
                    self._add("damage", "stats-corrupt", key, str(exc), dataset_id=dataset_id)
            elif parts.kind == "lease":
                self._check_lease(key, dataset_id, where, live)

    def _check_lease(self, key: str, dataset_id: str, where: str, live: Mapping[str, Any]) -> None:
        """A write lease (:mod:`hds_s3.format.leases`): garbage once expired or its version is gone."""
        try:
            lease = parse_lease(self.store.get(key)[0], key)
        except NotFoundError:
            return  # released since the listing
        except CorruptObjectError as exc:
            self._add("damage", "lease-corrupt", key, str(exc), dataset_id=dataset_id)
            return
        if lease.version_id not in live or not lease.live(now_ms()):
            self._garbage("expired-lease", key, dataset_id, f"{key}: an expired write lease of {where}")

    def _check_frames(self, doc: DatasetDoc, state: _DatasetState, deep: bool) -> None:
        checked: set[str] = set()
        for ver in doc.versions:
            mkey = ver.frames.get("manifest")
            if not mkey:
                continue
            where = f"version {ver.name!r} of dataset {doc.name!r}"
            parts = layout.parse_key(str(mkey))
            if parts is None or parts.kind != "manifest" or parts.dataset_id != doc.id:
                state.unreadable = True
                self._add(
                    "damage",
                    "manifest-foreign",
                    str(mkey),
                    f"{mkey}: {where} points at a key that is not a manifest of this dataset",
                    dataset_id=doc.id,
                )
                continue
            self.referenced.add(mkey)
            got = self._manifest(mkey)
            if got is None or isinstance(got, str):
                state.unreadable = True
                code, text = (
                    ("manifest-missing", f"{mkey}: the frame manifest of {where} is missing")
                    if got is None
                    else ("manifest-corrupt", got)
                )
                self._add("damage", code, mkey, text, dataset_id=doc.id)
                continue
            if got.dataset_id != doc.id:
                state.unreadable = True
                self._add(
                    "damage",
                    "manifest-foreign",
                    mkey,
                    f"{mkey}: the manifest of {where} says it belongs to dataset {got.dataset_id}",
                    dataset_id=doc.id,
                )
                continue
            for ref in got.segments:
                self.referenced.add(ref.key)
                if ref.key in checked:
                    continue
                checked.add(ref.key)
                self._check_segment(ref, doc, where, deep)
            run = tuple(ref.key for ref in got.segments[: got.disjoint])
            if deep and len(run) > 1 and run not in self.disjoint_checked:
                self.disjoint_checked.add(run)
                twice = _ids_held_twice(self.store, got.segments[: got.disjoint])
                if twice:
                    self._add(
                        "damage",
                        "manifest-disjoint",
                        mkey,
                        f"{mkey}: the manifest of {where} says its first {got.disjoint} segments hold "
                        f"no id twice, yet {twice} ids occur in more than one of them (e.g. a segment "
                        "was replaced by hand); reads would return those frames twice",
                        dataset_id=doc.id,
                    )

    def _check_segment(self, ref: SegmentRef, doc: DatasetDoc, where: str, deep: bool) -> None:
        key, size = ref.key, ref.size
        parts = layout.parse_key(key)
        if parts is None or parts.kind != "segment" or parts.dataset_id != doc.id:
            self._add(
                "damage",
                "segment-foreign",
                key,
                f"{key}: the manifest of {where} lists a key that is not a segment of this dataset",
                dataset_id=doc.id,
            )
            return
        info = self._exists(key)
        if info is None:
            self._add(
                "damage",
                "segment-missing",
                key,
                f"{key}: a segment listed by the manifest of {where} is missing",
                dataset_id=doc.id,
            )
            return
        if info.size != size:
            self._add(
                "damage",
                "segment-size",
                key,
                f"{key}: {info.size} bytes stored, the manifest of {where} recorded {size}",
                dataset_id=doc.id,
            )
            return
        if deep:
            problem = _segment_problem(self.store, ref)
            if problem is not None:
                self._add("damage", "segment-corrupt", key, f"{key}: {problem}", dataset_id=doc.id)

    def _classify_objects(self, doc: DatasetDoc, state: _DatasetState, prefix: str) -> None:
        versions = {v.id for v in doc.versions}
        gone: dict[str, list[str]] = defaultdict(list)
        for key in state.keys:
            if key in self.referenced:
                continue
            parts = layout.parse_key(key)
            assert parts is not None and parts.version_id is not None
            if parts.version_id not in versions:
                gone[parts.version_id].append(key)
            elif parts.kind == "manifest":
                why = self.bad_manifests.get(key)
                self._garbage(
                    "unreferenced-manifest",
                    key,
                    doc.id,
                    f"{key}: a manifest of {doc.name!r} no version points at"
                    + (f" (unreadable: {why})" if why else ""),
                )
            else:
                self._garbage(
                    "unreferenced-segment", key, doc.id, f"{key}: a segment of {doc.name!r} no manifest lists"
                )
        for vid, keys in sorted(gone.items()):
            manifest_prefix, segment_prefix = layout.version_prefixes(doc.id, vid)
            held = [k for k in self.referenced if k.startswith((manifest_prefix, segment_prefix))]
            if held:  # another version still lists some of them: only the others are garbage
                for key in keys:
                    self._garbage("unreferenced-segment", key, doc.id, f"{key}: of a deleted version")
                continue
            self._add(
                "pending",
                "deleted-version",
                f"{prefix}*/{vid}/",
                f"dataset {doc.name!r}: version {vid} was deleted; {len(keys)} of its objects remain",
                dataset_id=doc.id,
                objects=tuple(keys),
                size=sum(self.objects[k].size for k in keys if k in self.objects),
            )

    def _garbage(self, code: str, key: str, dataset_id: str, message: str) -> None:
        info = self.objects.get(key)
        self._add(
            "garbage",
            code,
            key,
            message,
            dataset_id=dataset_id,
            objects=(key,),
            size=info.size if info is not None else 0,
            written=self.written(key),
        )


def load_dataset(
    store: ObjectStore, dataset_id: str, data: bytes, etag: str, key: str
) -> tuple[DatasetDoc, LogState | None]:
    """A dataset's whole tree from its document: format 1 as it is, format 2 folded from its log.

    Raises:
        CorruptObjectError: the document, a checkpoint or a log entry is damaged or missing.
        StorageError: the store failed.
    """
    if document_format(data, key) == layout.LEGACY_STORE_FORMAT:
        return parse_dataset_doc(data, key), None
    head = parse_head(data, key)
    shell = DatasetDoc(
        id=head.id, name=head.name, created=head.created, updated=head.updated, deleted=head.deleted
    )
    if head.id != dataset_id:
        return shell, None
    log = follow(store, dataset_id, head, etag)
    if head.deleted:
        return shell, log  # its objects are being removed: nothing of its tree is read any more
    return load_whole(store, log), log


def live_keys(doc: DatasetDoc, log: LogState | None) -> set[str]:
    """The keys a dataset's tree refers to now, besides manifests and segments (format 2).

    Its records, version names and statistics of its live versions, its newest checkpoint and the
    log entries after it. Nothing for a dataset of format 1.
    """
    if log is None:
        return set()
    keys = {layout.dataset_doc_key(doc.id)}
    for ver in doc.versions:
        keys.add(layout.record_key(doc.id, ver.id))
        keys.add(layout.version_name_key(doc.id, ver.name))
        if not ver.is_draft:
            keys.add(layout.stats_key(doc.id, ver.id))
    ckpt = log.head.checkpoint
    if ckpt is not None:
        keys.add(layout.checkpoint_key(doc.id, ckpt))
    first = 0 if ckpt is None else ckpt + 1
    keys.update(layout.log_key(doc.id, seq) for seq in range(first, log.seq + 1))
    return keys


def _ids_held_twice(store: ObjectStore, refs: Sequence[SegmentRef]) -> int:
    """How many ids occur in more than one of ``refs`` (unreadable segments count none)."""
    columns = []
    for ref in refs:
        try:
            data = store.get_range(ref.key, 0, ref.size)
            columns.append(segments.from_parquet(data, ref.key, ["id"]).column("id"))
        except (NotFoundError, CorruptObjectError):
            continue  # reported as a segment problem
    if not columns:
        return 0
    ids = pa.chunked_array([c for col in columns for c in col.chunks], pa.string())
    counts = pc.value_counts(ids)
    return int(pc.sum(pc.greater(counts.field("counts"), 1)).as_py() or 0)


def _segment_problem(store: ObjectStore, ref: SegmentRef) -> str | None:
    """Read one segment whole and say what is wrong with it, or None.

    Checked: its schema, its pages' checksums, its row count and id range against the manifest's
    reference, and that its ids are sorted with none twice (of an indexed segment: that its id
    index holds its ids sorted, each with its row).
    """
    key, size, kind = ref.key, ref.size, ref.kind
    try:
        data = store.get_range(key, 0, size)
    except NotFoundError:
        return "missing"
    try:
        schema = pq.read_schema(pa.BufferReader(data))
        segments.check_footer(pq.read_metadata(pa.BufferReader(data)), key, ref.rows, ref.min_id, ref.max_id)
        if segments.is_indexed(schema):
            segments.check_index(segments.from_parquet(data, key, segments.INDEXED_SCHEMA.names), key)
        else:
            segments.check_ids(segments.from_parquet(data, key, ["id"]).column("id"), key)
            if kind == "frames":
                segments.from_parquet(data, key)  # every page, so every checksum
    except CorruptObjectError as exc:
        return str(exc).removeprefix(f"{key}: ")
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"not a readable Parquet segment ({exc})"
    want = segments.DELETES_SCHEMA if kind == "deletes" else segments.FRAME_SCHEMA
    names = ["id"] if kind == "deletes" else list(segments.FRAME_COLUMNS)
    for name in names:
        i = schema.get_field_index(name)
        if i < 0:
            return f"the {kind} segment has no column {name!r}"
        if not schema.field(i).type.equals(want.field(name).type):
            return f"column {name!r} is {schema.field(i).type}, expected {want.field(name).type}"
    return None


# ---------------------------------------------------------------------------- repair


def _repair(catalog: Catalog, scan: StoreScan, finding: Finding) -> Finding:
    """Complete one pending roll-forward (or rewrite a missing marker) with the API's own calls."""
    store = catalog.store
    if finding.code == "marker-missing":
        catalog.ensure_marker()
    elif finding.code == "deleted-dataset":
        assert finding.dataset_id is not None
        doc = scan.datasets[finding.dataset_id].doc
        assert doc is not None
        catalog.release_name(doc)  # the same steps Catalog.delete takes after its commit point
        catalog.remove_objects(
            layout.dataset_prefix(finding.dataset_id), last=layout.dataset_doc_key(finding.dataset_id)
        )
    elif finding.code == "stale-claim":
        assert finding.dataset_id is not None
        claim = scan.claims[finding.key]
        gone = DatasetDoc(id=finding.dataset_id, name=claim.name, created=0, updated=0)
        catalog.release_name(gone)
    elif finding.code == "unmaterialised-entry":
        assert finding.dataset_id is not None
        log = scan.datasets[finding.dataset_id].log
        assert log is not None
        catch_up(store, log)  # what the next commit would do first
    elif finding.code == "deleted-version":
        assert finding.dataset_id is not None
        vid = finding.key.rstrip("/").rsplit("/", 1)[1]
        for prefix in layout.version_prefixes(finding.dataset_id, vid):
            catalog.remove_objects(prefix)
    else:
        return finding
    left = [k for k in finding.objects if _still_there(store, k, finding)]
    if left:
        return replace(finding, message=f"{finding.message}; repair left {len(left)} (see the log)")
    return replace(finding, repaired=True)


def _still_there(store: ObjectStore, key: str, finding: Finding) -> bool:
    if finding.code in ("marker-missing", "unmaterialised-entry"):
        return False
    if key.startswith(layout.DATASET_CLAIMS_PREFIX):
        try:
            data, _ = store.get(key)
        except NotFoundError:
            return False
        return parse_claim(data, key).dataset_id == finding.dataset_id
    try:
        store.head(key)
    except NotFoundError:
        return False
    return True


# ---------------------------------------------------------------------------- the entry point


def fsck(client: Client | None = None, *, repair: bool = False, deep: bool = False) -> FsckReport:
    """Check the store of ``client`` (default: the default client) and report what is wrong.

    With ``repair=True``, pending roll-forwards are completed (a deleted dataset's objects removed and
    its name released, a stale name claim released, a deleted version's objects removed) and a
    missing store marker is written again; damage is never "repaired", and garbage is left to
    :func:`hds_s3.tools.gc.gc`. With ``deep=True`` every segment in use is read whole and its schema checked
    (one GET per segment); otherwise only its presence and size are checked (from the listing).

    Raises:
        StorageError: the store failed while listing or reading (repairs that fail are reported in
            their finding instead).
        ValidationError: the default store URL is malformed.
    """
    c = resolve(client)
    scan = StoreScan(c.store).run(deep=deep)
    findings = scan.findings
    if repair:
        out = []
        for f in findings:
            if f.kind == "pending" or f.code == "marker-missing":
                try:
                    f = _repair(c.catalog, scan, f)
                except HdsError as exc:
                    f = replace(f, message=f"{f.message}; repair failed: {exc}")
            out.append(f)
        findings = out
    live = [s.doc for s in scan.datasets.values() if s.doc is not None and not s.doc.deleted and s.claims]
    return FsckReport(
        store=c.store.url,
        findings=tuple(findings),
        objects=len(scan.objects),
        bytes=sum(i.size for i in scan.objects.values()),
        datasets=len(live),
        versions=scan.versions,
        segments=sum(1 for k in scan.referenced if k.endswith(".parquet")),
        repair=repair,
        deep=deep,
    )


__all__ = ["KINDS", "Finding", "FindingKind", "FsckReport", "StoreScan", "fsck", "modified_time"]
