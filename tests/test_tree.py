"""Pure transitions of the version tree: requirements are checked on the document they are given."""

from __future__ import annotations

import pytest

from hds_s3 import InvalidStateError
from hds_s3.format.docs import DatasetDoc, VersionEntry
from hds_s3.format.tree import publish, snapshot


def _doc() -> DatasetDoc:
    draft = VersionEntry(id="a" * 32, name="Current", parent=None, status="draft", created=1)
    return DatasetDoc(id="d" * 32, name="ds", created=1, updated=1, versions=(draft,))


def test_a_snapshot_pinned_to_a_draft_that_was_snapshotted_meanwhile_is_refused() -> None:
    first = snapshot(_doc(), child_id="b" * 32, now=2, draft_id="a" * 32)
    with pytest.raises(InvalidStateError, match="published by another writer meanwhile"):
        snapshot(first, child_id="c" * 32, now=3, draft_id="a" * 32)
    second = snapshot(first, child_id="c" * 32, now=3, draft_id="b" * 32)
    assert [v.status for v in second.versions] == ["published", "published", "draft"]


def test_publishing_twice_is_refused_on_the_newer_document() -> None:
    once = publish(_doc(), "a" * 32, now=2)
    with pytest.raises(InvalidStateError, match="already published"):
        publish(once, "a" * 32, now=3)
