"""``hds yolo|voc import|export`` and ``hds hf import|export``: the label formats beside COCO.

As with ``hds coco``: an import goes into a draft (``--dataset`` [``--version``], ``--create`` makes
the dataset) and checks everything first; an export takes a version (one ``--dataset`` and no query)
or a DataView (the ``hds query`` flags).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from hds_s3.cli.app import (
    CONTEXT_SETTINGS,
    Env,
    _require_draft,
    build_dataview,
    dataset_options,
    emit,
    get_version,
    pass_env,
    version_options,
    view_options,
    view_spec,
)

if TYPE_CHECKING:
    from hds_s3.api import DatasetVersion
    from hds_s3.tools.coco import FrameSource

_image_root_export = click.option(
    "--image-root", default=None, metavar="URI", help="Removed from source URIs to make file names."
)
_create = click.option(
    "--create", is_flag=True, help="Create the dataset (by --dataset NAME) if it does not exist."
)


def export_source(env: Env, params: Mapping[str, Any]) -> tuple[DatasetVersion | FrameSource, str]:
    """The version (one ``--dataset``, no query) or the DataView an export command's flags name.

    Raises:
        click.UsageError: no rule, or flags that do not line up.
        NotFoundError: no such dataset or version.
    """
    spec = view_spec(params)
    plain = (
        len(spec.rules) == 1
        and params["view_file"] is None
        and not set(spec.rules[0]) - {"dataset_name", "dataset_id", "version_name", "version_id"}
    )
    if plain:
        rule = spec.rules[0]
        v = get_version(
            env,
            rule.get("dataset_name"),
            rule.get("dataset_id"),
            rule.get("version_name"),
            rule.get("version_id"),
        )
        return v, f"{v.dataset_name!r} / {v.name!r}"
    return build_dataview(env, spec), "the DataView"


def import_target(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    create: bool,
) -> DatasetVersion:
    """The draft an import command writes to (the dataset made first with ``--create``).

    Raises:
        click.UsageError: ``--create`` without ``--dataset NAME``.
        NotFoundError: no such dataset or version.
        InvalidStateError: the version is published.
    """
    from hds_s3.api import Dataset

    if create:
        if dataset_name is None:
            raise click.UsageError("--create needs --dataset NAME")
        Dataset.create(dataset_name, client=env.client)
    v = get_version(env, dataset_name, dataset_id, version_name, version_id)
    _require_draft(v, "import into")
    return v


# ---------------------------------------------------------------------------- YOLO


@click.group("yolo", context_settings=CONTEXT_SETTINGS)
def yolo() -> None:
    """Import YOLO label folders into a draft; export a version or a DataView as one."""


@yolo.command("import")
@dataset_options
@version_options
@click.argument("path", metavar="FOLDER")
@click.option(
    "--image-root", default=None, metavar="URI", help="Where the images are [default: FOLDER/images]."
)
@_create
@pass_env
def yolo_import(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    path: str,
    image_root: str | None,
    create: bool,
) -> None:
    """Import FOLDER (data.yaml, labels/*.txt; a path or URL): images become frames, lines box ROIs."""
    from hds_s3.tools.yolo import import_yolo

    v = import_target(env, dataset_name, dataset_id, version_name, version_id, create)
    result = import_yolo(v, path, image_root=image_root, show_progress=env.show_progress)
    emit(
        env,
        {"dataset": v.dataset_name, "version": v.name, "version_id": v.id, **vars(result)},
        f"imported {result.images} images, {result.boxes} boxes, {result.classes} classes "
        f"into {v.dataset_name!r} / {v.name!r}",
    )


@yolo.command("export")
@view_options
@click.argument("output", metavar="FOLDER")
@_image_root_export
@click.option("--copy-images", is_flag=True, help="Also copy the images into FOLDER/images.")
@pass_env
def yolo_export(env: Env, /, output: str, image_root: str | None, copy_images: bool, **params: Any) -> None:
    """Write a version (--dataset [--version]) or a DataView's frames (query flags) as a YOLO folder."""
    from hds_s3.tools.yolo import export_yolo

    source, what = export_source(env, params)
    result = export_yolo(source, output, image_root=image_root, copy_images=copy_images)
    skipped = f" ({result.skipped_rois} ROIs without a box skipped)" if result.skipped_rois else ""
    emit(
        env,
        {
            "output": output,
            "images": result.images,
            "boxes": result.boxes,
            "names": result.names,
            "skipped_rois": result.skipped_rois,
        },
        f"wrote {result.images} images, {result.boxes} boxes, {result.classes} classes of {what} "
        f"to {output}{skipped}",
    )


# ---------------------------------------------------------------------------- Pascal VOC


@click.group("voc", context_settings=CONTEXT_SETTINGS)
def voc() -> None:
    """Import Pascal VOC XML files into a draft; export a version or a DataView as VOC files."""


@voc.command("import")
@dataset_options
@version_options
@click.argument("path", metavar="FOLDER")
@click.option(
    "--image-root", default=None, metavar="URI", help="Where the images are [default: FOLDER/JPEGImages]."
)
@_create
@pass_env
def voc_import(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    path: str,
    image_root: str | None,
    create: bool,
) -> None:
    """Import the XML files of FOLDER/Annotations (or FOLDER): each file a frame, each object a box ROI."""
    from hds_s3.tools.voc import import_voc

    v = import_target(env, dataset_name, dataset_id, version_name, version_id, create)
    result = import_voc(v, path, image_root=image_root, show_progress=env.show_progress)
    emit(
        env,
        {"dataset": v.dataset_name, "version": v.name, "version_id": v.id, **vars(result)},
        f"imported {result.images} images, {result.boxes} boxes, {result.classes} classes "
        f"into {v.dataset_name!r} / {v.name!r}",
    )


@voc.command("export")
@view_options
@click.argument("output", metavar="FOLDER")
@_image_root_export
@pass_env
def voc_export(env: Env, /, output: str, image_root: str | None, **params: Any) -> None:
    """Write a version or a DataView's frames as VOC files in FOLDER/Annotations."""
    from hds_s3.tools.voc import export_voc

    source, what = export_source(env, params)
    result = export_voc(source, output, image_root=image_root)
    skipped = f" ({result.skipped_rois} ROIs without a box skipped)" if result.skipped_rois else ""
    emit(
        env,
        {"output": output, **vars(result)},
        f"wrote {result.images} files, {result.boxes} boxes of {what} to {output}{skipped}",
    )


# ---------------------------------------------------------------------------- Hugging Face


@click.group("hf", context_settings=CONTEXT_SETTINGS)
def hf() -> None:
    """Export a version or a DataView as a Hugging Face dataset (images included); import one back."""


@hf.command("export")
@view_options
@click.argument("output", metavar="FOLDER")
@_image_root_export
@click.option("--no-images", is_flag=True, help="Leave the image column out (fetch nothing).")
@pass_env
def hf_export(env: Env, /, output: str, image_root: str | None, no_images: bool, **params: Any) -> None:
    """Save a version or a DataView's frames as a datasets.Dataset in FOLDER (datasets.load_from_disk)."""
    from hds_s3.tools.hf import export_hf

    source, what = export_source(env, params)
    result = export_hf(source, output, image_root=image_root, images=not no_images)
    emit(
        env,
        {"output": output, **vars(result)},
        f"saved {result.images} images, {result.objects} objects of {what} to {output}",
    )


@hf.command("import")
@dataset_options
@version_options
@click.argument("path", metavar="FOLDER")
@_create
@pass_env
def hf_import(
    env: Env,
    dataset_name: str | None,
    dataset_id: str | None,
    version_name: str | None,
    version_id: str | None,
    path: str,
    create: bool,
) -> None:
    """Add the frames of a dataset saved by 'hds hf export' (FOLDER) to a draft."""
    from hds_s3.tools.hf import from_hf_dataset, load_dataset_folder

    v = import_target(env, dataset_name, dataset_id, version_name, version_id, create)
    dataset = load_dataset_folder(path)
    result = from_hf_dataset(v, dataset, show_progress=env.show_progress)
    emit(
        env,
        {"dataset": v.dataset_name, "version": v.name, "version_id": v.id, **vars(result)},
        f"imported {result.frames} frames, {result.objects} objects into {v.dataset_name!r} / {v.name!r}",
    )
