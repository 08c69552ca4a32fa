"""The ``hds`` command: a few end-to-end runs of the real program, and CliRunner for the details."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from hds_s3 import Dataset, DatasetVersion, SingleFrame, connect
from hds_s3.cli import app as cli_module
from hds_s3.cli.app import cli, view_rules
from hds_s3.model.frames import to_frame_dict

COCO_FILE = Path(__file__).parent / "data" / "coco_small.json"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


class Hds:
    """Runs ``hds --store <tmp> ...`` in-process with click's CliRunner."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0, catch: bool = True) -> Result:
        result = self.runner.invoke(cli, ["--store", str(self.store), *args], catch_exceptions=catch)
        assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self("--json", *args).stdout)


@pytest.fixture
def hds(store: Path) -> Hds:
    return Hds(store)


def frame_dict(i: int, label: str = "car", city: str = "bremen") -> dict[str, Any]:
    frame = SingleFrame(source=f"s3://bucket/img/{i:04d}.jpg", width=64, height=48, metadata={"city": city})
    frame.id = f"f{i:04d}"
    frame.add_annotation(box2d_xywh=(1, 2, 10, 5), labels=[label], id=f"r{i}")
    return to_frame_dict(frame)


def write_jsonl(path: Path, frames: list[Any]) -> Path:
    path.write_text("".join(json.dumps(f) + "\n" for f in frames), encoding="utf-8")
    return path


def one_error_line(result: Result) -> str:
    """The one ``hds: error:`` line of a failure (after any notes, before at most a hint)."""
    lines = result.stderr.strip().splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("hds: error: ")]
    assert len(errors) == 1, result.stderr
    assert all(line.startswith("hds: ") for line in lines[: errors[0]]), result.stderr
    after = lines[errors[0] + 1 :]  # a query and its caret, then a hint
    assert all(line.startswith(("hds: hint: ", "    ")) for line in after), result.stderr
    assert "Traceback" not in result.output
    return lines[errors[0]]


def json_error(result: Result) -> dict[str, Any]:
    """The error of a ``--json`` failure: stderr is one JSON object of the stable shape, stdout is empty."""
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    data = json.loads(lines[0])
    assert list(data) == ["error"] and sorted(data["error"]) == ["hint", "message", "type"]
    error: dict[str, Any] = data["error"]
    return error


# ------------------------------------------------------------------ the real program


def run_hds(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HDS_STORE"}
    return subprocess.run(
        [sys.executable, "-m", "hds_s3.cli", "--store", str(store), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_real_command_creates_fills_snapshots_and_exports(store: Path, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [frame_dict(i) for i in range(3)])
    steps = [
        ("datasets", "create", "--dataset", "cars"),
        ("frames", "add", "--dataset", "cars", str(source)),
        ("versions", "snapshot", "--dataset", "cars", "--publish-name", "v1"),
        ("frames", "export", "--dataset", "cars", "--version", "v1", str(tmp_path / "out.jsonl")),
    ]
    for step in steps:
        done = run_hds(store, *step)
        assert done.returncode == 0, (step, done.stdout, done.stderr)
    tree = run_hds(store, "versions", "tree", "--dataset", "cars")
    assert tree.returncode == 0
    assert tree.stdout.splitlines() == [
        "cars",
        "└── v1  [published]  3 frames",
        "    └── Current  [draft]  3 frames  <- current",
    ]
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [f["id"] for f in out] == ["f0000", "f0001", "f0002"]


def test_the_real_command_fails_with_one_line_and_the_right_code(store: Path) -> None:
    missing = run_hds(store, "frames", "count", "--dataset", "nope")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("hds: error: ") and "'nope'" in missing.stderr

    usage = run_hds(store, "frames", "count")
    assert usage.returncode == 2
    assert "--dataset NAME or --dataset-id ID" in usage.stderr

    debug = run_hds(store, "--debug", "frames", "count", "--dataset", "nope")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "NotFoundError" in debug.stderr


def test_the_real_command_has_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hds_s3.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0
    for group in ("datasets", "versions", "frames", "query", "coco", "fsck", "gc"):
        assert group in done.stdout


# ------------------------------------------------------------------ help and global options


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def test_every_command_has_help(hds: Hds) -> None:
    paths = list(_commands(cli))
    assert ("versions", "metadata", "set") in paths and ("coco", "export") in paths
    for path in paths:
        result = hds(*path, "--help")
        assert "Usage: " in result.stdout and "--help" in result.stdout, path


def test_store_defaults_to_hds_store(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HDS_STORE", str(store))
    result = CliRunner().invoke(cli, ["datasets", "create", "-d", "viaenv"])
    assert result.exit_code == 0, result.output
    assert Dataset.exists("viaenv", client=connect(str(store)))


def test_a_bad_store_url_is_one_line(hds: Hds) -> None:
    result = CliRunner().invoke(cli, ["--store", "ftp://x/y", "datasets", "list"])
    assert result.exit_code == 1
    assert "unsupported scheme 'ftp'" in one_error_line(result)


def test_unexpected_errors_are_one_line_unless_debug(hds: Hds, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Dataset, "list_datasets", boom)
    result = hds("datasets", "list", code=1)
    assert one_error_line(result) == "hds: error: unexpected RuntimeError: disk on fire"
    assert result.stderr.splitlines()[1] == "hds: hint: run with --debug for the traceback"
    result = hds("--debug", "datasets", "list", code=1)
    assert isinstance(result.exception, RuntimeError)


# ------------------------------------------------------------------ datasets


def test_datasets_create_list_show_delete(hds: Hds) -> None:
    made = hds.json("datasets", "create", "-d", "cars", "--tag", "street", "--description", "scenes")
    assert made["name"] == "cars" and made["tags"] == ["street"]
    assert made["current_version"]["name"] == "Current"
    hds("datasets", "create", "-d", "bikes", "--metadata", '{"owner": "ana"}')

    assert [d["name"] for d in hds.json("datasets", "list")] == ["bikes", "cars"]
    assert [d["name"] for d in hds.json("datasets", "list", "--tag", "street")] == ["cars"]
    assert "cars" in hds("datasets", "list").stdout

    shown = hds.json("datasets", "show", "--dataset-id", made["id"])
    assert shown["name"] == "cars" and [v["name"] for v in shown["versions"]] == ["Current"]
    assert hds.json("datasets", "show", "--dataset", "bikes")["metadata"] == {"owner": "ana"}
    assert "description:  scenes" in hds("datasets", "show", "--dataset", "cars").stdout

    hds("datasets", "delete", "--dataset", "cars", "--yes")
    assert [d["name"] for d in hds.json("datasets", "list")] == ["bikes"]


def test_datasets_create_uses_an_existing_dataset_unless_fail_if_exists(hds: Hds) -> None:
    first = hds.json("datasets", "create", "--dataset", "cars", "--tag", "a")
    assert first["created"] is True
    again = hds("datasets", "create", "-d", "cars", "--tag", "b")  # as Python's Dataset.create: get or create
    assert "exists already; nothing was changed" in again.stdout
    assert hds.json("datasets", "create", "-d", "cars", "--exist-ok") == {**first, "created": False}
    line = one_error_line(hds("datasets", "create", "-d", "cars", "--fail-if-exists", code=1))
    assert "cars" in line and "already" in line
    assert hds.json("datasets", "show", "-d", "cars")["tags"] == ["a"]


def test_datasets_create_by_argument_still_works_with_a_deprecation_note(hds: Hds) -> None:
    result = hds("datasets", "create", "bikes")
    assert "created dataset 'bikes'" in result.stdout
    assert "hds: note: 'hds datasets create NAME' is deprecated" in result.stderr
    assert "--dataset NAME" in result.stderr
    assert "not both" in hds("datasets", "create", "-d", "a", "b", code=2).stderr
    assert "give the name" in hds("datasets", "create", code=2).stderr


def test_datasets_delete_needs_flags_for_frames_and_published_versions(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    hds("frames", "add", "--dataset", "cars", str(write_jsonl(tmp_path / "f.jsonl", [frame_dict(1)])))
    assert "pass --all-versions to delete" in one_error_line(
        hds("datasets", "delete", "--dataset", "cars", "--yes", code=1)
    )
    hds("versions", "publish", "--dataset", "cars")
    assert "pass --all-versions --force" in one_error_line(
        hds("datasets", "delete", "--dataset", "cars", "--all-versions", "-y", code=1)
    )
    hds("datasets", "delete", "--dataset", "cars", "--all-versions", "--force", "--yes")
    hds("datasets", "show", "--dataset", "cars", code=1)


def test_selection_flags_are_checked(hds: Hds) -> None:
    hds("datasets", "create", "-d", "cars")
    hds("datasets", "show", code=2)
    both = hds("datasets", "show", "--dataset", "cars", "--dataset-id", "0" * 32, code=2)
    assert "not both" in both.stderr
    hds("versions", "rename", "--dataset", "cars", "new", code=2)  # rename names its version
    hds("frames", "count", "--dataset", "cars", "--version", "Current", "--version-id", "0" * 32, code=2)
    assert "no version named 'v9'" in one_error_line(
        hds("frames", "count", "--dataset", "cars", "--version", "v9", code=1)
    )


# ------------------------------------------------------------------ versions


def test_versions_lifecycle(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    hds("frames", "add", "--dataset", "cars", str(write_jsonl(tmp_path / "f.jsonl", [frame_dict(1)])))
    snap = hds.json(
        "versions", "snapshot", "--dataset", "cars", "--publish-name", "v1", "--child-comment", "next"
    )
    assert snap["snapshot"]["name"] == "v1" and snap["snapshot"]["status"] == "published"
    assert snap["current"]["name"] == "Current" and snap["current"]["comment"] == "next"

    child = hds.json(
        "versions", "create", "--dataset", "cars", "-v", "relabel", "--parent", "v1", "--tag", "x"
    )
    assert child["parent_id"] == snap["snapshot"]["id"] and child["tags"] == ["x"]
    assert "already has a version named 'relabel'" in one_error_line(
        hds("versions", "create", "-d", "cars", "-v", "relabel", "--parent", "v1", "--fail-if-exists", code=1)
    )
    again = hds.json("versions", "create", "-d", "cars", "--version", "relabel", "--exist-ok")
    assert again["created"] is False and again["id"] == child["id"]
    assert "deprecated" in hds("versions", "create", "--dataset", "cars", "root2").stderr

    listed = hds.json("versions", "list", "--dataset", "cars")
    assert [(v["name"], v["status"], v["parent"], v["current"]) for v in listed] == [
        ("v1", "published", None, False),
        ("Current", "draft", "v1", False),
        ("relabel", "draft", "v1", True),  # the newest of the drafts farthest from the root
        ("root2", "draft", None, False),
    ]
    assert [v["name"] for v in hds.json("versions", "list", "--dataset", "cars", "--published")] == ["v1"]
    hds("versions", "list", "--dataset", "cars", "--published", "--drafts", code=2)

    hds("versions", "rename", "--dataset", "cars", "--version", "relabel", "relabel-2")
    hds("versions", "publish", "--dataset", "cars", "--version", "relabel-2")
    assert "already published" in one_error_line(
        hds("versions", "publish", "--dataset", "cars", "--version", "relabel-2", code=1)
    )
    hds("versions", "delete", "--dataset", "cars", "--version", "root2", "--yes")
    assert "pass --force" in one_error_line(
        hds("versions", "delete", "--dataset", "cars", "--version", "relabel-2", "--yes", code=1)
    )
    hds("versions", "delete", "--dataset", "cars", "--version", "relabel-2", "--force", "--yes")
    assert [v["name"] for v in hds.json("versions", "list", "--dataset", "cars")] == ["v1", "Current"]


def test_versions_tree_draws_status_and_frame_counts(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    hds(
        "frames",
        "add",
        "--dataset",
        "cars",
        str(write_jsonl(tmp_path / "a.jsonl", [frame_dict(1), frame_dict(2)])),
    )
    hds("versions", "snapshot", "--dataset", "cars", "--publish-name", "v1")
    hds("frames", "add", "--dataset", "cars", str(write_jsonl(tmp_path / "b.jsonl", [frame_dict(3)])))
    hds("versions", "create", "--dataset", "cars", "-v", "fix", "--parent", "v1")
    hds("versions", "create", "--dataset", "cars", "-v", "scratch")
    assert hds("versions", "tree", "--dataset", "cars").stdout.splitlines() == [
        "cars",
        "├── v1  [published]  2 frames",
        "│   ├── Current  [draft]  3 frames",
        "│   └── fix  [draft]  2 frames  <- current",  # the newest of the drafts farthest from the root
        "└── scratch  [draft]  0 frames",
    ]
    tree = hds.json("versions", "tree", "--dataset", "cars")
    (v1, current, fix, scratch) = tree["versions"]  # depth first, as drawn
    assert (v1["name"], v1["frames"], v1["parent"]) == ("v1", 2, None)
    assert v1["children"] == [current["id"], fix["id"]] and current["parent"] == v1["id"]
    assert (current["name"], fix["name"], fix["current"]) == ("Current", "fix", True)
    assert scratch["children"] == [] and scratch["frames"] == 0
    with_ids = hds("versions", "tree", "--dataset", "cars", "--ids").stdout
    assert v1["id"] in with_ids


def test_versions_stats(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    frames = [frame_dict(1), frame_dict(2, label="bus"), frame_dict(3)]
    hds("frames", "add", "--dataset", "cars", str(write_jsonl(tmp_path / "a.jsonl", frames)))
    stats = hds.json("versions", "stats", "--dataset", "cars")
    assert stats["frames"] == 3 and stats["annotated"] == 3
    assert {e["name"]: e["count"] for e in stats["labels"]} == {"car": 2, "bus": 1}
    text = hds("versions", "stats", "--dataset", "cars").stdout
    assert "frames:       3" in text and "car    2" in text


def test_versions_metadata_get_and_set(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    assert hds.json("versions", "metadata", "get", "--dataset", "cars") == {}
    hds("versions", "metadata", "set", "--dataset", "cars", '{"a": 1, "b": {"c": [1, 2]}}')
    assert hds("versions", "metadata", "get", "--dataset", "cars").stdout.startswith("{\n")
    assert hds.json("versions", "metadata", "get", "--dataset", "cars") == {"a": 1, "b": {"c": [1, 2]}}
    hds("versions", "metadata", "set", "--dataset", "cars", "--merge", '{"d": true}')
    assert hds.json("versions", "metadata", "get", "--dataset", "cars") == {
        "a": 1,
        "b": {"c": [1, 2]},
        "d": True,
    }
    from_file = tmp_path / "meta.json"
    from_file.write_text('{"only": "this"}', encoding="utf-8")
    hds("versions", "metadata", "set", "--dataset", "cars", f"@{from_file}")
    assert hds.json("versions", "metadata", "get", "--dataset", "cars") == {"only": "this"}

    bad_json = hds("versions", "metadata", "set", "--dataset", "cars", "{nope", code=2)
    assert "not valid JSON" in bad_json.stderr
    hds("versions", "metadata", "set", "--dataset", "cars", "[1]", code=2)
    assert "'a.b'" in one_error_line(
        hds("versions", "metadata", "set", "--dataset", "cars", '{"a.b": 1}', code=1)
    )
    assert hds.json("versions", "metadata", "get", "--dataset", "cars") == {"only": "this"}


# ------------------------------------------------------------------ frames


def test_frames_add_get_count_delete(hds: Hds, tmp_path: Path, store: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    frames = [frame_dict(i) for i in range(5)]
    added = hds.json("frames", "add", "--dataset", "cars", str(write_jsonl(tmp_path / "f.jsonl", frames)))
    assert added["added"] == 5 and added["skipped"] == []
    assert hds("frames", "count", "--dataset", "cars").stdout == "5\n"

    got = json.loads(hds("frames", "get", "--dataset", "cars", "f0002").stdout)
    assert {
        k: v for k, v in got.items() if k not in ("saved", "saved_in_version", "updated_in_version")
    } == frames[2]
    both = hds.json("frames", "get", "--dataset", "cars", "f0001", "f0003")
    assert [f["id"] for f in both] == ["f0001", "f0003"]
    assert "frame 'zzz' is not in version 'Current'" in one_error_line(
        hds("frames", "get", "--dataset", "cars", "zzz", code=1)
    )

    ids = tmp_path / "ids.txt"
    ids.write_text("f0003\n\nf0004\n", encoding="utf-8")
    deleted = hds.json("frames", "delete", "--dataset", "cars", "f0001", "nope", "--ids-file", str(ids))
    assert (deleted["deleted"], deleted["absent"]) == (3, 1)
    assert hds.json("frames", "count", "--dataset", "cars")["frames"] == 2
    hds("frames", "delete", "--dataset", "cars", code=2)
    version = DatasetVersion.get_current(dataset_name="cars", client=connect(str(store)))
    assert sorted(f.id for f in version.iter_frames() if f.id) == ["f0000", "f0002"]


def test_frames_add_is_all_or_nothing_and_names_the_line(
    hds: Hds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_module, "BATCH_ROWS", 3)  # the bad frame sits in the third batch
    hds("datasets", "create", "-d", "cars")
    lines = [json.dumps(frame_dict(i)) for i in range(8)]
    bad = frame_dict(99)
    bad["rois"][0]["confidence"] = 7
    lines.insert(6, "")  # blank lines are skipped but counted
    lines.insert(8, json.dumps(bad))
    source = tmp_path / "mixed.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")

    line = one_error_line(hds("frames", "add", "--dataset", "cars", str(source), code=1))
    assert line.startswith("hds: error: mixed.jsonl line 9: frame 'f0099'")
    assert "confidence" in line and "nothing was added" in line
    assert hds.json("frames", "count", "--dataset", "cars")["frames"] == 0

    broken = tmp_path / "broken.jsonl"
    broken.write_text(lines[0] + "\n" + '{"sources": [' + "\n" + "[1, 2]\n", encoding="utf-8")
    line = one_error_line(hds("frames", "add", "--dataset", "cars", str(broken), code=1))
    assert "broken.jsonl line 2: not valid JSON" in line and "and 1 more" in line
    assert hds.json("frames", "count", "--dataset", "cars")["frames"] == 0

    ordered = tmp_path / "ordered.jsonl"  # an invalid frame before an unparsable line: reported first
    ordered.write_text(lines[0] + "\n" + json.dumps(bad) + "\n{oops\n", encoding="utf-8")
    line = one_error_line(hds("frames", "add", "--dataset", "cars", str(ordered), code=1))
    assert "ordered.jsonl line 2: frame 'f0099'" in line and "(and 1 more invalid record)" in line

    result = hds("--json", "frames", "add", "--dataset", "cars", str(source), "--skip-invalid")
    summary = json.loads(result.stdout)
    assert (
        summary["added"] == 8
        and summary["frames"] == 8
        and [s["where"] for s in summary["skipped"]] == ["mixed.jsonl line 9"]
    )
    assert result.stderr == ""  # under --json, what was skipped is in the output only
    text = hds("frames", "add", "--dataset", "cars", "--version", "Current", str(source), "--skip-invalid")
    assert text.stderr == "hds: skipped mixed.jsonl line 9: " + summary["skipped"][0]["reason"] + "\n"
    assert hds.json("frames", "count", "--dataset", "cars")["frames"] == 8


def test_frames_add_refuses_a_published_version_before_reading(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    hds("versions", "publish", "--dataset", "cars")
    source = write_jsonl(tmp_path / "f.jsonl", [frame_dict(1)])
    line = one_error_line(hds("frames", "add", "--dataset", "cars", str(source), code=1))
    assert "it is published" in line and "'cars'" in line
    hds("frames", "add", "--dataset", "cars", str(tmp_path / "missing.jsonl"), code=2)
    odd = tmp_path / "frames.txt"
    odd.write_text("", encoding="utf-8")
    assert "--format" in hds("frames", "add", "--dataset", "cars", str(odd), code=2).stderr


def test_frames_export_and_add_round_trip_through_jsonl_and_parquet(
    hds: Hds, tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_module, "BATCH_ROWS", 4)
    hds("datasets", "create", "-d", "src")
    frames = [frame_dict(i, city=f"c{i}") for i in range(10)]
    frames[3]["meta_blob"] = {"raw": [1, {"x": None}]}
    frames[5]["sources"][0]["meta"] = {"angle": 45}
    hds("frames", "add", "--dataset", "src", str(write_jsonl(tmp_path / "in.jsonl", frames)))

    hds("frames", "export", "--dataset", "src", str(tmp_path / "out.jsonl"))
    hds("frames", "export", "--dataset", "src", str(tmp_path / "out.parquet"))
    stdout = hds("frames", "export", "--dataset", "src", "-").stdout
    assert stdout == (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_rows == 10
    hds("frames", "export", "--dataset", "src", "-", "--format", "parquet", code=2)

    client = connect(str(store))
    expected = {f["id"]: f for f in frames}
    for target, path in (("from-jsonl", "out.jsonl"), ("from-parquet", "out.parquet")):
        hds("datasets", "create", "-d", target)
        hds("frames", "add", "--dataset", target, str(tmp_path / path))
        version = DatasetVersion.get_current(dataset_name=target, client=client)
        got = {f.id: to_frame_dict(f) for f in version.iter_frames()}
        for fid, frame in got.items():
            assert frame["saved_in_version"] == version.id  # provenance comes from the new version
            assert {
                k: v for k, v in frame.items() if k not in ("saved", "saved_in_version", "updated_in_version")
            } == expected[fid]
        assert sorted(got) == sorted(expected)


def test_frames_use_the_version_given_by_name_or_id(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    hds("frames", "add", "--dataset", "cars", str(write_jsonl(tmp_path / "a.jsonl", [frame_dict(1)])))
    snap = hds.json("versions", "snapshot", "--dataset", "cars", "--publish-name", "v1")
    hds("frames", "add", "--dataset", "cars", str(write_jsonl(tmp_path / "b.jsonl", [frame_dict(2)])))
    v1_id = snap["snapshot"]["id"]
    dataset_id = hds.json("datasets", "show", "--dataset", "cars")["id"]
    assert hds("frames", "count", "--dataset", "cars", "--version", "v1").stdout == "1\n"
    assert hds("frames", "count", "--dataset-id", dataset_id, "--version-id", v1_id).stdout == "1\n"
    assert hds("frames", "count", "--dataset", "cars").stdout == "2\n"


def test_progress_bars_go_to_stderr_when_asked(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    source = write_jsonl(tmp_path / "f.jsonl", [frame_dict(i) for i in range(3)])
    shown = hds("--progress", "frames", "add", "--dataset", "cars", str(source))
    assert "adding to cars/Current" in shown.stderr and "3/3" in shown.stderr
    quiet = hds("--no-progress", "frames", "add", "--dataset", "cars", "-v", "Current", str(source))
    assert quiet.stderr == ""


# ------------------------------------------------------------------ queries (flags to rules)


def test_query_flags_make_one_rule_per_dataset() -> None:
    assert view_rules(("a",), (), (), (), (), (), (), ()) == [{"dataset_name": "a"}]
    assert view_rules(("a", "b"), (), ("v1",), (), ("car", ""), (), (), (2.0, 1.0)) == [
        {"dataset_name": "a", "version_name": "v1", "roi_query": "car", "weight": 2.0},
        {"dataset_name": "b", "version_name": "v1", "weight": 1.0},
    ]
    assert view_rules((), ("0" * 32,), (), ("1" * 32,), (), ("meta.city:bremen",), (), ()) == [
        {"dataset_id": "0" * 32, "version_id": "1" * 32, "frame_query": "meta.city:bremen"}
    ]
    with pytest.raises(click.UsageError, match="--roi-query is given 2 times for 3 rules"):
        view_rules(("a", "b", "c"), (), (), (), ("x", "y"), (), (), ())
    with pytest.raises(click.UsageError, match="a rule starts with --dataset"):
        view_rules((), (), ("v1",), (), (), (), (), ())


def test_query_needs_a_rule(hds: Hds) -> None:
    assert "at least one rule" in hds("query", "count", code=2).stderr
    assert (
        "--roi-query is given 2 times"
        in hds("query", "count", "--dataset", "a", "--roi-query", "x", "--roi-query", "y", code=2).stderr
    )


@pytest.fixture
def two_datasets(hds: Hds, tmp_path: Path) -> Hds:
    hds("datasets", "create", "-d", "cars")
    cars = [
        frame_dict(i, label="car" if i % 2 else "bus", city="bremen" if i < 4 else "paris") for i in range(6)
    ]
    hds("frames", "add", "--dataset", "cars", str(write_jsonl(tmp_path / "cars.jsonl", cars)))
    hds("versions", "snapshot", "--dataset", "cars", "--publish-name", "v1")
    hds("datasets", "create", "-d", "bikes")
    bikes = [frame_dict(i, label="bike") for i in range(10, 13)]
    hds("frames", "add", "--dataset", "bikes", str(write_jsonl(tmp_path / "bikes.jsonl", bikes)))
    return hds


def test_query_count_head_and_export(two_datasets: Hds, tmp_path: Path, store: Path) -> None:
    hds = two_datasets
    assert hds("query", "count", "--dataset", "cars", "--version", "v1").stdout == "6\n"
    assert hds("query", "count", "--dataset", "cars", "--roi-query", "car").stdout == "3\n"
    assert hds.json("query", "count", "--dataset", "cars", "--frame-query", "meta.city:paris") == {
        "frames": 2
    }
    # a flag given once applies to every rule; given once per rule, '' is "none" for that rule
    assert (
        hds("query", "count", "--dataset", "cars", "--dataset", "bikes", "--roi-query", "bus").stdout == "3\n"
    )
    both = ("--dataset", "cars", "--version", "v1", "--roi-query", "bus")
    both += ("--dataset", "bikes", "--version", "", "--roi-query", "")
    assert hds("query", "count", *both).stdout == "6\n"  # 3 buses OR 3 bikes

    lines = hds("query", "head", *both, "-n", "4", "--projection", "id,dataset.name").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": "f0000", "dataset": {"name": "cars"}},
        {"id": "f0002", "dataset": {"name": "cars"}},
        {"id": "f0004", "dataset": {"name": "cars"}},
        {"id": "f0010", "dataset": {"name": "bikes"}},
    ]
    assert len(hds.json("query", "head", "--dataset", "bikes")) == 3
    random_a = hds.json("query", "head", *both, "--order", "random", "--seed", "7", "--projection", "id")
    random_b = hds.json("query", "head", *both, "--order", "random", "--seed", "7", "--projection", "id")
    assert random_a == random_b

    hds("query", "export", *both, str(tmp_path / "q.jsonl"))
    hds("query", "export", *both, str(tmp_path / "q.parquet"), "--limit", "5")
    exported = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(exported) == 6 and exported[0]["dataset"]["name"] == "cars"
    assert pq.ParquetFile(tmp_path / "q.parquet").metadata.num_rows == 5
    hds("query", "export", *both, str(tmp_path / "p.parquet"), "--projection", "id", code=2)

    # a DataView export is input for frames add (its extra fields are dropped)
    hds("datasets", "create", "-d", "mixed")
    hds("frames", "add", "--dataset", "mixed", str(tmp_path / "q.jsonl"))
    hds("frames", "add", "--dataset", "mixed", str(tmp_path / "q.parquet"))
    version = DatasetVersion.get_current(dataset_name="mixed", client=connect(str(store)))
    assert sorted(f.id for f in version.iter_frames() if f.id) == [
        "f0000",
        "f0002",
        "f0004",
        "f0010",
        "f0011",
        "f0012",
    ]


def test_query_from_a_view_file(two_datasets: Hds, tmp_path: Path) -> None:
    hds = two_datasets
    view = tmp_path / "view.json"
    view.write_text(
        json.dumps(
            {
                "queries": [
                    {"dataset_name": "cars", "version_name": "v1", "frame_query": "meta.city:bremen"},
                    {"dataset_name": "bikes", "roi_query": ["bike"]},
                ],
                "iteration_order": "sequential",
                "maximum_number_of_frames": 5,
            }
        ),
        encoding="utf-8",
    )
    assert hds("query", "count", "--view", str(view)).stdout == "7\n"
    assert len(hds.json("query", "head", "--view", str(view), "-n", "100")) == 5  # the view's limit
    # flags add rules to the file's
    assert (
        hds(
            "query",
            "count",
            "--view",
            str(view),
            "--dataset",
            "cars",
            "--version",
            "v1",
            "--roi-query",
            "car",
        ).stdout
        == "8\n"
    )
    bare = tmp_path / "rules.json"
    bare.write_text(json.dumps([{"dataset_name": "bikes"}]), encoding="utf-8")
    assert hds("query", "count", "--view", str(bare)).stdout == "3\n"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"queries": [{"dataset": "cars"}]}), encoding="utf-8")
    assert "unknown keys ['dataset']" in hds("query", "count", "--view", str(bad), code=2).stderr


def test_query_errors_are_one_line(two_datasets: Hds) -> None:
    hds = two_datasets
    result = hds("query", "count", "--dataset", "cars", "--frame-query", "meta.city:bremen AND (", code=1)
    assert "meta.city:bremen AND (" in one_error_line(result) and "syntax error" in one_error_line(result)
    assert "'nope'" in one_error_line(hds("query", "count", "--dataset", "nope", code=1))
    assert "'v9'" in one_error_line(hds("query", "count", "--dataset", "cars", "--version", "v9", code=1))


# ------------------------------------------------------------------ COCO


def test_coco_import_and_export(hds: Hds, tmp_path: Path) -> None:
    imported = hds.json(
        "coco", "import", "--dataset", "coco", "--create", str(COCO_FILE), "--image-root", "s3://imgs"
    )
    assert (imported["images"], imported["annotations"], imported["categories"]) == (5, 6, 3)
    assert hds("frames", "count", "--dataset", "coco").stdout == "5\n"
    hds("versions", "snapshot", "--dataset", "coco", "--publish-name", "v1")

    out = tmp_path / "out.json"
    result = hds("coco", "export", "--dataset", "coco", "--version", "v1", str(out))
    assert "wrote 5 images, 6 annotations, 3 categories of 'coco' / 'v1'" in result.stdout
    original = json.loads(COCO_FILE.read_text(encoding="utf-8"))
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert exported["images"] == original["images"]
    assert exported["categories"] == original["categories"]
    assert [a["id"] for a in exported["annotations"]] == [a["id"] for a in original["annotations"]]


def test_coco_export_of_a_dataview(hds: Hds, tmp_path: Path) -> None:
    hds("coco", "import", "--dataset", "coco", "--create", str(COCO_FILE), "--image-root", "s3://imgs")
    out = tmp_path / "dogs.json"
    result = hds(
        "coco", "export", "--dataset", "coco", "--roi-query", "dog", str(out), "--image-root", "s3://imgs"
    )
    assert "of the DataView" in result.stdout
    dogs = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(i["id"] for i in dogs["images"]) == [12, 20]
    assert {a["category_id"] for a in dogs["annotations"]} == {7}  # ids from the imported categories
    assert {c["name"] for c in dogs["categories"]} == {"person", "car", "dog"}


def test_coco_import_of_a_bad_file_changes_nothing(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "coco")
    data = json.loads(COCO_FILE.read_text(encoding="utf-8"))
    data["annotations"][1]["category_id"] = 42
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    line = one_error_line(hds("coco", "import", "--dataset", "coco", str(bad), "--image-root", "r", code=1))
    assert "bad.json: annotations[1] (id 102): category_id 42" in line and "nothing was imported" in line
    assert hds("frames", "count", "--dataset", "coco").stdout == "0\n"
    assert hds.json("versions", "metadata", "get", "--dataset", "coco") == {}
    hds("coco", "import", "--dataset", "coco", str(COCO_FILE), code=2)  # --image-root is required
    hds("coco", "import", "--dataset", "nope", str(COCO_FILE), "--image-root", "r", code=1)


# ------------------------------------------------------------------ fsck and gc


def test_fsck_and_gc(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    hds("frames", "add", "--dataset", "cars", str(write_jsonl(tmp_path / "f.jsonl", [frame_dict(1)])))
    hds("frames", "add", "--dataset", "cars", str(write_jsonl(tmp_path / "g.jsonl", [frame_dict(2)])))
    report = hds.json("fsck")
    assert report["ok"] is True and report["datasets"] == 1
    assert "result: " in hds("fsck", "--repair").stdout

    dry = hds("gc", "--grace", "0")
    assert "would remove" in dry.stdout and "run with --delete to remove" in dry.stdout
    assert "dry_run=False" not in dry.stdout
    refused = hds("gc", "--grace", "0", "--delete", code=1)  # stdin is no terminal, and no --yes
    assert "not confirmed: remove" in one_error_line(refused) and "--yes" in refused.stderr
    assert hds.json("gc", "--grace", "0")["removed"] != []  # nothing was removed
    removed = hds.json("gc", "--grace", "0s", "--delete", "--yes")
    assert removed["dry_run"] is False
    assert hds.json("gc", "--grace", "0")["removed"] == []
    assert hds.json("gc", "--grace", "0", "--delete")["dry_run"] is False  # nothing to remove: no question
    assert hds.json("gc", "--grace", "7d")["grace_seconds"] == 7 * 86400
    assert "not a duration" in hds("gc", "--grace", "soon", code=2).stderr
    assert hds("frames", "count", "--dataset", "cars").stdout == "2\n"


def test_fsck_exits_1_on_damage(hds: Hds, tmp_path: Path, store: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    hds("frames", "add", "--dataset", "cars", str(write_jsonl(tmp_path / "f.jsonl", [frame_dict(1)])))
    segment = next(p for p in store.rglob("*.parquet"))
    segment.unlink()
    result = hds("fsck", code=1)
    assert "result: DAMAGED" in result.stdout
    assert "1 damaged object or document in" in one_error_line(result)


# ------------------------------------------------------------------ errors: kinds, shape, wording


def test_json_errors_have_one_shape_for_every_kind(
    hds: Hds, tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hds("datasets", "create", "-d", "cars")
    hds(
        "frames",
        "add",
        "-d",
        "cars",
        "-v",
        "Current",
        str(write_jsonl(tmp_path / "f.jsonl", [frame_dict(1)])),
    )
    hds("versions", "snapshot", "-d", "cars", "--publish-name", "v1")
    a_file = tmp_path / "plain-file"
    a_file.write_text("", encoding="utf-8")
    cases: list[tuple[str, tuple[str, ...]]] = [
        ("NotFoundError", ("frames", "count", "-d", "nope")),
        ("AlreadyExistsError", ("versions", "rename", "-d", "cars", "-v", "Current", "v1")),
        ("InvalidStateError", ("versions", "publish", "-d", "cars", "-v", "v1")),
        ("ValidationError", ("query", "count", "-d", "cars", "--frame-query", "meta.city:(x")),
        ("UsageError", ("frames", "count")),
        ("UsageError", ("frames", "count", "-d", "cars", "--no-such-flag")),
        ("NotConfirmed", ("datasets", "delete", "-d", "cars")),
        ("FileError", ("frames", "export", "-d", "cars", str(tmp_path / "no" / "dir" / "out.jsonl"))),
        ("StorageError", ("--store", str(a_file / "store"), "datasets", "create", "-d", "x")),
    ]
    for kind, args in cases:
        error = json_error(hds("--json", *args, code=2 if kind == "UsageError" else 1))
        assert error["type"] == kind, (args, error)
        assert error["message"] and "\n" not in error["message"], error
    usage = json_error(hds("--json", "frames", "count", code=2))
    assert usage["hint"].endswith("frames count --help shows the usage")
    assert (
        json_error(hds("--json", "datasets", "delete", "-d", "cars", code=1))["hint"]
        == "pass --yes to confirm"
    )
    missing_version = json_error(hds("--json", "frames", "count", "-d", "cars", "-v", "v9", code=1))
    assert missing_version["hint"] == "hds versions list --dataset NAME shows a dataset's versions"
    top_level = CliRunner().invoke(cli, ["--json", "--no-such-global", "datasets", "list"])
    assert top_level.exit_code == 2 and json_error(top_level)["type"] == "UsageError"

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as patched:
        patched.setattr(Dataset, "list_datasets", boom)
        unexpected = json_error(hds("--json", "datasets", "list", code=1))
    assert unexpected == {
        "type": "UnexpectedError",
        "message": "unexpected RuntimeError: disk on fire",
        "hint": "run with --debug for the traceback",
    }

    next(p for p in store.rglob("*.parquet")).unlink()  # damage: a segment of v1 is missing
    corrupt = json_error(hds("--json", "frames", "count", "-d", "cars", "-v", "v1", code=1))
    assert corrupt["type"] == "CorruptObjectError"
    assert "a segment listed by a manifest is missing; check the store with hds fsck" in corrupt["message"]
    text = hds("frames", "count", "-d", "cars", "-v", "v1", code=1)
    assert one_error_line(text).endswith("check the store with hds fsck")
    damaged = hds("--json", "fsck", code=1)
    assert json.loads(damaged.stdout)["ok"] is False  # the report, then the error
    assert json.loads(damaged.stderr)["error"]["type"] == "DamageFound"


def test_errors_are_worded_for_the_shell(hds: Hds, tmp_path: Path) -> None:
    source = str(write_jsonl(tmp_path / "f.jsonl", [frame_dict(1)]))
    hds("datasets", "create", "-d", "cars")
    hds("frames", "add", "-d", "cars", "-v", "Current", source)
    lines = [one_error_line(hds("datasets", "delete", "-d", "cars", "--yes", code=1))]
    hds("versions", "snapshot", "-d", "cars", "--publish-name", "v1")
    hds("versions", "create", "-d", "cars", "-v", "fix", "--parent", "v1")
    lines += [
        one_error_line(hds("datasets", "delete", "-d", "cars", "--all-versions", "--yes", code=1)),
        one_error_line(hds("versions", "delete", "-d", "cars", "-v", "v1", "--yes", code=1)),
        one_error_line(hds("versions", "snapshot", "-d", "cars", code=1)),
        one_error_line(hds("versions", "metadata", "set", "-d", "cars", "-v", "v1", "{}", code=1)),
        one_error_line(hds("frames", "add", "-d", "cars", "-v", "v1", source, code=1)),
        one_error_line(hds("frames", "count", "-d", "nope", code=1)),
    ]
    for line in lines:
        assert "()" not in line and "=True" not in line and "=False" not in line, line
        assert "hds " in line or "--" in line, line  # each says what to run
    assert "pass --all-versions to delete" in lines[0]
    assert "use hds versions publish and hds versions create --parent NAME instead" in lines[3]
    assert "hds versions create --parent NAME --version NEW" in lines[4]
    assert "create it with hds datasets create --dataset NAME" in lines[6]


def test_a_query_error_puts_the_caret_on_its_own_line_under_the_token(two_datasets: Hds) -> None:
    query = "meta.city:bremen AND foo:bar"
    result = two_datasets("query", "count", "--dataset", "cars", "--frame-query", query, code=1)
    first, shown, caret = result.stderr.splitlines()
    assert first.startswith("hds: error: frame_query ") and "unknown field 'foo'" in first
    assert shown.strip() == query
    assert caret.strip() == "^" and caret.index("^") == shown.index(query) + query.index("foo")
    error = json_error(two_datasets("--json", "query", "count", "-d", "cars", "--frame-query", query, code=1))
    assert error["type"] == "ValidationError" and "(at position 21)" in error["message"]


def test_exit_codes_are_in_the_help(hds: Hds) -> None:
    text = hds("--help").stdout
    assert "Exit codes:" in text
    for line in ("0  success", "1  an error", "2  a usage error"):
        assert line in text
    assert "_HDS_COMPLETE=bash_source hds" in text


# ------------------------------------------------------------------ frames add: nothing valid


def test_skip_invalid_fails_when_every_record_is_invalid(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n[1, 2]\n", encoding="utf-8")
    result = hds("frames", "add", "-d", "cars", "-v", "Current", str(bad), "--skip-invalid", code=1)
    assert "every record of bad.jsonl is invalid (2 records, listed above); nothing was added" in (
        one_error_line(result)
    )
    assert "hds: skipped bad.jsonl line 1: not valid JSON" in result.stderr
    error = json_error(hds("--json", "frames", "add", "-d", "cars", str(bad), "--skip-invalid", code=1))
    assert error["type"] == "ValidationError"
    assert hds.json("frames", "count", "-d", "cars")["frames"] == 0


def test_counts_are_written_with_the_right_plural(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    one = str(write_jsonl(tmp_path / "one.jsonl", [frame_dict(1)]))
    assert (
        "added 1 frame to 'cars' / 'Current'; it now has 1 frame\n"
        == hds("frames", "add", "-d", "cars", "-v", "Current", one).stdout
    )
    assert (
        f"wrote 1 frame to {tmp_path / 'o.jsonl'}\n"
        == hds("frames", "export", "-d", "cars", str(tmp_path / "o.jsonl")).stdout
    )
    deleted = hds("frames", "delete", "-d", "cars", "-v", "Current", "f0001", "nope").stdout
    assert deleted == "deleted 1 frame from 'cars' / 'Current' (1 id was not in it)\n"


# ------------------------------------------------------------------ item 5: the current version


def test_the_current_version_never_moves_silently(hds: Hds, tmp_path: Path) -> None:
    source = str(write_jsonl(tmp_path / "f.jsonl", [frame_dict(1)]))
    hds("datasets", "create", "-d", "cars")
    hds("frames", "add", "-d", "cars", "-v", "Current", source)
    hds("versions", "snapshot", "-d", "cars", "--publish-name", "v1")

    made = hds("versions", "create", "-d", "cars", "-v", "relabel", "--parent", "v1")
    assert "hds: the current version of 'cars' is now 'relabel' (was 'Current')" in made.stderr
    assert "the draft farthest from the root" in made.stderr
    moved = hds.json("versions", "create", "-d", "cars", "-v", "relabel")["current"]
    assert moved == {"id": moved["id"], "name": "relabel", "moved": False}
    root = hds("versions", "create", "-d", "cars", "-v", "scratch")  # a root draft: not the farthest
    assert root.stderr == ""

    added = hds("frames", "add", "-d", "cars", source)
    assert added.stderr.startswith(
        "hds: adding frames to 'cars' / 'relabel' [draft], the current version (no --version given"
    )
    assert hds.json("frames", "add", "-d", "cars", source)["version_from"] == "current"
    given = hds("frames", "add", "-d", "cars", "-v", "Current", source)
    assert given.stderr == "" and "'cars' / 'Current'" in given.stdout
    assert hds.json("frames", "add", "-d", "cars", "-v", "Current", source)["version_from"] == "--version"
    assert "deleting frames from 'cars' / 'relabel'" in hds("frames", "delete", "-d", "cars", "f0001").stderr

    listed = hds("versions", "list", "-d", "cars").stdout.splitlines()
    assert listed[-1] == (
        "current: 'relabel'; the current version is the draft farthest from the root (the newest of them "
        "on ties); with no draft, the most recently published version"
    )
    assert "farthest from the root" in hds("versions", "--help").stdout


def test_version_names_that_read_as_something_else_are_refused(hds: Hds, store: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    hds("versions", "snapshot", "-d", "cars", "--publish-name", "v1")
    for name in ("Current", "current"):
        line = one_error_line(hds("versions", "rename", "-d", "cars", "-v", "v1", name, code=1))
        assert f"a published version cannot be named {name!r}: that is the name of the default draft" in line
    hds("versions", "rename", "-d", "cars", "-v", "Current", "Current")  # a draft may keep it
    line = one_error_line(
        hds("versions", "snapshot", "-d", "cars", "--publish-name", "Current", "--child-name", "next", code=1)
    )
    assert "a published version cannot be named 'Current'" in line
    ident = "0123456789abcdef0123456789abcdef"
    line = one_error_line(hds("versions", "create", "-d", "cars", "-v", ident, code=1))
    assert "32 hex digits is the form of a version id" in line
    assert (
        json_error(hds("--json", "versions", "rename", "-d", "cars", "-v", "v1", ident, code=1))["type"]
        == "ValidationError"
    )
    assert [v["name"] for v in hds.json("versions", "list", "-d", "cars")] == ["v1", "Current"]
    from hds_s3 import ValidationError

    published = DatasetVersion.get_version(dataset_name="cars", version_name="v1", client=connect(str(store)))
    with pytest.raises(ValidationError, match="cannot be named 'Current'"):
        published.set_version_name("Current")


# ------------------------------------------------------------------ --yes and the prompt


def run_hds_at_a_terminal(store: Path, answer: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real program with a pseudo-terminal as stdin, typing ``answer``."""
    pty = pytest.importorskip("pty")
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "HDS_STORE"}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hds_s3.cli", "--store", str(store), *args],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        os.write(leader, answer.encode())
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(follower)
        os.close(leader)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_destructive_commands_ask_at_a_terminal_and_need_yes_elsewhere(hds: Hds, store: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    hds("versions", "create", "-d", "cars", "-v", "other")
    other = hds.json("versions", "list", "-d", "cars")[1]["id"]
    refused = hds("versions", "delete", "-d", "cars", "-v", "other", code=1)
    assert one_error_line(refused) == (
        f"hds: error: not confirmed: delete version 'other' ({other}) of 'cars' "
        "(stdin is not a terminal to ask on); nothing was changed"
    )
    no = run_hds_at_a_terminal(store, "n\n", "versions", "delete", "-d", "cars", "-v", "other")
    assert no.returncode == 1 and "Delete version 'other'" in no.stderr and "[y/N]" in no.stderr
    assert "not confirmed" in no.stderr
    assert [v["name"] for v in hds.json("versions", "list", "-d", "cars")] == ["Current", "other"]
    yes = run_hds_at_a_terminal(store, "y\n", "versions", "delete", "-d", "cars", "-v", "other")
    assert yes.returncode == 0, yes.stderr
    assert [v["name"] for v in hds.json("versions", "list", "-d", "cars")] == ["Current"]
    asked = run_hds_at_a_terminal(store, "y\n", "datasets", "delete", "-d", "cars")
    assert asked.returncode == 0 and "Delete dataset 'cars'" in asked.stderr
    assert hds.json("datasets", "list") == []


# ------------------------------------------------------------------ completion


def test_shell_completion_offers_dataset_and_version_names(hds: Hds, store: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    hds("datasets", "create", "-d", "bikes")
    hds("versions", "snapshot", "-d", "cars", "--publish-name", "v1")

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {k: v for k, v in os.environ.items() if k != "HDS_STORE"}
        env.update(_HDS_COMPLETE="bash_complete", COMP_WORDS=line, COMP_CWORD=str(len(words) - 1))
        done = subprocess.run(
            [sys.executable, "-m", "hds_s3.cli"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        items = [item for item in done.stdout.splitlines() if item]
        assert all(item.startswith("plain,") for item in items), (line, done.stdout)
        return [item.split(",", 1)[1] for item in items]

    assert complete(f"hds --store {store} datasets show --dataset ") == ["bikes", "cars"]
    assert complete(f"hds --store {store} frames count -d c") == ["cars"]
    assert complete(f"hds --store {store} frames count -d cars --version ") == ["v1", "Current"]
    assert complete(f"hds --store {store} query count -d cars -v C") == ["Current"]
    assert complete(f"hds --store {store} versions create -d cars --parent v") == ["v1"]
    assert complete(f"hds --store {store} frames count -d nope -v ") == []


# ------------------------------------------------------------------ exports: modes and progress


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_exported_files_get_the_users_umask(hds: Hds, tmp_path: Path, umask: int, mode: int) -> None:
    import stat

    hds("coco", "import", "-d", "coco", "--create", str(COCO_FILE), "--image-root", "s3://imgs")
    out = tmp_path / "out"
    out.mkdir()
    old = os.umask(umask)
    try:
        hds("frames", "export", "-d", "coco", str(out / "frames.jsonl"))
        hds("frames", "export", "-d", "coco", str(out / "frames.parquet"))
        hds("query", "export", "-d", "coco", "--roi-query", "dog", str(out / "dogs.jsonl"))
        hds("query", "export", "-d", "coco", str(out / "all.parquet"))
        hds("coco", "export", "-d", "coco", str(out / "coco.json"))
    finally:
        os.umask(old)
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "all.parquet",
        "coco.json",
        "dogs.jsonl",
        "frames.jsonl",
        "frames.parquet",
    ]  # no leftovers
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name


def test_progress_bars_have_totals(hds: Hds, tmp_path: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    source = write_jsonl(tmp_path / "f.jsonl", [frame_dict(i) for i in range(3)])
    added = hds("--progress", "frames", "add", "-d", "cars", "-v", "Current", str(source)).stderr
    assert "checking f.jsonl" in added and added.count("3/3") >= 2  # checking, then adding
    for name in ("o.jsonl", "o.parquet"):
        shown = hds("--progress", "frames", "export", "-d", "cars", str(tmp_path / name)).stderr
        assert "exporting cars/Current" in shown and "3/3" in shown, shown
    limited = hds("--progress", "query", "export", "-d", "cars", "--limit", "2", str(tmp_path / "q.jsonl"))
    assert "2/2" in limited.stderr


def test_fsck_repair_asks_when_it_has_something_to_repair(hds: Hds, store: Path) -> None:
    hds("datasets", "create", "-d", "cars")
    assert "result: " in hds("fsck", "--repair").stdout  # nothing to repair: no question
    marker = store / "_hds" / "store.json"
    marker.unlink()
    refused = hds("fsck", "--repair", code=1)
    assert "not confirmed: repair 1 finding in" in one_error_line(refused) and not marker.exists()
    repaired = hds("fsck", "--repair", "--yes")  # the marker is written again: nothing is left damaged
    assert "[repaired]" in repaired.stdout and marker.exists()
    assert hds.json("fsck")["ok"] is True


def test_datasets_delete_missing_ok(hds: Hds) -> None:
    assert (
        "no dataset 'nope'; nothing to delete"
        in hds("datasets", "delete", "-d", "nope", "--missing-ok").stdout
    )
    assert hds.json("datasets", "delete", "-d", "nope", "--missing-ok") == {"deleted": None}
    hds("datasets", "delete", "-d", "nope", "--yes", code=1)
