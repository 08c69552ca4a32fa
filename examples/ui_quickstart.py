"""See the quick start's data in the browser: ``hds ui`` on the frames of ``examples/quickstart.py``.

It builds the quick start's dataset (1000 street frames with boxes, ``v1`` published) with real
images this time, drawn with Pillow into a folder and registered as ``file://`` sources, adds a
draft child ``relabel`` to annotate, and serves the UI with writes allowed::

    pip install '.[ui]' && python examples/ui_quickstart.py          # then open the printed URL
    python examples/ui_quickstart.py --port 0 --check                # start, fetch the pages, stop

With no ``HDS_STORE`` set this runs on the embedded local folder; set ``HDS_STORE=s3://bucket/prefix``
(and ``HDS_S3_ENDPOINT_URL`` for MinIO) to put the dataset in a bucket: the images stay in the
local folder, which the UI process reads.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import urllib.request
from pathlib import Path

from PIL import Image, ImageDraw
from quickstart import NAME, frames

from hds_s3 import Dataset, DatasetVersion, SingleFrame, default_client
from hds_s3.ui import serve

SHOWN = (320, 180)  # the images are drawn at a quarter of the frames' 1280 x 720; ROIs stay in frame pixels


def image_folder() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hds_s3" / "ui_quickstart"


def draw(frame: SingleFrame, path: Path) -> None:
    """A street picture with a filled rectangle where each box of the frame is."""
    scale = SHOWN[0] / 1280
    image = Image.new("RGB", SHOWN, (110, 150, 200))
    pen = ImageDraw.Draw(image)
    pen.rectangle((0, SHOWN[1] * 2 // 3, SHOWN[0], SHOWN[1]), fill=(70, 70, 75))
    colours = {
        "car": (200, 60, 60),
        "person": (60, 160, 80),
        "bicycle": (60, 100, 200),
        "cat": (230, 170, 40),
    }
    for roi in frame.annotations:
        x0, y0, x1, _, _, y1, _, _ = (v * scale for v in roi.poly)
        pen.rectangle((x0, y0, x1, y1), fill=colours.get(roi.labels[0], (200, 200, 200)))
    image.save(path, quality=85)


def build() -> None:
    folder = image_folder()
    folder.mkdir(parents=True, exist_ok=True)
    if Dataset.exists(dataset_name=NAME):  # left over from an earlier run of either example
        Dataset.delete(dataset_name=NAME, delete_all_versions=True, force=True)
    draft = DatasetVersion.create_new_dataset(
        dataset_name=NAME, description="street scenes", tags=["quickstart"]
    )
    items = frames(1000)
    for i, frame in enumerate(items):
        path = folder / f"{i:05d}.jpg"
        draw(frame, path)
        frame.source = path.as_uri()
    assert draft.add_frames(items) == []
    DatasetVersion.create_snapshot(dataset_name=NAME, publish_name="v1", child_name="relabel")
    print(f"dataset {NAME!r}: v1 published (1000 frames), draft 'relabel' to annotate; images in {folder}")


def check(url: str) -> None:
    """Fetch the app page and the datasets endpoint; fail unless both answer as expected."""
    with urllib.request.urlopen(url, timeout=30) as page:
        assert page.status == 200 and b"/static/js/app.js" in page.read()
    with urllib.request.urlopen(url + "api/datasets", timeout=60) as answer:
        cards = {c["name"]: c for c in json.load(answer)["datasets"]}
    assert cards[NAME]["frames"] == 1000, cards
    print(f"checked: {url} serves {NAME!r} with {cards[NAME]['frames']} frames")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 = any free port")
    parser.add_argument("--check", action="store_true", help="start, check that the pages answer, stop")
    args = parser.parse_args()
    print(f"store: {default_client().url}")
    build()
    if not args.check:
        serve(
            default_client(), host=args.host, port=args.port, write=True, on_ready=lambda u: print("open", u)
        )
        return
    ready: list[str] = []
    started = threading.Event()

    def on_ready(url: str) -> None:
        ready.append(url)
        started.set()

    threading.Thread(
        target=serve,
        args=(default_client(),),
        kwargs={"host": args.host, "port": args.port, "write": True, "on_ready": on_ready},
        daemon=True,
    ).start()
    assert started.wait(60), "the UI did not start within 60 s"
    check(ready[0])


if __name__ == "__main__":
    main()
