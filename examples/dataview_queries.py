"""DataView queries: OR-ed rules over versions, Lucene on frames and ROIs, label mapping, iteration.

Runs on the default store (``HDS_STORE``, else the embedded local folder). A DataView is read-only
over the versions it names: it needs no write access unless you ``store()`` it.
"""

from __future__ import annotations

import random

from hds_s3 import Dataset, DatasetVersion, DataView, IterationOrder, RoiQuery, SingleFrame

NAME = "dataview example"
CITIES = ["bremen", "berlin", "hamburg"]


def frames(count: int) -> list[SingleFrame]:
    rng = random.Random(11)
    out = []
    for i in range(count):
        frame = SingleFrame(
            source=f"s3://my-bucket/drive/{i:05d}.jpg",
            width=1280,
            height=720,
            context_id=f"drive-{i // 50}",  # 50 consecutive frames per drive
            timestamp=(i % 50) * 100,
            metadata={"city": CITIES[i % 3], "date": f"2024-10-{1 + i % 30:02d}", "speed": i % 90},
        )
        for _ in range(rng.randint(0, 3)):
            label = rng.choice(["car", "person", "cat", "truck"])
            occluded = ["occluded"] if rng.random() < 0.3 else []
            frame.add_annotation(
                box2d_xywh=(rng.randint(0, 1000), rng.randint(0, 600), 60, 40),
                labels=[label, *occluded],
                confidence=round(rng.random(), 2),
            )
        out.append(frame)
    return out


def main() -> None:
    if Dataset.exists(dataset_name=NAME):  # left over from an interrupted run
        Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)
    draft = DatasetVersion.create_new_dataset(dataset_name=NAME)
    assert draft.add_frames(frames(600)) == []
    DatasetVersion.create_snapshot(dataset_name=NAME, publish_name="v1")

    # One rule: a cat in Bremen. roi_query is a label, a list of labels (all on one ROI) or Lucene.
    view = DataView()
    view.add_query(dataset_name=NAME, version_name="v1", roi_query="cat", frame_query='meta.city:"bremen"')
    cats = view.get_count()
    print(f"cats in bremen: {cats}")
    for frame in view.to_dict(projection=["id", "meta.city", "rois.labels"]):
        assert frame["meta"]["city"] == "bremen"
        assert any("cat" in roi["labels"] for roi in frame["rois"])

    # Ranges on numbers and ISO dates, NOT, and a second OR-ed rule with its own weight.
    view = DataView(iteration_order=IterationOrder.random)
    view.add_query(
        dataset_name=NAME,
        version_name="v1",
        roi_query='label.keyword:"car" AND NOT label.keyword:"occluded"',
        frame_query="meta.date:[2024-10-01 TO 2024-10-10] AND meta.speed:[0 TO 50]",
        weight=1,
    )
    view.add_multi_query(
        dataset_name=NAME,
        version_name="v1",
        roi_queries=[RoiQuery("person", conf_range=(0.5, 1.0)), RoiQuery("truck", must_not=True)],
        weight=3,
    )
    print(f"per rule: {view.get_count(per_rule=True)}")

    # Map labels after matching, then number them for training (unlisted labels get -1).
    view.add_mapping_rule(from_labels=["truck"], to_label="car", dataset_name=NAME, version_name="v1")
    view.set_labels({"car": 0, "person": 1})
    view.set_iteration_parameters(random_seed=42, maximum_number_of_frames=50)
    # Each pass (epoch) of random order is a new permutation, the same on any machine for the
    # same (seed, epoch): set_epoch() picks one, as PyTorch's DistributedSampler.set_epoch.
    first = [f["id"] for f in view.get_iterator(projection=["id"])]  # epoch 0
    second = [f["id"] for f in view.get_iterator(projection=["id"])]  # epoch 1
    view.set_epoch(0)
    again = [f["id"] for f in view.get_iterator(projection=["id"])]
    assert first == again != second and len(first) == 50
    numbers = {roi["label_num"] for f in view.to_dict() for roi in f["rois"]}
    assert numbers <= {-1, 0, 1}

    # Two workers (or ranks) of one epoch get disjoint shards whose union is the whole sequence.
    shards = [
        [f["id"] for f in view.get_iterator(projection=["id"], num_workers=2, worker_index=k, epoch=0)]
        for k in (0, 1)
    ]
    assert sorted(shards[0] + shards[1]) == sorted(first) and not set(shards[0]) & set(shards[1])

    # Sequential order walks each drive in time; a stored view can be loaded by name later.
    ordered = DataView(name="bremen cats")
    ordered.add_query(dataset_name=NAME, version_name="v1", roi_query="cat", frame_query="meta.city:bremen")
    ordered.store()
    loaded = DataView.get(dataview_name="bremen cats")
    rows = loaded.to_dict(projection=["context_id", "timestamp"])
    keys = [(r["context_id"], r["timestamp"]) for r in rows]
    assert keys == sorted(keys) and len(rows) == cats
    print(f"stored view {loaded.id} reads {len(rows)} frames in (drive, time) order")

    Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)


if __name__ == "__main__":
    main()
