"""The only module that spells object keys (pure: no I/O).

Format version 1::

    _hds/store.json                                        format marker (create-only)
    _hds/datasets/<enc(name)>.json                         name claim -> dataset id (create-only / CAS)
    datasets/<dataset_id>/dataset.json                     DatasetDoc: the dataset and its version tree
    datasets/<dataset_id>/versions/<version_id>/<id>.json  immutable frame manifests of a version
    datasets/<dataset_id>/segments/<version_id>/<id>.parquet  immutable frame/tombstone segments

Ids are 32 hex digits generated here. User names only ever reach a key through :func:`encode_name`,
whose output has no ``/`` and cannot be ``.`` or ``..``, so no name can escape its prefix.
"""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import quote

from hds_s3.names import check_id, check_name

FORMAT_VERSION = 1

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
        ValidationError: the name is not valid (see :func:`hds_s3.names.check_name`).
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
