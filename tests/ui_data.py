"""A small store for the ``hds ui`` tests: generated images (Pillow) as ``file://`` sources.

``streets``: 30 frames in 3 contexts of 10 (boxes, a polygon, confidences, a frame label, metadata,
masks and previews on a few), one frame whose source file does not exist; ``v1`` published, and a
draft child ``Current`` that deletes 2 frames, rewrites 1 and adds 1. ``rig``: 4 frame groups with
two sources each and a ROI spanning both. ``EXPECTED`` says what the grid must draw.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from hds_s3 import Client, DatasetVersion, FrameGroup, SingleFrame

W, H = 320, 240
CITIES = ["bremen", "berlin", "hamburg"]
LABELS = ["car", "person", "bicycle"]
COLOURS = {"car": (200, 60, 60), "person": (60, 160, 80), "bicycle": (60, 100, 200)}


def _image(path: Path, boxes: list[tuple[str, tuple[int, int, int, int]]], seed: int) -> None:
    rng = random.Random(seed)
    sky = (90 + rng.randint(0, 60), 120 + rng.randint(0, 60), 170 + rng.randint(0, 60))
    image = Image.new("RGB", (W, H), sky)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, H * 2 // 3, W, H), fill=(70, 70, 75))
    for x in range(0, W, 40):
        draw.rectangle((x + 5, H * 2 // 3 + 34, x + 25, H * 2 // 3 + 38), fill=(230, 230, 230))
    for label, (x, y, w, h) in boxes:
        draw.rounded_rectangle((x, y, x + w, y + h), radius=6, fill=COLOURS[label])
    image.save(path, quality=90)


def _mask(path: Path, box: tuple[int, int, int, int]) -> None:
    image = Image.new("RGB", (W, H), (0, 0, 0))
    x, y, w, h = box
    ImageDraw.Draw(image).rectangle((x, y, x + w, y + h), fill=(1, 1, 1))
    image.save(path)


def street_frame(i: int, folder: Path) -> tuple[SingleFrame, int]:
    """Frame ``i`` (its images written to ``folder``) and the number of shapes the grid draws for it."""
    rng = random.Random(i)
    boxes = []
    for _ in range(i % 4):  # 0..3 boxes
        w, h = rng.randint(30, 70), rng.randint(25, 50)
        boxes.append((rng.choice(LABELS), (rng.randint(0, W - w), rng.randint(20, H - h - 10), w, h)))
    image = folder / f"street_{i:03d}.jpg"
    _image(image, boxes, i)
    frame = SingleFrame(
        source=image.as_uri(),
        width=W,
        height=H,
        id=f"street-{i:03d}",
        context_id=f"drive-{i // 10}",
        timestamp=1_700_000_000_000 + i * 100,
        metadata={
            "city": CITIES[i % 3],
            "score": round(i / 30, 3),
            "weather": "rain" if i % 5 == 0 else "sun",
        },
    )
    for label, box in boxes:
        frame.add_annotation(
            box2d_xywh=box,
            labels=[label],
            confidence=round(0.5 + (i % 5) / 10, 2),
            metadata={"occluded": i % 2 == 0},
        )
    shapes = len(boxes)
    if i % 7 == 3:
        frame.add_annotation(poly2d_xy=[10, 200, 60, 180, 90, 225], labels=["road"], confidence=0.8)
        shapes += 1
    if i % 6 == 0:
        frame.add_annotation(labels=["night"])  # a frame label: no shape
    if i in (5, 6) and boxes:
        mask = folder / f"mask_{i:03d}.png"
        _mask(mask, boxes[0][1])
        frame.masks_source = {"seg": mask.as_uri()}
    if i % 9 == 1:
        preview = folder / f"preview_{i:03d}.jpg"
        Image.open(image).resize((W // 4, H // 4)).save(preview)
        frame.preview_uri = preview.as_uri()
    if i == 29:
        frame.source = (folder / "does-not-exist.jpg").as_uri()
    return frame, shapes


def build(client: Client, folder: Path) -> dict[str, Any]:
    """Write the datasets into ``client``'s store; return what the tests expect to see."""
    folder.mkdir(parents=True, exist_ok=True)
    draft = DatasetVersion.create_new_dataset(
        dataset_name="streets",
        tags=["street", "demo"],
        description="street scenes, three drives",
        client=client,
    )
    frames, shapes = [], {}
    for i in range(30):
        frame, count = street_frame(i, folder)
        frames.append(frame)
        shapes[frame.id] = count
    assert draft.add_frames(frames) == []
    draft.set_masks_labels({(1, 1, 1): ["vehicle"]})
    DatasetVersion.create_snapshot(dataset_name="streets", publish_name="v1", client=client)
    current = DatasetVersion.get_current(dataset_name="streets", client=client)
    current.set_masks_labels({(1, 1, 1): ["vehicle"]})  # a child does not inherit its parent's metadata
    current.delete_frames(["street-000", "street-001"])
    changed, _ = street_frame(2, folder)
    changed.add_annotation(box2d_xywh=(100, 40, 50, 40), labels=["person"], confidence=0.99)
    extra, extra_shapes = street_frame(30, folder)
    assert current.update_frames([changed]) == []
    assert current.add_frames([extra]) == []

    rig = DatasetVersion.create_new_dataset(dataset_name="rig", tags=["multi-camera"], client=client)
    groups = []
    for i in range(4):
        group = FrameGroup(id=f"rig-{i}")
        for side in ("front", "rear"):
            image = folder / f"rig_{side}_{i}.jpg"
            _image(image, [("car", (40 + 20 * i, 100, 60, 40))], 100 + i)
            group[side] = SingleFrame(source=image.as_uri(), width=W, height=H)
        group.add_global_annotation(box2d_xywh=(40 + 20 * i, 100, 60, 40), labels=["car"])
        groups.append(group)
    assert rig.add_frames(groups) == []
    return {
        "v1_frames": 30,
        "current_frames": 29,
        "shapes_v1": shapes,
        "shapes_changed": shapes["street-002"] + 1,
        "extra_shapes": extra_shapes,
        "missing_frame": "street-029",
    }


@contextlib.contextmanager
def serve(store: Path, *, write: bool) -> Iterator[str]:
    """Run ``hds --store <store> ui --port 0`` as a real process; yield the URL it prints; stop it."""
    env = {k: v for k, v in os.environ.items() if k != "HDS_STORE"}
    args = [sys.executable, "-m", "hds_s3.cli", "--store", str(store), "ui", "--port", "0"]
    proc = subprocess.Popen(
        [*args, "--write"] if write else args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        seen = []
        while True:
            try:
                line = lines.get(timeout=60)
            except queue.Empty:
                raise RuntimeError(f"hds ui printed no URL within 60 s: {seen}") from None
            seen.append(line)
            found = re.search(r"at (http://\S+)", line)
            if found:
                break
        yield found.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
