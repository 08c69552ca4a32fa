"""Vectors in frame metadata and their search: exact (checked against numpy by hand), approximate
(faiss), over a version and over a DataView, and the errors a user can make."""

from __future__ import annotations

import importlib.util
import uuid

import numpy as np
import pytest

import hds_s3
from hds_s3 import Client, DatasetVersion, SingleFrame, ValidationError
from hds_s3.index import vectors
from hds_s3.query.dataview import DataView

DIMS = 16


@pytest.fixture
def client() -> Client:
    return hds_s3.connect(f"memory://vectors-{uuid.uuid4().hex}")


@pytest.fixture
def matrix() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((60, DIMS)).astype(np.float32)


@pytest.fixture
def version(client: Client, matrix: np.ndarray) -> DatasetVersion:
    v = DatasetVersion.create_new_dataset(dataset_name="emb", client=client)
    frames = []
    for i, row in enumerate(matrix):
        f = SingleFrame(
            source=f"s3://b/{i}.jpg", id=f"f{i:02d}", metadata={"city": "bremen" if i % 2 else "paris"}
        )
        f.set_vector(row.tolist(), "emb")
        frames.append(f)
    frames.append(SingleFrame(source="s3://b/none.jpg", id="no-vector"))
    assert v.add_frames(frames) == []
    return v


def by_hand(matrix: np.ndarray, q: np.ndarray, similarity: str, k: int) -> list[str]:
    if similarity == "cosine":
        scores = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
        order = np.argsort(-scores)
    elif similarity == "dot_product":
        order = np.argsort(-(matrix @ q))
    else:
        order = np.argsort(np.linalg.norm(matrix - q, axis=1))
    return [f"f{i:02d}" for i in order[:k]]


@pytest.mark.parametrize("similarity", ["cosine", "l2_norm", "dot_product"])
def test_exact_search_of_a_version_agrees_with_numpy(
    version: DatasetVersion, matrix: np.ndarray, similarity: str
) -> None:
    q = np.random.default_rng(1).standard_normal(DIMS).astype(np.float32)
    found = version.vector_search(q.tolist(), "emb", number_of_neighbors=5, similarity_function=similarity)
    assert [f.id for f in found] == by_hand(matrix, q, similarity, 5)
    assert all(isinstance(f, SingleFrame) and f.metadata["emb"] for f in found)
    # the frame itself comes first, with its score; "meta." is optional
    pairs = version.vector_search(
        matrix[3].tolist(), "meta.emb", 2, similarity_function=similarity, with_scores=True
    )
    assert pairs[0][0].id == "f03"
    if similarity == "l2_norm":
        assert pairs[0][1] == pytest.approx(0, abs=1e-3) and pairs[1][1] > pairs[0][1]
    else:
        assert pairs[0][1] >= pairs[1][1]


def test_search_of_a_view_only_scores_the_frames_it_matches(
    client: Client, version: DatasetVersion, matrix: np.ndarray
) -> None:
    view = DataView(client=client)
    view.add_query(dataset_name="emb", version_name="Current", frame_query="meta.city:bremen")
    q = matrix[4]  # a paris frame: not in the view
    found = view.vector_search(q.tolist(), "emb", number_of_neighbors=3)
    odd = matrix[1::2]
    expected = [
        f"f{2 * int(i) + 1:02d}"
        for i in np.argsort(-((odd / np.linalg.norm(odd, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))))[
            :3
        ]
    ]
    assert [f.id for f in found] == expected
    dicts = view.vector_search(q.tolist(), "emb", number_of_neighbors=3, as_dict=True)
    assert [d["id"] for d in dicts] == expected and dicts[0]["dataset"]["name"] == "emb"


@pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None, reason="faiss is not installed (the vectors extra)"
)
def test_approximate_search_finds_what_exact_search_finds(
    version: DatasetVersion, matrix: np.ndarray
) -> None:
    for i in (0, 17, 42):
        exact = [f.id for f in version.vector_search(matrix[i].tolist(), "emb", 5)]
        fast = [f.id for f in version.vector_search(matrix[i].tolist(), "emb", 5, fast=True)]
        assert fast[0] == exact[0] == f"f{i:02d}"
        assert len(set(fast) & set(exact)) >= 4  # 60 vectors: the graph is near exact


def test_bad_searches_are_refused_with_the_reason(client: Client, version: DatasetVersion) -> None:
    with pytest.raises(ValidationError, match="reference_vector"):
        version.vector_search([], "emb")
    with pytest.raises(ValidationError, match="reference_vector"):
        version.vector_search("1,2", "emb")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="number_of_neighbors"):
        version.vector_search([0.0] * DIMS, "emb", 0)
    with pytest.raises(ValidationError, match="similarity_function"):
        version.vector_search([0.0] * DIMS, "emb", similarity_function="manhattan")
    with pytest.raises(ValidationError, match="vector_field"):
        version.vector_search([0.0] * DIMS, "")
    with pytest.raises(ValidationError, match="16 numbers, reference_vector 3"):
        version.vector_search([1.0, 2.0, 3.0], "emb")
    assert version.vector_search([1.0] * DIMS, "emb", similarity_function="12_norm")  # the reference's alias
    odd = SingleFrame(source="s3://b/odd.jpg", id="odd")
    odd.set_vector([1.0, 2.0], "emb")
    version.add_frames([odd])
    with pytest.raises(ValidationError, match="frame 'f00'.*16 numbers.*frame 'odd' one of 2"):
        version.vector_search([1.0] * DIMS, "emb")
    with pytest.raises(ValidationError, match="finite numbers"):
        odd.set_vector([1.0, float("nan")], "emb")


def test_vectors_that_are_no_list_of_numbers_are_skipped() -> None:
    import pyarrow as pa

    texts = pa.array(['{"emb": "no"}', '{"emb": [1, 2]}', None, '{"emb": {"x": 1}}', '{"emb": [3, 4.5]}'])
    found = vectors.extract(texts, ["emb"])
    assert found.rows.tolist() == [1, 4]
    assert found.matrix.tolist() == [[1.0, 2.0], [3.0, 4.5]]
    nested = vectors.extract(pa.array(['{"a": {"b": [1, 0]}}', '{"a": 1}']), ["a", "b"])
    assert nested.rows.tolist() == [0] and nested.dims == 2
