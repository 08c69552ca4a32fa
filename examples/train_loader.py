"""Training from a DataView: a linear model fed by the PyTorch loader, frames read with their sources.

Runs on the default store (``HDS_STORE``, else the embedded local folder). The frames' sources are
small files written to a temporary folder (8 float32 features each; the target is in the frame
metadata); the loader reads them through fsspec in two DataLoader worker processes, which share the
view between them so that every frame comes once per epoch. Needs torch
(``pip install 'hds_s3[torch]'``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from hds_s3 import Dataset, DatasetVersion, SingleFrame, default_client
from hds_s3.query.dataview import DataView
from hds_s3.torch import DataViewIterableDataset

NAME = "train loader example"
FEATURES = 8
FRAMES = 64
EPOCHS = 5
LEARNING_RATE = 0.1


def to_sample(frame: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Decode one frame: the source bytes are the features, the metadata holds the target."""
    x = torch.frombuffer(bytearray(frame["sources"][0]["data"]), dtype=torch.float32)
    y = torch.tensor([frame["meta"]["target"]], dtype=torch.float32)
    return x, y, frame["id"]


def register(folder: Path) -> list[str]:
    """Write FRAMES feature files, register one frame per file, publish them as version 'v1'."""
    rng = np.random.default_rng(7)
    weights = rng.normal(size=FEATURES)
    frames = []
    for i in range(FRAMES):
        x = rng.normal(size=FEATURES).astype(np.float32)
        path = folder / f"sample-{i:03d}.f32"
        path.write_bytes(x.tobytes())
        target = float(x @ weights + 0.5)
        frames.append(
            SingleFrame(
                id=f"sample-{i:03d}",
                source=path.as_uri(),
                metadata={"target": target, "split": "train"},
                context_id="synthetic",
                timestamp=i,
            )
        )
    draft = DatasetVersion.create_new_dataset(
        dataset_name=NAME, description="features for the loader example"
    )
    failed = draft.add_frames(frames)
    assert not failed, failed
    DatasetVersion.create_snapshot(dataset_name=NAME, publish_name="v1")
    return sorted(f"sample-{i:03d}" for i in range(FRAMES))


def train(expected_ids: list[str]) -> list[float]:
    """Train for EPOCHS epochs; check that each epoch saw every frame once; return the mean losses."""
    view = DataView(iteration_order="sequential")
    view.add_query(dataset_name=NAME, version_name="v1", frame_query='meta.split:"train"')
    print(f"the view selects {view.get_count()} frames")

    dataset = DataViewIterableDataset(view, transform=to_sample)
    loader = DataLoader(dataset, batch_size=16, num_workers=2, persistent_workers=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(FEATURES, 1)
    losses = []
    for epoch in range(EPOCHS):
        seen: list[str] = []
        total = 0.0
        for x, y, ids in loader:
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            with torch.no_grad():  # plain SGD (torch.optim would import torch._dynamo: seconds)
                for param in model.parameters():
                    param -= LEARNING_RATE * param.grad
                    param.grad = None
            total += loss.item() * len(ids)
            seen.extend(ids)
        assert sorted(seen) == expected_ids, f"epoch {epoch} did not see every frame exactly once"
        losses.append(total / len(seen))
        print(f"epoch {epoch}: {len(seen)} frames, mean loss {losses[-1]:.4f}")
    return losses


def main() -> None:
    print(f"store: {default_client().url}")
    if Dataset.exists(dataset_name=NAME):  # left over from an interrupted run
        Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)
    with tempfile.TemporaryDirectory(prefix="hds-train-loader-") as folder:
        try:
            ids = register(Path(folder))
            losses = train(ids)
        finally:
            Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)
    assert losses[-1] < 0.05 * losses[0], f"the loss did not fall enough: {losses}"
    print(f"loss fell from {losses[0]:.4f} to {losses[-1]:.4f}; every frame seen once per epoch")


if __name__ == "__main__":
    main()
