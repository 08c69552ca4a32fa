"""Stored DataViews as the query box sees them: list, store a query, rename, delete (the library's calls)."""

from __future__ import annotations

from typing import Any

from hds_s3.client import Client
from hds_s3.query.dataview import DataView


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
    """Every stored DataView, sorted by name.

    Raises:
        StorageError: the store failed.
    """
    views = [_summary(v) for v in DataView.list_dataviews(client=client)]
    return sorted(views, key=lambda v: (str(v["name"] or "").lower(), str(v["id"])))


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
        ValidationError: a bad name or id.
    """
    view = DataView.get(dataview_id=view_id, client=client).rename(name)
    return _summary(view)


def delete(client: Client, view_id: str) -> None:
    """Delete a stored DataView (draft or published).

    Raises:
        DataViewNotFoundError: no such view.
        ValidationError: a bad id.
    """
    DataView.get(dataview_id=view_id, client=client).delete()


__all__ = ["delete", "listing", "rename", "store"]
