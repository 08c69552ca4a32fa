"""The only module that spells object keys (pure: no I/O).

Store format 2 (what this hds_s3 writes)::

    _hds/store.json                                        format marker (create-only, then CAS by upgrade)
    _hds/datasets/<enc(name)>.json                         name claim -> dataset id (create-only / CAS)
    datasets/<dataset_id>/dataset.json                     head: the dataset's fields, aggregates of its
                                                           tree, the log position it reflects (CAS)
    datasets/<dataset_id>/log/<seq>.json                   commit entries (create-only: the commit points)
    datasets/<dataset_id>/checkpoints/<seq>.json           the tree folded up to <seq> (create-only)
    datasets/<dataset_id>/tree/<version_id>.json           a version's record (CAS, only forward)
    datasets/<dataset_id>/names/<enc(name)>.json           version-name index (CAS, only forward)
    datasets/<dataset_id>/stats/<version_id>.json          statistics of a published version (create-only)
    datasets/<dataset_id>/versions/<version_id>/<id>.json  immutable frame manifests of a version
    datasets/<dataset_id>/segments/<version_id>/<id>.parquet  immutable frame/tombstone segments
    datasets/<dataset_id>/leases/<version_id>/<id>.json    a write job's lease on a version (gc keeps
                                                           the version's uncommitted segments meanwhile)

Store format 1 kept the whole tree in ``dataset.json`` and had no ``log/``, ``checkpoints/``,
``tree/``, ``names/`` or ``stats/``; it is read as before and converted by ``hds upgrade``.

Ids are 32 hex digits generated here. User names only ever reach a key through :func:`encode_name`,
whose output has no ``/`` and cannot be ``.`` or ``..``, so no name can escape its prefix.
"""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import quote

from hds_s3.model.names import check_id, check_name

#: ``format_version`` of the document kinds whose schema format 2 kept from format 1: name claims,
#: frame manifests, stored DataViews.
FORMAT_VERSION = 1
#: The store format this hds_s3 writes (the store marker's ``format_version``), and the
#: ``format_version`` of the documents it introduced: heads, log entries, checkpoints, version
#: records, version names, statistics.
STORE_FORMAT = 2
#: The store format that kept a dataset's whole tree in one document; read, not written.
LEGACY_STORE_FORMAT = 1
#: Digits of a log sequence number in a key (so keys sort as numbers do).
SEQ_DIGITS = 12

STORE_MARKER = "_hds/store.json"
DATASET_CLAIMS_PREFIX = "_hds/datasets/"
DATASETS_PREFIX = "datasets/"

_READABLE_CHARS = 80


def new_id() -> str:
    """Return a fresh random id (32 lowercase hex digits)."""
    return uuid.uuid4().hex


def encode_name(name: str) -> str:
    """Encode a name into one safe key component.

    The readable part is the name percent-encoded (only ``A-Z a-z 0-9 _ -`` kept; so no ``/``, ``.``
    or ``%`` survive raw), cut to 80 characters; a digest of the full name follows so that long names
    sharing a prefix, and names that differ only in case on case-insensitive folders, never collide.

    Raises:
        ValidationError: the name is not valid (see :func:`hds_s3.model.names.check_name`).
    """
    check_name("dataset", name)
    readable = quote(name, safe="-_")
    readable = readable.replace(".", "%2E").replace("~", "%7E")
    if len(readable) > _READABLE_CHARS:
        readable = readable[:_READABLE_CHARS]
        cut = readable.rfind("%", len(readable) - 2)
        if cut != -1:
            readable = readable[:cut]
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:24]
    return f"{readable}~{digest}"


def dataset_claim_key(name: str) -> str:
    """Key of the object that claims dataset ``name`` for one dataset id.

    Raises:
        ValidationError: the name is not valid.
    """
    return f"{DATASET_CLAIMS_PREFIX}{encode_name(name)}.json"


def dataset_prefix(dataset_id: str) -> str:
    """Prefix under which every object of one dataset lives.

    Raises:
        ValidationError: ``dataset_id`` is not an hds_s3 id.
    """
    return f"{DATASETS_PREFIX}{check_id('dataset', dataset_id)}/"


def dataset_doc_key(dataset_id: str) -> str:
    """Key of the dataset document.

    Raises:
        ValidationError: ``dataset_id`` is not an hds_s3 id.
    """
    return f"{dataset_prefix(dataset_id)}dataset.json"


def _seq(seq: int) -> str:
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 10**SEQ_DIGITS:
        from hds_s3.errors import ValidationError

        raise ValidationError(f"log sequence number {seq!r} is not a count below 10**{SEQ_DIGITS}")
    return f"{seq:0{SEQ_DIGITS}d}"


def log_prefix(dataset_id: str) -> str:
    """Prefix of a dataset's commit log (format 2).

    Raises:
        ValidationError: ``dataset_id`` is not an hds_s3 id.
    """
    return f"{dataset_prefix(dataset_id)}log/"


def log_key(dataset_id: str, seq: int) -> str:
    """Key of the commit entry with sequence number ``seq`` (format 2).

    Raises:
        ValidationError: a bad id or sequence number.
    """
    return f"{log_prefix(dataset_id)}{_seq(seq)}.json"


def checkpoint_prefix(dataset_id: str) -> str:
    """Prefix of a dataset's checkpoints (format 2).

    Raises:
        ValidationError: ``dataset_id`` is not an hds_s3 id.
    """
    return f"{dataset_prefix(dataset_id)}checkpoints/"


def checkpoint_key(dataset_id: str, seq: int) -> str:
    """Key of the checkpoint folding a dataset's log up to entry ``seq`` (format 2).

    Raises:
        ValidationError: a bad id or sequence number.
    """
    return f"{checkpoint_prefix(dataset_id)}{_seq(seq)}.json"


def record_prefix(dataset_id: str) -> str:
    """Prefix of a dataset's version records (format 2).

    Raises:
        ValidationError: ``dataset_id`` is not an hds_s3 id.
    """
    return f"{dataset_prefix(dataset_id)}tree/"


def record_key(dataset_id: str, version_id: str) -> str:
    """Key of one version's record (format 2).

    Raises:
        ValidationError: an id is not an hds_s3 id.
    """
    return f"{record_prefix(dataset_id)}{check_id('version', version_id)}.json"


def version_name_prefix(dataset_id: str) -> str:
    """Prefix of a dataset's version-name index (format 2).

    Raises:
        ValidationError: ``dataset_id`` is not an hds_s3 id.
    """
    return f"{dataset_prefix(dataset_id)}names/"


def version_name_key(dataset_id: str, name: str) -> str:
    """Key of the index entry saying which version of a dataset is called ``name`` (format 2).

    Raises:
        ValidationError: a bad id or name.
    """
    check_name("version", name)
    return f"{version_name_prefix(dataset_id)}{encode_name(name)}.json"


def stats_prefix(dataset_id: str) -> str:
    """Prefix of the statistics of a dataset's published versions (format 2).

    Raises:
        ValidationError: ``dataset_id`` is not an hds_s3 id.
    """
    return f"{dataset_prefix(dataset_id)}stats/"


def stats_key(dataset_id: str, version_id: str) -> str:
    """Key of the statistics of one published version (format 2).

    Raises:
        ValidationError: an id is not an hds_s3 id.
    """
    return f"{stats_prefix(dataset_id)}{check_id('version', version_id)}.json"


def version_prefixes(dataset_id: str, version_id: str) -> tuple[str, str]:
    """The two prefixes holding objects owned by one version (its manifests, its segments).

    Raises:
        ValidationError: an id is not an hds_s3 id.
    """
    base = dataset_prefix(dataset_id)
    vid = check_id("version", version_id)
    return f"{base}versions/{vid}/", f"{base}segments/{vid}/"


def manifest_key(dataset_id: str, version_id: str, manifest_id: str) -> str:
    """Key of one immutable frame manifest of a version.

    Raises:
        ValidationError: an id is not an hds_s3 id.
    """
    return f"{version_prefixes(dataset_id, version_id)[0]}{check_id('manifest', manifest_id)}.json"


def segment_key(dataset_id: str, version_id: str, segment_id: str) -> str:
    """Key of one immutable Parquet segment written by a version.

    Raises:
        ValidationError: an id is not an hds_s3 id.
    """
    return f"{version_prefixes(dataset_id, version_id)[1]}{check_id('segment', segment_id)}.parquet"


# ================================================================================================
# Key parsing, for fsck and gc (appended section: read a key back into what it names).
# ================================================================================================

from dataclasses import dataclass  # noqa: E402 - kept with the section that needs it
from typing import Literal  # noqa: E402

KeyKind = Literal[
    "marker",
    "claim",
    "dataset",
    "manifest",
    "segment",
    "log",
    "checkpoint",
    "record",
    "name",
    "stats",
    "lease",
]

_HEX = frozenset("0123456789abcdef")


def _is_id(text: str) -> bool:
    return len(text) == 32 and set(text) <= _HEX


@dataclass(frozen=True)
class KeyParts:
    """What one key names.

    ``dataset_id`` is set for every kind but ``marker`` and ``claim``; ``version_id`` for
    ``manifest``, ``segment``, ``record``, ``stats`` and ``lease`` keys; ``object_id`` is the
    manifest, segment or lease id; ``seq`` the sequence number of a ``log`` or ``checkpoint`` key.
    """

    kind: KeyKind
    dataset_id: str | None = None
    version_id: str | None = None
    object_id: str | None = None
    seq: int | None = None


def parse_key(key: str) -> KeyParts | None:
    """Return what ``key`` names, or None when this layout never writes such a key.

    The inverse of :data:`STORE_MARKER`, :func:`dataset_claim_key` (the name itself is not recovered:
    the encoding cuts long names), :func:`dataset_doc_key`, :func:`manifest_key` and
    :func:`segment_key`. Pure; raises nothing.
    """
    if key == STORE_MARKER:
        return KeyParts("marker")
    if key.startswith(DATASET_CLAIMS_PREFIX):
        enc = key[len(DATASET_CLAIMS_PREFIX) :]
        if enc.endswith(".json") and "/" not in enc and len(enc) > len(".json"):
            return KeyParts("claim")
        return None
    if not key.startswith(DATASETS_PREFIX):
        return None
    parts = key[len(DATASETS_PREFIX) :].split("/")
    if not parts or not _is_id(parts[0]):
        return None
    dataset_id = parts[0]
    if parts[1:] == ["dataset.json"]:
        return KeyParts("dataset", dataset_id)
    if len(parts) == 3 and parts[2].endswith(".json"):
        folder, stem = parts[1], parts[2][: -len(".json")]
        if folder in ("log", "checkpoints"):
            if len(stem) == SEQ_DIGITS and stem.isascii() and stem.isdigit():
                return KeyParts("log" if folder == "log" else "checkpoint", dataset_id, seq=int(stem))
            return None
        if folder in ("tree", "stats") and _is_id(stem):
            return KeyParts("record" if folder == "tree" else "stats", dataset_id, version_id=stem)
        if folder == "names" and "~" in stem:
            return KeyParts("name", dataset_id)
        return None
    if len(parts) != 4 or not _is_id(parts[2]):
        return None
    folder, version_id, leaf = parts[1], parts[2], parts[3]
    if folder == "versions" and leaf.endswith(".json") and _is_id(leaf[: -len(".json")]):
        return KeyParts("manifest", dataset_id, version_id, leaf[: -len(".json")])
    if folder == "segments" and leaf.endswith(".parquet") and _is_id(leaf[: -len(".parquet")]):
        return KeyParts("segment", dataset_id, version_id, leaf[: -len(".parquet")])
    if folder == LEASES_FOLDER and leaf.endswith(".json") and _is_id(leaf[: -len(".json")]):
        return KeyParts("lease", dataset_id, version_id, leaf[: -len(".json")])
    return None


# ================================================================================================
# End of the key-parsing section.
# ================================================================================================


# ---------------------------------------------------------------------------- write leases (format.leases)
#
#     datasets/<dataset_id>/leases/<version_id>/<lease_id>.json   a job's lease on a version (create-only,
#                                                                 then CAS to renew; deleted on release)
#
# While a lease on a version is live (its expiry is in the future), gc keeps every unreferenced
# segment and manifest of that version: they may be the uncommitted output of the job holding it.

LEASES_FOLDER = "leases"


def lease_prefix(dataset_id: str, version_id: str | None = None) -> str:
    """Prefix of a dataset's write leases, or of those on one version.

    Raises:
        ValidationError: an id is not an hds_s3 id.
    """
    base = f"{dataset_prefix(dataset_id)}{LEASES_FOLDER}/"
    return base if version_id is None else f"{base}{check_id('version', version_id)}/"


def lease_key(dataset_id: str, version_id: str, lease_id: str) -> str:
    """Key of one write lease on a version.

    Raises:
        ValidationError: an id is not an hds_s3 id.
    """
    return f"{lease_prefix(dataset_id, version_id)}{check_id('lease', lease_id)}.json"


# ---------------------------------------------------------------------------- DataViews (query.dataview)
#
#     dataviews/<dataview_id>.json                         DataView document (create-only, then CAS)
#     _hds/dataview-names/<enc(name)>/<dataview_id>.json   name entry: lists the DataViews of a name
#
# DataView names are not unique (as in the reference); every DataView stored under a name gets one
# create-only entry below the name's prefix, so finding the DataViews of a name is one listing.

DATAVIEWS_PREFIX = "dataviews/"
DATAVIEW_NAMES_PREFIX = "_hds/dataview-names/"


def dataview_doc_key(dataview_id: str) -> str:
    """Key of a DataView document.

    Raises:
        ValidationError: ``dataview_id`` is not an hds_s3 id.
    """
    return f"{DATAVIEWS_PREFIX}{check_id('dataview', dataview_id)}.json"


def dataview_id_of_doc_key(key: str) -> str | None:
    """The DataView id of a DataView document key, or None when the key is not one."""
    if not key.startswith(DATAVIEWS_PREFIX) or not key.endswith(".json"):
        return None
    tail = key[len(DATAVIEWS_PREFIX) : -len(".json")]
    try:
        return check_id("dataview", tail)
    except ValueError:
        return None


def dataview_name_prefix(name: str) -> str:
    """Prefix under which the name entries of every DataView called ``name`` live.

    Raises:
        ValidationError: the name is not valid.
    """
    check_name("dataview", name)
    return f"{DATAVIEW_NAMES_PREFIX}{encode_name(name)}/"


def dataview_name_key(name: str, dataview_id: str) -> str:
    """Key of the entry saying that DataView ``dataview_id`` is (or was) called ``name``.

    Raises:
        ValidationError: a bad name or id.
    """
    return f"{dataview_name_prefix(name)}{check_id('dataview', dataview_id)}.json"


def dataview_id_of_name_key(key: str) -> str | None:
    """The DataView id a name entry key ends with, or None when the key is not a name entry."""
    if not key.startswith(DATAVIEW_NAMES_PREFIX) or not key.endswith(".json"):
        return None
    tail = key.rsplit("/", 1)[-1][: -len(".json")]
    try:
        return check_id("dataview", tail)
    except ValueError:
        return None
