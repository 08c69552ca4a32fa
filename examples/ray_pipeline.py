"""A Ray pipeline: ingest with Ray workers, publish, query with a DataView, stream into a torch loop.

Runs on the default store (``HDS_STORE``, else the embedded local folder) and a local Ray of two
CPUs, or the running Ray (a cluster) that ``RAY_ADDRESS`` names. Ray workers turn synthetic records into
frames and write them as segments of a draft (``hds_s3.ray.write_frames``: one commit at the end,
under the job's transaction id, so running the job again lands nothing twice); the workers also count
the statistics the publication stores; a DataView selects the training frames, Ray workers read
them (``view.to_ray()``) and compute the features, and a linear model trains on the batches
``iter_torch_batches`` streams. Needs ``pip install 'hds_s3[ray,torch]'``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import ray
import torch

import hds_s3.ray as hds_ray
from hds_s3 import Dataset, DatasetVersion, DataView, default_client

NAME = "ray pipeline example"
FRAMES = 2000
FEATURES = 8
EPOCHS = 3
LEARNING_RATE = 0.1
WEIGHTS = np.random.default_rng(3).normal(size=FEATURES)


def make_frames(batch: dict[str, np.ndarray]) -> pa.Table:
    """Records -> frames (in a Ray worker): a source URI, a box, features and a target in the metadata."""
    ids = batch["id"].tolist()
    rng = np.random.default_rng(ids[0])
    x = rng.normal(size=(len(ids), FEATURES))
    targets = x @ WEIGHTS + 0.5
    return pa.table(
        {
            "id": [f"record-{i:05d}" for i in ids],
            "sources": [[{"id": "cam", "uri": f"s3://bucket/records/{i}.jpg"}] for i in ids],
            "rois": [
                [
                    {
                        "labels": ["positive" if t > 0.5 else "negative"],
                        "type": "box2d",
                        "poly": [0, 0, 9, 0, 9, 9, 0, 9],
                    }
                ]
                for t in targets
            ],
            "meta": [
                json.dumps({"x": row.tolist(), "target": float(t), "split": "train" if i % 10 else "test"})
                for i, row, t in zip(ids, x, targets, strict=True)
            ],
        }
    )


def features(batch: pa.Table) -> dict[str, np.ndarray]:
    """Frames -> tensors (in a Ray worker): the features and target from each frame's metadata."""
    metas = [json.loads(m) for m in batch.column("meta").to_pylist()]
    return {
        "x": np.array([m["x"] for m in metas], dtype=np.float32),
        "y": np.array([[m["target"]] for m in metas], dtype=np.float32),
    }


def ingest() -> DatasetVersion:
    """Ray workers write the frames; one commit lands them; the workers count the statistics."""
    draft = DatasetVersion.create_new_dataset(dataset_name=NAME, description="written by Ray workers")
    records = ray.data.range(FRAMES, override_num_blocks=4)
    frames = records.map_batches(make_frames, batch_format="numpy")
    summary = hds_ray.write_frames(frames, draft, txn_id="ray-pipeline-ingest")
    assert summary.commit.committed and not summary.failed, summary
    print(f"{summary.segments} segments written by Ray workers, {summary.commit.rows} frames in one commit")
    again = hds_ray.write_frames(frames, draft, txn_id="ray-pipeline-ingest")  # a repeated job: no change
    assert not again.commit.committed and draft.get_frame_count() == FRAMES
    hds_ray.publish(draft)  # statistics counted per segment by the workers
    labels = {row["name"]: row["count"] for row in draft.get_stats()["labels"]}
    print(f"published {draft.name!r}: {draft.get_stats()['frames']} frames, labels {labels}")
    return draft


def train(version: DatasetVersion) -> list[float]:
    """A DataView of the training frames, read by Ray workers, streamed into a linear model."""
    view = DataView(iteration_order="random")
    view.add_query(dataset_name=NAME, version_name=version.name, frame_query='meta.split:"train"')
    view.set_iteration_parameters(random_seed=5)
    expected = view.get_count()
    # read and turned into tensors by the workers once; every epoch streams the blocks kept by Ray
    batches = view.to_ray(["meta"]).map_batches(features, batch_format="pyarrow").materialize()
    torch.manual_seed(0)
    model = torch.nn.Linear(FEATURES, 1)
    losses = []
    for epoch in range(EPOCHS):
        total, seen = 0.0, 0
        for batch in batches.iter_torch_batches(batch_size=64):
            loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
            loss.backward()
            with torch.no_grad():  # plain SGD (torch.optim would import torch._dynamo: seconds)
                for param in model.parameters():
                    param -= LEARNING_RATE * param.grad
                    param.grad = None
            total += loss.item() * len(batch["y"])
            seen += len(batch["y"])
        assert seen == expected, f"epoch {epoch}: {seen} frames, the view selects {expected}"
        losses.append(total / seen)
        print(f"epoch {epoch}: {seen} frames, mean loss {losses[-1]:.4f}")
    return losses


def main() -> None:
    print(f"store: {default_client().url}")
    if os.environ.get("RAY_ADDRESS"):  # join that Ray (ray.init reads the variable)
        ray.init(log_to_driver=False)
    else:  # start a local one
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    if Dataset.exists(dataset_name=NAME):  # left over from an interrupted run
        Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)
    try:
        losses = train(ingest())
    finally:
        Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)
        ray.shutdown()
    assert losses[-1] < 0.05 * losses[0], f"the loss did not fall enough: {losses}"
    print(f"loss fell from {losses[0]:.4f} to {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
