"""Embedding vectors kept in frame metadata, and exact or approximate nearest-neighbour search.

A vector is a list of numbers under a ``meta`` path (``set_vector(vector, "emb")`` stores
``meta["emb"]``, as the reference's ``DataEntry.set_vector``), so a dataset written with one API reads
with the other and nothing in the storage format changes. Searching reads the ``meta`` column of
the frames searched, turns the path into a ``(frames, dims)`` float32 matrix with Arrow's JSON reader
(C++, multi-threaded, no Python work per frame), and scores every frame at once with numpy:

* ``cosine``: the cosine of the angle (vectors normalised), highest first;
* ``l2_norm`` (also ``12_norm``, the reference's alias): the Euclidean distance, nearest first;
* ``dot_product``: the dot product, highest first.

The top ``number_of_neighbors`` come from ``argpartition`` then a sort of those few. Segments never
change, so a matrix is kept (per manifest and path, a few of them) and a second search of the
same version costs only the product. ``fast=True`` searches an approximate index instead (faiss's
HNSW graph, built once per matrix and kept likewise; ``pip install 'hds_s3[vectors]'``), for every
similarity (the reference's ``fast`` takes cosine only).

Frames whose path holds no vector (missing, or not a list of numbers) are not candidates; vectors
of another length than the query are refused with :class:`~hds_s3.errors.ValidationError` naming the
frame and the field.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from hds_s3.errors import ValidationError
from hds_s3.model.names import preview

SIMILARITIES = ("cosine", "l2_norm", "dot_product")
"""The similarity functions of :func:`search` (the reference's names)."""
#: Matrices (and approximate indexes) kept in memory at once.
CACHE_ENTRIES = 4
_BLOCK = 1 << 24  # bytes of JSON handed to Arrow's reader at a time


def similarity_name(value: object) -> str:
    """The similarity function's canonical name.

    Raises:
        ValidationError: not one of :data:`SIMILARITIES` (``12_norm`` is taken for ``l2_norm``).
    """
    if not isinstance(value, str):
        raise ValidationError(f"similarity_function must be a string, got {preview(value)}")
    name = value.strip().lower()
    if name == "12_norm":
        name = "l2_norm"
    if name not in SIMILARITIES:
        raise ValidationError(f"similarity_function {value!r} is not one of {', '.join(SIMILARITIES)}")
    return name


def field_path(vector_field: object) -> list[str]:
    """The keys of ``vector_field`` inside ``meta`` (``"meta.emb.v"`` and ``"emb.v"`` give ``["emb", "v"]``).

    Raises:
        ValidationError: not a non-empty dotted path.
    """
    if not isinstance(vector_field, str) or not vector_field.strip():
        raise ValidationError(f"vector_field must be a non-empty string, got {preview(vector_field)}")
    path = vector_field[len("meta.") :] if vector_field.startswith("meta.") else vector_field
    parts = path.split(".")
    if not all(parts):
        raise ValidationError(
            f"vector_field {vector_field!r} is not a dotted path such as 'emb' or 'meta.emb'"
        )
    return parts


def query_vector(reference_vector: object) -> np.ndarray:
    """The query as a float32 vector.

    Raises:
        ValidationError: not a non-empty list (or tuple, or 1-D array) of finite numbers.
    """
    if isinstance(reference_vector, np.ndarray):
        values: Any = reference_vector
    elif isinstance(reference_vector, (list, tuple)):
        values = list(reference_vector)
    else:
        raise ValidationError(f"reference_vector must be a list of numbers, got {preview(reference_vector)}")
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"reference_vector must be a list of numbers, got {preview(values)}") from None
    if out.ndim != 1 or out.size == 0 or not np.isfinite(out).all():
        raise ValidationError(
            f"reference_vector must be a non-empty list of finite numbers, got {preview(values)}"
        )
    return out.astype(np.float32)


def neighbours_count(value: object) -> int:
    """``number_of_neighbors`` checked.

    Raises:
        ValidationError: not a whole number >= 1.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"number_of_neighbors must be a whole number >= 1, got {preview(value)}")
    return value


@dataclass
class Vectors:
    """The vectors found at one path: ``rows`` (positions in the column read) and their ``matrix``.

    ``ids``: the frame id of each row, when the reader keeps them.
    """

    rows: np.ndarray
    matrix: np.ndarray  # (len(rows), dims) float32
    ids: Any = None

    @property
    def dims(self) -> int:
        """The vectors' length (0 when there are none)."""
        return int(self.matrix.shape[1]) if self.matrix.ndim == 2 else 0


def _lists_fast(texts: pa.Array, path: list[str]) -> pa.Array | None:
    """The list at ``path`` of every JSON object of ``texts`` (null where absent), or None on doubt."""
    kind: pa.DataType = pa.list_(pa.float64())
    for key in reversed(path[1:]):
        kind = pa.struct([(key, kind)])
    schema = pa.schema([(path[0], kind)])
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    lines = pc.fill_null(texts, "{}")
    sizes = np.asarray(pc.binary_length(lines).to_numpy(zero_copy_only=False), dtype=np.int64) + 1
    ends = np.cumsum(sizes)
    parts: list[pa.Array] = []
    start = 0
    n = len(lines)
    while start < n:  # bounded blocks: the joined text of a million frames is not built at once
        done = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, done + _BLOCK, side="right"))
        stop = min(max(stop, start + 1), n)
        chunk = lines.slice(start, stop - start)
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(chunk)], pa.int32()), chunk), "\n")
        data = joined[0].as_buffer()
        try:
            table = pajson.read_json(
                pa.BufferReader(data),
                read_options=pajson.ReadOptions(block_size=max(1 << 20, data.size + 1), use_threads=True),
                parse_options=options,
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if table.num_rows != len(chunk):
            return None
        column: Any = table.column(path[0]).combine_chunks()
        for key in path[1:]:
            column = pc.struct_field(column, key)
        parts.append(column)
        start = stop
    return pa.concat_arrays(parts) if parts else pa.array([], pa.list_(pa.float64()))


def _lists_slow(texts: pa.Array, path: list[str]) -> list[Any]:
    out: list[Any] = []
    for text in texts.to_pylist():
        value: Any = orjson.loads(text) if text else None
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        ok = isinstance(value, list) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value
        )
        out.append(value if ok else None)
    return out


def extract(texts: pa.Array | pa.ChunkedArray, path: list[str], ids: pa.Array | None = None) -> Vectors:
    """The vectors at ``path`` of a column of ``meta`` JSON texts.

    Rows without a vector there are left out (``rows`` says which are in).

    Raises:
        ValidationError: two vectors of different lengths (naming a frame of each, from ``ids``).
    """
    column = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    lists = _lists_fast(column, path) if len(column) else pa.array([], pa.list_(pa.float64()))
    if lists is None:
        lists = pa.array(_lists_slow(column, path), pa.list_(pa.float64()))
    valid = np.asarray(pc.is_valid(lists).to_numpy(zero_copy_only=False), dtype=bool)
    lengths = np.asarray(pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False))
    valid &= lengths > 0
    rows = np.flatnonzero(valid)
    if len(rows) == 0:
        return Vectors(rows, np.zeros((0, 0), dtype=np.float32))
    dims = lengths[rows]
    if (dims != dims[0]).any():
        odd = rows[np.flatnonzero(dims != dims[0])[0]]

        def name(r: Any) -> str:
            return repr(ids[int(r)].as_py()) if ids is not None else f"row {int(r)}"

        raise ValidationError(
            f"meta.{'.'.join(path)}: frame {name(rows[0])} holds a vector of {int(dims[0])} numbers "
            f"and frame {name(odd)} one of {int(lengths[odd])}; vectors of one field have one length"
        )
    kept = lists.filter(pa.array(valid))
    flat = pc.list_flatten(kept).to_numpy(zero_copy_only=False)
    matrix = np.asarray(flat, dtype=np.float32).reshape(len(rows), int(dims[0]))
    return Vectors(rows, matrix)


class _Cache:
    """A few matrices and indexes, least recently used out first (thread-safe)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Hashable, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key: Hashable, value: Any) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_MATRICES = _Cache(CACHE_ENTRIES)
_INDEXES = _Cache(CACHE_ENTRIES)


def cached_vectors(key: Hashable, load: Any) -> Any:
    """The value kept for ``key`` (an immutable manifest and a path), else ``load()`` kept."""
    found = _MATRICES.get(key)
    if found is None:
        found = load()
        _MATRICES.put(key, found)
    return found


def _prepared(matrix: np.ndarray, similarity: str) -> np.ndarray:
    if similarity != "cosine":
        return matrix
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out: np.ndarray = matrix / np.where(norms == 0, 1, norms)
    return out


def exact(
    matrix: np.ndarray, query: np.ndarray, k: int, similarity: str, key: Hashable | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best rows of ``matrix`` for ``query``: (row positions, scores), best first.

    Scores: the cosine, the Euclidean distance (ascending) or the dot product. With ``key`` (the
    matrix's identity), what a similarity derives from the matrix (the normalised rows, the squared
    norms) is kept for the next query.
    """
    n = len(matrix)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    k = min(k, n)

    def derived(name: str, make: Any) -> np.ndarray:
        out: np.ndarray = make() if key is None else cached_vectors((key, name), make)
        return out

    if similarity == "l2_norm":
        # |x - q|^2 = |x|^2 - 2 x.q + |q|^2, one matrix-vector product
        squares = derived("squares", lambda: np.einsum("ij,ij->i", matrix, matrix))
        scores = squares - 2.0 * (matrix @ query) + float(query @ query)
        order_key = scores
    else:
        q = query / (np.linalg.norm(query) or 1.0) if similarity == "cosine" else query
        m = derived("unit", lambda: _prepared(matrix, similarity)) if similarity == "cosine" else matrix
        scores = m @ q
        order_key = -scores
    best = np.argpartition(order_key, k - 1)[:k] if k < n else np.arange(n)
    best = best[np.argsort(order_key[best], kind="stable")]
    out = scores[best]
    if similarity == "l2_norm":
        out = np.sqrt(np.maximum(out, 0))
    return best.astype(np.int64), out.astype(np.float32)


def approximate(
    key: Hashable, matrix: np.ndarray, query: np.ndarray, k: int, similarity: str
) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`exact`, through a faiss HNSW index built once for ``key`` (and kept).

    Raises:
        ValidationError: faiss is not installed (``pip install 'hds_s3[vectors]'``).
    """
    try:
        faiss: Any = importlib.import_module("faiss")
    except ImportError:
        raise ValidationError(
            "fast=True searches an approximate index built with faiss; "
            "install it: pip install 'hds_s3[vectors]'"
        ) from None
    n = len(matrix)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    index = _INDEXES.get((key, similarity))
    if index is None:
        metric = faiss.METRIC_L2 if similarity == "l2_norm" else faiss.METRIC_INNER_PRODUCT
        index = faiss.IndexHNSWFlat(matrix.shape[1], 32, metric)
        index.hnsw.efConstruction = 80
        index.add(np.ascontiguousarray(_prepared(matrix, similarity), dtype=np.float32))
        _INDEXES.put((key, similarity), index)
    q = query / (np.linalg.norm(query) or 1.0) if similarity == "cosine" else query
    k = min(k, n)
    index.hnsw.efSearch = max(64, 2 * k)
    scores, rows = index.search(np.ascontiguousarray(q.reshape(1, -1), dtype=np.float32), k)
    keep = rows[0] >= 0
    found, values = rows[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)
    if similarity == "l2_norm":
        values = np.sqrt(np.maximum(values, 0))
    return found, values


def search(
    key: Hashable,
    vectors: Vectors,
    reference_vector: object,
    number_of_neighbors: int,
    similarity_function: str,
    fast: bool,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Search ``vectors``: (positions in the column they were extracted from, scores), best first.

    Raises:
        ValidationError: a bad argument, or a query of another length than the stored vectors.
    """
    query = query_vector(reference_vector)
    k = neighbours_count(number_of_neighbors)
    similarity = similarity_name(similarity_function)
    if vectors.dims and vectors.dims != len(query):
        raise ValidationError(
            f"{where}: the stored vectors have {vectors.dims} numbers, reference_vector {len(query)}"
        )
    run = approximate if fast else None
    if run is not None:
        rows, scores = run(key, vectors.matrix, query, k, similarity)
    else:
        rows, scores = exact(vectors.matrix, query, k, similarity, key)
    return vectors.rows[rows], scores


def matrix_of(values: Sequence[Sequence[float]]) -> np.ndarray:
    """A float32 matrix of equal-length vectors (for tests and baselines)."""
    return np.asarray(values, dtype=np.float32)


__all__ = [
    "CACHE_ENTRIES",
    "SIMILARITIES",
    "Vectors",
    "approximate",
    "cached_vectors",
    "exact",
    "extract",
    "field_path",
    "matrix_of",
    "neighbours_count",
    "query_vector",
    "search",
    "similarity_name",
]
