"""The limits of a frame: its size, its strings, its sources and ROIs (hds_s3.model.limits).

Past a limit a frame is refused naming the frame and the field, on both ingest paths (frame objects
and plain dicts, which take the column-wise path); a frame just within every limit is stored and
reads back through every read path, so what is accepted is always readable. A frame far past the
size limit is refused after a walk of about the limit's size, without copies of it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from hds_s3 import Client, DatasetVersion, DataView, FrameGroup, SingleFrame, ValidationError
from hds_s3.index import columnar
from hds_s3.model.frames import guess_content_type, hash_id, to_frame_dict, validate
from hds_s3.model.limits import MAX_FRAME_BYTES, MAX_ROIS, MAX_SOURCES
from hds_s3.model.names import MAX_STRING_BYTES
from hds_s3.store import MemoryStore

MiB = 1 << 20


def draft() -> DatasetVersion:
    return DatasetVersion.create_new_dataset("limits", client=Client(MemoryStore()))


def one(fid: str, **fields: Any) -> dict[str, Any]:
    return {"id": fid, "uri": f"s3://b/{fid}.jpg", **fields}


def refused(version: DatasetVersion, bad: object) -> str:
    """Add ``bad`` between two good frames: it is the one failure, and the good ones land."""
    before = {f.id for f in version.iter_frames()}
    failed = version.add_frames([one("left"), bad, one("right")])
    assert [f.frame for f in failed] == [bad]
    assert {f.id for f in version.iter_frames()} == before | {"left", "right"}
    return failed[0].reason


def reads_back(version: DatasetVersion, given: dict[str, Any]) -> None:
    """Every read path returns the frame as written."""
    assert version.add_frames([given]) == []
    stored = version.get_single_frame(given["id"])
    assert {f.id: f for f in version.iter_frames()}[given["id"]] == stored
    view = DataView(client=version.client)
    view.add_query(dataset_name="limits", version_name=version.name, frame_query=f'id:"{given["id"]}"')
    (listed,) = view.to_list()
    assert listed.to_dict() == stored.to_dict()
    expected = to_frame_dict(SingleFrame.from_dict(given)) if "uri" in given else None
    if expected is not None:
        assert {k: v for k, v in stored.to_dict().items() if k in expected} == expected


# ---------------------------------------------------------------------------- frame size


# The peak is traced in a child process that never reads Parquet: CPython 3.11's tracemalloc crashes
# when a thread of Arrow's pool, which Python never started, takes the GIL to release a buffer it read
# (a segmentation fault in traceback_new). Within one test process other tests' reads leave such
# releases pending, so no window there is safe.
_TRACE_REFUSAL = """
import json, sys, tracemalloc
from hds_s3 import Client, DatasetVersion, SingleFrame
from hds_s3.store import MemoryStore

shape, kind = sys.argv[1], sys.argv[2]
MiB = 1 << 20
version = DatasetVersion.create_new_dataset("limits", client=Client(MemoryStore()))

def frame(fid, meta):
    if kind == "object":
        return SingleFrame(source=f"s3://b/{fid}.jpg", id=fid, metadata=meta)
    return {"id": fid, "uri": f"s3://b/{fid}.jpg", "meta": meta}

# imports and first-use caches are not the frame's cost: a smaller refusal first, with nothing written
assert len(version.add_frames([frame("warm-up", {"blob": "x" * (5 * MiB)})])) == 1
meta = {"blob": "x" * (50 * MiB)} if shape == "one text" else {f"k{i}": "y" * 40 for i in range(MiB)}
big = frame("big", meta)
tracemalloc.start()
failed = version.add_frames([big])
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"reasons": [f.reason for f in failed], "peak": peak}))
"""


@pytest.mark.parametrize("shape", ["one text", "many keys"])
@pytest.mark.parametrize("as_object", [False, True], ids=["dict", "object"])
def test_a_frame_with_50_mb_of_metadata_is_refused_naming_it_with_bounded_memory(
    shape: str, as_object: bool
) -> None:
    """Once accepted (and 689 MB resident to write): now refused after a walk of about 4 MB."""
    meta = {"blob": "x" * (50 * MiB)} if shape == "one text" else {f"k{i}": "y" * 40 for i in range(MiB)}
    big: object = (
        SingleFrame(source="s3://b/big.jpg", id="big", metadata=meta) if as_object else one("big", meta=meta)
    )
    reason = refused(draft(), big)
    assert reason.startswith("frame 'big': meta"), reason
    assert ("a text of 52,428,800" in reason) if shape == "one text" else ("the frame is too large" in reason)

    kind = "object" if as_object else "dict"
    child = subprocess.run(
        [sys.executable, "-c", _TRACE_REFUSAL, shape, kind],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    traced = json.loads(child.stdout.strip().splitlines()[-1])
    assert traced["reasons"] == [reason]
    assert traced["peak"] < 4 * MAX_FRAME_BYTES, f"{traced['peak'] / MiB:.0f} MiB held to refuse it"


def test_a_frame_just_within_the_size_limit_reads_back_and_one_byte_more_is_refused() -> None:
    version = draft()
    texts = {f"t{i}": "é" * (MAX_STRING_BYTES // 2) for i in range(3)}  # three 1 MiB texts of 2-byte chars

    def sized(fid: str, tail: int) -> dict[str, Any]:
        return one(fid, meta={**texts, "tail": "z" * tail})

    def size(given: dict[str, Any]) -> int:
        return len(to_json(to_frame_dict(SingleFrame.from_dict(given))).encode("utf-8"))

    rest = MAX_FRAME_BYTES - size(sized("edge", 0))
    edge = sized("edge", rest)
    assert size(edge) == MAX_FRAME_BYTES
    reads_back(version, edge)
    assert size(sized("over", rest)) == MAX_FRAME_BYTES  # the same size: one more character is too many
    over = sized("over", rest + 1)
    assert refused(version, over) == (
        f"frame 'over': meta: the frame is too large ({MAX_FRAME_BYTES + 1:,} bytes of JSON); a frame holds "
        f"at most {MAX_FRAME_BYTES:,} bytes (4 MiB): keep large data in the files its sources point at"
    )
    with pytest.raises(ValidationError, match="the frame is too large"):
        validate(SingleFrame.from_dict(over))


def to_json(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_the_size_of_many_small_rois_counts_and_the_message_names_the_field_that_holds_most() -> None:
    poly = [i + 0.123456789 for i in range(2_000)]  # about 13 bytes of JSON a number
    rois = [{"labels": ["x"], "type": "poly2d", "poly": poly, "meta": {"n": i}} for i in range(300)]
    reason = refused(draft(), one("many", rois=rois))
    assert reason.startswith("frame 'many': rois: the frame is too large ("), reason


# ---------------------------------------------------------------------------- strings


STRINGS = {
    "uri": lambda text: one("s", uri="s3://b/" + text),
    "context_id": lambda text: one("s", context_id=text),
    "content_type": lambda text: one("s", content_type="image/" + text),
    "source meta": lambda text: {
        "id": "s",
        "sources": [{"id": "a", "uri": "s3://b/1.jpg", "meta": {"t": text}}],
    },
    "metadata key": lambda text: one("s", meta={text: 1}),
    "meta_blob": lambda text: one("s", meta_blob={"t": text}),
    "roi meta": lambda text: one("s", rois=[{"labels": ["car"], "meta": {"t": text}}]),
    "preview uri": lambda text: one("s", preview={"uri": "s3://b/" + text}),
    "mask uri": lambda text: one("s", masks=[{"id": "00", "uri": "s3://b/" + text}]),
}


@pytest.mark.parametrize("field", STRINGS)
@pytest.mark.parametrize("char", ["x", "é"], ids=["ascii", "two-byte"])
def test_a_string_past_1_mib_is_refused_naming_its_field_and_one_at_the_limit_is_kept(
    field: str, char: str
) -> None:
    version = draft()
    make = STRINGS[field]
    fits = char * (MAX_STRING_BYTES // len(char.encode()) - 16)  # leaves room for the prefix it gets
    kept = make(fits)
    assert version.add_frames([kept]) == []
    assert fits in to_json(version.get_single_frame("s").to_dict())
    reason = refused(version, make(char * (MAX_STRING_BYTES // len(char.encode()) + 1)))
    assert re.match(r"frame 's': .*(a text|a key) of [\d,]+\+? (bytes|characters)", reason), reason
    assert "1 MiB" in reason or "key of" in reason


# ---------------------------------------------------------------------------- sources and ROIs


def group(sources: int) -> dict[str, Any]:
    return {"id": "g", "sources": [{"id": f"s{i}", "uri": f"s3://b/{i}.jpg"} for i in range(sources)]}


def test_a_frame_has_at_most_256_sources() -> None:
    version = draft()
    reads_back(version, group(MAX_SOURCES))
    assert len(version.get_single_frame("g")) == MAX_SOURCES
    assert (
        refused(version, group(MAX_SOURCES + 1))
        == "frame 'g': sources: 257 of them; a frame has at most 256 sources"
    )
    members = FrameGroup(
        {f"s{i}": SingleFrame(source=f"s3://b/{i}.jpg") for i in range(MAX_SOURCES + 1)}, id="obj"
    )
    assert refused(version, members) == "frame 'obj': sources: 257 members; a frame has at most 256 sources"


def test_a_frame_has_at_most_10000_rois() -> None:
    version = draft()
    label = {"labels": ["car"], "type": "label"}
    reads_back(version, one("r", rois=[label] * MAX_ROIS))
    assert len(version.get_single_frame("r").annotations) == MAX_ROIS
    assert refused(version, one("r2", rois=[label] * (MAX_ROIS + 1))) == (
        "frame 'r2': rois: 10,001 of them; a frame has at most 10,000 rois"
    )
    obj = SingleFrame(source="s3://b/o.jpg", id="obj")
    for _ in range(MAX_ROIS + 1):
        obj.add_annotation(labels=["car"], id="r")
    assert refused(version, obj) == "frame 'obj': rois: 10,001 ROIs; a frame has at most 10,000"


def test_the_column_wise_path_leaves_every_frame_past_a_limit_to_the_per_frame_path() -> None:
    """It takes the common frames and none of those past a limit, which the per-frame path names."""
    frames = [
        one("ok"),
        group(MAX_SOURCES + 1),
        one("rois", rois=[{"labels": ["car"], "type": "label"}] * (MAX_ROIS + 1)),
        one("uri", uri="s3://b/" + "x" * MAX_STRING_BYTES),
        one("meta", meta={"t": "x" * (MAX_STRING_BYTES + 1)}),
        one("size", meta={f"t{i}": "x" * (MAX_STRING_BYTES // 2) for i in range(9)}),
        one("also-ok", meta={"t": "x" * 1000}),
    ]
    _, taken, left = columnar.fast_frames_table(
        frames, version_id="0" * 32, now=0, hash_id=hash_id, guess_type=guess_content_type
    )
    assert taken == [0, 6] and left == [1, 2, 3, 4, 5]
