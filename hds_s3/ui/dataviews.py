"""Stored DataViews as the query box sees them: list, store a query, rename, delete.

A stored DataView is found through the store's DataView name index (every view stored with a
name has an entry there) and loaded with :meth:`DataView.get`; the UI stores only named views.
"""

from __future__ import annotations

from typing import Any

from hds_s3.client import Client
from hds_s3.errors import InvalidStateError, NotFoundError
from hds_s3.format import layout
from hds_s3.query.dataview import DataView, DataViewNotFoundError


def _summary(view: DataView) -> dict[str, Any]:
    rules = view.get_queries()
    return {
        "id": view.id,
        "name": view.name,
        "status": view.status,
        "description": view.description,
        "queries": [
            {
                "dataset_id": q.dataset_id,
                "version_id": q.version_id,
                "dataset_name": q.dataset_name,
                "version_name": q.version_name,
                "frame_query": q.frame_query or "",
                "roi_query": " ".join(
                    r.label if isinstance(r.label, str) else " ".join(r.label or ()) for r in q.roi_queries
                ),
            }
            for q in rules
        ],
    }


def listing(client: Client) -> list[dict[str, Any]]:
    """Every named DataView in the store (each once, by its current name), sorted by name.

    Raises:
        StorageError: the store failed.
    """
    seen: dict[str, dict[str, Any]] = {}
    for info in client.store.list(layout.DATAVIEW_NAMES_PREFIX):
        view_id = layout.dataview_id_of_name_key(info.key)
        if view_id is None or view_id in seen:
            continue
        try:
            view = DataView.get(dataview_id=view_id, client=client)
        except DataViewNotFoundError:
            continue  # deleted; its name entry is left over
        seen[view_id] = _summary(view)
    return sorted(seen.values(), key=lambda v: (str(v["name"]).lower(), str(v["id"])))


def store(
    client: Client, *, name: str, dataset_id: str, version_id: str, frame_query: str, roi_query: str
) -> dict[str, Any]:
    """Store one rule (this version, these queries) as a new DataView named ``name``.

    Raises:
        ValidationError: a bad name or a malformed query (with its caret).
        NotFoundError: no such dataset or version.
    """
    view = DataView(name=name, client=client)
    view.add_query(
        dataset_id=dataset_id,
        version_id=version_id,
        frame_query=frame_query or None,
        roi_query=roi_query or None,
    )
    view.store()
    return _summary(view)


def rename(client: Client, view_id: str, name: str) -> dict[str, Any]:
    """Rename a stored draft DataView.

    Raises:
        DataViewNotFoundError: no such view.
        InvalidStateError: it is published.
        ValidationError: a bad name.
    """
    view = DataView.get(dataview_id=view_id, client=client)
    view.name = name
    view.store()
    return _summary(view)


def delete(client: Client, view_id: str) -> None:
    """Delete a stored DataView.

    Raises:
        DataViewNotFoundError: no such view.
        InvalidStateError: this version of the library cannot delete stored DataViews.
    """
    view = DataView.get(dataview_id=view_id, client=client)
    remove = getattr(DataView, "delete", None)
    if remove is None:
        raise InvalidStateError(f"deleting DataView {view.name!r} needs DataView.delete, which is missing")
    remove(dataview_id=view_id, client=client)


__all__ = ["NotFoundError", "delete", "listing", "rename", "store"]
