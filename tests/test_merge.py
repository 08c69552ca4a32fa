"""The merge of a version's segments equals applying them one by one to a dict (DESIGN.md invariant 2).

A model in plain Python (a dict from id to the row that last wrote it, tombstones popping ids) is
compared with :func:`hds_s3.segments.merge` on random chains of segments: ids drawn from a small pool
so that replacements and deletions are frequent, segments of every size including empty ones, and
sizes large enough that the parallel filter and the sliced path both run.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hds_s3 import segments

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


@settings(max_examples=300, deadline=None)
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
