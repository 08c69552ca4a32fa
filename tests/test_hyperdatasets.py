"""The new API (hds_s3.hyperdatasets): entries, registration with uploads, vectors, the new DataView,
management, and that a dataset written with one API reads with the other."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import hds_s3
from hds_s3 import Client, DatasetVersion, FrameGroup, SingleFrame, ValidationError
from hds_s3.hyperdatasets import (
    DataEntry,
    DataEntryImage,
    DataSubEntry,
    DataSubEntryImage,
    DataView,
    HyperDataset,
    HyperDatasetManagement,
    HyperDatasetNotFoundError,
    HyperDatasetQuery,
)
from hds_s3.query.dataview import DataView as LegacyDataView


@pytest.fixture
def client() -> Client:
    return hds_s3.connect(f"memory://hd-{uuid.uuid4().hex}")


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "images" / "day"
    folder.mkdir(parents=True)
    out = []
    for i in range(4):
        path = folder / f"image_{i:02d}.png"
        Image.fromarray(np.full((6, 8, 3), 40 * i, dtype=np.uint8)).save(path)
        out.append(path)
    return out


def histogram(path: Path) -> list[float]:
    arr = np.asarray(Image.open(path).convert("RGB"))
    return [float(v) for c in range(3) for v in np.histogram(arr[:, :, c], bins=8, range=(0, 256))[0]]


class QADataSubEntry(DataSubEntry):
    def __init__(self, name: str, text: str, role: str) -> None:
        super().__init__(
            name=name, source=f"text://{uuid.uuid4().hex}", metadata={"text": text, "role": role}
        )


class QADataEntry(DataEntry):
    def __init__(self, question: str, answer: str) -> None:
        super().__init__(metadata={"question": question, "answer": answer})

    @property
    def question(self) -> str:
        return str(self._metadata.get("question", ""))


def test_image_entries_register_upload_and_search_as_the_reference_example(
    client: Client, images: list[Path], tmp_path: Path
) -> None:
    # examples/hyperdatasets/create_image_entries.py, then vector_search.py, then dataview.py
    entries = []
    for idx, path in enumerate(images, 1):
        with Image.open(path) as img:
            width, height = img.size
        entry = DataEntryImage(metadata={"index": idx, "filename": path.name})
        entry.add_sub_entries([DataSubEntryImage(name="image", source=str(path), width=width, height=height)])
        entry.set_vector(histogram(path), metadata_field="_vector")
        entries.append(entry)
    field_mappings = {"meta._vector": {"type": "dense_vector", "element_type": "float", "dims": 24}}
    dataset = HyperDataset(
        project_name="HyperDatasets Examples",
        dataset_name="image-demo",
        version_name="version",
        description="Image demo HyperDataset",
        field_mappings=field_mappings,
        client=client,
    )
    dest = tmp_path / "uploaded"
    errors = dataset.add_data_entries(entries, upload_local_files_destination=str(dest), hash_sources=True)
    assert errors == {"upload": {}, "register": {}}
    assert dataset.version.get_frame_count() == 4 and dataset.version.name == "version"
    assert [v.name for v in dataset.dataset.get_versions()] == ["version"]  # no extra empty draft
    # the files went up (one folder per content hash, since no root was given) and the entries say where
    sub = entries[2].sub_data_entries[0]
    assert sub.source is not None and sub.source.startswith(str(dest)) and Path(sub.source).is_file()
    assert sub.get_hash() == sub.metadata["hash"]["source"] and len(sub.get_hash() or "") == 64

    found = HyperDatasetManagement.get(
        dataset_name="image-demo",
        version_name="version",
        project_name="HyperDatasets Examples",
        client=client,
    ).vector_search(reference_vector=histogram(images[2]), vector_field="_vector", number_of_neighbors=2)
    assert [e.metadata["filename"] for e in found][0] == images[2].name
    assert isinstance(found[0], DataEntryImage) and found[0].sub_data_entries[0].width == 8

    hd = HyperDatasetManagement.get(dataset_name="image-demo", version_name="version", client=client)
    dv = DataView(iteration_order="sequential", iteration_infinite=False, client=client)
    dv.add_query(project_id=hd.project_id or "*", dataset_id=hd.dataset_id, version_id=hd.version_id)
    seen = list(dv.get_iterator())
    assert len(dv) == 4 == len(seen) and all(isinstance(e, DataEntryImage) for e in seen)
    assert sorted(e.metadata["index"] for e in seen) == [1, 2, 3, 4]

    # a vector of the wrong length is refused by its mapping, the others land
    odd = DataEntryImage()
    odd.add_sub_entries([DataSubEntryImage(source="s3://b/odd.png")])
    odd.set_vector([1.0, 2.0], "_vector")
    again = dataset.add_data_entries([odd])
    assert "dense_vector of 24 numbers, got 2" in again["register"][odd.id]


def test_entries_and_frames_are_one_format(client: Client) -> None:
    hd = HyperDataset(project_name=None, dataset_name="mixed", version_name="v1", client=client)
    entry = DataEntryImage(data_entry_id="e1", metadata={"city": "bremen"})
    front = DataSubEntryImage(
        name="front", source="s3://b/f.jpg", width=4, height=3, timestamp=40, context_id="car1"
    )
    rear = DataSubEntryImage(name="rear", source="s3://b/r.jpg", masks_source={"seg": "s3://b/r_seg.png"})
    front.add_annotation(box2d_xywh=(0, 0, 2, 2), labels=["car"], frame_class=["day"])
    entry.add_sub_entries([front, rear])
    entry.add_global_annotation(labels=["crossing"])
    assert hd.add_data_entries([entry]) == {"upload": {}, "register": {}}
    # the legacy API reads it as a FrameGroup: members, ROIs where they belong, one global ROI
    group = DatasetVersion.get_single_frame("e1", dataset_name="mixed", version_name="v1", client=client)
    assert isinstance(group, FrameGroup) and sorted(group) == ["front", "rear"]
    assert group.context_id == "car1" and group["rear"].masks_source == {"seg": "s3://b/r_seg.png"}
    assert [a.labels for a in group["front"].annotations] == [["car"], ["day"]]  # frame_class kept
    assert [(a.labels, a.sources) for a in group.annotations] == [(["crossing"], ["front", "rear"])]
    # the legacy API writes, the new one reads
    group["rear"].metadata["lens"] = "wide"
    legacy = SingleFrame(source="s3://b/single.jpg", width=10, height=10, id="s1", metadata={"n": 1})
    legacy.add_annotation(labels=["tree"])
    hd.version.update_frames([group])
    hd.version.add_frames([legacy])
    view = DataView(client=client)
    view.add_query(dataset_id=hd.dataset_id, version_id=hd.version_id)
    got = {e.id: e for e in view}
    again = got["e1"]
    assert isinstance(again, DataEntryImage)
    rear_again = next(s for s in again.sub_data_entries if s.name == "rear")
    assert rear_again.metadata == {"lens": "wide"}
    assert len(again.get_all_global_annotations()) == 3  # read once: the global ROI is not duplicated
    single = got["s1"]
    assert isinstance(single, DataEntryImage) and single.sub_data_entries[0].name == "default"
    assert single.sub_data_entries[0].get_all_annotations()[0]["labels"] == ["tree"]
    # and back again unchanged
    assert hd.add_data_entries([again]) == {"upload": {}, "register": {}}
    back = DatasetVersion.get_single_frame("e1", dataset_name="mixed", version_name="v1", client=client)
    provenance = ("saved", "saved_in_version", "updated_in_version")
    assert {k: v for k, v in back.to_dict().items() if k not in provenance} == {
        k: v for k, v in group.to_dict().items() if k not in provenance
    }


def test_custom_entry_classes_come_back(client: Client) -> None:
    hd = HyperDataset(project_name="qa", dataset_name="qa-demo", version_name="version", client=client)
    entry = QADataEntry("What is it?", "A dataset.")
    entry.add_sub_entries([QADataSubEntry("question", "What is it?", "question")])
    entry.add_annotation(labels=["docs"])  # the reference makes every argument required
    assert hd.add_data_entries([entry]) == {"upload": {}, "register": {}}
    view = hd.get_dataview()
    (back,) = list(view.get_iterator())
    assert type(back) is QADataEntry and back.question == "What is it?"
    assert type(back.sub_data_entries[0]) is QADataSubEntry
    assert back.sub_data_entries[0].metadata == {"text": "What is it?", "role": "question"}
    assert "hyperdataset" not in back.metadata  # the class is kept outside the searchable metadata


def test_management_and_its_errors(client: Client) -> None:
    HyperDataset(project_name="proj/a", dataset_name="one", version_name="v1", description="d", client=client)
    HyperDataset(project_name="other", dataset_name="two", version_name="v1", client=client)
    assert HyperDatasetManagement.exists("one", client=client)
    assert HyperDatasetManagement.exists("one", "v1", client=client)
    assert not HyperDatasetManagement.exists("one", "v9", client=client)
    assert not HyperDatasetManagement.exists("zzz", client=client)
    with pytest.raises(ValidationError, match="not both"):
        HyperDatasetManagement.exists(dataset_name="one", dataset_id="x" * 32, client=client)
    with pytest.raises(HyperDatasetNotFoundError, match="Version not found"):
        HyperDatasetManagement.get("one", "v9", client=client)
    with pytest.raises(ValueError, match="Dataset not found"):  # a ValueError, as the reference's
        HyperDatasetManagement.get("zzz", client=client)
    listed = HyperDatasetManagement.list(project_name="proj", client=client)
    assert [d["name"] for d in listed] == ["one"] and listed[0]["comment"] == "d"
    assert (
        HyperDatasetManagement.list(project_name="proj", recursive_project_search=False, client=client) == []
    )
    one = HyperDatasetManagement.get("one", client=client)
    one.dataset.archive()
    assert [d["name"] for d in HyperDatasetManagement.list(include_archived=False, client=client)] == ["two"]
    assert [d["name"] for d in HyperDatasetManagement.list(ids=[one.dataset_id], client=client)] == ["one"]
    with pytest.raises(hds_s3.AlreadyExistsError):
        HyperDataset(
            project_name=None, dataset_name="one", version_name="v1", raise_if_exists=True, client=client
        )
    with pytest.raises(ValidationError, match="one parent"):
        HyperDataset(
            project_name=None, dataset_name="one", version_name="v2", parent_ids=["a", "b"], client=client
        )
    assert one.set_metadata({"k": 1}) and one.get_metadata() == {"k": 1}
    assert one.publish_version() and one.set_metadata({"k": 2}) is False
    child = HyperDataset(
        project_name=None, dataset_name="one", version_name="v2", parent_id=one.version_id, client=client
    )
    assert child.version.parent_id == one.version_id
    assert HyperDatasetManagement.delete("one", "v2", client=client)
    assert not HyperDatasetManagement.delete("zzz", client=client)
    assert HyperDatasetManagement.delete("one", force=True, client=client)
    assert not HyperDatasetManagement.exists("one", client=client)


def test_queries_are_checked_when_added(client: Client) -> None:
    hd = HyperDataset(project_name=None, dataset_name="q", version_name="v1", client=client)
    frames: list[Any] = []
    for i, labels in enumerate([["car"], ["car", "occluded"], ["person"], []]):
        f = SingleFrame(source=f"s3://b/{i}.jpg", id=f"f{i}", metadata={"n": i})
        if labels:
            f.add_annotation(box2d_xywh=(0, 0, 1, 1), labels=labels, confidence=0.9)
        frames.append(f)
    hd.version.add_frames(frames)
    with pytest.raises(ValidationError, match=r"\^"):
        HyperDatasetQuery(
            dataset_id=hd.dataset_id, version_id=hd.version_id, frame_query="meta.n:(1", client=client
        )
    with pytest.raises(HyperDatasetNotFoundError, match="non-existent"):
        HyperDatasetQuery(dataset_id=hd.dataset_id, version_id="f" * 32, client=client)
    dv = DataView(client=client)
    dv.add_query(
        dataset_id=hd.dataset_id,
        version_id=hd.version_id,
        label_rules=[{"label": "car"}, {"label": "occluded", "must_not": True}],
    )
    assert [e.id for e in dv.get_iterator()] == ["f0"]
    dv.set_queries(
        [
            HyperDatasetQuery(
                dataset_id=hd.dataset_id,
                version_id=hd.version_id,
                frame_query="meta.n:[1 TO 2]",
                client=client,
            )
        ]
    )
    assert sorted(e.id for e in dv.get_iterator()) == ["f1", "f2"]
    assert [d["id"] for d in dv.get_iterator(projection=["id"])] == ["f1", "f2"]
    # weighted rules with repetition: the synthetic epoch gives each rule its share
    dv.set_queries(None)
    dv.add_query(dataset_id=hd.dataset_id, version_id=hd.version_id, frame_query="meta.n:0", weight=1)
    dv.add_query(dataset_id=hd.dataset_id, version_id=hd.version_id, weight=1)
    dv.set_iteration_parameters(order="random", random_seed=3)
    got = [e.id for e in dv.get_iterator(allow_repetition=True)]
    assert len(got) == len(dv) == 8 and got.count("f0") >= 3
    dv.view.name = "stored"
    dv.store()
    loaded = DataView.get(dataview_name="stored", client=client)
    assert len(loaded.get_queries()) == 2 and loaded.id == dv.id
    assert isinstance(loaded.view, LegacyDataView)
