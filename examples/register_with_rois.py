"""Registering local images with ROIs and metadata, uploaded as they are registered.

The flow of the reference's legacy example ``register_dataset_with_roi.py`` (and of
``dataview_example_singleframe.py`` after it), on the embedded default (a local folder): a folder of
images, each with a JSON file of its ROIs beside it (made here, so the example stands alone), is
parsed into SingleFrames, ``create_new_dataset`` gives the dataset, ``ds.create_version(...)`` the
version, and ``add_frames(auto_upload_destination=..., local_dataset_root_path=...)`` uploads the
files (keeping their folder layout) and registers them. Then a DataView reads them back as
SingleFrames and downloads their sources.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from pathlib import Path

from hds_s3 import Dataset, DatasetVersion, DataView, SingleFrame, default_client

DATASET = "sample-dataset"


def make_folder(root: Path) -> None:
    """A small dataset in the reference example's layout: ``<name>.jpg`` with ``<name>.json`` beside it."""
    labels = [["aeroplane"], ["person"], ["aeroplane", "cloud"]]
    for i, roi_labels in enumerate(labels):
        (root / f"{i:06d}.jpg").write_bytes(bytes([i]) * 64)  # the bytes stand in for an image
        rois = [
            {
                "poly": [10, 10, 50, 10, 50, 40, 10, 40],
                "labels": roi_labels,
                "meta": {"alive": "no"},
                "confidence": 0.9,
            }
        ]
        data = {"rois": rois, "size": {"x": 64, "y": 48}, "meta": {"dangerous": "no" if i else "yes"}}
        (root / f"{i:06d}.json").write_text(json.dumps(data))


def get_frames_with_roi_meta(data_path: str, ext: str) -> list[SingleFrame]:
    frames_to_reg = []
    for file in sorted(glob.glob(os.path.join(data_path, f"*.{ext}"))):
        full_path = os.path.abspath(file)
        with open(full_path.replace(".jpg", ".json")) as fp:
            data = json.load(fp)
        a_frame = SingleFrame(source=full_path)
        for roi in data["rois"]:
            a_frame.add_annotation(
                poly2d_xy=roi["poly"],
                labels=roi["labels"],
                metadata={"alive": roi["meta"]["alive"]},
                confidence=roi["confidence"],
            )
        a_frame.width = data["size"]["x"]
        a_frame.height = data["size"]["y"]
        a_frame.metadata["dangerous"] = data["meta"]["dangerous"]
        frames_to_reg.append(a_frame)
    return frames_to_reg


def main() -> None:
    print(f"store: {default_client().url}")
    if Dataset.exists(DATASET):  # left over from an earlier run
        Dataset.delete(dataset_name=DATASET, delete_all_versions=True, force=True)
    with tempfile.TemporaryDirectory() as work:
        base_path = Path(work) / "datasets" / "ds_with_rois"
        base_path.mkdir(parents=True)
        make_folder(base_path)
        upload_to = Path(work) / "bucket"  # any fsspec URL: s3://bucket/prefix, gs://..., a folder

        frames = get_frames_with_roi_meta(str(base_path), "jpg")
        ds = DatasetVersion.create_new_dataset(dataset_name=DATASET)
        dv = ds.create_version(version_name="initial")  # on the object create_new_dataset returns
        failed = dv.add_frames(
            frames,
            auto_upload_destination=str(upload_to),
            local_dataset_root_path=str(base_path),
            upload_retries=3,
        )
        dv.commit_version()
        assert failed == [], failed
        assert all(f.id for f in frames)  # the ids, derived from the uploaded URIs, are on the frames
        assert sorted(p.name for p in upload_to.iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg"]
        print(f"registered {dv.get_frame_count()} frames, uploaded to {upload_to}")

        # dataview_example_singleframe.py: frames with an aeroplane, as SingleFrames, in random order
        dataview = DataView(iteration_order="random")
        dataview.set_iteration_parameters(random_seed=123)
        dataview.add_query(dataset_name=DATASET, version_name="initial", roi_query=["aeroplane"])
        print("count", dataview.get_count())
        list_single_frames = dataview.to_list()
        print([Path(f.get_local_source()).name for f in list_single_frames])
        for f in dataview:
            assert isinstance(f, SingleFrame) and Path(f.get_local_source()).is_file()
            assert f.get_all_annotations()[0].sources == [] and f.to_dict()["rois"][0]["sources"] == [
                "default"
            ]
        first = DatasetVersion.get_single_frame(
            frames[0].id or "", dataset_name=DATASET, version_name="initial"
        )
        assert first.metadata == {"dangerous": "yes"}
    print("done")


if __name__ == "__main__":
    main()
