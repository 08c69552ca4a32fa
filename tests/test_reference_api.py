"""The legacy API as the reference documents it (issue 16): ids shown on frames, frames out of a
DataView as objects, ROIs bound to a SingleFrame's source, FrameGroup member metadata, ImageAnnotation,
instance create_version, uploads of local files, exists and list filters, video frames, clips in ms,
a new random order every epoch and read-ahead."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

import hds_s3
from hds_s3 import Client, Dataset, DatasetVersion, FrameGroup, SingleFrame, ValidationError
from hds_s3.model.annotations import ImageAnnotation
from hds_s3.query.dataview import DataView


@pytest.fixture
def client() -> Client:
    return hds_s3.connect(f"memory://ref-{uuid.uuid4().hex}")


def version(client: Client, name: str = "ds") -> DatasetVersion:
    return DatasetVersion.create_new_dataset(dataset_name=name, client=client)


def test_add_frames_shows_the_derived_id_on_the_frame(client: Client) -> None:
    v = version(client)
    frame = SingleFrame(source="s3://b/a.jpg", metadata={"alive": "yes"})
    assert frame.id is None
    v.add_frames([frame])
    assert isinstance(frame.id, str) and len(frame.id) == 32
    got = DatasetVersion.get_single_frame(
        frame_id=frame.id, dataset_name="ds", version_name="Current", client=client
    )
    assert got.metadata == {"alive": "yes"}
    v.add_frames([frame])  # the same frame again updates it
    assert v.get_frame_count() == 1


def test_a_singleframes_rois_are_bound_to_its_source(client: Client) -> None:
    v = version(client)
    frame = SingleFrame(source="s3://b/a.jpg", id="f")
    frame.add_annotation(box2d_xywh=(1, 2, 3, 4), labels=["tennis racket"], confidence=1)
    v.add_frames([frame, {"uri": "s3://b/b.jpg", "id": "g", "rois": [{"labels": ["person"]}]}])
    view = DataView(client=client)
    view.add_query(dataset_name="ds", version_name="Current")
    assert [[r["sources"] for r in d["rois"]] for d in view.to_dict()] == [[["default"]], [["default"]]]
    back = v.get_single_frame("f")
    assert (
        isinstance(back, SingleFrame) and back.annotations[0].sources == []
    )  # the object: of its one source
    assert back.to_dict()["rois"][0]["sources"] == ["default"]


def test_dataview_iteration_yields_frame_objects_and_dicts_on_request(client: Client) -> None:
    v = version(client)
    group = FrameGroup(id="g1")
    group["front"] = SingleFrame(source="s3://b/f.jpg")
    group["rear"] = SingleFrame(source="s3://b/r.jpg")
    group.add_global_annotation(annotation=ImageAnnotation(labels=["cityscape"], confidence=1.0))
    single = SingleFrame(source="s3://b/s.jpg", id="s1", context_id="ctx")
    single.add_annotation(labels=["cat"])
    v.add_frames([group, single])
    view = DataView(client=client)
    view.add_query(dataset_name="ds", version_name="Current")
    frames = list(view.get_iterator())
    assert {type(f).__name__ for f in frames} == {"FrameGroup", "SingleFrame"}
    by_id = {f.id: f for f in frames}
    assert by_id["s1"].context_id == "ctx" and [a.labels for a in by_id["s1"].get_all_annotations()] == [
        ["cat"]
    ]
    assert [(a.labels, a.sources) for a in by_id["g1"].get_all_annotations()] == [
        (["cityscape"], ["front", "rear"])
    ]
    assert [type(f) for f in view] == [type(f) for f in frames]  # for f in view: the same
    dicts = list(view.get_iterator(as_dict=True))
    assert [d["id"] for d in dicts] == [f.id for f in frames] and dicts[0]["dataset"]["name"] == "ds"
    assert [d["id"] for d in view.get_iterator(projection=["id"])] == [
        f.id for f in frames
    ]  # a projection: dicts
    assert [f.id for f in view.to_list()] == [d["id"] for d in view.to_dict()] == [f.id for f in frames]
    with pytest.raises(ValidationError, match="give annotation or labels"):
        group.add_global_annotation(labels=["x"], annotation=ImageAnnotation(labels=["y"]))
    with pytest.raises(ValidationError, match="one ROI"):
        ImageAnnotation(box2d_xywh=(0, 0, 1, 1), poly2d_xy=[0, 0, 1, 0, 1, 1], labels=["z"])


def test_updating_a_framegroup_members_metadata_as_the_reference_page(client: Client) -> None:
    v = version(client)
    fg = FrameGroup()
    fg["FrameOne"] = SingleFrame(source="https://example.com/000012.jpg", width=512, height=512)
    v.add_frames([fg])
    frame_group = DatasetVersion.get_single_frame(
        frame_id=fg.id, dataset_name="ds", version_name="Current", client=client
    )
    frame_group["FrameOne"].metadata["new_key"] = "new_value"
    assert v.update_frames([frame_group]) == []
    again = v.get_single_frame(fg.id)
    assert again["FrameOne"].metadata == {"new_key": "new_value"}
    view = DataView(client=client)
    view.add_query(dataset_name="ds", version_name="Current", source_query="sources.meta.new_key:new_value")
    assert view.get_count() == 1


def test_create_version_on_what_create_new_dataset_returns(client: Client) -> None:
    ds = DatasetVersion.create_new_dataset(dataset_name="reg", client=client)
    dv = ds.create_version(version_name="initial")
    assert dv.dataset_name == "reg" and dv.parent_id is None and dv.is_draft
    assert ds.create_version(version_name="initial") == dv  # get or create, as the class method
    snapshot = (
        DatasetVersion.create_version(dataset_name="other", version_name="x", client=client)
        if False
        else None
    )
    assert snapshot is None
    published = dv.publish_version()
    child = published.create_version(version_name="child")
    assert child.parent_id == published.id


def test_exists_and_list_filters(client: Client) -> None:
    a = Dataset.create("a", dataset_project="team/vision", client=client)
    Dataset.create("b", dataset_project="team", client=client)
    Dataset.create("c", client=client)
    assert Dataset.exists("a", version_name="Current", client=client)
    assert not Dataset.exists("a", version_name="nope", client=client)
    assert Dataset.exists("a", "Current", "team/vision", client=client)
    assert not Dataset.exists("a", project_name="elsewhere", client=client)
    assert Dataset.exists(dataset_id=a.id, version_id="*", client=client)
    with pytest.raises(ValidationError, match="not both"):
        Dataset.exists("a", version_name="Current", version_id="f" * 32, client=client)

    def names(**kw: Any) -> list[str]:
        return [d.name for d in Dataset.list_datasets(client=client, **kw)]

    assert names(project_name="team") == ["a", "b"]
    assert names(project_name="team", recursive_project_search=False) == ["b"]
    assert names(ids=[a.id]) == ["a"]
    a.archive()
    assert names(include_archived=False) == ["b", "c"] and Dataset.get("a", client=client).archived
    with pytest.raises(ValidationError, match="ids"):
        Dataset.list_datasets(ids="abc", client=client)


def test_video_frames_and_clips_in_milliseconds(client: Client) -> None:
    v = version(client)
    frames = []
    for t in (0, 33, 66, 100, 500, 533, 2000):  # one camera; gaps at 100->500 and 533->2000
        frames.append(
            SingleFrame(
                source="s3://b/front.mp4",
                source_timestamp=t,
                content_type="video/mp4",
                is_key_frame=t in (0, 500),
                key_frame="k0" if t < 500 else "k1",
                video_gop=500,
            )
        )
    v.add_frames(frames)
    view = DataView(client=client)
    view.add_query(dataset_name="ds", version_name="Current")
    out = view.to_dict()
    assert [d["timestamp"] for d in out] == [0, 33, 66, 100, 500, 533, 2000]
    assert [d["is_key_frame"] for d in out][:5] == [True, False, False, False, True]
    assert out[0]["video_gop"] == 500 and out[-1]["key_frame"] == "k1"
    assert view.to_list()[4].is_key_frame is True
    # clips of at most 70 ms, a new one after a jump of more than 200 ms
    view.set_iteration_parameters(min_sequence=70, jump_time=200, order="random", random_seed=5)
    stamps = [d["timestamp"] for d in view.get_iterator(as_dict=True)]
    clips = [[0, 33, 66], [100], [500, 533], [2000]]
    runs, i = [], 0
    while i < len(stamps):
        clip = next(c for c in clips if c[0] == stamps[i])
        assert stamps[i : i + len(clip)] == clip
        runs.append(clip)
        i += len(clip)
    assert sorted(map(tuple, runs)) == sorted(map(tuple, clips))
    with pytest.raises(ValidationError, match="min_sequence"):
        view.set_iteration_parameters(min_sequence=-1)


def test_random_order_is_new_every_epoch_and_reproducible(client: Client) -> None:
    v = version(client)
    v.add_frames([SingleFrame(source=f"s3://b/{i}.jpg", id=f"f{i:02d}") for i in range(40)])

    def view() -> DataView:
        dv = DataView(iteration_order="random", client=client)
        dv.add_query(dataset_name="ds", version_name="Current")
        dv.set_iteration_parameters(random_seed=11)
        return dv

    dv = view()
    epochs = [[f.id for f in dv] for _ in range(3)]
    assert len({tuple(e) for e in epochs}) == 3 and all(sorted(e) == sorted(epochs[0]) for e in epochs)
    other = view()
    other.set_epoch(2)
    assert [f.id for f in other] == epochs[2] and other.epoch == 3
    assert [f.id for f in view().get_iterator(epoch=1)] == epochs[1]
    assert dv.to_dict("id") == dv.to_dict("id")  # materialising does not advance the epoch
    with pytest.raises(ValidationError, match="epoch"):
        dv.set_epoch(-1)


def test_iteration_reads_ahead_in_a_thread(client: Client) -> None:
    v = version(client)
    v.add_frames([SingleFrame(source=f"s3://b/{i}.jpg", id=f"f{i:03d}") for i in range(300)])
    dv = DataView(client=client)
    dv.add_query(dataset_name="ds", version_name="Current")
    it = dv.get_iterator(query_cache_size=16, query_queue_depth=2, cache_in_memory=True)
    first = next(it)
    assert any(t.name == "hds-dataview-read-ahead" for t in threading.enumerate())
    ids = [first.id] + [f.id for f in it]
    assert len(ids) == len(set(ids)) == 300 and ids == [f.id for f in dv.get_iterator(query_queue_depth=0)]
    assert [f.id for f in it] == ids  # a finished pass again, from memory
    with pytest.raises(ValidationError, match="query_queue_depth"):
        dv.get_iterator(query_queue_depth=-1)
    with pytest.raises(ValidationError, match="query_cache_size"):
        dv.get_iterator(query_cache_size=0)


class FlakyFS(MemoryFileSystem):
    """An in-memory destination that fails the first put of every file (a transient fault)."""

    protocol = "flaky"
    tried: set[str] = set()

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return str(super()._strip_protocol(path.removeprefix("flaky://")))

    def put_file(self, lpath: str, rpath: str, **kwargs: Any) -> None:
        if rpath not in FlakyFS.tried:
            FlakyFS.tried.add(rpath)
            raise ConnectionError(f"transient failure writing {rpath}")
        super().put_file(lpath, rpath, **kwargs)


fsspec.register_implementation("flaky", FlakyFS, clobber=True)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "dataset"
    for sub in ("a", "b"):
        (root / sub).mkdir(parents=True)
        (root / sub / "img.jpg").write_bytes(f"image {sub}".encode())
        (root / sub / "img_mask.png").write_bytes(f"mask {sub}".encode())
        (root / sub / "img_preview.jpg").write_bytes(f"preview {sub}".encode())
    return root


def local_frames(root: Path) -> list[SingleFrame]:
    return [
        SingleFrame(
            source=str(root / sub / "img.jpg"),
            mask_source=str(root / sub / "img_mask.png"),
            preview_uri=str(root / sub / "img_preview.jpg"),
            metadata={"sub": sub},
        )
        for sub in ("a", "b")
    ]


def test_uploads_keep_the_layout_retry_and_resume(client: Client, tree: Path, tmp_path: Path) -> None:
    v = version(client)
    dest = tmp_path / "bucket"
    frames = local_frames(tree)
    assert v.add_frames(frames, auto_upload_destination=str(dest), local_dataset_root_path=str(tree)) == []
    for sub in ("a", "b"):
        for name in ("img.jpg", "img_mask.png", "img_preview.jpg"):  # masks and previews too
            assert (dest / sub / name).read_bytes() == (tree / sub / name).read_bytes()
    stored = v.get_single_frame(frames[0].id or "")
    assert isinstance(stored, SingleFrame)
    assert stored.source == str(dest / "a" / "img.jpg") and stored.mask_source == str(
        dest / "a" / "img_mask.png"
    )
    assert stored.preview_uri == str(dest / "a" / "img_preview.jpg")
    # a second run finds the files there and copies none (an interrupted run resumes)
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}
    assert (
        v.add_frames(local_frames(tree), auto_upload_destination=str(dest), local_dataset_root_path=str(tree))
        == []
    )
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == before
    assert v.get_frame_count() == 2  # the same URIs: the same frames
    # any fsspec destination; a transient failure is retried
    FlakyFS.tried.clear()
    other = version(client, "flaky")
    assert (
        other.add_frames(
            local_frames(tree), auto_upload_destination="flaky://up", local_dataset_root_path=str(tree)
        )
        == []
    )
    assert fsspec.filesystem("flaky").cat("/up/b/img.jpg") == b"image b"
    # without retries the failure fails the frame, which is not registered
    FlakyFS.tried.clear()
    third = version(client, "no-retry")
    failed = third.add_frames(
        local_frames(tree),
        auto_upload_destination="flaky://up2",
        local_dataset_root_path=str(tree),
        upload_retries=1,
    )
    assert len(failed) == 2 and "transient failure" in failed[0].reason and third.get_frame_count() == 0
    outside = SingleFrame(source=str(tmp_path / "elsewhere.jpg"))
    (tmp_path / "elsewhere.jpg").write_bytes(b"x")
    failed = v.add_frames([outside], auto_upload_destination=str(dest), local_dataset_root_path=str(tree))
    assert "not under local_dataset_root_path" in failed[0].reason
    with pytest.raises(ValidationError, match="not a folder"):
        v.add_frames(
            [outside], auto_upload_destination=str(dest), local_dataset_root_path=str(tmp_path / "nope")
        )


def test_hash_sources_uploads_a_file_once_across_versions(client: Client, tree: Path, tmp_path: Path) -> None:
    v = version(client)
    dest = tmp_path / "bucket"
    v.add_frames(local_frames(tree), auto_upload_destination=str(dest), hash_sources=True)
    stored = v.get_single_frame(
        local_frames(tree)[0].id or v.get_frames_table(["id"]).column("id")[0].as_py()
    )
    assert isinstance(stored, SingleFrame)
    hashes = stored.source_meta["hash"]
    assert set(hashes) == {"source", "preview_source", "masks"} and len(hashes["source"]) == 64
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    assert len(files) == 6  # by content hash, since no root was given
    DatasetVersion.create_snapshot(dataset_name="ds", publish_name="v1", client=client)
    # the same files, copied elsewhere, registered in the new draft: nothing is uploaded again
    copy = tmp_path / "moved"
    copy.mkdir()
    for sub in ("a",):
        for name in ("img.jpg", "img_mask.png", "img_preview.jpg"):
            (copy / f"{sub}_{name}").write_bytes((tree / sub / name).read_bytes())
    frame = SingleFrame(
        source=str(copy / "a_img.jpg"),
        mask_source=str(copy / "a_img_mask.png"),
        preview_uri=str(copy / "a_img_preview.jpg"),
    )
    current = DatasetVersion.get_current(dataset_name="ds", client=client)
    assert current.add_frames([frame], auto_upload_destination=str(dest), hash_sources=True) == []
    assert sorted(p for p in dest.rglob("*") if p.is_file()) == files
    assert frame.source == stored.source and frame.mask_source == stored.mask_source


def test_the_torch_iterable_dataset_advances_the_epoch(tmp_path: Path) -> None:
    torch_data = pytest.importorskip("torch.utils.data", reason="torch is not installed (the torch extra)")
    from hds_s3.torch import DataViewIterableDataset

    store = hds_s3.connect(str(tmp_path / "store"))
    v = version(store, "torchy")
    frames = []
    for i in range(24):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(bytes([i]))
        frames.append(SingleFrame(source=str(path), id=f"f{i:02d}"))
    v.add_frames(frames)
    view = DataView(iteration_order="random", client=store)
    view.add_query(dataset_name="torchy", version_name="Current")
    ds = DataViewIterableDataset(view, transform=lambda f: f["id"])

    def epoch(workers: int) -> list[str]:
        loader = torch_data.DataLoader(ds, batch_size=None, num_workers=workers)
        return list(loader)

    one, two = epoch(0), epoch(0)
    assert sorted(one) == sorted(two) == [f"f{i:02d}" for i in range(24)] and one != two
    ds.set_epoch(0)
    assert epoch(0) == one  # reproducible from (seed, epoch)
    ds.set_epoch(5)
    five, six = epoch(2), epoch(2)  # two workers: each shard of one epoch, every frame once
    assert sorted(five) == sorted(six) == sorted(one) and five != six
    ds.set_epoch(5)
    assert sorted(epoch(2)) == sorted(five) and ds.epoch == 5
