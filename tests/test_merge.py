"""The merge of a version's segments equals applying them one by one to a dict (docs/design.md invariant 2).

A model in plain Python (a dict from id to the row that last wrote it, tombstones popping ids) is
compared with :func:`hds_s3.index.segments.merge` on random chains of segments: ids drawn from a small pool
so that replacements and deletions are frequent, segments of every size including empty ones, and
sizes large enough that the parallel filter and the sliced path both run.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from budget import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from hds_s3.index import segments

Segment = tuple[str, list[tuple[str, int]]]  # kind, (id, value) rows; a deletes segment has value -1


def _table(kind: str, rows: list[tuple[str, int]]) -> pa.Table:
    if kind == "deletes":
        return pa.table({"id": pa.array([i for i, _ in rows], pa.string())})
    return pa.table({"id": pa.array([i for i, _ in rows], pa.string()), "v": pa.array([v for _, v in rows])})


def _model(chain: list[Segment]) -> dict[str, int]:
    state: dict[str, int] = {}
    for kind, rows in chain:
        for fid, value in rows:
            if kind == "deletes":
                state.pop(fid, None)
            else:
                state.pop(fid, None)  # a replacement moves to the newer segment's place
                state[fid] = value
    return state


def _merged(chain: list[Segment]) -> dict[str, int]:
    table = segments.merge([(kind, _table(kind, rows)) for kind, rows in chain])
    if table.num_rows == 0:
        return {}
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "an id survived twice"
    return dict(zip(ids, table.column("v").to_pylist(), strict=True))


@st.composite
def chains(draw: st.DrawFn) -> list[Segment]:
    pool = [f"f{i:03d}" for i in range(draw(st.integers(1, 60)))]
    chain: list[Segment] = []
    value = 0
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["frames", "frames", "deletes"]))
        ids = sorted(draw(st.sets(st.sampled_from(pool), max_size=len(pool))))
        rows = []
        for fid in ids:
            value += 1
            rows.append((fid, value))
        chain.append((kind, rows))
    return chain


@settings(max_examples=examples(300), deadline=None)
@given(chains())
def test_merge_equals_applying_the_segments_in_order(chain: list[Segment]) -> None:
    expected = _model(chain)
    got = _merged(chain)
    assert got == expected
    if chain[0][0] == "frames" and all(kind == "frames" for kind, _ in chain):
        # survivors keep the order of the segments they come from
        order = [fid for _, rows in chain for fid, _ in rows if fid in expected]
        last = {fid: n for n, fid in enumerate(order)}
        assert list(got) == sorted(expected, key=lambda f: last[f])


@pytest.mark.parametrize("dead_every", [7, 25_000, 1])
def test_merge_of_a_large_base_and_deltas(dead_every: int) -> None:
    """A base of 300,000 rows and two deltas: the parallel filter, the sliced path, a whole segment lost."""
    base = [(f"{i:08d}", i) for i in range(300_000)]
    touched = [fid for fid, _ in base[::dead_every]]
    half = len(touched) // 2
    chain: list[Segment] = [
        ("frames", base[:150_000]),
        ("frames", base[150_000:]),
        ("frames", [(fid, -5) for fid in sorted(touched[:half])]),
        ("deletes", [(fid, -1) for fid in sorted(touched[half:])]),
    ]
    assert _merged(chain) == _model(chain)


@st.composite
def child_edits(draw: st.DrawFn) -> tuple[int, list[tuple[str, list[int]]]]:
    """A base of ``n`` frames, then edits of a child: ("add" | "delete", indices); adds may replace."""
    n = draw(st.integers(2, 30))
    ops = draw(
        st.lists(
            st.tuples(st.sampled_from(["add", "delete"]), st.lists(st.integers(0, n + 10), max_size=6)),
            max_size=6,
        )
    )
    return n, ops


@settings(max_examples=examples(60), deadline=None)
@given(child_edits(), st.integers(1, 7))
def test_a_child_of_a_version_marked_disjoint_reads_as_its_edits_applied_in_order(
    edits: tuple[int, list[tuple[str, list[int]]]], segment_rows: int
) -> None:
    """The read that probes only the deltas (ManifestDoc.disjoint) equals a dict model of the edits."""
    from hds_s3 import Client, DatasetVersion
    from hds_s3.model.frames import SingleFrame
    from hds_s3.store import MemoryStore

    def frame(i: int, tag: int) -> SingleFrame:
        return SingleFrame(source=f"s3://b/{i}.jpg", id=f"f{i:02d}", metadata={"tag": tag})

    n, ops = edits
    client = Client(MemoryStore())
    root = DatasetVersion.create_new_dataset(dataset_name="m", client=client)
    root.add_frames([frame(i, 0) for i in range(n)], segment_rows=segment_rows)
    root.publish_version()
    segments_of_root = len(client.frames.refs(root._entry))
    assert client.frames.manifest(root._entry).disjoint == segments_of_root  # no id twice: all
    model = {f"f{i:02d}": 0 for i in range(n)}
    child = DatasetVersion.create_version(
        dataset_name="m", parent_version_ids=[root.id], version_name="kid", client=client
    )
    for step, (op, indices) in enumerate(ops, start=1):
        if op == "add" and indices:
            child.add_frames([frame(i, step) for i in indices], segment_rows=segment_rows)
            model.update({f"f{i:02d}": step for i in indices})
        elif op == "delete" and indices:
            child.delete_frames([f"f{i:02d}" for i in indices])
            for i in indices:
                model.pop(f"f{i:02d}", None)
    table = child.get_frames_table(columns=["id", "meta"])
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids))
    tags = [int(m.split(":")[1].rstrip("}")) for m in table.column("meta").to_pylist()]
    assert dict(zip(ids, tags, strict=True)) == model
