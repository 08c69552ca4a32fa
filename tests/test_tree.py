"""Transitions of the version tree: requirements are checked on the state they are given.

The rules run on a transaction over a tree held in memory, as they run over the newest state a
commit reads; the aggregates a transaction keeps (drafts, roots, branching, latest published) must
equal those counted from the whole tree it leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hds_s3 import InvalidStateError
from hds_s3.format.docs import DatasetDoc, VersionEntry
from hds_s3.format.tree import add_version, delete_version, publish, snapshot
from hds_s3.format.txn import Txn


def _doc() -> DatasetDoc:
    draft = VersionEntry(id="a" * 32, name="Current", parent=None, status="draft", created=1)
    return DatasetDoc(id="d" * 32, name="ds", created=1, updated=1, versions=(draft,))


def _apply(doc: DatasetDoc, change: Callable[[Txn], Any]) -> DatasetDoc:
    t = Txn(doc)
    change(t)
    after = t.whole()
    assert t.aggregates() == after.aggregates(), "the transaction's aggregates drifted from its tree"
    return after


def test_a_snapshot_pinned_to_a_draft_that_was_snapshotted_meanwhile_is_refused() -> None:
    first = _apply(_doc(), lambda t: snapshot(t, child_id="b" * 32, now=2, draft_id="a" * 32))
    with pytest.raises(InvalidStateError, match="published by another writer meanwhile"):
        _apply(first, lambda t: snapshot(t, child_id="c" * 32, now=3, draft_id="a" * 32))
    second = _apply(first, lambda t: snapshot(t, child_id="c" * 32, now=3, draft_id="b" * 32))
    assert [v.status for v in second.versions] == ["published", "published", "draft"]


def test_publishing_twice_is_refused_on_the_newer_document() -> None:
    once = _apply(_doc(), lambda t: publish(t, "a" * 32, now=2))
    with pytest.raises(InvalidStateError, match="already published"):
        _apply(once, lambda t: publish(t, "a" * 32, now=3))


def test_the_aggregates_follow_every_rule_and_answer_the_current_version() -> None:
    doc = _apply(_doc(), lambda t: publish(t, "a" * 32, now=2))
    assert doc.head() is not None and doc.head().id == "a" * 32  # type: ignore[union-attr]
    for i, name in enumerate(("x", "y")):
        doc = _apply(
            doc,
            lambda t, i=i, name=name: add_version(
                t, version_id=str(i) * 32, name=name, parent_id="a" * 32, now=10 + i
            ),
        )
    agg = doc.aggregates()
    assert (agg.versions, agg.roots, agg.branching, len(agg.drafts)) == (3, 1, 1, 2)
    assert doc.head().name == "y"  # type: ignore[union-attr]  # the newest of two drafts as deep
    with pytest.raises(InvalidStateError, match="has 2 draft versions"):
        _apply(doc, lambda t: snapshot(t, child_id="c" * 32, now=20))
    doc = _apply(doc, lambda t: delete_version(t, "1" * 32))
    agg = doc.aggregates()
    assert (agg.versions, agg.branching, list(agg.drafts)) == (2, 0, ["0" * 32])
    assert doc.version("a" * 32).children == 1  # type: ignore[union-attr]
    # deleting the published root with force takes its subtree and leaves no current version
    doc = _apply(doc, lambda t: delete_version(t, "a" * 32, force=True))
    assert doc.versions == () and doc.head() is None and doc.aggregates().latest is None
