"""The new API (``clearml.hyperdatasets`` becomes ``hds_s3.hyperdatasets``) on the embedded default.

The flow of the reference's ``create_image_entries.py``, ``vector_search.py``, ``dataview.py`` and
``create_qa_entries.py``: image entries with an embedding each (a histogram of the file's bytes, so
the example needs nothing but numpy) are registered with their files uploaded; a vector search finds
the entry nearest an image; a DataView streams the entries; Q&A entries of a custom class come
back as that class; and the legacy API reads the very same frames.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import numpy as np

from hds_s3 import DataView as LegacyDataView
from hds_s3 import default_client
from hds_s3.hyperdatasets import (
    DataEntry,
    DataEntryImage,
    DataSubEntry,
    DataSubEntryImage,
    DataView,
    HyperDataset,
    HyperDatasetManagement,
)

PROJECT = "HyperDatasets Examples"


def embed(path: Path, bins: int = 16) -> list[float]:
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    hist, _ = np.histogram(data, bins=bins, range=(0, 256), density=True)
    return [float(v) for v in hist]


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


def main() -> None:
    print(f"store: {default_client().url}")
    for name in ("image-demo", "qa-demo"):
        HyperDatasetManagement.delete(name, force=True)  # left over from an earlier run
    with tempfile.TemporaryDirectory() as work:
        image_dir = Path(work) / "sample_images"
        image_dir.mkdir()
        rng = np.random.default_rng(0)
        for i in range(6):  # stand-ins for images: bytes of different brightness
            (image_dir / f"image_{i:02d}.jpg").write_bytes(
                rng.integers(40 * i, 40 * i + 40, 512, np.uint8).tobytes()
            )

        # create_image_entries.py
        entries = []
        for idx, image_path in enumerate(sorted(image_dir.iterdir()), 1):
            entry = DataEntryImage(metadata={"index": idx, "filename": image_path.name})
            entry.add_sub_entries(
                [DataSubEntryImage(name="image", source=str(image_path), width=32, height=16)]
            )
            entry.set_vector(embed(image_path), metadata_field="_vector")
            entries.append(entry)
        field_mappings = {"meta._vector": {"type": "dense_vector", "element_type": "float", "dims": 16}}
        dataset = HyperDataset(
            project_name=PROJECT,
            dataset_name="image-demo",
            version_name="version",
            description="Image demo HyperDataset",
            field_mappings=field_mappings,
        )
        errors = dataset.add_data_entries(
            entries,
            upload_local_files_destination=str(Path(work) / "bucket"),
            hash_sources=True,
            show_progress=False,
        )
        assert errors == {"upload": {}, "register": {}}, errors
        print(f"Created HyperDataset version: dataset={dataset.dataset_id} version={dataset.version_id}")

        # vector_search.py
        found = HyperDatasetManagement.get(
            dataset_name="image-demo", version_name="version", project_name=PROJECT
        ).vector_search(
            reference_vector=embed(image_dir / "image_03.jpg"), vector_field="_vector", number_of_neighbors=3
        )
        print("nearest:", [e.metadata["filename"] for e in found])
        assert found[0].metadata["filename"] == "image_03.jpg"

        # dataview.py
        hd = HyperDatasetManagement.get(dataset_name="image-demo", version_name="version")
        dv = DataView(iteration_order="sequential", iteration_infinite=False)
        dv.add_query(project_id=hd.project_id or "*", dataset_id=hd.dataset_id, version_id=hd.version_id)
        count = sum(1 for _ in dv.get_iterator())
        print(f"Iterated {count} frame(s)")
        assert count == len(dv) == 6

        # create_qa_entries.py: custom classes are kept and come back
        qa = HyperDataset(project_name=PROJECT, dataset_name="qa-demo", version_name="version")
        pair = QADataEntry("What is a HyperDataset?", "Frames, versions and views in a bucket.")
        pair.add_sub_entries([QADataSubEntry("question", pair.question, "question")])
        assert qa.add_data_entries([pair], show_progress=False) == {"upload": {}, "register": {}}
        (back,) = list(qa.get_dataview().get_iterator())
        assert type(back) is QADataEntry and back.question == pair.question

        # one format: the legacy DataView reads the image entries as frames
        legacy = LegacyDataView()
        legacy.add_query(dataset_name="image-demo", version_name="version")
        frames = legacy.to_list()
        assert len(frames) == 6 and all(f["image"].width == 32 for f in frames)
    print("done")


if __name__ == "__main__":
    main()
