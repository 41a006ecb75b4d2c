"""Checkpoints: any pytree of arrays and scalars in one safetensors file, written atomically.

    jnet.checkpoint.save("ckpt.safetensors", {"params": params, "opt_state": opt_state})
    tree = jnet.checkpoint.load("ckpt.safetensors", like=template)

On disk a checkpoint is ONE safetensors file (no pickle, readable by any safetensors tool):

- every array leaf is a tensor named by its key path, ``"params/conv2d_0/w"``;
- the header metadata holds ``"jnet"``: a JSON description of the tree (containers and their
  keys, which leaves are arrays / Python scalars / None / PRNG keys, dtypes, the format
  version) and ``"user"``: the caller's `metadata` as JSON.

Dtypes safetensors knows (float32, bfloat16, int8, bool, ...) are stored natively; others
(complex128, int4, some float8 variants) as their raw little-endian bytes in a uint8 tensor,
with the real dtype in the description. Typed PRNG keys (`jax.random.key`) are stored as
`jax.random.key_data` plus the implementation name; legacy uint32 keys are ordinary arrays.

`save` writes to a temporary file in the same directory, fsyncs it, renames it onto `path` with
`os.replace` (atomic on POSIX and Windows) and fsyncs the directory: a crash at any point
leaves either the previous checkpoint or the new one, never a half-written file.

`load(path, like=tree)` restores into `like`'s exact structure (NamedTuples, dataclasses, an
optimizer state) and checks every leaf's presence, kind, shape and dtype, reporting all
mismatches at once. `like` may hold `jax.ShapeDtypeStruct` leaves, e.g. from
``jax.eval_shape(model.init, key)``, so nothing has to be allocated before restoring.

`CheckpointManager` keeps a directory of numbered checkpoints with rotation (the last N plus
the best K by a monitored metric), for `jnet.fit(checkpoint_dir=..., resume=...)`.

How others differ: PyTorch's `torch.save` pickles (unsafe to load from strangers, tied to class
paths); Flax/Orbax write a directory per checkpoint; Keras `.weights.h5` needs HDF5. safetensors
is one flat file that loads without executing code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy

PyTree = Any
PathLike = str | os.PathLike

FORMAT = "jnet.checkpoint"
VERSION = 1

# Dtypes the safetensors format stores natively (by numpy name); others travel as raw bytes.
_NATIVE_DTYPES = frozenset({
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", "bfloat16", "complex64", "float8_e4m3fn", "float8_e5m2",
})
_ROOT = "__root__"  # tensor name of a tree that is a single array (safetensors needs a name)


class CheckpointError(ValueError):
    """A checkpoint could not be written, read, or does not match the tree it is loaded into."""


# ----------------------------------------------------------------------------------------
# Describing a tree as JSON + tensors.


def _is_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _key_entry(k: Any) -> Any:
    """One key-path entry as a JSON value: dict key, sequence index or attribute name."""
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            value = getattr(k, attr)
            plain = isinstance(value, (str, int)) and not isinstance(value, bool)
            return value if plain else str(value)
    return str(k)


def _children(node: Any) -> tuple[list[tuple[Any, Any]], str, str]:
    """One level of a pytree node: ``[(key, child)]``, the node kind and its type name."""
    flat, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    items = [(_key_entry(path[0]), child) for path, child in flat]
    kind = (
        "dict" if isinstance(node, Mapping)
        else "namedtuple" if isinstance(node, tuple) and hasattr(node, "_fields")
        else "list" if isinstance(node, list)
        else "tuple" if isinstance(node, tuple)
        else "dataclass" if dataclasses.is_dataclass(node)
        else "custom"
    )
    return items, kind, type(node).__qualname__


def _scalar_type(x: bool | int | float) -> type:
    """The plain Python type a scalar is stored as (an IntEnum is an int)."""
    return bool if isinstance(x, bool) else int if isinstance(x, int) else float


def _path_str(path: tuple) -> str:
    return "/".join(str(p) for p in path) or "<root>"


def _tensor_bytes(arr: np.ndarray) -> tuple[np.ndarray, str]:
    """`arr` as safetensors can store it (little-endian, contiguous) and how it was stored."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.dtype.name in _NATIVE_DTYPES:
        return arr, "native"
    return arr.reshape(-1).view(np.uint8), "bytes"


class _Writer:
    """Walks a tree once, producing its JSON description and the tensors to store."""

    def __init__(self):
        self.tensors: dict[str, np.ndarray] = {}

    def _name(self, path: tuple) -> str:
        name = "/".join(str(p) for p in path) or _ROOT
        base, i = name, 1
        while name in self.tensors:  # e.g. a dict key "a/b" next to a nested a -> b
            name, i = f"{base}~{i}", i + 1
        return name

    def _array(self, path: tuple, arr: np.ndarray, **extra) -> dict:
        name = self._name(path)
        self.tensors[name], stored = _tensor_bytes(arr)
        return {"leaf": "array", "tensor": name, "dtype": arr.dtype.name,
                "shape": list(arr.shape), "stored": stored, **extra}

    def describe(self, node: Any, path: tuple = ()) -> dict:
        if node is None:
            return {"leaf": "none"}
        if isinstance(node, (bool, int, float)) and not isinstance(node, np.generic):
            py = _scalar_type(node)
            return {"leaf": "scalar", "type": py.__name__, "value": py(node)}
        if isinstance(node, str):
            return {"leaf": "str", "value": node}
        if _is_key(node):
            name = self._name(path)
            self.tensors[name] = np.asarray(jax.random.key_data(node))
            return {"leaf": "key", "tensor": name, "impl": str(jax.random.key_impl(node)),
                    "dtype": str(node.dtype), "shape": list(node.shape)}
        if isinstance(node, np.generic):
            return self._array(path, np.asarray(node), origin="numpy_scalar")
        if isinstance(node, np.ndarray):
            return self._array(path, node, origin="numpy")
        if isinstance(node, jax.Array):
            return self._array(path, np.asarray(node), origin="jax")
        treedef = jax.tree.structure(node)
        if treedef.num_leaves == 1 and treedef.num_nodes == 1:
            raise CheckpointError(
                f"jnet.checkpoint.save: cannot store the leaf at '{_path_str(path)}' of type "
                f"{type(node).__name__}. Leaves must be arrays, Python int/float/bool/str, None "
                "or PRNG keys; convert it (e.g. `jnp.asarray(x)`) or register its class as a "
                "pytree (`jax.tree_util.register_dataclass`)."
            )
        items, kind, type_name = _children(node)
        return {
            "node": kind,
            "type": type_name,
            "keys": [k for k, _ in items],
            "children": [self.describe(child, (*path, k)) for k, child in items],
        }


def _json_dumps(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise CheckpointError(
            f"jnet.checkpoint.save: {what} must be JSON-serialisable (dicts, lists, str, numbers, "
            f"bool, None), got {e}. Convert arrays to floats or lists first."
        ) from None


# ----------------------------------------------------------------------------------------
# Writing atomically.


def _write_file(f, data: bytes) -> None:
    """Write all of `data` to the open file `f` (a seam for tests that simulate a crash)."""
    f.write(data)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable; directories cannot be opened for fsync on every OS."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: PathLike, data: bytes) -> None:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            _write_file(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a checkpoint is an ordinary data file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def save(path: PathLike, tree: PyTree, *, metadata: Any = None) -> None:
    """Save a pytree of arrays and scalars to one safetensors file, atomically.

    Args:
        path: the file to write (conventionally ``*.safetensors``); replaced atomically if it
            exists. Its directory must exist.
        tree: nested dicts / lists / tuples / NamedTuples / registered dataclasses whose leaves
            are jax or NumPy arrays (any dtype, bfloat16 included), NumPy scalars, Python
            int / float / bool / str, None, or PRNG keys (typed or legacy uint32).
        metadata: optional JSON-serialisable value stored with the checkpoint; read it back
            with `read_metadata(path)` without loading any tensor.

    Raises:
        CheckpointError: a leaf has an unsupported type or `metadata` is not JSON-serialisable.
    """
    writer = _Writer()
    description = {"format": FORMAT, "version": VERSION, "tree": writer.describe(tree)}
    header = {"jnet": _json_dumps(description, "the tree's scalar leaves"),
              "user": _json_dumps(metadata, "metadata")}
    try:
        data = safetensors.numpy.save(writer.tensors, metadata=header)
    except Exception as e:  # safetensors reports in its own error type
        raise CheckpointError(f"jnet.checkpoint.save: safetensors could not serialise "
                              f"the tree for '{os.fspath(path)}': {e}") from e
    _atomic_write(path, data)


# ----------------------------------------------------------------------------------------
# Reading.


def _not_a_checkpoint(path: PathLike, why: str) -> CheckpointError:
    return CheckpointError(
        f"jnet.checkpoint: '{os.fspath(path)}' is not a readable jnet checkpoint: {why}. It may "
        "be truncated (an interrupted copy or download) or a different kind of file; use "
        "another checkpoint, or re-save it with `jnet.checkpoint.save`."
    )


def _parse_header(data: bytes, path: PathLike, size: int) -> dict:
    """The safetensors header (8-byte little-endian length, then JSON) from the start of a
    file of `size` bytes."""
    if size < 8:
        raise _not_a_checkpoint(path, f"it has {size} bytes, shorter than any safetensors "
                                      "header")
    n = int.from_bytes(data[:8], "little")
    if n > size - 8:
        raise _not_a_checkpoint(path, f"its header claims {n} bytes but the file holds "
                                      f"{size - 8} after the length field")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, ValueError):
        raise _not_a_checkpoint(path, "its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _not_a_checkpoint(path, "its header is not a JSON object")
    return header


def _jnet_metadata(header: dict, path: PathLike) -> tuple[dict, Any]:
    """The tree description and the user metadata stored in a header."""
    meta = header.get("__metadata__") or {}
    if "jnet" not in meta:
        raise CheckpointError(
            f"jnet.checkpoint: '{os.fspath(path)}' is a safetensors file but was not written by "
            "jnet.checkpoint.save (its metadata has no 'jnet' entry). Read its raw tensors with "
            "`safetensors.numpy.load_file(path)`."
        )
    try:
        description = json.loads(meta["jnet"])
        user = json.loads(meta.get("user", "null"))
    except ValueError:
        raise _not_a_checkpoint(path, "its jnet metadata is not valid JSON") from None
    version = description.get("version") if isinstance(description, dict) else None
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"jnet.checkpoint: '{os.fspath(path)}' has checkpoint format version {version!r}; "
            f"this jnet reads versions up to {VERSION}. Upgrade jnet to load it."
        )
    return description, user


@contextlib.contextmanager
def _open(path: PathLike):
    """Open a checkpoint for reading, turning OS errors into messages that name the path."""
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed by the with-block below
    except FileNotFoundError:
        raise FileNotFoundError(
            f"jnet.checkpoint: no checkpoint at '{os.fspath(path)}'. Check the path; "
            "`CheckpointManager(directory).steps()` lists what a directory holds."
        ) from None
    except IsADirectoryError:
        raise CheckpointError(
            f"jnet.checkpoint: '{os.fspath(path)}' is a directory, not a checkpoint file. For a "
            "directory of checkpoints use `jnet.checkpoint.CheckpointManager(path).restore()`."
        ) from None
    with f:
        yield f


def read_metadata(path: PathLike) -> Any:
    """The `metadata` given to `save`, read from the header only (no tensor is loaded)."""
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        # An impossible length is reported by `_parse_header`; don't try to read it.
        data = head + f.read(n) if n <= size - 8 else head
    return _jnet_metadata(_parse_header(data, path, size), path)[1]


def _read(path: PathLike) -> tuple[dict, dict[str, tuple[bytes, list[int]]]]:
    """The tree description and the raw tensors ``{name: (bytes, shape)}`` of a checkpoint."""
    with _open(path) as f:
        data = f.read()
    header = _parse_header(data, path, len(data))
    description, _ = _jnet_metadata(header, path)
    try:
        views = safetensors.deserialize(data)
    except Exception as e:  # SafetensorError, or anything the bytes provoke
        raise _not_a_checkpoint(path, f"safetensors rejected it ({e})") from None
    return description, {name: (view["data"], view["shape"]) for name, view in views}


class _Reader:
    """Turns described leaves back into arrays, checking the stored bytes as it goes."""

    def __init__(self, path: PathLike, tensors: dict):
        self.path = path
        self.tensors = tensors

    def _raw(self, name: str) -> tuple[bytes, list[int]]:
        if name not in self.tensors:
            raise _not_a_checkpoint(self.path, f"its description names tensor '{name}' but the "
                                               "file does not hold it")
        return self.tensors[name]

    def numpy(self, leaf: dict) -> np.ndarray:
        """An array leaf as a fresh (writable) NumPy array with its original dtype."""
        data, _ = self._raw(leaf["tensor"])
        dtype, shape = jnp.dtype(leaf["dtype"]), tuple(leaf["shape"])
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise _not_a_checkpoint(self.path, f"tensor '{leaf['tensor']}' holds {len(data)} "
                                               f"bytes, {dtype}{list(shape)} needs "
                                               f"{math.prod(shape) * dtype.itemsize}")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()

    def key(self, leaf: dict) -> jax.Array:
        data, shape = self._raw(leaf["tensor"])
        key_data = np.frombuffer(data, dtype=np.uint32).reshape(shape)
        return jax.random.wrap_key_data(key_data, impl=leaf["impl"])

    def value(self, leaf: dict) -> Any:
        """A leaf as it was saved: jax arrays come back as jax arrays, NumPy as NumPy."""
        kind = leaf["leaf"]
        if kind == "array":
            arr = self.numpy(leaf)
            origin = leaf.get("origin")
            if origin == "numpy":
                return arr
            return arr[()] if origin == "numpy_scalar" else jnp.asarray(arr)
        if kind == "key":
            return self.key(leaf)
        if kind == "scalar":
            return {"bool": bool, "int": int, "float": float}[leaf["type"]](leaf["value"])
        if kind == "str":
            return leaf["value"]
        return None


def _rebuild(node: dict, reader: _Reader) -> Any:
    """A tree from its description alone: dicts and lists (NamedTuples etc. become dicts)."""
    if "leaf" in node:
        return reader.value(node)
    children = [_rebuild(c, reader) for c in node["children"]]
    if node["node"] == "tuple":
        return tuple(children)
    numbered = node["node"] == "custom" and node["keys"] == list(range(len(children)))
    if node["node"] == "list" or numbered:
        return children
    return dict(zip(node["keys"], children, strict=True))


def _leaves_by_path(node: dict, path: tuple = ()) -> dict[tuple, dict]:
    """Every described leaf keyed by its path of string keys."""
    if "leaf" in node:
        return {path: node}
    out = {}
    for k, child in zip(node["keys"], node["children"], strict=True):
        out.update(_leaves_by_path(child, (*path, str(k))))
    return out


def _leaf_summary(leaf: dict) -> str:
    kind = leaf["leaf"]
    if kind == "array":
        return f"{leaf['dtype']}{list(leaf['shape'])}"
    if kind == "key":
        return f"PRNG key {leaf['dtype']}{list(leaf['shape'])}"
    if kind == "scalar":
        return f"Python {leaf['type']}"
    return {"none": "None", "str": "str"}[kind]


def _like_summary(x: Any) -> str:
    if x is None:
        return "None"
    if _is_key(x):
        return f"PRNG key {x.dtype}{list(x.shape)}"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{jnp.dtype(x.dtype).name}{list(x.shape)}"
    return f"Python {type(x).__name__}"


def _restore_leaf(like: Any, leaf: dict, reader: _Reader) -> tuple[Any, str | None]:
    """(value, None) when the saved `leaf` fits `like`, else (None, what differs)."""
    kind = leaf["leaf"]
    differs = f"file has {_leaf_summary(leaf)}, like expects {_like_summary(like)}"
    if like is None or (isinstance(like, (bool, int, float, str))
                        and not isinstance(like, np.generic)):
        expected = ("none" if like is None else "str" if isinstance(like, str) else "scalar")
        if kind != expected or (kind == "scalar" and leaf["type"] != _scalar_type(like).__name__):
            return None, differs
        return reader.value(leaf), None
    if _is_key(like):
        same = (kind == "key" and leaf["dtype"] == str(like.dtype)
                and tuple(leaf["shape"]) == tuple(like.shape))
        if not same:
            return None, differs
        return _place(reader.key(leaf), like), None
    if not (hasattr(like, "shape") and hasattr(like, "dtype")):
        return None, (f"like holds a {type(like).__name__}; its leaves must be arrays, "
                      "jax.ShapeDtypeStruct, Python scalars, str, None or PRNG keys")
    if kind != "array":
        return None, differs
    diffs = []
    if tuple(leaf["shape"]) != tuple(like.shape):
        diffs.append(f"shape {tuple(leaf['shape'])} in file, {tuple(like.shape)} in like")
    if leaf["dtype"] != jnp.dtype(like.dtype).name:
        diffs.append(f"dtype {leaf['dtype']} in file, {jnp.dtype(like.dtype).name} in like")
    if diffs:
        return None, "; ".join(diffs)
    arr = reader.numpy(leaf)
    if isinstance(like, np.ndarray):
        return arr, None
    if isinstance(like, np.generic):
        return arr[()], None
    return _place(jnp.asarray(arr), like), None


def _place(x: jax.Array, like: Any) -> jax.Array:
    """Put `x` where `like` lives (its sharding), when `like` says."""
    sharding = getattr(like, "sharding", None)
    return x if sharding is None else jax.device_put(x, sharding)


_HINTS = {
    "missing": "entries missing from the file mean `like` comes from a bigger or differently "
               "named model (containers name children `slug_index`, so inserting a layer "
               "renames the ones after it)",
    "unexpected": "entries only in the file mean the checkpoint holds more than `like` "
                  "(another model, or extra entries such as opt_state)",
    "differs": "shape / dtype / kind differences mean the layer sizes, in_shape or dtypes "
               "differ from the ones the checkpoint was saved with",
}


def _mismatch_error(path: PathLike, problems: list[tuple[str, str, str]]) -> CheckpointError:
    lines = [f"  {where}: {what}" for _, where, what in problems]
    hints = [f"  - {_HINTS[cat]}" for cat in _HINTS if any(p[0] == cat for p in problems)]
    return CheckpointError(
        f"jnet.checkpoint.load: '{os.fspath(path)}' does not match `like` "
        f"({len(problems)} problem{'s' * (len(problems) != 1)}):\n" + "\n".join(lines)
        + "\nHow to fix:\n" + "\n".join(hints)
        + "\n  - build `like` from the same model and optimizer that wrote the checkpoint, "
          "or call `jnet.checkpoint.load(path)` without `like` to inspect what it holds."
    )


def _prefixes(paths) -> set[tuple]:
    return {path[:i] for path in paths for i in range(len(path) + 1)}


def _absent(paths: list[tuple], other: set[tuple]) -> dict[tuple, list[tuple]]:
    """`paths` grouped by their shortest prefix that `other` lacks entirely, so a whole
    subtree on one side only (say opt_state) is one line rather than one per array."""
    groups: dict[tuple, list[tuple]] = {}
    for path in paths:
        i = next(i for i in range(1, len(path) + 1) if path[:i] not in other) if path else 0
        groups.setdefault(path[:i], []).append(path)
    return groups


def _absent_problems(category, paths, other, describe) -> list[tuple[str, str, str]]:
    problems = []
    for prefix, members in _absent(paths, other).items():
        if len(members) == 1:
            problems.append((category, _path_str(members[0]), describe(members[0])))
        else:
            side = ("missing from the file" if category == "missing"
                    else "in the file but not in like")
            problems.append((category, _path_str(prefix) + "/*", f"{len(members)} entries "
                             f"{side}: " + ", ".join(_path_str(m[len(prefix):]) for m in members)))
    return problems


def _restore_into(like: PyTree, description: dict, reader: _Reader, path: PathLike) -> PyTree:
    saved = _leaves_by_path(description["tree"])
    flat, treedef = jax.tree_util.tree_flatten_with_path(like, is_leaf=lambda x: x is None)
    wanted = {tuple(str(_key_entry(k)) for k in key_path): leaf for key_path, leaf in flat}
    values, problems = [], []
    for where, like_leaf in wanted.items():
        if where not in saved:
            values.append(None)  # reported below, grouped by subtree
            continue
        value, differs = _restore_leaf(like_leaf, saved[where], reader)
        if differs:
            problems.append(("differs", _path_str(where), differs))
        values.append(value)
    problems += _absent_problems(
        "missing", [w for w in wanted if w not in saved], _prefixes(saved),
        lambda w: f"missing from the file (like expects {_like_summary(wanted[w])})")
    problems += _absent_problems(
        "unexpected", sorted(set(saved) - set(wanted)), _prefixes(wanted),
        lambda w: f"in the file ({_leaf_summary(saved[w])}) but not in like")
    if problems:
        raise _mismatch_error(path, problems)
    return jax.tree.unflatten(treedef, values)


def load(path: PathLike, like: PyTree = None) -> PyTree:
    """Load a checkpoint written by `save`.

    Args:
        path: the checkpoint file.
        like: optional template. With it, the result has exactly `like`'s structure (same
            treedef: NamedTuples, dataclasses, custom pytrees) and every leaf is checked against
            it: presence, kind, shape and dtype. Leaves may be arrays or `jax.ShapeDtypeStruct`
            (e.g. ``jax.eval_shape(model.init, key)``); NumPy leaves come back as NumPy, others
            as jax arrays (placed on `like`'s sharding when it has one). Without it, the tree is
            rebuilt from the file as nested dicts / lists / tuples (NamedTuples and dataclasses
            as dicts keyed by field), with leaves of the kind they were saved as.

    Returns:
        The tree, with arrays bit-identical to the saved ones.

    Raises:
        FileNotFoundError: there is no file at `path`.
        CheckpointError: the file is not a jnet checkpoint (truncated, corrupt, or another
            format), or it does not match `like` (the message lists every mismatch by path).
    """
    description, tensors = _read(path)
    reader = _Reader(path, tensors)
    if like is None:
        return _rebuild(description["tree"], reader)
    return _restore_into(like, description, reader, path)


# ----------------------------------------------------------------------------------------
# A directory of numbered checkpoints.


class CheckpointManager:
    """Numbered checkpoints in one directory, with rotation.

    Files are ``ckpt_000120.safetensors`` (step 120); each holds its step and metrics in its
    metadata, so the directory is its own index (no extra file to keep consistent). After each
    `save`, rotation keeps the `keep_last` highest steps, plus the `keep_best` best by
    ``metrics[monitor]`` (``mode="min"`` or ``"max"``), plus the step just saved; the rest are
    deleted. ``keep_best=None`` keeps the single best checkpoint whenever metrics name
    `monitor`, so `best_step()` can always be restored; ``keep_best=0`` keeps none for being
    best. ``keep_last=None`` keeps every checkpoint.

    Example:

        manager = CheckpointManager("runs/cnn", keep_last=3, monitor="val_loss")
        manager.save(step, {"params": params, "opt_state": opt_state},
                     metrics={"val_loss": 0.31})
        tree = manager.restore(like=template)          # the latest
        best = manager.restore(manager.best_step(), like=template)
    """

    _PATTERN = re.compile(r"ckpt_(\d+)\.safetensors")

    def __init__(self, directory: PathLike, *, keep_last: int | None = 3,
                 keep_best: int | None = None, monitor: str = "val_loss", mode: str = "min"):
        if keep_last is not None and (not isinstance(keep_last, int) or keep_last < 1):
            raise ValueError(f"CheckpointManager: keep_last must be an int >= 1 (the latest "
                             f"checkpoint is needed to resume) or None to keep all, got "
                             f"{keep_last!r}.")
        if keep_best is not None and (not isinstance(keep_best, int) or keep_best < 0):
            raise ValueError(f"CheckpointManager: keep_best must be an int >= 0 or None, got "
                             f"{keep_best!r}.")
        if mode not in ("min", "max"):
            raise ValueError(f"CheckpointManager: mode must be 'min' (for losses) or 'max' "
                             f"(for accuracies), got {mode!r}.")
        self.directory = os.fspath(directory)
        self.keep_last, self.keep_best = keep_last, keep_best
        self.monitor, self.mode = monitor, mode
        os.makedirs(self.directory, exist_ok=True)

    def path(self, step: int) -> str:
        """The file of checkpoint `step`."""
        return os.path.join(self.directory, f"ckpt_{step:06d}.safetensors")

    def steps(self) -> list[int]:
        """The steps that have a checkpoint, ascending."""
        found = (self._PATTERN.fullmatch(name) for name in os.listdir(self.directory))
        return sorted(int(m.group(1)) for m in found if m)

    def latest_step(self) -> int | None:
        """The highest saved step, or None when the directory holds no checkpoint."""
        steps = self.steps()
        return steps[-1] if steps else None

    def metrics(self, step: int) -> dict[str, float]:
        """The metrics saved with checkpoint `step` (``{}`` when none were given)."""
        meta = read_metadata(self.path(step))
        return dict(meta.get("metrics") or {}) if isinstance(meta, dict) else {}

    def _ranked(self, steps: list[int]) -> list[int]:
        """`steps` that carry a finite monitored metric, best first (earlier step on ties)."""
        scored = []
        for step in steps:
            value = self.metrics(step).get(self.monitor)
            if value is not None and math.isfinite(value):
                scored.append((value if self.mode == "min" else -value, step))
        return [step for _, step in sorted(scored)]

    def best_step(self) -> int | None:
        """The saved step with the best ``metrics[monitor]``, or None when none has it."""
        ranked = self._ranked(self.steps())
        return ranked[0] if ranked else None

    def save(self, step: int, tree: PyTree, metrics: Mapping[str, Any] | None = None, *,
             metadata: Any = None) -> str:
        """Save `tree` as checkpoint `step` (atomically), rotate, and return its path.

        `metrics` are scalars (floats, or 0-d arrays) stored with the checkpoint; the one named
        `monitor` ranks checkpoints for `keep_best` / `best_step`. `metadata` (JSON) is stored
        too: ``read_metadata(manager.path(step))["metadata"]`` reads it without the tensors.
        """
        if not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"CheckpointManager.save: step must be an int >= 0, got {step!r}.")
        metrics = dict(metrics or {})
        try:
            metrics = {str(k): float(v) for k, v in metrics.items()}
        except (TypeError, ValueError):
            raise ValueError(f"CheckpointManager.save: metrics must be scalars, got "
                             f"{metrics!r}.") from None
        if self.keep_best and metrics and self.monitor not in metrics:
            raise ValueError(f"CheckpointManager.save: keep_best={self.keep_best} ranks by "
                             f"monitor={self.monitor!r}, but metrics only has "
                             f"{sorted(metrics)}. Pass it, or set monitor= to one of those.")
        step = int(step)
        path = self.path(step)
        save(path, tree, metadata={"step": step, "metrics": metrics, "metadata": metadata})
        self._rotate(just_saved=step)
        return path

    def _rotate(self, just_saved: int) -> None:
        steps = self.steps()
        keep = {just_saved}
        keep.update(steps if self.keep_last is None else steps[-self.keep_last:])
        n_best = 1 if self.keep_best is None else self.keep_best
        keep.update(self._ranked(steps)[:n_best])
        for step in steps:
            if step not in keep:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path(step))

    def restore(self, step: int | None = None, like: PyTree = None) -> PyTree:
        """Load checkpoint `step` (default: the latest) with `load(path, like)`."""
        steps = self.steps()
        if not steps:
            raise FileNotFoundError(f"CheckpointManager: no checkpoint in '{self.directory}' "
                                    "(no ckpt_*.safetensors file). Save one first, or check "
                                    "the directory.")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise FileNotFoundError(f"CheckpointManager: no checkpoint for step {step} in "
                                    f"'{self.directory}'; it holds steps {steps}.")
        return load(self.path(step), like=like)
