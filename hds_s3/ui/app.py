"""The Starlette application behind ``hds ui``: JSON endpoints over the library, images, static pages.

Every endpoint calls the library's public API with the client the app was made with (the user's
own store and credentials). Errors of the library come back as JSON ``{"error", "type"}`` with the
library's own message: 400 for :class:`~hds_s3.errors.ValidationError` (plus ``position`` when a
query's caret says one), 404 not found, 409 a state or name conflict, 403 a write to an app
started without ``write=True``, 502 a storage failure. Sources, previews and masks are read with
:class:`~hds_s3.io.sources.SourceFetcher` and resized with Pillow; a source that cannot be read
is answered with a placeholder image (status 200, header ``X-Hds-Missing`` says why).

Endpoints (``{ds}`` and ``{v}`` are ids; frame ids go in the query string as ``id=``)::

    GET  /api/info                                  store, read-only or not
    GET  /api/datasets?search=                      dataset cards
    GET  /api/datasets/{ds}                         the dataset and its version tree
    POST /api/datasets/{ds}/versions                create a child {"parent_id", "name"}
    POST /api/datasets/{ds}/versions/{v}/rename     {"name"}
    POST /api/datasets/{ds}/versions/{v}/publish
    POST /api/datasets/{ds}/versions/{v}/delete     {"force"}
    GET  /api/datasets/{ds}/versions/{v}            info, statistics, metadata, mask labels, meta fields
    PUT  /api/datasets/{ds}/versions/{v}/metadata   {"metadata"}
    GET  /api/datasets/{ds}/versions/{v}/distribution?field=meta.x&q=&roi=
    GET  /api/datasets/{ds}/versions/{v}/frames?offset=&limit=&sort=&desc=&group=&q=&roi=
    GET  /api/datasets/{ds}/versions/{v}/count?q=&roi=
    GET  /api/datasets/{ds}/versions/{v}/frame?id=  (and the grid's q, roi, sort... for its position)
    GET  /api/datasets/{ds}/versions/{v}/seek?position=&annotated=&step=
    GET  /api/datasets/{ds}/versions/{v}/history?id=   the versions that added, changed, deleted a frame
    PUT  /api/datasets/{ds}/versions/{v}/frame      {"frame"}: update_frames on a draft
    GET  /api/datasets/{ds}/versions/{v}/image?id=&source=&kind=source|preview|mask&mask=&w=
    GET  /api/datasets/{ds}/diff?old=&new=
    GET  /api/dataviews                             stored DataViews
    POST /api/dataviews                             store a query {"name", "dataset_id", "version_id", ...}
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from cachetools import LRUCache
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from hds_s3.api import Dataset, DatasetVersion
from hds_s3.client import Client
from hds_s3.errors import (
    AlreadyExistsError,
    ConflictError,
    HdsError,
    InvalidStateError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from hds_s3.io.sources import SourceFetcher
from hds_s3.ui import data, dataviews, images

STATIC = Path(__file__).parent / "static"
#: Bytes of resized images kept in memory.
IMAGE_CACHE_BYTES = 128 * 1024 * 1024


class ReadOnlyError(InvalidStateError):
    """A write asked of an ``hds ui`` started without ``--write``."""


def _status(exc: HdsError) -> int:
    if isinstance(exc, ReadOnlyError):
        return 403
    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (InvalidStateError, AlreadyExistsError, ConflictError)):
        return 409
    if isinstance(exc, StorageError):
        return 502
    return 500


def _error(exc: HdsError) -> JSONResponse:
    body = data.query_error(exc) if isinstance(exc, ValidationError) else {"error": str(exc)}
    body["type"] = type(exc).__name__
    return JSONResponse(body, status_code=_status(exc))


class UiState:
    """What the endpoints share: the client, the write switch, the caches and the source fetcher."""

    def __init__(self, client: Client, *, write: bool, fetcher: SourceFetcher | None = None) -> None:
        self.client = client
        self.write = write
        self.tables = data.FrameTables()
        self.selections = data.Selections(self.tables)
        self.fetcher = fetcher or SourceFetcher()
        self._images: LRUCache[tuple[Any, ...], tuple[bytes, str, str | None]] = LRUCache(
            maxsize=IMAGE_CACHE_BYTES, getsizeof=lambda item: len(item[0]) + 64
        )
        self._cards: LRUCache[tuple[str, int], dict[str, Any]] = LRUCache(maxsize=1024)
        self._lock = threading.Lock()

    def card(self, dataset: Dataset) -> dict[str, Any]:
        """A dataset's card, computed again only after the dataset changed (a draft's counts are read)."""
        key = (dataset.id, dataset.last_update)
        with self._lock:
            hit = self._cards.get(key)
        if hit is None:
            hit = data.dataset_card(dataset)
            with self._lock:
                self._cards[key] = hit
        return hit

    def require_write(self, what: str) -> None:
        """Refuse a change when the app is read-only.

        Raises:
            ReadOnlyError: the app was started without ``write=True``.
        """
        if not self.write:
            raise ReadOnlyError(f"cannot {what}: hds ui was started read-only; start it with hds ui --write")

    def dataset(self, request: Request) -> Dataset:
        """The dataset of the path's ``{ds}``.

        Raises:
            NotFoundError: no such dataset.
            ValidationError: not an id.
        """
        return Dataset.get(dataset_id=request.path_params["ds"], client=self.client)

    def version(self, request: Request) -> DatasetVersion:
        """The version of the path's ``{ds}`` and ``{v}``.

        Raises:
            NotFoundError: no such dataset or version.
            ValidationError: not an id.
        """
        return self.dataset(request).get_version(version_id=request.path_params["v"])

    def image(self, key: tuple[Any, ...], make: Callable[[], tuple[bytes, str, str | None]]) -> Response:
        """An image response from the cache, made (and cached) on a miss."""
        with self._lock:
            hit = self._images.get(key)
        if hit is None:
            hit = make()
            with self._lock:
                self._images[key] = hit
        body, media, missing = hit
        headers = {"Cache-Control": "private, max-age=300"}
        if missing is not None:
            headers["X-Hds-Missing"] = missing.encode("ascii", "replace").decode()[:300]
        return Response(body, media_type=media, headers=headers)


async def _body(request: Request) -> dict[str, Any]:
    try:
        payload = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"the request body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValidationError(f"the request body must be a JSON object, got {type(payload).__name__}")
    return payload


def _int(request: Request, name: str, default: int, low: int = 0, high: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"query parameter {name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise ValidationError(f"query parameter {name} must be between {low} and {high}, got {value}")
    return value


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "") in ("1", "true", "yes", "on")


def _text(payload: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = payload.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ValidationError(f"field {name!r} must be a non-empty string, got {value!r}")
    return value


def _selection(state: UiState, request: Request, version: DatasetVersion) -> data.Selection:
    q = request.query_params
    return state.selections.get(
        version,
        frame_query=q.get("q", ""),
        roi_query=q.get("roi", ""),
        sort=q.get("sort", "id") or "id",
        descending=_flag(request, "desc"),
        group=_flag(request, "group"),
    )


def build_routes(state: UiState) -> list[Route | Mount]:
    """The app's routes, each bound to ``state``."""

    def writes(fn: Callable[[Request, dict[str, Any]], Response]) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint that changes something: a JSON object body, and the work in a worker thread.

        A cross-site page can send a form's POST to a local server without asking, but not one with
        ``Content-Type: application/json``: requiring it keeps other sites from making changes.
        """

        async def endpoint(request: Request) -> Response:
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise ValidationError(
                    f"a change needs a JSON body (Content-Type: application/json), got {kind or 'none'!r}"
                )
            payload = await _body(request)
            return await run_in_threadpool(fn, request, payload)

        return endpoint

    # ------------------------------------------------------------------ pages

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    def info(request: Request) -> Response:
        return JSONResponse({"store": state.client.url, "write": state.write})

    # ------------------------------------------------------------------ datasets and versions

    def datasets(request: Request) -> Response:
        search = request.query_params.get("search", "").strip().lower()
        cards = []
        for ds in Dataset.list_datasets(client=state.client):
            text = " ".join([ds.name, ds.description, *ds.tags]).lower()
            if search and search not in text:
                continue
            cards.append(state.card(ds))
        cards.sort(key=lambda c: c["name"].lower())
        return JSONResponse({"datasets": cards})

    def dataset(request: Request) -> Response:
        ds = state.dataset(request)
        versions = ds.get_versions()
        head = ds.get_current() if versions else None
        return JSONResponse(
            {
                "id": ds.id,
                "name": ds.name,
                "description": ds.description,
                "tags": ds.tags,
                "paradigm": ds.paradigm,
                "current": head.id if head is not None else None,
                "versions": [data.version_summary(v) for v in versions],
                "write": state.write,
            }
        )

    @writes
    def create_version(request: Request, payload: dict[str, Any]) -> Response:
        state.require_write("create a version")
        ds = state.dataset(request)
        parent_id = payload.get("parent_id")
        version = DatasetVersion.create_version(
            dataset_id=ds.id,
            version_name=_text(payload, "name"),
            parent_version_ids=[parent_id] if isinstance(parent_id, str) and parent_id else None,
            raise_if_exists=True,
            client=state.client,
        )
        return JSONResponse(data.version_summary(version), status_code=201)

    @writes
    def rename_version(request: Request, payload: dict[str, Any]) -> Response:
        state.require_write("rename a version")
        version = state.version(request)
        version.set_version_name(_text(payload, "name"))
        return JSONResponse(data.version_summary(version))

    @writes
    def publish_version(request: Request, payload: dict[str, Any]) -> Response:
        state.require_write("publish a version")
        version = state.version(request)
        version.publish_version()
        return JSONResponse(data.version_summary(version))

    @writes
    def delete_version(request: Request, payload: dict[str, Any]) -> Response:
        state.require_write("delete a version")
        ds = state.dataset(request)
        ds.delete_version(version_id=request.path_params["v"], force=bool(payload.get("force")))
        return JSONResponse({"deleted": request.path_params["v"]})

    def version(request: Request) -> Response:
        ver = state.version(request)
        table = state.tables.get(ver, [*data.GRID_COLUMNS, "meta_str", "meta_num"])
        masks = [{"value": list(k), "labels": v} for k, v in ver.get_masks_labels().items()]
        return JSONResponse(
            {
                **data.version_summary(ver),
                "dataset": {"id": ver.dataset_id, "name": ver.dataset_name},
                "stats": ver.get_stats(),
                "metadata": ver.get_metadata(),
                "mask_labels": masks,
                "meta_fields": data.meta_fields(table),
                "children": [c.id for c in ver.get_children()],
                "write": state.write,
            }
        )

    @writes
    def set_metadata(request: Request, payload: dict[str, Any]) -> Response:
        state.require_write("change version metadata")
        ver = state.version(request)
        metadata = payload.get("metadata")
        if not isinstance(metadata, dict):
            raise ValidationError(f"field 'metadata' must be a JSON object, got {type(metadata).__name__}")
        ver.set_metadata(metadata)
        return JSONResponse({"metadata": ver.get_metadata()})

    def distribution(request: Request) -> Response:
        ver = state.version(request)
        field = request.query_params.get("field", "")
        if not field.startswith("meta.") or field == "meta.":
            raise ValidationError(
                f"field must be meta.<path> (one of the version's meta fields), got {field!r}"
            )
        table = state.tables.get(ver, [*data.GRID_COLUMNS, "meta_str", "meta_num"])
        selection = _selection(state, request, ver)  # its rows number the same effective frames
        return JSONResponse(
            {
                **data.distribution(table, field[len("meta.") :], selection.order),
                "frames": selection.total,
            }
        )

    def frames(request: Request) -> Response:
        ver = state.version(request)
        selection = _selection(state, request, ver)
        offset = _int(request, "offset", 0)
        limit = _int(request, "limit", 60, 1, data.MAX_PAGE)
        return JSONResponse(
            {
                "total": selection.total,
                "offset": offset,
                "frames": data.grid_rows(selection, offset, offset + limit),
                "stats": data.selection_stats(selection) if _flag(request, "stats") else None,
            }
        )

    def count(request: Request) -> Response:
        ver = state.version(request)
        selection = _selection(state, request, ver)
        return JSONResponse({"count": selection.total, "of": selection.table.num_rows})

    def frame(request: Request) -> Response:
        ver = state.version(request)
        frame_id = request.query_params.get("id", "")
        found = data.frame_dict(ver, frame_id)
        selection = _selection(state, request, ver)
        masks = [{"value": list(k), "labels": v} for k, v in ver.get_masks_labels().items()]
        return JSONResponse(
            {
                "frame": found,
                "position": data.position_of(selection, frame_id),
                "total": selection.total,
                "mask_labels": masks,
                "editable": state.write and ver.is_draft,
                "version": data.version_summary(ver),
                "dataset": {"id": ver.dataset_id, "name": ver.dataset_name},
            }
        )

    def history(request: Request) -> Response:
        ver = state.version(request)
        changes = ver.get_frame_history(request.query_params.get("id", ""))
        return JSONResponse(
            {
                "changes": [
                    {
                        "version_id": c.version_id,
                        "version_name": c.version_name,
                        "status": c.status,
                        "change": c.change,
                    }
                    for c in changes
                ]
            }
        )

    def seek(request: Request) -> Response:
        ver = state.version(request)
        selection = _selection(state, request, ver)
        position = _int(request, "position", 0)
        step = _int(request, "step", 1, -1, 1)
        if _flag(request, "annotated"):
            found = data.next_annotated(selection, position, step or 1)
            if found is None:
                raise NotFoundError(
                    f"no annotated frame {'after' if step >= 0 else 'before'} position {position} "
                    f"in version {ver.name!r} of {ver.dataset_name!r} (with this query)"
                )
            position = found
        if not 0 <= position < selection.total:
            raise NotFoundError(
                f"position {position} is outside the {selection.total} frames of version {ver.name!r} "
                "(with this query)"
            )
        return JSONResponse({"position": position, "id": selection.ids(position, position + 1)[0]})

    @writes
    def save_frame(request: Request, payload: dict[str, Any]) -> Response:
        state.require_write("save a frame")
        ver = state.version(request)
        frame_in = payload.get("frame")
        if not isinstance(frame_in, dict) or not isinstance(frame_in.get("id"), str):
            raise ValidationError("field 'frame' must be a frame dict with its id (as GET .../frame returns)")
        failed = ver.update_frames([data.canonical(frame_in)])
        if failed:
            raise ValidationError(f"frame {frame_in['id']!r} was not saved: {failed[0].reason}")
        return JSONResponse({"frame": data.frame_dict(ver, frame_in["id"])})

    def image(request: Request) -> Response:
        ver = state.version(request)
        q = request.query_params
        frame_id, source_id, kind = q.get("id", ""), q.get("source", ""), q.get("kind", "source")
        width = _int(request, "w", 320, 16, images.MAX_WIDTH)
        if kind not in ("source", "preview", "mask"):
            raise ValidationError(f"kind must be source, preview or mask, got {kind!r}")
        table = state.tables.get(ver, data.GRID_COLUMNS)
        row = data.frame_row(table, frame_id)
        if row is None:
            raise NotFoundError(f"frame {frame_id!r} is not in version {ver.name!r} of {ver.dataset_name!r}")
        sources = row["sources"] or []
        src = next(
            (s for s in sources if s["id"] == source_id), sources[0] if not source_id and sources else None
        )
        if src is None:
            raise NotFoundError(f"frame {frame_id!r} has no source {source_id!r}")
        uri: str | None = src["uri"]
        values: tuple[tuple[int, int, int], ...] = ()
        if kind == "preview":
            uri = (src.get("preview") or {}).get("uri")
        elif kind == "mask":
            masks = src.get("masks") or []
            wanted = q.get("mask", "")
            mask = next((m for m in masks if m["id"] == wanted), masks[0] if not wanted and masks else None)
            uri = mask["uri"] if mask is not None else None
            values = tuple(ver.get_masks_labels())
        if not uri:
            raise NotFoundError(f"frame {frame_id!r} source {src['id']!r} has no {kind}")

        def make() -> tuple[bytes, str, str | None]:
            try:
                raw = state.fetcher.fetch(uri)
            except HdsError as exc:
                reason = f"{kind} {uri} cannot be read: {exc}"
                return images.placeholder(reason, width), "image/png", reason
            if kind == "mask":
                body, media = images.colour_mask(raw, values, width)
            else:
                body, media = images.thumbnail(raw, width)
            return body, media, None

        return state.image((uri, kind, width, values), make)

    def diff(request: Request) -> Response:
        ds = state.dataset(request)
        old = ds.get_version(version_id=request.query_params.get("old", ""))
        new = ds.get_version(version_id=request.query_params.get("new", ""))
        return JSONResponse(data.diff(old, new))

    # ------------------------------------------------------------------ DataViews

    def list_views(request: Request) -> Response:
        return JSONResponse({"dataviews": dataviews.listing(state.client)})

    @writes
    def store_view(request: Request, payload: dict[str, Any]) -> Response:
        state.require_write("store a DataView")
        stored = dataviews.store(
            state.client,
            name=_text(payload, "name"),
            dataset_id=_text(payload, "dataset_id"),
            version_id=_text(payload, "version_id"),
            frame_query=_text(payload, "frame_query", required=False),
            roi_query=_text(payload, "roi_query", required=False),
        )
        return JSONResponse(stored, status_code=201)

    @writes
    def rename_view(request: Request, payload: dict[str, Any]) -> Response:
        state.require_write("rename a DataView")
        return JSONResponse(dataviews.rename(state.client, request.path_params["id"], _text(payload, "name")))

    @writes
    def delete_view(request: Request, payload: dict[str, Any]) -> Response:
        state.require_write("delete a DataView")
        dataviews.delete(state.client, request.path_params["id"])
        return JSONResponse({"deleted": request.path_params["id"]})

    v = "/api/datasets/{ds}/versions/{v}"
    return [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/datasets", datasets),
        Route("/api/datasets/{ds}", dataset),
        Route("/api/datasets/{ds}/diff", diff),
        Route("/api/datasets/{ds}/versions", create_version, methods=["POST"]),
        Route(v, version),
        Route(v + "/rename", rename_version, methods=["POST"]),
        Route(v + "/publish", publish_version, methods=["POST"]),
        Route(v + "/delete", delete_version, methods=["POST"]),
        Route(v + "/metadata", set_metadata, methods=["PUT"]),
        Route(v + "/distribution", distribution),
        Route(v + "/frames", frames),
        Route(v + "/count", count),
        Route(v + "/frame", frame, methods=["GET"]),
        Route(v + "/frame", save_frame, methods=["PUT"]),
        Route(v + "/seek", seek),
        Route(v + "/history", history),
        Route(v + "/image", image),
        Route("/api/dataviews", list_views, methods=["GET"]),
        Route("/api/dataviews", store_view, methods=["POST"]),
        Route("/api/dataviews/{id}/rename", rename_view, methods=["POST"]),
        Route("/api/dataviews/{id}/delete", delete_view, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(
    client: Client,
    *,
    write: bool = False,
    fetcher: SourceFetcher | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> Starlette:
    """The ``hds ui`` web app over ``client``'s store; read-only unless ``write``.

    ``fetcher`` reads sources (default: a :class:`SourceFetcher` with no options, so ``s3://``
    sources use the standard AWS settings). ``allowed_hosts``, when given, are the only ``Host``
    headers answered (``hds ui`` on 127.0.0.1 allows that and ``localhost``): a page of another
    site that renames its domain to this address (DNS rebinding) gets 400.
    """
    state = UiState(client, write=write, fetcher=fetcher)

    async def hds_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HdsError)
        return _error(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail, "type": "HTTPException"}, status_code=exc.status_code)

    middleware = (
        [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))] if allowed_hosts else []
    )
    app = Starlette(
        routes=build_routes(state),
        exception_handlers={HdsError: hds_error, HTTPException: http_error},
        middleware=middleware,
    )
    app.state.ui = state
    return app


__all__ = ["ReadOnlyError", "UiState", "create_app"]
