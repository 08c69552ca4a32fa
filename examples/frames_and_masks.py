"""Registering frames: sources, ROIs of every shape, masks with mask labels, frame groups, metadata.

Runs on the default store (``HDS_STORE``, else the embedded local folder). The images themselves
are never copied: a frame holds URIs (any fsspec URL) and their annotations.
"""

from __future__ import annotations

from hds_s3 import Dataset, DatasetVersion, FrameGroup, SingleFrame
from hds_s3.model.frames import frame_id

NAME = "frames example"


def street_frame(i: int) -> SingleFrame:
    """One camera image with a box, a polygon, keypoints, a frame label and two masks."""
    frame = SingleFrame(
        source=f"s3://my-bucket/street/{i:04d}.jpg",
        width=1280,
        height=720,
        preview_uri=f"https://cdn.example.com/street/{i:04d}_thumb.jpg",
        metadata={"city": "bremen" if i % 2 else "berlin", "weather": {"rain": i % 3 == 0}},
        timestamp=i * 40,  # ms: frames of one drive share a context and are ordered in time
        context_id="drive-0001",
        masks_source=[f"s3://my-bucket/street/{i:04d}_class.png", f"s3://my-bucket/street/{i:04d}_inst.png"],
    )
    frame.add_annotation(
        box2d_xywh=(100, 200, 180, 90), labels=["car"], confidence=0.93, metadata={"occluded": False}
    )
    frame.add_annotation(
        poly2d_xy=[(400, 300), (460, 300), (470, 420), (390, 420)], labels=["person", "walking"]
    )
    frame.add_annotation(points2d_xy=[(640, 100), (660, 110)], labels=["traffic light"])
    frame.add_annotation(labels=["daytime"])  # labels only: a label of the whole frame
    return frame


def main() -> None:
    if Dataset.exists(dataset_name=NAME):  # left over from an interrupted run
        Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)
    draft = DatasetVersion.create_new_dataset(dataset_name=NAME)

    # Pixel values of the masks -> labels, for the whole version (mask ids "00", "01" from the list).
    draft.set_masks_labels({(0, 0, 0): ["background"], (1, 1, 1): ["road"], (2, 2, 2): ["car"]})

    # A rig of two cameras is one FrameGroup; a global annotation covers both sources.
    rig = FrameGroup(id="rig-0001")
    rig["front"] = SingleFrame(source="s3://my-bucket/rig/front/0001.jpg", width=640, height=480)
    rig["rear"] = SingleFrame(source="s3://my-bucket/rig/rear/0001.jpg", width=640, height=480)
    rig.add_global_annotation(labels=["crossing"])

    # Bad input is refused with the frame and the field named: at once on a SingleFrame...
    try:
        SingleFrame(source="s3://my-bucket/street/odd.jpg").add_annotation(
            poly2d_xy=[1, 2, 3], labels=["car"]
        )
    except ValueError as exc:  # hds_s3.ValidationError is a ValueError
        print(f"refused: {exc}")
    # ... and per frame by add_frames, which stores the others and returns the failures.
    bad = {
        "id": "bad-frame",
        "sources": [{"id": "00", "uri": "s3://my-bucket/street/bad.jpg"}],
        "rois": [{"labels": ["car"], "type": "box2d", "poly": [0, 0, 4, 0, 4, 4, 0, 4], "confidence": 1.5}],
    }

    failed = draft.add_frames([street_frame(i) for i in range(10)] + [rig, bad])
    print(f"failed: {[f.reason for f in failed]}")
    assert [f.frame["id"] for f in failed] == ["bad-frame"] and "confidence" in failed[0].reason

    # Running the same ingest again updates the frames (ids come from the sources): nothing doubles.
    draft.add_frames([street_frame(i) for i in range(10)])
    assert draft.get_frame_count() == 11

    draft.publish_version()
    stats = draft.get_stats()
    print(f"stats: {stats['frames']} frames, {stats['rois']} ROIs, labels {stats['labels'][:4]}")
    assert stats["frames"] == 11 and stats["annotated"] == 11

    frame = DatasetVersion.get_single_frame(
        frame_id(street_frame(3)), dataset_name=NAME, version_name=draft.name
    )
    assert isinstance(frame, SingleFrame)
    labels = [a.labels for a in frame.get_all_annotations()]
    print(f"frame {frame.id}: masks {frame.masks_source}, ROIs {labels}")
    assert frame.masks_source == {
        "00": "s3://my-bucket/street/0003_class.png",
        "01": "s3://my-bucket/street/0003_inst.png",
    }
    assert draft.get_masks_labels()[(2, 2, 2)] == ["car"]

    Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)


if __name__ == "__main__":
    main()
