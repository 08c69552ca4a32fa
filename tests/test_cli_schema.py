"""``hds frames schema`` and the format ``hds frames add --help`` documents, through the console script."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hds_s3.model.schema import frame_row_schema, frame_schema


def hds(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("hds", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the hds console script is not installed next to this interpreter")
    env = {k: v for k, v in os.environ.items() if k != "HDS_STORE"}
    env["COLUMNS"] = "100"
    return subprocess.run([script, *args], capture_output=True, text=True, env=env, timeout=120)


def test_frames_schema_prints_the_shipped_schemas() -> None:
    run = hds("frames", "schema")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == frame_schema()
    run = hds("frames", "schema", "--arrow")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == frame_row_schema()


def help_examples(text: str) -> list[dict[str, Any]]:
    """The JSON objects shown in a help text (each starts on a line of its own with '{')."""
    examples, block = [], ""
    for line in text.splitlines():
        if line.strip().startswith("{") and not block:
            block = line
        elif block:
            block += line
        if block:
            try:
                examples.append(json.loads(block))
                block = ""
            except json.JSONDecodeError:
                continue
    return examples


def test_frames_add_help_names_the_format_and_its_examples_work(tmp_path: Path) -> None:
    run = hds("frames", "add", "--help")
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())
    assert "hds frames schema" in text and "JSON Schema" in text and '"default"' in text
    examples = help_examples(run.stdout)
    assert len(examples) == 2
    single, group = examples
    assert "sources" not in single and "uri" in single  # the shorthand
    assert len(group["sources"]) == 2 and group["rois"][0]["type"] == "box2d"
    frames = tmp_path / "frames.jsonl"
    frames.write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
    store = str(tmp_path / "store")
    assert hds("--store", store, "datasets", "create", "cars").returncode == 0
    run = hds("--store", store, "frames", "add", "--dataset", "cars", str(frames))
    assert run.returncode == 0, run.stderr
    assert re.search(r"added 2 frames", run.stdout)
    run = hds("--store", store, "frames", "export", "--dataset", "cars", "-")
    assert run.returncode == 0, run.stderr
    exported = {f["id"]: f for f in map(json.loads, run.stdout.splitlines())}
    assert sorted(s["id"] for s in exported["rig-0001"]["sources"]) == ["front", "rear"]
    (one,) = (f for f in exported.values() if f["id"] != "rig-0001")
    assert [s["id"] for s in one["sources"]] == ["default"]
    assert one["sources"][0]["uri"] == single["uri"] and one["meta"] == single["meta"]
    assert one["sources"][0]["content_type"] == "image/jpeg"


def test_a_frame_given_as_just_a_uri_is_added(tmp_path: Path) -> None:
    frames = tmp_path / "frames.jsonl"
    frames.write_text('{"uri": "s3://b/1.jpg"}\n{"sources": [{"uri": "s3://b/2.jpg"}]}\n', encoding="utf-8")
    store = str(tmp_path / "store")
    assert hds("--store", store, "datasets", "create", "cars").returncode == 0
    run = hds("--store", store, "frames", "add", "--dataset", "cars", str(frames))
    assert run.returncode == 0, run.stderr
    run = hds("--store", store, "frames", "export", "--dataset", "cars", "-")
    assert sorted(s["uri"] for f in map(json.loads, run.stdout.splitlines()) for s in f["sources"]) == [
        "s3://b/1.jpg",
        "s3://b/2.jpg",
    ]


def test_a_source_without_id_among_several_is_one_line_naming_the_line(tmp_path: Path) -> None:
    frames = tmp_path / "frames.jsonl"
    frames.write_text('{"sources": [{"uri": "a.jpg"}, {"id": "rear", "uri": "b.jpg"}]}\n', encoding="utf-8")
    store = str(tmp_path / "store")
    assert hds("--store", store, "datasets", "create", "cars").returncode == 0
    run = hds("--store", store, "frames", "add", "--dataset", "cars", str(frames))
    assert run.returncode == 1
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("hds: error:")]
    assert line.startswith("hds: error: frames.jsonl line 1:") and "sources[0] has no id" in line
    assert "Traceback" not in run.stderr
