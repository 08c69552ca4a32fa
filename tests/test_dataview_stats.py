"""DataView.get_stats: frames, ROIs, labels after mapping (total and per rule) and property distributions,
checked against what iterating the view gives."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from typing import Any

import pytest

import hds_s3
from hds_s3 import Client, DatasetVersion, SingleFrame, ValidationError
from hds_s3.query.dataview import DataView

LABELS = [["cat"], ["cat", "small"], ["dog"], ["small", "cat", "cat"], ["bird"], []]


def make(fid: str, rng: random.Random) -> SingleFrame:
    f = SingleFrame(
        source=f"s3://bucket/{fid}.jpg",
        width=rng.choice([64, 128]),
        height=48,
        metadata={
            "city": rng.choice(["bremen", "hamburg"]),
            "n": rng.randint(0, 2),
            "flag": rng.random() < 0.5,
        }
        if rng.random() < 0.8
        else {},
        id=fid,
        context_id=rng.choice(["a", "b", None]),
    )
    for _ in range(rng.randint(0, 3)):
        labels = rng.choice(LABELS)
        if labels:
            f.add_annotation(box2d_xywh=(1, 1, 4, 4), labels=labels, confidence=0.5)
        else:
            f.add_annotation(box2d_xywh=(1, 1, 4, 4), confidence=0.5)
    return f


@pytest.fixture
def client() -> Client:
    c = hds_s3.connect(f"memory://stats-{uuid.uuid4().hex}")
    rng = random.Random(4)
    one = DatasetVersion.create_new_dataset(dataset_name="one", client=c)
    one.add_frames([make(f"one-{i}", rng) for i in range(40)])
    two = DatasetVersion.create_new_dataset(dataset_name="two", client=c)
    two.add_frames([make(f"two-{i}", rng) for i in range(30)])
    return c


def the_view(client: Client, rules: list[dict[str, Any]]) -> DataView:
    view = DataView(client=client)
    for rule in rules:
        view.add_query(**rule)
    view.add_mapping_rule(["cat", "small"], "kitten")
    view.add_mapping_rule("cat", "feline", dataset_name="one")
    view.add_mapping_rule("dog", "canine", dataset_name="two")
    return view


RULES = [
    {"dataset_name": "one", "roi_query": "cat"},
    {"dataset_name": "two", "frame_query": "meta.city:bremen"},
    {"dataset_name": "one", "frame_query": "meta.n:[1 TO 2]"},
]


def expected(frames: list[dict[str, Any]]) -> dict[str, Any]:
    labels = Counter(label for f in frames for roi in f["rois"] for label in roi["labels"])
    return {
        "frames": len(frames),
        "rois": sum(len(f["rois"]) for f in frames),
        "labels": dict(labels),
    }


def as_counts(rows: list[dict[str, Any]], key: str = "name") -> dict[Any, int]:
    return {r[key]: r["count"] for r in rows}


def test_stats_agree_with_the_frames_the_view_yields(client: Client) -> None:
    view = the_view(client, RULES)
    stats = view.get_stats(["meta.city", "meta.n", "meta.flag", "sources.width", "rois.type", "context_id"])
    frames = view.to_dict()
    want = expected(frames)
    assert (stats["frames"], stats["rois"], as_counts(stats["labels"])) == (
        want["frames"],
        want["rois"],
        want["labels"],
    )
    assert {"kitten", "feline", "canine"} <= set(want["labels"])  # the mapping did something
    for i, rule in enumerate(RULES):
        alone = expected(the_view(client, [rule]).to_dict())
        got = stats["rules"][i]
        assert got["rule_index"] == i
        assert (got["frames"], got["rois"], as_counts(got["labels"])) == (
            alone["frames"],
            alone["rois"],
            alone["labels"],
        )
    props = stats["properties"]
    cities = Counter(f["meta"]["city"] for f in frames if "city" in f["meta"])
    assert as_counts(props["meta.city"]["values"], "value") == dict(cities)
    assert props["meta.city"]["missing"] == sum(1 for f in frames if "city" not in f["meta"])
    assert as_counts(props["meta.n"]["values"], "value") == dict(
        Counter(f["meta"]["n"] for f in frames if "n" in f["meta"])
    )
    assert as_counts(props["meta.flag"]["values"], "value") == dict(
        Counter(int(f["meta"]["flag"]) for f in frames if "flag" in f["meta"])
    )
    assert as_counts(props["sources.width"]["values"], "value") == dict(
        Counter(s["width"] for f in frames for s in f["sources"])
    )
    assert as_counts(props["rois.type"]["values"], "value") == dict(
        Counter(r["type"] for f in frames for r in f["rois"])
    )
    contexts = Counter(f["context_id"] for f in frames)
    assert as_counts(props["context_id"]["values"], "value") == {k: v for k, v in contexts.items() if k}
    assert props["context_id"]["missing"] == contexts.get(None, 0)


def test_a_view_matching_nothing_has_empty_stats(client: Client) -> None:
    view = DataView(client=client)
    view.add_query(dataset_name="one", roi_query="giraffe")
    stats = view.get_stats("meta.city")
    assert stats == {
        "frames": 0,
        "rois": 0,
        "labels": [],
        "rules": [{"rule_index": 0, "frames": 0, "rois": 0, "labels": []}],
        "properties": {"meta.city": {"values": [], "missing": 0}},
    }


@pytest.mark.parametrize("bad", ["", "sources.meta", "rois.poly", "nothing", "meta."])
def test_unknown_properties_are_refused(client: Client, bad: str) -> None:
    view = the_view(client, RULES[:1])
    with pytest.raises(ValidationError, match="property|non-empty"):
        view.get_stats([bad])


@pytest.mark.parametrize("bad", [5, [1], {"meta.city": 1}])
def test_properties_of_the_wrong_type_are_refused(client: Client, bad: Any) -> None:
    view = the_view(client, RULES[:1])
    with pytest.raises(ValidationError, match="properties must be"):
        view.get_stats(bad)
