"""Deterministic synthetic COCO-like frames (canonical frame dicts, see hds_s3/frames.py).

Frame ``i`` is a function of ``(seed, i, variant)`` only, so any frame can be regenerated on its own:
``variant`` 0 is the original, another variant is an "update" of the same frame (same id, same
source, new ROIs and meta). Ids are 32 hex digits from a hash of ``i`` (like hds_s3's default ids,
which hash the source), so they are spread uniformly: every segment's id range covers the whole id
space, the realistic worst case for point look-ups.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from typing import Any

LABELS = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
]
assert len(LABELS) == 80
CITIES = [
    "bremen",
    "berlin",
    "hamburg",
    "munich",
    "cologne",
    "frankfurt",
    "stuttgart",
    "dusseldorf",
    "leipzig",
    "dortmund",
    "essen",
    "dresden",
    "hanover",
    "nuremberg",
    "duisburg",
    "bochum",
    "wuppertal",
    "bielefeld",
    "bonn",
    "munster",
]
assert len(CITIES) == 20
SIZES = [(640, 480), (480, 640), (640, 427), (427, 640), (612, 612), (500, 375)]


def frame_id(i: int, seed: int = 0) -> str:
    """The id of frame ``i``: 32 hex digits, uniformly spread."""
    return hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=16).hexdigest()


def make_frame(i: int, seed: int = 0, variant: int = 0) -> dict[str, Any]:
    """The canonical dict of frame ``i`` (``variant`` > 0: an updated version of the same frame)."""
    rng = random.Random((seed * 1_000_003 + i) * 131 + variant)
    width, height = SIZES[i % len(SIZES)]
    uri = f"s3://coco/train2017/{i:012d}.jpg"
    rois = []
    for r in range(rng.randint(0, 8)):
        w = float(rng.randint(4, width // 2))
        h = float(rng.randint(4, height // 2))
        x = float(rng.randint(0, width - int(w)))
        y = float(rng.randint(0, height - int(h)))
        rois.append(
            {
                "id": f"{i:x}-{variant}-{r}",
                "labels": [LABELS[rng.randrange(80)]],
                "type": "box2d",
                "poly": [x, y, x + w, y, x + w, y + h, x, y + h],
                "confidence": None if rng.random() < 0.5 else round(rng.random(), 4),
                "sources": ["default"],
                "meta": {"area": w * h, "iscrowd": int(rng.random() < 0.05)},
                "mask": None,
            }
        )
    day = 1 + (i % 28)
    month = 1 + (i // 28) % 12
    return {
        "id": frame_id(i, seed),
        "context_id": uri,
        "timestamp": 0,
        "sources": [
            {
                "id": "default",
                "uri": uri,
                "content_type": "image/jpeg",
                "width": width,
                "height": height,
                "timestamp": 0,
                "meta": {"license": 1 + i % 8},
                "preview": None,
                "masks": [],
            }
        ],
        "rois": rois,
        "meta": {
            "city": CITIES[rng.randrange(20)],
            "score": round(rng.random(), 6),
            "date": f"20{17 + i % 8:02d}-{month:02d}-{day:02d}"
            f"T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z",
        },
        "meta_blob": {"coco_id": i, "flickr_url": f"http://farm{1 + i % 9}.staticflickr.com/{i}.jpg"},
    }


def frames(indices: Iterable[int], seed: int = 0, variant: int = 0) -> Iterator[dict[str, Any]]:
    """Frames for the given indices."""
    for i in indices:
        yield make_frame(i, seed, variant)


def chunks(it: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of at most ``size`` consecutive items."""
    chunk: list[Any] = []
    for item in it:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
