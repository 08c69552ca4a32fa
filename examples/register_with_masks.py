"""Registering FrameGroups of images with masks, and the version's mask-label mapping.

The flow of the reference's legacy example ``register_dataset_masks.py`` (and of
``dataview_example_framegroup.py`` after it), on the embedded default (a local folder): files named
``<group>_<source>.png`` with ``<group>_<source>_mask.png`` beside them and a ``_mask_legend.json``
(made here, so the example stands alone) become FrameGroups, one member per source, each with its
mask; the legend becomes the version's ``set_masks_labels``; ``add_frames`` uploads the images and
the masks (the reference forgets masks) keeping the layout. Then a DataView iterates the groups.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from pathlib import Path

from hds_s3 import Dataset, DatasetVersion, DataView, FrameGroup, SingleFrame, default_client

DATASET = "sample-dataset-masks"


def make_folder(root: Path) -> None:
    for group in ("000001", "000002"):
        for source in ("000002", "000003"):
            (root / f"{group}_{source}.png").write_bytes(f"image {group} {source}".encode())
            (root / f"{group}_{source}_mask.png").write_bytes(f"mask {group} {source}".encode())
    (root / "_mask_legend.json").write_text(json.dumps({"background": [0, 0, 0], "road": [1, 1, 1]}))


def get_frames_with_masks(data_path: str, ext: str = "png", mask_ext: str = "_mask.png") -> list[FrameGroup]:
    frame_groups: dict[str, FrameGroup] = {}
    for file in sorted(glob.glob(os.path.join(data_path, f"*.{ext}"))):
        full_path = os.path.abspath(file)
        if full_path.endswith(mask_ext):
            continue
        full_path_mask = full_path.replace(f".{ext}", mask_ext)
        if not os.path.exists(full_path_mask):
            continue
        file_parts_key = os.path.split(full_path)[-1].split("_")
        frame_group = frame_groups.setdefault(file_parts_key[0], FrameGroup())
        source_id = file_parts_key[1].split(".")[0]
        frame_group[source_id] = SingleFrame(source=full_path, mask_source=full_path_mask)
    return list(frame_groups.values())


def read_mask_class_values(local_dataset_path: str) -> dict[tuple[int, int, int], list[str]]:
    with open(os.path.join(local_dataset_path, "_mask_legend.json")) as fp:
        data = json.load(fp)
    return {(v[0], v[1], v[2]): [key] for key, v in data.items()}


def main() -> None:
    print(f"store: {default_client().url}")
    if Dataset.exists(DATASET):
        Dataset.delete(dataset_name=DATASET, delete_all_versions=True, force=True)
    with tempfile.TemporaryDirectory() as work:
        base_path = Path(work) / "datasets" / "ds_with_masks"
        base_path.mkdir(parents=True)
        make_folder(base_path)
        upload_to = Path(work) / "bucket"

        frames = get_frames_with_masks(str(base_path))
        ds = DatasetVersion.create_new_dataset(dataset_name=DATASET)
        dv = ds.create_version(version_name="initial")
        dv.set_masks_labels(read_mask_class_values(str(base_path)))
        failed = dv.add_frames(
            frames,
            auto_upload_destination=str(upload_to),
            local_dataset_root_path=str(base_path),
            hash_sources=True,
        )
        dv.commit_version()
        assert failed == [], failed
        uploaded = sorted(p.name for p in upload_to.iterdir())
        assert len(uploaded) == 8 and "000001_000002_mask.png" in uploaded  # the masks went up too
        print(f"registered {dv.get_frame_count()} frame groups; mask labels {dv.get_masks_labels()}")

        # dataview_example_framegroup.py
        dataview = DataView(iteration_order="random")
        dataview.set_iteration_parameters(random_seed=123)
        dataview.add_query(dataset_name=DATASET, version_name="initial")
        print("count", dataview.get_count())
        list_frame_groups = dataview.to_list()
        print([Path(group["000002"].get_local_source()).name for group in list_frame_groups])
        for frame_group in dataview:
            for key in frame_group.keys():
                source, mask = frame_group[key].get_local_source(), frame_group[key].get_local_mask_source()
                assert mask is not None and Path(mask).read_bytes().startswith(b"mask")
                print(Path(source).name, Path(mask).name)
    print("done")


if __name__ == "__main__":
    main()
