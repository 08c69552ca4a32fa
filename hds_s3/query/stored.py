"""The stored DataViews of a store: which there are, which match a listing's filters, deleting one.

Deleting removes the DataView document first (from then on the view is gone for :meth:`DataView.get`
and listings), then its name entry; a name entry whose document is gone is skipped by every reader,
so an interrupted delete leaves nothing visible behind.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from hds_s3.client import Client
from hds_s3.format import layout
from hds_s3.model.names import check_pattern


def view_ids(client: Client) -> list[str]:
    """The ids of every stored DataView document, in key order.

    Raises:
        StorageError: the store failed.
    """
    out = []
    for info in client.store.list(layout.DATAVIEWS_PREFIX):
        found = layout.dataview_id_of_doc_key(info.key)
        if found is not None:
            out.append(found)
    return out


def name_filter(name_pattern: str | None) -> re.Pattern[str] | None:
    """The compiled ``name_pattern`` (None for no filter).

    Raises:
        ValidationError: not a valid regular expression.
    """
    return check_pattern(name_pattern)


def matches(doc: Mapping[str, Any], pattern: re.Pattern[str] | None, tags: Sequence[str]) -> bool:
    """Whether a DataView document passes a listing's filters (``-x`` in ``tags`` excludes tag ``x``)."""
    name = doc.get("name")
    if pattern is not None and not (isinstance(name, str) and pattern.search(name)):
        return False
    have = set(doc.get("tags") or ())
    for tag in tags:
        if tag.startswith("-") and len(tag) > 1:
            if tag[1:] in have:
                return False
        elif tag not in have:
            return False
    return True


def delete_view(client: Client, dataview_id: str, name: str | None) -> None:
    """Remove a DataView's document, then its name entry.

    Raises:
        StorageError: the store failed.
    """
    client.store.delete(layout.dataview_doc_key(dataview_id))
    if name is not None:
        client.store.delete(layout.dataview_name_key(name, dataview_id))
