"""Hugging Face datasets: a version and a DataView exported with their images, and imported back."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from hds_s3 import Client, DatasetVersion, InvalidStateError, ValidationError
from hds_s3.query.dataview import DataView
from hds_s3.store import MemoryStore
from hds_s3.tools.hf import category_names, export_hf, from_hf_dataset, to_hf_dataset
from hds_s3.tools.yolo import import_yolo

datasets = pytest.importorskip("datasets")
PIL = pytest.importorskip("PIL.Image")

DATA = Path(__file__).parent / "data" / "exchange"
IMAGES = str(DATA / "images")
PROVENANCE = {"saved", "saved_in_version", "updated_in_version"}


@pytest.fixture
def version() -> DatasetVersion:
    v = DatasetVersion.create_new_dataset(dataset_name="x", client=Client(MemoryStore()))
    import_yolo(v, DATA / "yolo", image_root=IMAGES)
    return v


def content(v: DatasetVersion) -> dict[str, dict[str, Any]]:
    return {
        r["id"]: {k: x for k, x in r.items() if k not in PROVENANCE} for r in v.get_frames_table().to_pylist()
    }


def test_a_version_round_trips_through_a_dataset_with_its_images(version: DatasetVersion) -> None:
    ds = to_hf_dataset(version, image_root=IMAGES)
    assert isinstance(ds, datasets.Dataset) and len(ds) == 3
    assert isinstance(ds.features["image"], datasets.Image)
    assert category_names(ds) == ["car", "person"]
    raw = ds.cast_column("image", datasets.Image(decode=False))
    for row in raw:
        assert row["image"]["bytes"] == (DATA / "images" / row["image"]["path"]).read_bytes()
    street = next(r for r in ds if r["uri"].endswith("street.png"))
    assert street["image"].size == (32, 24)  # decoded by datasets as a PIL image
    assert [o["bbox"] for o in street["objects"]][0] == [4.0, 6.0, 8.0, 12.0]
    assert [o["confidence"] for o in street["objects"]] == [None, None, 0.875]

    back = DatasetVersion.create_new_dataset(dataset_name="back", client=version.client)
    result = from_hf_dataset(back, ds)
    assert (result.frames, result.images, result.objects) == (3, 3, 4)
    assert content(back) == content(version)


def test_a_dataview_exports_to_disk(version: DatasetVersion, tmp_path: Path) -> None:
    view = DataView(client=version.client)
    view.add_query(dataset_name="x", version_name=version.name, roi_query="car")
    result = export_hf(view, tmp_path / "ds", image_root=IMAGES, names=["person", "car"])
    assert (result.images, result.objects, result.names) == (1, 3, ["person", "car"])
    loaded = datasets.load_from_disk(str(tmp_path / "ds"))
    assert loaded[0]["uri"].endswith("street.png")
    assert [o["category"] for o in loaded[0]["objects"]] == [1, 0, 1]  # the given order of names
    image = PIL.open(io.BytesIO((DATA / "images" / "street.png").read_bytes()))
    assert loaded[0]["image"].size == image.size


def test_without_images_nothing_is_fetched(version: DatasetVersion) -> None:
    ds = to_hf_dataset(version, images=False)
    assert "image" not in ds.column_names and len(ds) == 3


def test_import_refuses_other_layouts_and_published_versions(version: DatasetVersion) -> None:
    other = datasets.Dataset.from_list([{"text": "hello"}])
    target = DatasetVersion.create_new_dataset(dataset_name="t", client=version.client)
    with pytest.raises(ValidationError, match="lacks the columns"):
        from_hf_dataset(target, other)
    target.publish_version()
    with pytest.raises(InvalidStateError, match="published"):
        from_hf_dataset(target, to_hf_dataset(version, images=False))


def test_import_refuses_what_is_not_a_dataset_and_malformed_objects(version: DatasetVersion) -> None:
    target = DatasetVersion.create_new_dataset(dataset_name="m", client=version.client)
    with pytest.raises(ValidationError, match="datasets.Dataset"):
        from_hf_dataset(target, {"frame_id": ["a"]})
    source = to_hf_dataset(version, images=False)
    rows = source.to_list()
    rows[0]["objects"] = [{"id": "1", "bbox": [1.0, 2.0, 3.0], "category": 0, "confidence": None}]
    bad = datasets.Dataset.from_list(rows, features=None)
    with pytest.raises(ValidationError, match="row 0") as info:
        from_hf_dataset(target, bad)
    assert "nothing was imported" in str(info.value) and target.get_frame_count() == 0
