"""Caller input checked and converted for the engine; anything invalid raises VectorIndexError.

Vectors become float32 arrays, sparse vectors sorted int32/float32 arrays, and metadata an owned,
JSON-like copy (so a caller mutating its dict afterwards cannot change what the index holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from core.vectors.records import MAX_SPARSE_DIMENSIONS, SparseVector, VectorIndexError
from core.vectors.reported import shortest
from core.vectors.sparse import Sparse

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def choice(value: Any, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise VectorIndexError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def record_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise VectorIndexError(f"an id must be a non-empty string, not {value!r}")
    return value


def id_list(values: Any) -> list[str]:
    if isinstance(values, str):
        return [record_id(values)]
    if not isinstance(values, list | tuple):
        raise VectorIndexError(f"ids must be a list of strings, not {type(values).__name__}")
    return [record_id(value) for value in values]


def namespace(value: Any) -> str:
    if not isinstance(value, str):
        raise VectorIndexError(f"a namespace must be a string, not {value!r}")
    return value


def text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise VectorIndexError(f"{name} must be a string, not {type(value).__name__}")
    return value


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VectorIndexError(f"{name} must be a positive integer, not {value!r}")
    return value


def dense(vector: Any, dimension: int, similarity: str) -> np.ndarray:
    """A float32 vector of the index's dimension: finite, and not all zeros under COSINE."""
    try:
        with np.errstate(over="ignore"):  # too large for float32 becomes inf, refused below
            array = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        raise VectorIndexError("a vector must be a list of numbers") from None
    if array.ndim != 1:
        raise VectorIndexError("a vector must be a flat list of numbers")
    if len(array) != dimension:
        raise VectorIndexError(f"invalid vector dimension: {len(array)}, expected: {dimension}")
    if not np.isfinite(array).all():
        raise VectorIndexError("a vector must not contain NaN or infinite values (or exceed float32)")
    if similarity == "COSINE" and not array.any():
        raise VectorIndexError("a zero vector has no direction, so no COSINE similarity")
    return array


def sparse(vector: Any, *, limit: bool = True) -> Sparse:
    """Sorted, distinct int32 dimensions and finite float32 values. A dimension given more than once
    holds the sum of its values: Upstash accepts repeats without documenting what it does with them,
    and a sum keeps the inner product with the vector as written (each pair contributes)."""
    if not isinstance(vector, SparseVector):
        raise VectorIndexError(f"a sparse vector must be a SparseVector, not {type(vector).__name__}")
    indices, values = vector.indices, vector.values
    if not isinstance(indices, list | tuple) or not isinstance(values, list | tuple):
        raise VectorIndexError("a sparse vector's indices and values must be lists")
    if len(indices) != len(values):
        raise VectorIndexError(
            f"a sparse vector needs as many values as indices: {len(indices)} indices, {len(values)} values"
        )
    if any(
        isinstance(i, bool) or not isinstance(i, int) or not _INT32_MIN <= i <= _INT32_MAX for i in indices
    ):
        raise VectorIndexError("sparse indices must be integers in the signed 32-bit range")
    try:
        with np.errstate(over="ignore"):
            value_array = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        raise VectorIndexError("sparse values must be numbers") from None
    if value_array.ndim != 1 or not np.isfinite(value_array).all():
        raise VectorIndexError("sparse values must be finite numbers")
    index_array = np.asarray(indices, dtype=np.int32).reshape(-1)
    order = np.argsort(index_array, kind="stable")
    index_array, value_array = index_array[order], value_array.reshape(-1)[order]
    if len(index_array) > 1 and (np.diff(index_array) == 0).any():
        index_array, starts = np.unique(index_array, return_index=True)
        with np.errstate(over="ignore"):
            value_array = np.add.reduceat(value_array.astype(np.float64), starts).astype(np.float32)
        if not np.isfinite(value_array).all():
            raise VectorIndexError("sparse values must be finite numbers (a repeated index's sum too)")
    if limit and len(index_array) > MAX_SPARSE_DIMENSIONS:
        raise VectorIndexError(
            f"a sparse vector may have at most {MAX_SPARSE_DIMENSIONS} non-zero dimensions"
        )
    return index_array, value_array


def metadata(value: Any) -> dict[str, Any] | None:
    """An owned copy of the metadata as JSON carries it to Upstash: a JSON round trip, so tuples
    become lists, non-string keys strings, and NaN null."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise VectorIndexError(f"metadata must be an object (dict), not {type(value).__name__}")
    try:
        owned = msgspec.json.decode(msgspec.json.encode(value), type=dict[str, Any])
        msgspec.msgpack.encode(owned)  # what the journal will write: integers beyond 64 bits fail here
        return owned
    except (TypeError, ValueError, OverflowError, msgspec.MsgspecError) as exc:
        raise VectorIndexError(f"metadata must be JSON-like: {exc}") from None


def copied(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of stored metadata to hand out (callers may mutate what they get)."""
    return None if value is None else msgspec.msgpack.decode(msgspec.msgpack.encode(value))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: null removes a key, objects merge recursively, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def sparse_vector(arrays: Sparse) -> SparseVector:
    """A sparse vector as a read shows it: float32 values written shortest (reported.py)."""
    return SparseVector(indices=arrays[0].tolist(), values=shortest(arrays[1]).tolist())
