"""The on-disk layout: a tree as a JSON description plus named tensors, the header, checksums.

`encode` turns a tree into the bytes of one safetensors file; `file_size` says how many bytes
that file will have without reading any array (so it works on `jax.ShapeDtypeStruct` trees).
Both walk the tree with the same `Writer`, so whatever `save` rejects, `file_size` rejects too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from jnet.checkpoint.errors import CheckpointError, is_int

FORMAT = "jnet.checkpoint"
VERSION = 2  # 2: CRC-32 of every tensor and of the header; 1 (jnet 0.1): no checksums

# Dtypes the safetensors format stores natively: numpy name -> safetensors dtype code. Others
# travel as raw bytes ("U8").
NATIVE_DTYPES = {
    "bool": "BOOL", "int8": "I8", "uint8": "U8", "int16": "I16", "uint16": "U16",
    "int32": "I32", "uint32": "U32", "int64": "I64", "uint64": "U64", "float16": "F16",
    "float32": "F32", "float64": "F64", "bfloat16": "BF16", "complex64": "C64",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
}
ROOT = "__root__"  # tensor name of a tree that is a single array (safetensors needs a name)
_WIDEST_CRC = 0xFFFFFFFF  # what `file_size` assumes for checksums it does not compute

# Why each kind of NumPy dtype that is not array data cannot be stored, and the fix.
_NOT_DATA_FIXES = {
    "U": ("strings", "store them as Python str leaves (`list(x)`) or in `metadata=`, or "
                     "encode them as integer ids"),
    "S": ("bytes", "decode them to Python str leaves, or encode them as a uint8 array"),
    "O": ("Python objects", "convert it to a numeric array (`np.asarray(x, np.float32)`), or "
                            "to a list / dict of arrays"),
    "M": ("dates", "store `x.astype('int64')` (units since 1970) and keep the unit, e.g. "
                   "in `metadata=`"),
    "m": ("time spans", "store `x.astype('int64')` and keep the unit, e.g. in `metadata=`"),
    "V": ("raw or structured records", "store each field as its own array "
                                       "(`{name: x[name] for name in x.dtype.names}`)"),
}


def crc32(buffer) -> int:
    """CRC-32 of a bytes-like object (unsigned, as stored in the header)."""
    return zlib.crc32(buffer) & 0xFFFFFFFF


def array_crc32(arr: np.ndarray) -> int:
    """CRC-32 of a contiguous array's raw bytes (any dtype, bfloat16 and int4 included)."""
    return crc32(arr.reshape(-1).view(np.uint8))


def header_crc32(jnet_json: str, user_json: str) -> int:
    """The checksum of a header's two JSON strings (NUL-separated: no shifting text between
    them keeps it)."""
    return crc32(jnet_json.encode() + b"\0" + user_json.encode())


def array_dtype(name: str) -> np.dtype | None:
    """The dtype an array leaf names, or None when it is not one an array can hold."""
    try:
        dtype = jnp.dtype(name)
    except (TypeError, ValueError):
        return None
    # Objects, strings and dates are not array data (NumPy kinds O, S, U, M, m).
    not_data = (np.object_, np.character, np.datetime64, np.timedelta64)
    if dtype.itemsize == 0 or any(np.issubdtype(dtype, t) for t in not_data):
        return None
    return dtype


def is_key(x: Any) -> bool:
    """Whether `x` is a typed PRNG key (an array or a `jax.ShapeDtypeStruct` of one)."""
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def key_entry(k: Any) -> Any:
    """One key-path entry as a JSON value: dict key, sequence index or attribute name."""
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            value = getattr(k, attr)
            plain = isinstance(value, (str, int)) and not isinstance(value, bool)
            return value if plain else str(value)
    return str(k)


def scalar_type(x: bool | int | float) -> type:
    """The plain Python type a scalar is stored as (an IntEnum is an int)."""
    return bool if isinstance(x, bool) else int if isinstance(x, int) else float


def path_str(path: tuple) -> str:
    """A key path as the user reads it: ``params/dense_0/w``."""
    return "/".join(str(p) for p in path) or "<root>"


def leaf_summary(leaf: dict) -> str:
    """A described leaf as the user reads it: ``float32[3, 4]``, ``Python int``."""
    kind = leaf["leaf"]
    if kind == "array":
        return f"{leaf['dtype']}{list(leaf['shape'])}"
    if kind == "key":
        return f"PRNG key {leaf['dtype']}{list(leaf['shape'])}"
    if kind == "scalar":
        return f"Python {leaf['type']}"
    return {"none": "None", "str": "str"}[kind]


def _children(node: Any) -> tuple[list[tuple[Any, Any]], str, str]:
    """One level of a pytree node: ``[(key, child)]``, the node kind and its type name."""
    flat, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    items = [(key_entry(path[0]), child) for path, child in flat]
    kind = (
        "dict" if isinstance(node, Mapping)
        else "namedtuple" if isinstance(node, tuple) and hasattr(node, "_fields")
        else "list" if isinstance(node, list)
        else "tuple" if isinstance(node, tuple)
        else "dataclass" if dataclasses.is_dataclass(node)
        else "custom"
    )
    return items, kind, type(node).__qualname__


def _check_dict_keys(node: Mapping, path: tuple) -> None:
    """Dict keys are stored as JSON: only str and int keys come back as they were written."""
    for k in node:
        if not (isinstance(k, str) or is_int(k)):
            fix = ("use `int(k)`" if isinstance(k, np.integer) and not isinstance(k, np.bool_)
                   else "use str or int keys, e.g. `{'/'.join(map(str, k)): v ...}` for tuples")
            raise CheckpointError(
                f"cannot store the dict at '{path_str(path)}': its key {k!r} is of type "
                f"{type(k).__name__}; a checkpoint stores dict keys as JSON str or int, so it "
                f"would load back as the str {str(k)!r}. Convert the keys first ({fix}). "
                "Nothing was written.")
    if len({isinstance(k, str) for k in node}) > 1:
        raise CheckpointError(
            f"cannot store the dict at '{path_str(path)}': its keys mix str and int "
            f"({', '.join(sorted(map(repr, node))[:4])}), which jax cannot put in a stable "
            "order. Use keys of one type (e.g. `str(k)` for all). Nothing was written.")


def _check_array_dtype(dtype: np.dtype, path: tuple) -> None:
    """Only dtypes `load` can rebuild are written: a file must never become unreadable."""
    if array_dtype(dtype.name) is not None:
        return
    what, fix = _NOT_DATA_FIXES.get(dtype.kind, ("not numbers", "convert it to a numeric "
                                                                "dtype"))
    raise CheckpointError(
        f"cannot store the array at '{path_str(path)}': its dtype {dtype} holds {what}, not "
        f"tensor data a checkpoint can restore; {fix}. Nothing was written.")


class Writer:
    """Walks a tree once, producing its JSON description and the tensors to store.

    Subclasses decide what storing a tensor means (`Sizer` only counts its bytes)."""

    def __init__(self) -> None:
        self.tensors: dict[str, Any] = {}

    def _name(self, path: tuple) -> str:
        name = "/".join(str(p) for p in path) or ROOT
        base, i = name, 1
        while name in self.tensors:  # e.g. a dict key "a/b" next to a nested a -> b
            name, i = f"{base}~{i}", i + 1
        return name

    def _store(self, name: str, x: Any) -> tuple[str, int]:
        """Keep array `x` as tensor `name`: how it is stored and its CRC-32."""
        self.tensors[name], stored = _tensor_bytes(np.asarray(x))
        return stored, array_crc32(self.tensors[name])

    def _store_key(self, name: str, key: Any) -> tuple[str, int]:
        """Keep PRNG key `key`'s data as tensor `name`: its implementation and CRC-32."""
        self.tensors[name] = data = np.ascontiguousarray(jax.random.key_data(key))
        return str(jax.random.key_impl(key)), array_crc32(data)

    def _array(self, path: tuple, x: Any, origin: str) -> dict:
        dtype = np.dtype(x.dtype)
        _check_array_dtype(dtype, path)
        name = self._name(path)
        stored, crc = self._store(name, x)
        return {"leaf": "array", "tensor": name, "dtype": dtype.name,
                "shape": list(x.shape), "stored": stored, "crc32": crc, "origin": origin}

    def _leaf(self, node: Any, path: tuple) -> dict | None:
        """The description of `node` when it is a leaf, else None."""
        if node is None:
            return {"leaf": "none"}
        if isinstance(node, (bool, int, float)) and not isinstance(node, np.generic):
            py = scalar_type(node)
            return {"leaf": "scalar", "type": py.__name__, "value": py(node)}
        if isinstance(node, str):
            return {"leaf": "str", "value": node}
        if is_key(node):
            name = self._name(path)
            impl, crc = self._store_key(name, node)
            return {"leaf": "key", "tensor": name, "impl": impl, "dtype": str(node.dtype),
                    "shape": list(node.shape), "crc32": crc}
        if isinstance(node, np.generic):
            return self._array(path, np.asarray(node), "numpy_scalar")
        if isinstance(node, np.ndarray):
            return self._array(path, node, "numpy")
        if isinstance(node, jax.Array):
            return self._array(path, node, "jax")
        return None

    def describe(self, node: Any, path: tuple = ()) -> dict:
        """The JSON description of `node` (at `path`), storing its tensors on the way.

        Raises:
            CheckpointError: a leaf, an array's dtype or a dict key cannot be stored.
        """
        leaf = self._leaf(node, path)
        if leaf is not None:
            return leaf
        if isinstance(node, Mapping):
            _check_dict_keys(node, path)
        treedef = jax.tree.structure(node, is_leaf=lambda x: x is not node)  # one level
        # jaxlib ships no stub for PyTreeDef, so mypy cannot see these attributes
        if treedef.num_leaves == 1 and treedef.num_nodes == 1:  # type: ignore[attr-defined]
            raise CheckpointError(
                f"cannot store the leaf at '{path_str(path)}' of type "
                f"{type(node).__name__}. Leaves must be arrays, Python int/float/bool/str, None "
                "or PRNG keys; convert it (e.g. `jnp.asarray(x)`) or register its class as a "
                "pytree (`jax.tree_util.register_dataclass`).",
            )
        items, kind, type_name = _children(node)
        return {
            "node": kind,
            "type": type_name,
            "keys": [k for k, _ in items],
            "children": [self.describe(child, (*path, k)) for k, child in items],
        }


class Sizer(Writer):
    """A `Writer` that reads no array: it records each tensor's safetensors dtype, shape and
    size, and the widest checksum, so the description is at least as long as the real one.
    `jax.ShapeDtypeStruct` leaves stand for arrays of any origin."""

    def _store(self, name: str, x: Any) -> tuple[str, int]:
        dtype = np.dtype(x.dtype)
        nbytes = math.prod(x.shape) * dtype.itemsize
        code = NATIVE_DTYPES.get(dtype.name)
        self.tensors[name] = (code or "U8", list(x.shape) if code else [nbytes], nbytes)
        return ("native" if code else "bytes"), _WIDEST_CRC

    def _store_key(self, name: str, key: Any) -> tuple[str, int]:
        impl: list[str] = []

        def key_data(k: jax.Array) -> jax.Array:
            impl.append(str(jax.random.key_impl(k)))  # static, so known under eval_shape
            return jax.random.key_data(k)

        data = jax.eval_shape(key_data, key)
        self.tensors[name] = ("U32", list(data.shape), math.prod(data.shape) * 4)
        return impl[0], _WIDEST_CRC

    def _leaf(self, node: Any, path: tuple) -> dict | None:
        if isinstance(node, jax.ShapeDtypeStruct) and not is_key(node):
            # the longest origin: the array it stands for may be a NumPy scalar
            return self._array(path, node, "numpy_scalar")
        return super()._leaf(node, path)


def _tensor_bytes(arr: np.ndarray) -> tuple[np.ndarray, str]:
    """`arr` as safetensors can store it (little-endian, contiguous) and how it was stored."""
    arr = np.ascontiguousarray(arr).reshape(arr.shape)  # ascontiguousarray makes 0-d 1-d
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.dtype.name in NATIVE_DTYPES:
        return arr, "native"
    return arr.reshape(-1).view(np.uint8), "bytes"


def _json_dumps(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"{what} must be JSON-serialisable (dicts, lists, str, numbers, "
            f"bool, None), got {e}. Convert arrays to floats or lists first."
        ) from None


def _header(writer: Writer, tree: Any, metadata: Any) -> dict[str, str]:
    """The safetensors metadata of a checkpoint: the description, the user's metadata and the
    checksum of the two (the widest one when `writer` is a `Sizer`)."""
    description = {"format": FORMAT, "version": VERSION, "tree": writer.describe(tree)}
    jnet_json = _json_dumps(description, "the tree's scalar leaves")
    user_json = _json_dumps(metadata, "metadata")
    crc = _WIDEST_CRC if isinstance(writer, Sizer) else header_crc32(jnet_json, user_json)
    return {"jnet": jnet_json, "user": user_json, "jnet_crc32": str(crc)}


def encode(path: str, tree: Any, metadata: Any) -> bytes:
    """The bytes of the checkpoint file of `tree` (`path` only names it in errors).

    Raises:
        CheckpointError: a leaf, dtype or dict key cannot be stored, or `metadata` is not
            JSON-serialisable.
    """
    writer = Writer()
    header = _header(writer, tree, metadata)
    try:
        return safetensors.numpy.save(writer.tensors, metadata=header)
    except Exception as e:  # safetensors reports in its own error type
        raise CheckpointError(f"safetensors could not serialise the tree for '{path}': {e}",
                              path=path) from e


def file_size(tree: Any, metadata: Any = None) -> int:
    """The size in bytes of the file `encode(path, tree, metadata)` returns, or a little more:
    never less, and at most 8 bytes plus about 16 per tensor over, since without reading any
    array the checksums, data offsets and (for `jax.ShapeDtypeStruct` leaves) the array's
    origin are counted at their widest.

    Raises:
        CheckpointError: as `encode`.
    """
    sizer = Sizer()
    header = _header(sizer, tree, metadata)
    data = sum(nbytes for _, _, nbytes in sizer.tensors.values())
    entries: dict[str, Any] = {"__metadata__": header}
    for name, (code, shape, _) in sizer.tensors.items():
        entries[name] = {"dtype": code, "shape": shape, "data_offsets": [data, data]}
    # safetensors writes compact UTF-8 JSON, padded with spaces to a multiple of 8 bytes
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode()
    return 8 + -(-len(text) // 8) * 8 + data
