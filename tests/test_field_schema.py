"""The field schema of a version and of a dataset: every meta path in use and its types, following
the commits (add, update, delete, child versions), shown as a union when frames disagree."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import hds_s3
from hds_s3 import Client, Dataset, DatasetVersion, SingleFrame
from hds_s3.index.fieldschema import conflicts


@pytest.fixture
def client() -> Client:
    return hds_s3.connect(f"memory://schema-{uuid.uuid4().hex}")


def frame(fid: str, **meta: object) -> SingleFrame:
    return SingleFrame(source=f"s3://b/{fid}.jpg", id=fid, metadata=dict(meta))


def test_the_schema_follows_the_commits(client: Client) -> None:
    v = DatasetVersion.create_new_dataset(dataset_name="s", client=client)
    assert v.get_schema() == {}
    v.add_frames(
        [frame("a", city="bremen", n=2, weather={"wind": 3.5, "rain": True}), frame("b", city="paris")]
    )
    schema = v.get_schema()
    assert schema == {
        "meta.city": {"types": ["string"], "frames": {"string": 2}},
        "meta.n": {"types": ["integer"], "frames": {"integer": 1}},
        "meta.weather": {"types": ["object"], "frames": {"object": 1}},
        "meta.weather.rain": {"types": ["boolean"], "frames": {"boolean": 1}},
        "meta.weather.wind": {"types": ["number"], "frames": {"number": 1}},
    }
    # a frame giving another type: allowed, and shown as a union with the count of each
    v.add_frames([frame("c", city=7, tags=["x"])])
    schema = v.get_schema()
    assert schema["meta.city"] == {"types": ["string", "integer"], "frames": {"string": 2, "integer": 1}}
    assert schema["meta.tags"]["types"] == ["array"]
    assert conflicts(schema) == ["meta.city"]
    # updates and deletions take paths out of use
    v.update_frames([frame("c", city="rome")])
    v.delete_frames(["a"])
    schema = v.get_schema()
    assert schema["meta.city"]["types"] == ["string"] and "meta.n" not in schema and "meta.tags" not in schema
    # the dataset's schema is every version's together
    DatasetVersion.create_snapshot(dataset_name="s", publish_name="v1", client=client)
    child = DatasetVersion.create_version(
        dataset_name="s", version_name="more", parent_version_names=["v1"], client=client
    )
    child.add_frames([frame("d", score=0.5)])
    assert "meta.score" not in v.reload().get_schema()
    whole = Dataset.get("s", client=client).get_schema()
    assert whole["meta.score"]["types"] == ["number"]
    assert whole["meta.city"]["frames"]["string"] >= 2


def test_hds_datasets_schema_prints_it(tmp_path: Path) -> None:
    store = tmp_path / "store"
    v = DatasetVersion.create_new_dataset(dataset_name="cli", client=hds_s3.connect(str(store)))
    v.add_frames([frame("a", city="bremen"), frame("b", city=3)])
    run = [sys.executable, "-m", "hds_s3.cli", "--store", str(store)]
    shown = subprocess.run(
        [*run, "--json", "datasets", "schema", "--dataset", "cli"], capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["meta.city"]["types"] == ["string", "integer"]
    text = subprocess.run(
        [*run, "datasets", "schema", "--dataset", "cli", "--version", "Current"],
        capture_output=True,
        text=True,
    )
    assert text.returncode == 0, text.stderr
    assert "meta.city" in text.stdout and "string | integer" in text.stdout
    missing = subprocess.run(
        [*run, "datasets", "schema", "--dataset", "nope"], capture_output=True, text=True
    )
    assert missing.returncode == 1 and "nope" in missing.stderr
