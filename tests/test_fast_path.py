"""The columnar ingest path agrees with the per-frame path on every frame it accepts.

``add_frames`` converts frame dicts column by column and validates them with vectorised checks; any
frame it is not sure about goes through the per-frame path (SingleFrame validation), which either
normalises it or says what is wrong. These properties hold for any input dict.
"""

from __future__ import annotations

import datetime
import enum
import math
import re
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from budget import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hds_s3.errors import HdsError
from hds_s3.index import columnar, segments
from hds_s3.index.ingest import normalize
from hds_s3.model.frames import guess_content_type, hash_id

VID = "a" * 32
NOW = 1_700_000_000_000

names = st.one_of(
    st.sampled_from(["car", "person", "Bus Stop", "été", "", "\ud800", "a\udfff"]), st.text(max_size=6)
)
# Sizes around the int32 limit of their column, times around the int64 limit, and beyond.
big_ints = st.sampled_from([2**31 - 1, 2**31, 2**32 + 5, 2**63 - 1, 2**63, 2**70, -(2**40), -(2**64)])
numbers = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.integers(-5, 1000),
    st.sampled_from([math.nan, math.inf, -999999999.0]),
)


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Tag(str):
    pass


# Values JSON encoders disagree on: what JSON cannot hold (NaN, infinity), integers beyond 64 bits,
# and objects a fast encoder writes but Python's refuses or writes otherwise (enums, UUIDs, dates,
# subclasses of str, int and float, tuples).
odd_values = st.sampled_from(
    [
        math.nan,
        -math.inf,
        2**70,
        -(2**64),
        1e-05,
        1e16,
        -0.0,
        5e-324,
        Color.RED,
        Level.HIGH,
        uuid.UUID(int=7),
        datetime.date(2024, 10, 20),
        Tag("tagged"),
        np.float64(0.5),
        np.int64(3),
        (1, "a"),
        [1, [2.5, None], {"k": "v"}],
        'quote " back \\ nl \n é \u2028',
    ]
)
metas = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["city", "score", "a.b", "$x", "nested", "ok"]),
        st.one_of(
            st.text(max_size=5),
            st.just("\udfff"),
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
            st.none(),
            st.dictionaries(st.sampled_from(["k", "x.y"]), st.integers(), max_size=2),
            odd_values,
            st.lists(odd_values, max_size=2),
        ),
        max_size=3,
    ),
)


@st.composite
def box(draw: st.DrawFn) -> list[Any]:
    x, y = draw(numbers), draw(numbers)
    w, h = draw(st.integers(-3, 50)), draw(st.integers(-3, 50))
    corners = [x, y, x + w, y, x + w, y + h, x, y + h]
    return draw(st.one_of(st.just(corners), st.lists(numbers, max_size=9)))


@st.composite
def roi(draw: st.DrawFn, source_ids: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(["box2d", "poly2d", "points2d", "label", "ellipse2d", "bogus"]))
    poly = (
        draw(box()) if kind == "box2d" else ([] if kind == "label" else draw(st.lists(numbers, max_size=7)))
    )
    out: dict[str, Any] = {
        "id": draw(st.one_of(st.none(), names)),
        "labels": draw(st.lists(names, max_size=3)),
        "type": kind,
        "poly": poly,
        "confidence": draw(st.one_of(st.none(), st.floats(-0.5, 1.5), st.just(math.nan))),
        "sources": draw(
            st.one_of(st.just([]), st.lists(st.sampled_from([*source_ids, "ghost"]), max_size=2))
        ),
        "meta": draw(metas),
        "mask": None,
    }
    if draw(st.booleans()):
        del out[draw(st.sampled_from(["id", "confidence", "meta", "mask", "sources"]))]
    if draw(st.integers(0, 20)) == 0:
        out["label"] = out.pop("labels")  # the reference's key name: an alias of ours
    if draw(st.integers(0, 12)) == 0:  # another spelling, a read-only field, or no field at all
        key = draw(st.sampled_from(["metadata", "label_num", "box2d_xywh", "area", "lables", "meta"]))
        out[key] = draw(st.one_of(metas, st.just([1, 2, 3, 4]), st.integers(0, 3)))
    return out


@st.composite
def frame_dict(draw: st.DrawFn) -> dict[str, Any]:
    source_ids = draw(
        st.one_of(
            st.just(["default"]),
            st.lists(st.sampled_from(["front", "rear", "top", ""]), min_size=1, max_size=3, unique=True),
            st.lists(st.sampled_from(["front", "rear"]), min_size=2, max_size=3),  # ids may repeat
        )
    )
    sources = []
    for sid in source_ids:
        source: dict[str, Any] = {
            "id": sid,
            "uri": draw(
                st.one_of(
                    st.sampled_from(["s3://b/x.jpg", "s3://b/y.png", "clip.mp4", "noext", "", "s3://\ud800"]),
                    st.text(max_size=8),
                )
            ),
            "content_type": draw(st.one_of(st.none(), st.just("image/jpeg"), st.just("x\udc80"))),
            "width": draw(st.one_of(st.none(), st.integers(-1, 4000), st.just(3.5), big_ints)),
            "height": draw(st.one_of(st.none(), st.integers(-1, 4000), big_ints)),
            "timestamp": draw(st.one_of(st.none(), st.integers(-1, 10**6), big_ints)),
            "meta": draw(metas),
            "preview": None,
            "masks": [],
        }
        if draw(st.booleans()):
            del source[
                draw(st.sampled_from(["content_type", "width", "timestamp", "meta", "preview", "masks"]))
            ]
        if draw(st.integers(0, 12)) == 0:  # no source field (the frame's spelling of meta is not one)
            source[draw(st.sampled_from(["widht", "metadata", "source_meta"]))] = draw(metas)
        sources.append(source)
    out: dict[str, Any] = {
        "id": draw(st.one_of(st.none(), names, st.just("x" * 300))),
        "context_id": draw(st.one_of(st.none(), st.just("ctx"), st.just(""), st.just("\ud800"))),
        "timestamp": draw(st.one_of(st.none(), st.integers(-1, 10**6), big_ints)),
        "sources": sources,
        "rois": [draw(roi(source_ids)) for _ in range(draw(st.integers(0, 4)))],
        "meta": draw(metas),
        "meta_blob": draw(metas),
    }
    if draw(st.booleans()):
        del out[draw(st.sampled_from(["id", "context_id", "timestamp", "rois", "meta", "meta_blob"]))]
    if draw(st.integers(0, 12)) == 0:  # another spelling, a DataView's field, or no field at all
        out[draw(st.sampled_from(["metadata", "dataset", "junk", "widht"]))] = draw(metas)
    return out


def slow_row(d: dict[str, Any]) -> dict[str, Any] | None:
    try:
        canonical = normalize(d)
    except (HdsError, TypeError, ValueError):
        return None
    canonical.update(saved=NOW, saved_in_version=VID, updated_in_version=VID)
    row = segments.frame_row(canonical)
    return pa.Table.from_pylist([row], schema=segments.FRAME_SCHEMA).to_pylist()[0]


def _agree(frames: list[dict[str, Any]]) -> int:
    table, positions, left = columnar.fast_frames_table(
        frames, version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )
    assert sorted(positions + left) == list(range(len(frames)))
    for position, row in zip(positions, table.to_pylist(), strict=True):
        expected = slow_row(frames[position])
        assert expected is not None, (
            f"the fast path took a frame the per-frame path refuses: {frames[position]}"
        )
        assert row == expected
    return len(positions)


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame_dict(), min_size=1, max_size=4))
def test_every_frame_the_fast_path_takes_matches_the_per_frame_path(frames: list[dict[str, Any]]) -> None:
    _agree(frames)


@st.composite
def tame_frame(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid frames in the fast path's shape, with optional keys left out or set to None."""
    sources = [{"id": "default", "uri": draw(st.sampled_from(["s3://b/x.jpg", "clip.mp4", "noext"]))}]
    odd_meta = st.dictionaries(
        st.sampled_from(["angle", "n"]), st.one_of(odd_values, st.integers()), max_size=2
    )
    for key, value in (
        ("width", 640),
        ("height", 480),
        ("timestamp", 40),
        ("content_type", "image/png"),
        ("meta", draw(odd_meta)),
        ("preview", None),
        ("masks", []),
    ):
        choice = draw(st.integers(0, 2))
        if choice:
            sources[0][key] = value if choice == 1 else (None if key != "masks" else [])
    rois = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["box2d", "poly2d", "points2d", "label"]))
        x, y = draw(st.integers(0, 100)), draw(st.floats(0, 100))
        poly = {"box2d": [x, y, x + 5, y, x + 5, y + 7, x, y + 7], "label": []}.get(
            kind, [x, y, x + 1, y + 2]
        )
        roi_: dict[str, Any] = {
            "labels": draw(st.lists(st.sampled_from(["car", "été", "Bus Stop"]), min_size=1, max_size=2)),
            "type": kind,
            "poly": poly,
        }
        for key, value in (
            ("id", "r1"),
            ("confidence", 0.25),
            ("sources", ["default"]),
            ("meta", draw(odd_meta)),
            ("mask", None),
        ):
            choice = draw(st.integers(0, 2))
            if choice:
                roi_[key] = value if choice == 1 else None
        rois.append(roi_)
    out: dict[str, Any] = {"sources": sources, "rois": rois}
    for key, value in (
        ("id", "frame-1"),
        ("context_id", "ctx"),
        ("timestamp", 7),
        ("meta", {"city": "x", "n": {"d": 2.5}, **draw(odd_meta)}),
        ("meta_blob", {"raw": [1, "a"]}),
    ):
        choice = draw(st.integers(0, 2))
        if choice:
            out[key] = value if choice == 1 else None
    return out


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(tame_frame(), min_size=1, max_size=3))
def test_valid_frames_in_every_optional_combination_agree(frames: list[dict[str, Any]]) -> None:
    _agree(frames)


flat_metas = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["city", "score", "n", "flag", "date", "été"]),
        st.one_of(
            st.text(max_size=4),
            st.integers(-(2**63), 2**64 - 1),
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
        ),
        max_size=4,
    ),
)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(flat_metas, min_size=1, max_size=6))
def test_flat_metadata_of_every_plain_type_takes_the_fast_path_with_the_same_rows(metas: list[Any]) -> None:
    """Text, 64-bit integers, floats and booleans: every frame is taken, with the per-frame rows."""
    frames = [
        {"id": f"f{i}", "sources": [{"id": "default", "uri": f"s3://b/{i}.jpg"}], "meta": meta}
        for i, meta in enumerate(metas)
    ]
    assert _agree(frames) == len(frames)


def test_a_typical_coco_like_batch_takes_the_fast_path_whole() -> None:
    frames = [
        {
            "id": f"f{i}",
            "sources": [{"id": "default", "uri": f"s3://b/{i}.jpg", "width": 640, "height": 480}],
            "rois": [
                {"labels": ["car"], "type": "box2d", "poly": [1, 2, 11, 2, 11, 22, 1, 22], "confidence": 0.5},
                {"labels": ["night"], "type": "label", "poly": []},
            ],
            "meta": {"city": "bremen", "score": 0.25, "date": "2024-10-20"},
        }
        for i in range(50)
    ]
    table, positions, left = columnar.fast_frames_table(
        frames, version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )
    assert left == [] and positions == list(range(50))
    assert table.to_pylist()[7] == slow_row(frames[7])


def _coco(i: int) -> dict[str, Any]:
    return {
        "id": f"f{i}",
        "timestamp": i,
        "sources": [{"id": "default", "uri": f"s3://b/{i}.jpg", "width": 640, "height": 480}],
        "rois": [{"labels": ["car"], "type": "box2d", "poly": [1, 2, 11, 2, 11, 22, 1, 22]}],
        "meta": {"city": "bremen"},
    }


def _with(i: int, **changes: Any) -> dict[str, Any]:
    frame = _coco(i)
    source = changes.pop("source", {})
    frame["sources"][0].update(source)
    frame.update(changes)
    return frame


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(_with(3, source={"width": 2**31}), id="width-over-int32"),
        pytest.param(_with(3, source={"height": 2**63}), id="height-over-int64"),
        pytest.param(_with(3, source={"width": -(2**40)}), id="width-far-below-zero"),
        pytest.param(_with(3, timestamp=2**63), id="timestamp-over-int64"),
        pytest.param(_with(3, source={"timestamp": 2**64}), id="source-timestamp-over-int64"),
        pytest.param(_with(3, source={"uri": "s3://b/\ud800.jpg"}), id="surrogate-uri"),
        pytest.param(_with(3, context_id="c\udfff"), id="surrogate-context"),
        pytest.param(_with(3, meta={"k": "\ud800"}), id="surrogate-meta"),
    ],
)
def test_only_the_row_arrow_would_refuse_leaves_the_fast_path(bad: dict[str, Any]) -> None:
    """One out-of-range or unencodable value sends its frame, not the whole batch, to the per-frame path."""
    frames = [_coco(i) for i in range(3)] + [bad] + [_coco(i) for i in range(4, 8)]
    table, positions, left = columnar.fast_frames_table(
        frames, version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )
    assert left == [3] and positions == [0, 1, 2, 4, 5, 6, 7]
    assert slow_row(bad) is None  # the per-frame path refuses it, naming the field
    assert _agree(frames) == 7


def _renamed(frame: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    frame[new] = frame.pop(old)
    return frame


def _two_sources_named(i: int, sid: str) -> dict[str, Any]:
    frame = _coco(i)
    frame["sources"].append({**frame["sources"][0], "id": sid, "uri": f"s3://b/{i}-2.jpg"})
    frame["sources"][0]["id"] = "front"
    return frame


@pytest.mark.parametrize(
    ("odd", "taken", "stored"),
    [
        pytest.param(_renamed(_coco(3), "meta", "metadata"), False, True, id="metadata-for-meta"),
        pytest.param(_with(3, dataset={"id": "x"}), False, True, id="a-dataviews-dataset"),
        pytest.param(_with(3, widht=3), False, False, id="no-frame-field"),
        pytest.param(_with(3, source={"metadata": {"a": 1}}), False, False, id="no-source-field"),
        pytest.param(
            _with(3, rois=[{"labels": ["car"], "box2d_xywh": [1, 2, 3, 4]}]),
            False,
            False,
            id="a-shape-argument",
        ),
        pytest.param(
            _with(3, rois=[{"label": ["car"], "type": "label"}]), False, True, id="label-for-labels"
        ),
        pytest.param(_two_sources_named(3, "front"), False, False, id="two-sources-one-id"),
        pytest.param(_two_sources_named(3, "rear"), True, True, id="two-sources"),
    ],
)
def test_other_spellings_and_keys_that_are_no_field_leave_the_fast_path(
    odd: dict[str, Any], taken: bool, stored: bool
) -> None:
    """Such a frame goes to the per-frame path, which reads the other spellings and refuses the rest."""
    frames = [_coco(i) for i in range(3)] + [odd] + [_coco(i) for i in range(4, 8)]
    _, positions, left = columnar.fast_frames_table(
        frames, version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )
    assert (3 in positions, left) == (taken, [] if taken else [3])
    assert (slow_row(odd) is not None) == stored
    _agree(frames)


def test_the_largest_sizes_and_times_stay_on_the_fast_path() -> None:
    frames = [_with(0, timestamp=2**63 - 1, source={"width": 2**31 - 1, "height": 1, "timestamp": 2**63 - 1})]
    assert _agree(frames) == 1


def test_typical_batches_take_the_fast_path_whole() -> None:
    """Common frames never need the per-frame path: nested meta, None values, no ids, source meta."""
    frames = [_coco(i) for i in range(20)]
    frames[3]["meta"] = {"city": "x", "n": {"d": 2.5, "list": [1, None]}, "none": None}
    frames[5]["rois"][0]["meta"] = {"area": 12.5, "iscrowd": 0}
    del frames[7]["id"]
    frames[9]["sources"][0]["meta"] = {"license": 3}
    assert _agree(frames) == 20


def test_only_frames_with_nan_odd_keys_or_odd_values_in_metadata_leave() -> None:
    odd = [_coco(i) for i in range(7)]
    odd[1]["meta"] = {"score": math.nan}
    odd[2]["rois"][0]["meta"] = {"a.b": 1}
    odd[4]["sources"][0]["meta"] = {"color": Color.RED}
    odd[5]["meta_blob"] = {"deep": [{"x": math.inf}]}
    odd[6]["rois"][0]["meta"] = {"fine": None, "also": "null"}
    _, positions, left = columnar.fast_frames_table(
        odd, version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )
    assert left == [1, 2, 4, 5] and sorted(positions) == [0, 3, 6]
    assert _agree(odd) == 3


# ---------------------------------------------------------------------------- the single-source shorthand

_SOURCE_KEYS = ("uri", "content_type", "width", "height", "timestamp", "preview", "masks")


def shorthand_of(frame: dict[str, Any], top_level: bool) -> dict[str, Any] | None:
    """The same one-source frame written in a shorthand (None when it has several sources).

    ``top_level``: the source's fields at the top (when the frame has neither a timestamp of its own
    nor source metadata, which that form cannot say); else the lone source without its id.
    """
    sources = frame.get("sources")
    if not isinstance(sources, list) or len(sources) != 1 or sources[0].get("id") != "default":
        return None
    source = {k: v for k, v in sources[0].items() if k != "id"}
    # the top-level form says only the source fields it names (a key that is no field would vanish)
    plain = set(source) <= {*_SOURCE_KEYS, "meta"}
    if top_level and plain and frame.get("timestamp") is None and not source.get("meta"):
        short = {k: v for k, v in frame.items() if k not in ("sources", "timestamp")}
        short.update((k, source[k]) for k in _SOURCE_KEYS if k in source)
        return short
    return {**frame, "sources": [source]}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(tame_frame(), frame_dict()), min_size=1, max_size=4), st.booleans())
def test_the_shorthand_gives_the_rows_of_the_full_form_on_both_paths(
    frames: list[dict[str, Any]], top_level: bool
) -> None:
    """A one-source frame written with a top-level uri, or with a source without id, is that frame."""
    shorts = [shorthand_of(f, top_level) for f in frames]
    mixed = [s if s is not None else f for f, s in zip(frames, shorts, strict=True)]
    for full, short in zip(frames, mixed, strict=True):
        assert slow_row(short) == slow_row(full)
    full_table, full_taken, _ = columnar.fast_frames_table(
        frames, version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )
    short_table, short_taken, _ = columnar.fast_frames_table(
        mixed, version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )
    assert short_taken == full_taken  # the shorthand takes the fast path exactly when the full form does
    assert short_table.to_pylist() == full_table.to_pylist()
    _agree(mixed)


def test_typical_shorthand_frames_take_the_fast_path_whole() -> None:
    frames: list[dict[str, Any]] = [
        {"uri": f"s3://b/{i}.jpg", "width": 640, "height": 480, "meta": {"city": "bremen"}} for i in range(10)
    ]
    frames.append(
        {
            "uri": "s3://b/clip.mp4",
            "timestamp": 40,
            "rois": [{"labels": ["car"], "type": "label", "poly": []}],
        }
    )
    frames.append({"id": "lone", "sources": [{"uri": "s3://b/x.png", "meta": {"angle": 45}}]})
    assert _agree(frames) == len(frames)
    rows = columnar.fast_frames_table(
        frames, version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )[0].to_pylist()
    assert {s["id"] for row in rows for s in row["sources"]} == {"default"}
    assert rows[0]["sources"][0]["content_type"] == "image/jpeg"
    assert rows[10]["timestamp"] == 40 and rows[10]["sources"][0]["timestamp"] == 40
    assert rows[11]["id"] == "lone" and rows[11]["sources"][0]["meta"] == '{"angle":45}'


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"uri": "s3://b/1.jpg", "sources": [{"id": "a", "uri": "s3://b/2.jpg"}]}, "not both"),
        (
            {"sources": [{"uri": "s3://b/1.jpg"}, {"id": "rear", "uri": "s3://b/2.jpg"}]},
            "sources[0] has no id",
        ),
        ({"sources": [{"id": "front"}]}, "sources[0] has no uri"),
        ({"meta": {"city": "x"}}, "has no sources; give a uri"),
    ],
)
def test_frames_the_shorthand_does_not_cover_are_refused_by_both_paths(
    bad: dict[str, Any], says: str
) -> None:
    _, taken, _ = columnar.fast_frames_table(
        [bad], version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )
    assert taken == []
    with pytest.raises(HdsError, match=re.escape(says)):
        normalize(bad)


def test_a_blank_uri_is_refused_by_both_paths() -> None:
    """Every text Python strips to nothing (Unicode spaces, the separators U+001C..U+001F) is no URI."""
    blanks = [chr(c) for c in range(0x3001) if chr(c).isspace()]
    frames = [_with(i, source={"uri": text}) for i, text in enumerate([*blanks, " \u3000\x1f\t"])]
    frames.append(_with(99, source={"uri": " s3://b/\tspaced name.jpg "}))
    _, taken, left = columnar.fast_frames_table(
        frames, version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )
    assert left[: len(frames) - 1] == list(range(len(frames) - 1))
    assert all(slow_row(frames[i]) is None for i in left[: len(frames) - 1])
    assert slow_row(frames[-1]) is not None
    _agree(frames)


def _rows_with_bad_rois(n: int, bad: set[int], tag: str) -> list[dict[str, Any]]:
    """Rows of the frame index (FRAME_SCHEMA), one box ROI each; rows in ``bad`` hold a confidence of 5."""
    return [
        {
            "id": f"{tag}{i:03d}",
            "context_id": "video",
            "timestamp": 0,
            "sources": [{"id": "cam", "uri": f"s3://b/{i}.jpg", "width": 8, "height": 8, "timestamp": 0}],
            "rois": [
                {
                    "id": f"r{i}",
                    "labels": ["car"],
                    "type": "box2d",
                    "poly": [0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0],
                    "confidence": 5.0 if i in bad else 0.5,
                    "sources": ["cam"],
                }
            ],
        }
        for i in range(n)
    ]


def test_column_checks_flag_the_same_rows_whether_columns_are_slices_or_copies() -> None:
    """The checks index flat values by list offsets: a slice, or lists whose offsets start inside
    their values, must be read as the rows they show, not as the values' first rows."""
    schema = segments.FRAME_SCHEMA
    rows = _rows_with_bad_rois(40, {7, 31}, "f")
    plain = pa.Table.from_pylist(rows, schema=schema)
    assert np.flatnonzero(columnar._invalid_rows(plain)).tolist() == [7, 31]
    # the same rows as a slice of a longer table whose other rows are bad where these are not
    before = _rows_with_bad_rois(25, {1, 2, 3, 20}, "e")
    longer = pa.Table.from_pylist(before + rows, schema=schema).combine_chunks()
    sliced = longer.slice(len(before))
    assert sliced.column("rois").chunk(0).offset == len(before)
    # the ROI lists rebuilt over all ROIs of the longer table, their offsets starting inside
    whole = longer.column("rois").chunk(0)
    starts = pa.array(whole.offsets.to_numpy()[len(before) :])  # a new array: the list's offset is 0
    inside = pa.ListArray.from_arrays(starts, whole.values)
    rebuilt = plain.set_column(plain.schema.get_field_index("rois"), "rois", inside)
    assert rebuilt.column("rois").chunk(0).offset == 0 and inside.offsets[0].as_py() > 0
    for table in (sliced, rebuilt):
        assert np.flatnonzero(columnar._invalid_rows(table)).tolist() == [7, 31]


#: Characters the column checks must catch among plain ASCII (the per-frame path then decides):
#: controls, DEL, Unicode separators and format characters. And printable ones they must let pass.
_UNPRINTABLE = ["\x00", "\t", "\x1f", "\x7f", "\x85", "\u00ad", "\u2028", "\u200b", "\ufeff"]
_PRINTABLE = ["é", "ß", "😀", "日本", "~", " "]


@pytest.mark.parametrize("where", ["id", "uri", "label", "roi id", "source id"])
def test_a_name_with_an_unprintable_character_leaves_the_fast_path_wherever_it_sits(where: str) -> None:
    """One character that is not printable, in one name of a batch of ASCII names, sends that frame alone."""

    def frame(i: int, text: str) -> dict[str, Any]:
        out = _coco(i)
        roi, source = out["rois"][0], out["sources"][0]
        if where == "id":
            out["id"] = f"f{i}-{text}"
        elif where == "uri":
            source["uri"] = f"s3://b/{i}{text}.jpg"
        elif where == "label":
            roi["labels"] = ["car", f"car{text}x"]
        elif where == "roi id":
            roi["id"] = f"r{i}{text}"
        else:
            source["id"] = f"cam{text}"
            roi["sources"] = [source["id"]]
        return out

    texts = [*_UNPRINTABLE, *_PRINTABLE]
    frames = [frame(i, "plain") for i in range(40)]
    odd = {3 + 4 * k: text for k, text in enumerate(texts)}  # spread among the plain ones
    frames += [frame(40 + i, "plain") for i in range(max(odd) - 39)]
    for i, text in odd.items():
        frames[i] = frame(i, text)
    _, positions, left = columnar.fast_frames_table(
        frames, version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )
    assert set(left) == {i for i, text in odd.items() if text in _UNPRINTABLE}
    assert len(positions) == len(frames) - len(_UNPRINTABLE)
    _agree(frames)


def test_a_batch_of_boxes_alone_still_sends_each_box_that_is_no_rectangle_to_the_per_frame_path() -> None:
    # when every ROI of a batch is a box, the corners are checked as rows of one array: each frame
    # with a box whose corners are no axis-aligned rectangle (or run backwards) must still leave
    frames = [_coco(i) for i in range(30)]
    for frame in frames[::3]:
        frame["rois"].append({"labels": ["bus"], "type": "box2d", "poly": [0, 0, 5, 0, 5, 5, 0, 5]})
    skewed, backwards = [1, 2, 11, 3, 11, 22, 1, 22], [11, 2, 1, 2, 1, 22, 11, 22]
    frames[7]["rois"][0]["poly"] = skewed
    frames[12]["rois"][-1]["poly"] = backwards
    _, positions, left = columnar.fast_frames_table(
        frames, version_id=VID, now=NOW, hash_id=hash_id, guess_type=guess_content_type
    )
    assert left == [7, 12]
    assert _agree(frames) == 28
