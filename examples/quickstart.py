"""Quick start: a dataset of annotated frames, two versions, and a look at what is in them.

With no ``HDS_STORE`` set this runs on the embedded default, a local folder: no server and no
credentials. Set ``HDS_STORE=s3://bucket/prefix`` (and ``HDS_S3_ENDPOINT_URL`` for MinIO or
LocalStack) to run the very same code against a bucket.
"""

from __future__ import annotations

import random

import pyarrow.compute as pc

from hds_s3 import Dataset, DatasetVersion, SingleFrame, default_client

NAME = "quickstart streets"
CITIES = ["bremen", "berlin", "hamburg"]
LABELS = ["car", "person", "bicycle", "cat"]


def frames(count: int, seed: int = 7) -> list[SingleFrame]:
    """``count`` frames of street images with a few boxes each (deterministic)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        frame = SingleFrame(
            source=f"s3://my-bucket/streets/{i:05d}.jpg",
            width=1280,
            height=720,
            metadata={"city": CITIES[i % 3], "score": round(rng.random(), 3)},
        )
        for _ in range(rng.randint(0, 3)):
            x, y = rng.randint(0, 1000), rng.randint(0, 500)
            frame.add_annotation(box2d_xywh=(x, y, 80, 60), labels=[rng.choice(LABELS)], confidence=0.9)
        out.append(frame)
    return out


def main() -> None:
    print(f"store: {default_client().url}")
    if Dataset.exists(dataset_name=NAME):  # left over from an interrupted run
        Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)

    # A new dataset has one empty draft, "Current": register frames in it and publish it as "v1".
    draft = DatasetVersion.create_new_dataset(dataset_name=NAME, description="street scenes")
    failed = draft.add_frames(frames(1000))
    assert failed == [], failed
    draft = DatasetVersion.create_snapshot(dataset_name=NAME, publish_name="v1")  # v1 published; a new draft
    stats = DatasetVersion.get_version(dataset_name=NAME, version_name="v1").get_stats()
    print(f"v1: {stats['frames']} frames, {stats['annotated']} annotated, top labels {stats['labels'][:2]}")

    # The new draft inherits v1's frames by reference; change a few and publish it as "v2".
    table = draft.get_frames_table(columns=["id", "roi_count"])  # the effective frames, as Arrow
    empty = table.filter(pc.equal(table["roi_count"], 0))["id"].to_pylist()
    draft.delete_frames(empty[:50])
    draft.set_version_name("v2")
    draft.publish_version()
    v2 = DatasetVersion.get_version(dataset_name=NAME, version_name="v2")
    print(f"v2: {v2.get_frame_count()} frames (50 empty ones dropped); v1 still has {stats['frames']}")
    assert v2.get_frame_count() == stats["frames"] - 50
    assert DatasetVersion.get_version(dataset_name=NAME, version_name="v1").get_frame_count() == 1000

    print(Dataset.get(dataset_name=NAME).format_tree())


if __name__ == "__main__":
    main()
