"""Reading checkpoints: the header and its description validated, tensors checked against
both, leaves rebuilt (checksums verified, 64-bit arrays never silently narrowed)."""

from __future__ import annotations

import contextlib
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.checkpoint.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    PathLike,
    check_bool,
    corrupt,
    fspath,
    is_int,
)
from jnet.checkpoint.format import (
    FORMAT,
    NATIVE_DTYPES,
    VERSION,
    array_dtype,
    crc32,
    header_crc32,
    leaf_summary,
)
from jnet.errors import public


def _parse_header(data: bytes, path: PathLike, size: int) -> dict:
    """The safetensors header (8-byte little-endian length, then JSON) from the start of a
    file of `size` bytes."""
    if size < 8:
        raise corrupt(path, f"it has {size} bytes, shorter than any safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > size - 8:
        raise corrupt(path, f"its header claims {n} bytes but the file holds {size - 8} after "
                            "the length field")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise corrupt(path, "its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise corrupt(path, "its header is not a JSON object")
    return header


def _json_loads(text: Any, what: str, path: PathLike) -> Any:
    if not isinstance(text, str):
        raise corrupt(path, f"its {what} is a {type(text).__name__}, not a JSON string")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise corrupt(path, f"its {what} is not valid JSON") from None


def _verify_header(meta: dict, path: PathLike) -> None:
    """Check the header's checksum (version 2 files; version 1 has none)."""
    stored = meta.get("jnet_crc32")
    jnet_json, user_json = meta.get("jnet"), meta.get("user")
    if not isinstance(jnet_json, str) or not isinstance(user_json, str):
        raise corrupt(path, "its metadata lacks the 'jnet' or 'user' entry")
    actual = header_crc32(jnet_json, user_json)
    if not (isinstance(stored, str) and stored.isdigit() and int(stored) == actual):
        raise corrupt(path, f"its header does not match its checksum (stored jnet_crc32 "
                            f"{stored!r}, computed {actual}): the description of the tree "
                            "or the metadata changed after it was written")


def _jnet_metadata(header: dict, raw_header: bytes, path: PathLike,
                   verify: bool) -> tuple[dict, Any]:
    """The validated tree description and the user metadata stored in a header."""
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or "jnet" not in meta:
        if FORMAT.encode() in raw_header:  # jnet wrote it; a damaged key or entry lost it
            raise corrupt(path, "its header mentions jnet.checkpoint but has no 'jnet' "
                                "metadata entry")
        raise CheckpointError(
            f"'{os.fspath(path)}' is a safetensors file but was not written by "
            "jnet.checkpoint.save (its metadata has no 'jnet' entry). Read its raw tensors with "
            "`safetensors.numpy.load_file(path)`.", path=path,
        )
    if verify and "jnet_crc32" in meta:
        _verify_header(meta, path)
    description = _json_loads(meta["jnet"], "jnet description", path)
    user = _json_loads(meta.get("user", "null"), "user metadata", path)
    version = description.get("version") if isinstance(description, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise corrupt(path, f"its jnet description has no valid format version ({version!r})")
    if version > VERSION:
        raise CheckpointError(
            f"'{os.fspath(path)}' has checkpoint format version {version}; this jnet reads "
            f"versions up to {VERSION}. Upgrade jnet to load it.", path=path,
        )
    if verify and version >= 2 and "jnet_crc32" not in meta:
        raise corrupt(path, "its header has no 'jnet_crc32' checksum, which format version "
                            f"{version} always writes")
    problem = _description_problem(description, version)
    if problem:
        raise corrupt(path, f"its jnet description is malformed: {problem}")
    return description, user


# The fields each kind of described leaf must have, with their JSON types.
_LEAF_FIELDS: dict[str, dict[str, type]] = {
    "array": {"tensor": str, "dtype": str, "shape": list, "stored": str},
    "key": {"tensor": str, "impl": str, "dtype": str, "shape": list},
    "scalar": {"type": str},
    "str": {"value": str},
    "none": {},
}
_NODE_KINDS = frozenset({"dict", "namedtuple", "list", "tuple", "dataclass", "custom"})
SCALAR_TYPES = {"bool": bool, "int": int, "float": float}
_ORIGINS = frozenset({None, "numpy", "numpy_scalar", "jax"})


def _leaf_problem(leaf: dict, where: str, version: int) -> str | None:
    kind = leaf["leaf"]
    if kind not in _LEAF_FIELDS:
        return f"'{where}' has unknown leaf kind {kind!r}"
    for field, typ in _LEAF_FIELDS[kind].items():
        if not isinstance(leaf.get(field), typ):
            return f"'{where}' ({kind}) needs '{field}' of type {typ.__name__}, got " \
                   f"{leaf.get(field)!r}"
    if "shape" in leaf and not all(is_int(d) and d >= 0 for d in leaf["shape"]):
        return f"'{where}' has shape {leaf['shape']!r}, not a list of non-negative ints"
    if "tensor" in leaf and version >= 2 and not is_int(leaf.get("crc32")):
        return f"'{where}' has no integer 'crc32' checksum"
    if kind == "array":
        if array_dtype(leaf["dtype"]) is None:
            return f"'{where}' has unknown dtype {leaf['dtype']!r}"
        if leaf["stored"] not in ("native", "bytes") or leaf.get("origin") not in _ORIGINS:
            return f"'{where}' has unknown storage {leaf['stored']!r} / origin " \
                   f"{leaf.get('origin')!r}"
    if kind == "scalar":
        scalar_type = SCALAR_TYPES.get(leaf["type"])
        value = leaf.get("value")
        if scalar_type is None or not isinstance(value, scalar_type) or (
                scalar_type is int and isinstance(value, bool)):
            return f"'{where}' is a scalar of type {leaf['type']!r} with value {value!r}"
    return None


def _description_problem(description: dict, version: int) -> str | None:
    """What is wrong with a tree description, or None when it is well formed."""
    if description.get("format") != FORMAT:
        return f"format {description.get('format')!r}, expected {FORMAT!r}"
    stack = [(description.get("tree"), "<root>")]
    while stack:  # iterative: a crafted header cannot exhaust the recursion limit
        node, where = stack.pop()
        if not isinstance(node, dict):
            return f"'{where}' is a {type(node).__name__}, not a JSON object"
        if "leaf" in node:
            problem = _leaf_problem(node, where, version)
            if problem:
                return problem
            continue
        keys, children = node.get("keys"), node.get("children")
        if node.get("node") not in _NODE_KINDS or not isinstance(node.get("type"), str):
            return f"'{where}' has unknown node kind {node.get('node')!r}"
        if not (isinstance(keys, list) and isinstance(children, list)
                and len(keys) == len(children)
                and all(isinstance(k, str) or is_int(k) for k in keys)):
            return f"'{where}' needs 'keys' (str or int) and 'children' lists of one length"
        stack += [(c, f"{where}/{k}" if where != "<root>" else str(k))
                  for k, c in zip(keys, children, strict=True)]
    return None


@contextlib.contextmanager
def _open(path: str):
    """Open a checkpoint for reading, turning OS errors into messages that name the path."""
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed by the with-block below
    except FileNotFoundError:
        raise CheckpointNotFoundError(
            f"no checkpoint at '{path}'. Check the path; "
            "`CheckpointManager(directory).steps()` lists what a directory holds.", path=path,
        ) from None
    except IsADirectoryError:
        raise CheckpointError(
            f"'{path}' is a directory, not a checkpoint file. For a directory of checkpoints "
            "use `jnet.checkpoint.CheckpointManager(path).restore()`.", path=path,
        ) from None
    except OSError as e:
        raise CheckpointError(f"could not open '{path}' for reading: {e.strerror or e}. Check "
                              "its permissions and the file system.", path=path) from e
    with f:
        try:
            yield f
        except OSError as e:
            raise CheckpointError(f"could not read '{path}': {e.strerror or e} (a disk or "
                                  "network file system error). Try again, or load another "
                                  "checkpoint.", path=path) from e


@public("jnet.checkpoint.read_metadata")
def read_metadata(path: PathLike, *, verify: bool = True) -> Any:
    """The `metadata` given to `save`, read from the header only (no tensor is loaded).

    Args:
        path: the checkpoint file.
        verify: check the header's checksum (default).

    Returns:
        The metadata, as JSON types (dicts, lists, str, numbers, bool, None).

    Raises:
        CheckpointNotFoundError: there is no file at `path` (a `FileNotFoundError`).
        CorruptCheckpointError: the header is damaged, truncated or not a checkpoint's.
        CheckpointError: the file is not a jnet checkpoint or cannot be read.
    """
    path = fspath(path, "path")
    verify = check_bool(verify, "verify")
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        # An impossible length is reported by `_parse_header`; don't try to read it.
        data = head + f.read(n) if n <= size - 8 else head
    return _jnet_metadata(_parse_header(data, path, size), data[8:], path, verify)[1]


def _tensor_table(header: dict, body: memoryview, path: str) -> dict:
    """``{name: (bytes, shape, safetensors dtype)}`` of every tensor the header lists, the
    bytes as views into `body` (what follows the header); checks each entry's offsets against
    the file."""
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        info = info if isinstance(info, dict) else {}
        offsets, shape = info.get("data_offsets"), info.get("shape")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(is_int, offsets))
                and 0 <= offsets[0] <= offsets[1] <= len(body) and isinstance(shape, list)
                and all(is_int(d) and d >= 0 for d in shape)
                and isinstance(info.get("dtype"), str)):
            raise corrupt(path, f"the safetensors entry of tensor '{name}' is malformed or "
                                f"points outside the file ({info!r})")
        tensors[name] = (body[offsets[0]:offsets[1]], shape, info["dtype"])
    return tensors


def read(path: str, verify: bool) -> tuple[dict, dict]:
    """The tree description and the raw tensors ``{name: (bytes, shape, safetensors dtype)}``
    of a checkpoint."""
    with _open(path) as f:
        data = f.read()
    header = _parse_header(data, path, len(data))
    n = int.from_bytes(data[:8], "little")
    description, _ = _jnet_metadata(header, data[8:8 + n], path, verify)
    tensors = _tensor_table(header, memoryview(data)[8 + n:], path)
    _check_tensors(description["tree"], description["version"], tensors, path)
    return description, tensors


def _described_leaves(node: dict, where: str = "<root>"):
    """``(path, leaf)`` for every leaf of a (validated) description."""
    if "leaf" in node:
        yield where, node
        return
    for k, child in zip(node["keys"], node["children"], strict=True):
        yield from _described_leaves(child, str(k) if where == "<root>" else f"{where}/{k}")


def _check_tensors(tree: dict, version: int, tensors: dict, path: str) -> None:
    """Every tensor the description names is in the file with the bytes, shape and
    safetensors dtype its leaf implies, so a damaged header is reported as such (not compared
    with `like`, not left for another safetensors reader to misread)."""
    for where, leaf in _described_leaves(tree):
        if "tensor" not in leaf:
            continue
        name, shape = leaf["tensor"], leaf["shape"]
        if name not in tensors:
            raise corrupt(path, f"its description names tensor '{name}' (at '{where}') but "
                                "the file does not hold it")
        data, stored_shape, stored_dtype = tensors[name]
        if leaf["leaf"] == "array":
            dtype = array_dtype(leaf["dtype"])
            if dtype is None:
                raise corrupt(path, f"tensor '{name}' (at '{where}') has unknown dtype "
                                    f"{leaf['dtype']!r}")
            nbytes = math.prod(shape) * dtype.itemsize
            if leaf["stored"] == "native":
                code = NATIVE_DTYPES.get(dtype.name)
                layouts = [(code, shape)] + [(code, [1])] * (version == 1 and not shape)
            else:
                layouts = [("U8", [nbytes])]
            # jnet 0.1 stored 0-d arrays as [1], hence the second layout of version 1
            fits = len(data) == nbytes and (stored_dtype, stored_shape) in layouts
        else:  # key data: the key's shape, then the implementation's uint32 words
            fits = (stored_dtype == "U32" and len(stored_shape) > len(shape)
                    and stored_shape[:len(shape)] == shape
                    and len(data) == 4 * math.prod(stored_shape))
        if not fits:
            raise corrupt(path, f"tensor '{name}' holds {len(data)} bytes as {stored_dtype}"
                                f"{stored_shape}, which cannot be the {leaf_summary(leaf)} "
                                f"its description says is at '{where}'")


def jax_dtype(dtype: Any) -> np.dtype:
    """The dtype a jax array of `dtype` gets here: 64-bit types narrow to 32 bits unless
    jax_enable_x64 is on."""
    return np.dtype(jax.dtypes.canonicalize_dtype(jnp.dtype(dtype)))


def _x64_error(path: str, where: str, dtype: np.dtype, target: np.dtype) -> CheckpointError:
    loss = (f"integers outside {target}'s range would wrap around, so 2**40 + 7 would load "
            "as 7" if np.issubdtype(dtype, np.integer)
            else f"its values would be rounded to {target} (about 7 significant digits "
                 "instead of 16) and those beyond its range would become inf")
    return CheckpointError(
        f"'{path}': the array at '{where}' is {dtype} (saved with 64-bit types enabled), but "
        f"jax_enable_x64 is off here, so as a jax array it would become {target}: {loss}. "
        "Enable 64-bit types before loading (`jax.config.update('jax_enable_x64', True)` at "
        "start-up, or JAX_ENABLE_X64=1), or pass `allow_downcast=True` to accept "
        f"{target} (integers that do not fit are still an error).", path=path)


def downcast(arr: np.ndarray, target: np.dtype, path: str, where: str) -> np.ndarray:
    """`arr` narrowed to `target`, where no value is lost beyond a float's rounding.

    Raises:
        CheckpointError: an integer does not fit `target`, or a finite float would become inf.
    """
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(target)
        outside = (arr < info.min) | (arr > info.max)
        if outside.any():
            raise CheckpointError(
                f"'{path}': the {arr.dtype} array at '{where}' holds {arr[outside].flat[0]}, "
                f"outside {target}'s range [{info.min}, {info.max}], so allow_downcast=True "
                "cannot narrow it. Enable 64-bit types (`jax.config.update('jax_enable_x64', "
                "True)`) to load it exactly.", path=path)
        return arr.astype(target)
    with np.errstate(over="ignore"):
        out = arr.astype(target)
    overflow = np.isfinite(arr) & ~np.isfinite(out)
    if overflow.any():
        raise CheckpointError(
            f"'{path}': the {arr.dtype} array at '{where}' holds {arr[overflow].flat[0]}, "
            f"beyond {target}'s range, so allow_downcast=True would make it inf. Enable 64-bit "
            "types (`jax.config.update('jax_enable_x64', True)`) to load it exactly.",
            path=path)
    return out


class Reader:
    """Turns described leaves back into arrays, checking the stored bytes as it goes."""

    def __init__(self, path: str, tensors: dict, verify: bool, allow_downcast: bool):
        self.path = path
        self.tensors = tensors
        self.verify = verify
        self.allow_downcast = allow_downcast

    def _raw(self, leaf: dict) -> tuple[memoryview, list[int]]:
        """The bytes and safetensors shape of a leaf's tensor (`_check_tensors` made sure it
        exists), checksum verified."""
        name = leaf["tensor"]
        data, shape, _ = self.tensors[name]
        if self.verify and "crc32" in leaf:
            actual = crc32(data)
            if actual != leaf["crc32"]:
                raise corrupt(self.path, f"tensor '{name}' does not match its checksum "
                                         f"(stored crc32 {leaf['crc32']:#010x}, computed "
                                         f"{actual:#010x}): its bytes changed after it was "
                                         "written")
        return data, shape

    def numpy(self, leaf: dict, *, copy: bool = True) -> np.ndarray:
        """An array leaf with its original dtype: a fresh writable array, or with
        ``copy=False`` a read-only view of the file's bytes (for callers that copy anyway)."""
        data, _ = self._raw(leaf)
        arr = np.frombuffer(data, dtype=array_dtype(leaf["dtype"])).reshape(leaf["shape"])
        return arr.copy() if copy else arr

    def key(self, leaf: dict) -> jax.Array:
        data, shape = self._raw(leaf)
        try:
            key_data = np.frombuffer(data, dtype="<u4").reshape(shape)
            key = jax.random.wrap_key_data(jnp.asarray(key_data), impl=leaf["impl"])
        except (TypeError, ValueError) as e:
            raise corrupt(self.path, f"PRNG key tensor '{leaf['tensor']}' cannot be rebuilt "
                                     f"({e})") from None
        if list(key.shape) != leaf["shape"] or str(key.dtype) != leaf["dtype"]:
            raise corrupt(self.path, f"PRNG key tensor '{leaf['tensor']}' holds "
                                     f"{key.dtype}{list(key.shape)}, its description says "
                                     f"{leaf['dtype']}{leaf['shape']}")
        return key

    def jax_array(self, leaf: dict, where: str) -> jax.Array:
        """An array leaf (at path `where`) as a jax array: one copy, from the file's bytes to
        the device; a 64-bit array without jax_enable_x64 only with ``allow_downcast``.

        Raises:
            CheckpointError: the array would lose values as a jax array here.
        """
        arr = self.numpy(leaf, copy=False)
        target = jax_dtype(arr.dtype)
        if target != arr.dtype:
            if not self.allow_downcast:
                raise _x64_error(self.path, where, arr.dtype, target)
            arr = downcast(arr, target, self.path, where)
        return jnp.array(arr, copy=True)

    def value(self, leaf: dict, where: str) -> Any:
        """A leaf as it was saved: jax arrays come back as jax arrays, NumPy as NumPy."""
        kind = leaf["leaf"]
        if kind == "array":
            origin = leaf.get("origin")
            if origin == "numpy":
                return self.numpy(leaf)
            if origin == "numpy_scalar":
                return self.numpy(leaf)[()]
            return self.jax_array(leaf, where)
        if kind == "key":
            return self.key(leaf)
        if kind == "scalar":
            return SCALAR_TYPES[leaf["type"]](leaf["value"])
        if kind == "str":
            return leaf["value"]
        return None


def rebuild(node: dict, reader: Reader, where: str = "<root>") -> Any:
    """A tree from its description alone: dicts and lists (NamedTuples etc. become dicts)."""
    if "leaf" in node:
        return reader.value(node, where)
    children = [rebuild(c, reader, str(k) if where == "<root>" else f"{where}/{k}")
                for k, c in zip(node["keys"], node["children"], strict=True)]
    if node["node"] == "tuple":
        return tuple(children)
    numbered = node["node"] == "custom" and node["keys"] == list(range(len(children)))
    if node["node"] == "list" or numbered:
        return children
    return dict(zip(node["keys"], children, strict=True))
