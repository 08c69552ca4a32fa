"""``HyperDatasetManagement`` and ``HyperDataset``: the new API's datasets and versions, over hds_s3's.

A ``HyperDataset`` is bound to one version of one dataset: the very ``Dataset`` and
``DatasetVersion`` of :mod:`hds_s3.api` (``.dataset``, ``.version``), in the same store and format.
Projects are the dataset's ``project`` text (hds_s3 has no project objects): ``project_name``
filters and sets it. Where the reference's client is buggy, this one is not: ``raise_if_exists`` is
honoured, a version is found by name among all of them, uploads keep the folder layout, retry,
de-duplicate by hash and include masks, ``show_progress`` shows progress, and a failed commit is
raised rather than swallowed. Errors are hds_s3's (:class:`~hds_s3.errors.ValidationError`, and
:class:`HyperDatasetNotFoundError`, which is a ``ValueError`` as the reference's are).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hds_s3.api import Dataset, DatasetVersion
from hds_s3.client import Client, resolve
from hds_s3.errors import AlreadyExistsError, HdsError, NotFoundError, ValidationError
from hds_s3.hyperdatasets.entries import DataEntry, DataSubEntry
from hds_s3.model.names import preview

COMMIT_ERROR_KEY = "__commit_version_error__"
"""The key of ``add_data_entries``' register errors holding a failed commit (as the reference)."""
FIELD_MAPPINGS_KEY = "field_mappings"
"""The dataset metadata key keeping ``field_mappings`` (as a list: the paths hold dots)."""


class HyperDatasetNotFoundError(NotFoundError, ValueError):
    """No such dataset or version (a ``NotFoundError`` and, as the reference raises, a ``ValueError``)."""


def _selectors(kind: str, name: object, ident: object) -> None:
    if name and ident:
        raise ValidationError(f"Provide either {kind}_name or {kind}_id, not both")


class HyperDatasetManagement:
    """Finding, listing and deleting datasets and versions; the base of :class:`HyperDataset`."""

    _dataset: Dataset
    _version: DatasetVersion

    @classmethod
    def get(
        cls,
        dataset_name: str | None = None,
        version_name: str | None = None,
        project_name: str | None = None,
        *,
        dataset_id: str | None = None,
        version_id: str | None = None,
        client: Client | None = None,
    ) -> HyperDataset:
        """A ``HyperDataset`` bound to an existing dataset and version (the current one when none named).

        Raises:
            ValidationError: both a name and an id of one kind, or no dataset selector.
            HyperDatasetNotFoundError: no such dataset (in ``project_name``, when given) or version.
        """
        _selectors("dataset", dataset_name, dataset_id)
        _selectors("version", version_name, version_id)
        if not dataset_name and not dataset_id:
            raise ValidationError("dataset_name or dataset_id must be provided")
        c = resolve(client)
        try:
            ds = Dataset.get(dataset_name or None, dataset_id or None, client=c)
        except NotFoundError as exc:
            raise HyperDatasetNotFoundError(
                f"Dataset not found: {dataset_name or dataset_id} ({exc})"
            ) from None
        if project_name is not None and ds.project != project_name:
            raise HyperDatasetNotFoundError(
                f"Dataset not found: {dataset_name or dataset_id} in project {project_name!r}"
            )
        try:
            version = ds.get_version(version_name or None, version_id or None)
        except NotFoundError as exc:
            raise HyperDatasetNotFoundError(
                f"Version not found: {version_name or version_id} ({exc})"
            ) from None
        target = cls if isinstance(cls, type) and issubclass(cls, HyperDataset) else HyperDataset
        return target._bound(ds, version)

    @classmethod
    def exists(
        cls,
        dataset_name: str | None = None,
        version_name: str | None = None,
        project_name: str | None = None,
        *,
        dataset_id: str | None = None,
        version_id: str | None = None,
        client: Client | None = None,
    ) -> bool:
        """Whether the dataset (and the version, when one is named; ``version_id='*'``: any) exists.

        Raises:
            ValidationError: both a name and an id of one kind, or no dataset selector.
        """
        _selectors("dataset", dataset_name, dataset_id)
        _selectors("version", version_name, version_id)
        if not dataset_name and not dataset_id:
            raise ValidationError("dataset_name or dataset_id must be provided")
        return Dataset.exists(
            dataset_name or None,
            version_name or None,
            project_name,
            dataset_id=dataset_id or None,
            version_id=version_id or None,
            client=client,
        )

    @classmethod
    def list(
        cls,
        project_name: str | None = None,
        partial_name: str | None = None,
        tags: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        recursive_project_search: bool = True,
        include_archived: bool = True,
        *,
        client: Client | None = None,
    ) -> list[dict[str, Any]]:
        """Describe the datasets matching the filters, as dicts.

        Each holds ``id, name, project, tags, system_tags, created`` (ISO time), ``comment,
        version_count, paradigm``.

        Raises:
            ValidationError: a bad regex, tag filter or id.
        """
        from datetime import datetime, timezone

        found = Dataset.list_datasets(
            partial_name,
            tags,
            ids=ids,
            project_name=project_name,
            recursive_project_search=recursive_project_search,
            include_archived=include_archived,
            client=client,
        )
        return [
            {
                "id": ds.id,
                "name": ds.name,
                "project": ds.project,
                "tags": [t for t in ds.tags if t != "archived"],
                "system_tags": ["archived"] if ds.archived else [],
                "created": datetime.fromtimestamp(ds.created / 1000, tz=timezone.utc).isoformat(),
                "comment": ds.description,
                "version_count": ds.version_count,
                "paradigm": ds.paradigm,
            }
            for ds in found
        ]

    @classmethod
    def delete(
        cls,
        dataset_name: str,
        version_name: str | None = None,
        project_name: str | None = None,
        *,
        force: bool = False,
        client: Client | None = None,
    ) -> bool:
        """Delete a version, or the whole dataset (every version) when none is named; False if not found.

        Raises:
            InvalidStateError: published versions and ``force`` not set.
        """
        c = resolve(client)
        try:
            ds = Dataset.get(dataset_name, client=c)
        except NotFoundError:
            return False
        if project_name is not None and ds.project != project_name:
            return False
        if version_name:
            try:
                ds.delete_version(version_name, force=force)
            except NotFoundError:
                return False
            return True
        Dataset.delete(dataset_id=ds.id, delete_all_versions=True, force=force, client=c)
        return True

    # -- bound to a version

    @property
    def dataset(self) -> Dataset:
        """The dataset (hds_s3's :class:`~hds_s3.api.Dataset`)."""
        return self._dataset

    @property
    def version(self) -> DatasetVersion:
        """The version (hds_s3's :class:`~hds_s3.api.DatasetVersion`)."""
        return self._version

    @property
    def project_id(self) -> str | None:
        """The dataset's project (its ``project`` text; hds_s3 has no project ids)."""
        return self._dataset.project

    @property
    def dataset_id(self) -> str:
        """The dataset id."""
        return self._dataset.id

    @property
    def version_id(self) -> str:
        """The version id."""
        return self._version.id

    def commit_version(
        self,
        *,
        publish: bool = False,
        force: bool = False,
        calculate_stats: bool | None = True,
        override_stats: Any | None = None,
        publishing_task: str | None = None,
    ) -> dict[str, Any]:
        """Commit the version (every write already is committed); publish it with ``publish``.

        Returns ``{"dataset", "version", "total"}``. ``force``, ``calculate_stats``,
        ``override_stats`` and ``publishing_task`` concern the reference server's statistics and
        annotation tasks and change nothing here (statistics are counted at publication).

        Raises:
            InvalidStateError: ``publish`` on a published version.
        """
        self._version.commit_version(publish=publish)
        return {
            "dataset": self.dataset_id,
            "version": self.version_id,
            "total": self._version.get_frame_count(),
        }

    def publish_version(self, *, force: bool = False, publishing_task: str | None = None) -> bool:
        """Publish the version (read-only from then on); True.

        Raises:
            InvalidStateError: it is published already.
        """
        self._version.publish_version()
        return True

    def set_metadata(self, metadata: Mapping[str, Any]) -> bool:
        """Replace the version's metadata; False when it is published (locked), as the reference.

        Raises:
            ValidationError: not a dict, or keys with ``$`` or ``.``.
        """
        if not isinstance(metadata, Mapping):
            raise ValidationError(f"set_metadata takes a dict, got {preview(metadata)}")
        if not self._version.reload().is_draft:
            return False
        return self._version.set_metadata(metadata)

    def get_metadata(self) -> dict[str, Any]:
        """The version's metadata, freshly read (``{}`` when none)."""
        return self._version.get_metadata()

    def get_tags(self, reload: bool = False) -> builtins.list[str]:
        """The dataset's tags (read again with ``reload``)."""
        if reload:
            self._dataset.reload()
        return [t for t in self._dataset.tags if t != "archived"]

    def add_tags(self, tags: Iterable[str] | str) -> None:
        """Add dataset tags.

        Raises:
            ValidationError: a bad tag.
        """
        self._dataset.add_tags(tags)

    def remove_tags(self, tags: Iterable[str] | str) -> None:
        """Remove dataset tags.

        Raises:
            ValidationError: a bad tag.
        """
        self._dataset.remove_tags(tags)

    def set_tags(self, tags: Iterable[str] | None) -> None:
        """Replace the dataset tags.

        Raises:
            ValidationError: a bad tag.
        """
        self._dataset.set_tags(tags)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dataset={self._dataset.name!r}, version={self._version.name!r})"


class HyperDataset(HyperDatasetManagement):
    """A dataset version to register data entries into (got, or created, by ``__init__``)."""

    def __init__(
        self,
        project_name: str | None,
        dataset_name: str,
        version_name: str,
        description: str | None = None,
        parent_ids: Sequence[str] | str | None = None,
        field_mappings: Mapping[str, Mapping[str, Any]] | None = None,
        raise_if_exists: bool = False,
        *,
        parent_id: str | None = None,
        client: Client | None = None,
    ) -> None:
        """Get or create the dataset ``dataset_name`` and its version ``version_name``.

        A new dataset starts with its version ``version_name`` (not with an extra empty
        ``Current``). ``parent_id`` (or one id in ``parent_ids``) makes a new version a child of a
        published version. ``description`` is the dataset's. ``field_mappings``
        (``{"meta.emb": {"type": "dense_vector", "dims": 512}}``) is kept with the dataset, and
        ``add_data_entries`` checks the length of every vector of such a field.

        Raises:
            AlreadyExistsError: the version exists and ``raise_if_exists`` is set (the reference
                ignores the flag).
            ValidationError: bad names, several parents, malformed field mappings.
            InvalidStateError: the parent is a draft.
        """
        c = resolve(client)
        parents = _parent(parent_ids, parent_id)
        mappings = _field_mappings(field_mappings)
        created = not Dataset.exists(dataset_name, client=c)
        ds = Dataset.create(dataset_name, dataset_project=project_name, description=description, client=c)
        if mappings:
            meta = ds.get_metadata()
            known = {m["field"]: m for m in meta.get(FIELD_MAPPINGS_KEY, [])}
            known.update((m["field"], m) for m in mappings)
            ds.set_metadata({**meta, FIELD_MAPPINGS_KEY: list(known.values())})
        existing = ds.reload()._doc.version_named(version_name)
        if existing is not None:
            if raise_if_exists:
                raise AlreadyExistsError(
                    f"dataset {dataset_name!r} already has a version named {version_name!r}"
                )
            version = ds.get_version(version_name)
        elif created and parents is None and version_name != "Current":
            version = ds.get_current()  # the new dataset's empty draft takes the name
            version.set_version_name(version_name)
        else:
            version = DatasetVersion.create_version(
                dataset_id=ds.id, version_name=version_name, parent_version_ids=parents, client=c
            )
        self._dataset = ds.reload()
        self._version = version

    @classmethod
    def _bound(cls, ds: Dataset, version: DatasetVersion) -> HyperDataset:
        out = cls.__new__(cls)
        out._dataset, out._version = ds, version
        return out

    def field_mappings(self) -> dict[str, dict[str, Any]]:
        """The dataset's field mappings (``{"meta.emb": {"type": "dense_vector", "dims": 512}}``)."""
        stored = self._dataset.get_metadata().get(FIELD_MAPPINGS_KEY, [])
        return {
            m["field"]: {k: v for k, v in m.items() if k != "field"} for m in stored if isinstance(m, dict)
        }

    def add_data_entries(
        self,
        data_entries: Iterable[DataEntry],
        upload_local_files_destination: str | None = None,
        batch_size: int = 1000,
        max_workers: int | None = None,
        show_progress: bool = True,
        upload_retries: int = 5,
        force_upload: bool = False,
        max_request_size_mb: float | None = None,
        hash_sources: bool = False,
        *,
        local_dataset_root_path: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Upload the entries' local files and register the entries in this version.

        Returns ``{"upload": {entry id: error}, "register": {entry id: error}}`` (empty when all
        went well). Local files (sources, previews and masks) go to ``upload_local_files_destination``
        (any fsspec URL or a folder), else to the destination a sub-entry names
        (``set_local_sources_upload_destination``); see :mod:`hds_s3.io.uploads` for the layout
        (``local_dataset_root_path`` keeps it), retries, resuming and ``hash_sources``
        de-duplication over every version of the dataset. An entry larger than
        ``max_request_size_mb`` as JSON is not registered; a vector of a ``dense_vector`` field of
        another length than its mapping says is not either. ``data_entries`` may be any iterable;
        they are registered ``batch_size`` at a time. Every write commits, so there is no separate
        commit to fail; the entries' URIs and hashes are updated in place.

        Raises:
            ValidationError: an item is not a DataEntry, or bad options.
            InvalidStateError: the version is published.
        """
        errors: dict[str, dict[str, Any]] = {"upload": {}, "register": {}}
        dims = {
            f[len("meta.") :] if f.startswith("meta.") else f: int(m["dims"])
            for f, m in self.field_mappings().items()
            if m.get("type") == "dense_vector" and isinstance(m.get("dims"), int)
        }
        limit = None if max_request_size_mb is None else float(max_request_size_mb) * 1024 * 1024
        batch: list[tuple[DataEntry, dict[str, Any]]] = []
        for entry in data_entries:
            if not isinstance(entry, DataEntry):
                raise ValidationError(f"add_data_entries takes DataEntry objects, got {preview(entry)}")
            frame = entry.to_api_object()
            problem = _vector_problem(entry, dims)
            if problem is None and limit is not None and len(json.dumps(frame).encode("utf-8")) > limit:
                problem = "Data entry payload exceeds 'max_request_size_mb'"
            if problem is not None:
                errors["register"][entry.id] = problem
                continue
            batch.append((entry, frame))
            if len(batch) >= max(1, batch_size):
                self._register(
                    batch,
                    errors,
                    upload_local_files_destination,
                    local_dataset_root_path,
                    max_workers,
                    show_progress,
                    upload_retries,
                    force_upload,
                    hash_sources,
                )
                batch = []
        if batch:
            self._register(
                batch,
                errors,
                upload_local_files_destination,
                local_dataset_root_path,
                max_workers,
                show_progress,
                upload_retries,
                force_upload,
                hash_sources,
            )
        return errors

    def _register(
        self,
        batch: list[tuple[DataEntry, dict[str, Any]]],
        errors: dict[str, dict[str, Any]],
        destination: str | None,
        root: str | None,
        workers: int | None,
        progress: bool,
        retries: int,
        force: bool,
        hash_sources: bool,
    ) -> None:
        groups: dict[str | None, list[tuple[DataEntry, dict[str, Any]]]] = {}
        for entry, frame in batch:
            dest = destination or next(
                (s._local_sources_upload_destination for s in entry if s._local_sources_upload_destination),
                None,
            )
            groups.setdefault(dest, []).append((entry, frame))
        for dest, items in groups.items():
            frames = [frame for _, frame in items]
            try:
                if dest is None:
                    failed = self._version.add_frames(frames, show_progress=progress)
                else:
                    failed = self._version.add_frames(
                        frames,
                        show_progress=progress,
                        auto_upload_destination=dest,
                        local_dataset_root_path=root,
                        upload_retries=retries,
                        upload_workers=workers,
                        hash_sources=hash_sources,
                        force_upload=force,
                    )
            except HdsError as exc:
                for entry, _ in items:
                    errors["register"][entry.id] = str(exc)
                continue
            refused = {id(f.frame): f.reason for f in failed}
            for entry, frame in items:
                reason = refused.get(id(frame))
                if reason is not None:
                    kind = "upload" if "upload" in reason else "register"
                    errors[kind][entry.id] = reason
        if any(dest is not None for dest in groups):
            self._sync_uris(batch)

    def _sync_uris(self, batch: list[tuple[DataEntry, dict[str, Any]]]) -> None:
        """Put the URIs (and hashes) the uploads gave into the entries, as the reference's set_source."""
        from hds_s3.hyperdatasets.images import DataSubEntryImage

        stored = {e.id: e for e, _ in batch}
        for frame in (
            self._version.reload()
            .get_frames_table()
            .filter(_ids_mask(self._version, list(stored)))
            .to_pylist()
        ):
            from hds_s3.index import segments

            data = segments.row_to_frame(frame)
            entry = stored.get(data["id"])
            if entry is None:
                continue
            for src in data["sources"]:
                sub: DataSubEntry | None = entry._sub_entries.get(src["id"])
                if sub is None:
                    continue
                sub._source = src["uri"]
                if src.get("preview"):
                    sub._preview_source = src["preview"]["uri"]
                if isinstance(src.get("meta"), dict) and "hash" in src["meta"]:
                    sub._metadata["hash"] = src["meta"]["hash"]
                if isinstance(sub, DataSubEntryImage) and src.get("masks"):
                    sub._masks_source = {m["id"]: m["uri"] for m in src["masks"]}

    def vector_search(
        self,
        reference_vector: Sequence[float],
        vector_field: str,
        number_of_neighbors: int = 50,
        fast: bool = False,
        similarity_function: str = "cosine",
    ) -> list[DataEntry]:
        """The entries of this version nearest ``reference_vector`` at ``vector_field``, nearest first.

        Exact and vectorised; ``fast=True`` searches an approximate index (any similarity, where
        the reference's takes cosine only). See :mod:`hds_s3.index.vectors`.

        Raises:
            ValidationError: a bad argument (the reference raises ``ValueError``/``TypeError``).
        """
        found = self._version.vector_search(
            reference_vector, vector_field, number_of_neighbors, fast, similarity_function
        )
        return [DataEntry.from_api_object(f.to_dict()) for f in found]

    def get_dataview(self, **iteration: Any) -> Any:
        """A new :class:`~hds_s3.hyperdatasets.dataview.DataView` of this version's frames.

        ``iteration`` goes to its constructor (``iteration_order``, ``iteration_random_seed``, ...).
        """
        from hds_s3.hyperdatasets.dataview import DataView

        view = DataView(client=self._version.client, **iteration)
        view.add_query(dataset_id=self.dataset_id, version_id=self.version_id)
        return view


def _ids_mask(version: DatasetVersion, ids: list[str]) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    column = version.get_frames_table(columns=["id"]).column("id")
    return pc.is_in(column, value_set=pa.array(ids, pa.string()))


def _vector_problem(entry: DataEntry, dims: Mapping[str, int]) -> str | None:
    for path, want in dims.items():
        node: Any = entry.metadata
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None and (not isinstance(node, list) or len(node) != want):
            got = len(node) if isinstance(node, list) else preview(node)
            return f"meta.{path}: a dense_vector of {want} numbers, got {got}"
    return None


def _parent(parent_ids: Sequence[str] | str | None, parent_id: str | None) -> str | None:
    if parent_ids is not None and parent_id is not None:
        raise ValidationError("give parent_id or parent_ids, not both")
    if parent_id is not None:
        return parent_id
    if parent_ids is None:
        return None
    ids = [parent_ids] if isinstance(parent_ids, str) else list(parent_ids)
    if len(ids) > 1:
        raise ValidationError(
            f"a version has one parent; got {len(ids)} parent ids (the reference supports one too)"
        )
    return ids[0] if ids else None


def _field_mappings(mappings: Mapping[str, Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    if mappings is None:
        return []
    if not isinstance(mappings, Mapping):
        raise ValidationError(
            f"field_mappings is a dict {{'meta.<field>': {{...}}}}, got {preview(mappings)}"
        )
    out = []
    for field, spec in mappings.items():
        if not isinstance(field, str) or not field.startswith("meta.") or not isinstance(spec, Mapping):
            raise ValidationError(
                f"field_mappings: {preview(field)} must be 'meta.<field>' with a dict of settings"
            )
        dims = spec.get("dims")
        if spec.get("type") == "dense_vector" and (
            isinstance(dims, bool) or not isinstance(dims, int) or dims < 1
        ):
            raise ValidationError(
                f"field_mappings[{field!r}]: a dense_vector needs dims, a whole number >= 1"
            )
        out.append({"field": field, **dict(spec)})
    return out


__all__ = ["COMMIT_ERROR_KEY", "HyperDataset", "HyperDatasetManagement", "HyperDatasetNotFoundError"]
