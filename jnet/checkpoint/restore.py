"""Loading: a checkpoint rebuilt as saved, or restored into a template's exact structure with
every leaf checked (all mismatches reported at once)."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.checkpoint.errors import CheckpointError, PathLike, check_bool, fspath
from jnet.checkpoint.format import is_key, key_entry, leaf_summary, path_str, scalar_type
from jnet.checkpoint.reading import Reader, jax_dtype, read, rebuild
from jnet.errors import public
from jnet.typing import PyTree


def _leaves_by_path(node: dict, path: tuple = ()) -> dict[tuple, dict]:
    """Every described leaf keyed by its path of string keys."""
    if "leaf" in node:
        return {path: node}
    out = {}
    for k, child in zip(node["keys"], node["children"], strict=True):
        out.update(_leaves_by_path(child, (*path, str(k))))
    return out


def _dtype_name(dtype: Any) -> str:
    """A dtype's canonical name (``"float32"``), or its repr when it is no dtype."""
    try:
        return jnp.dtype(dtype).name
    except (TypeError, ValueError):
        return repr(dtype)


def _like_summary(x: Any) -> str:
    if x is None:
        return "None"
    if is_key(x):
        return f"PRNG key {x.dtype}{list(x.shape)}"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{_dtype_name(x.dtype)}{list(x.shape)}"
    return f"Python {type(x).__name__}"


def _place(x: jax.Array, like: Any) -> jax.Array:
    """Put `x` where `like` lives (its sharding), when `like` says. A sharding that spans
    several processes gets, on each process, only the shards of that process's devices."""
    sharding = getattr(like, "sharding", None)
    if sharding is None:
        return x
    if sharding.is_fully_addressable or jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.device_put(x, sharding)
    data = np.asarray(x)
    return jax.make_array_from_callback(data.shape, sharding, lambda index: data[index])


def _dtype_difference(leaf: dict, like: Any, reader: Reader) -> str | None:
    """How the saved array's dtype differs from `like`'s, or None when it may load into it:
    the same dtype, or (``allow_downcast``) the 32-bit one a jax array of it gets here."""
    saved, wanted = leaf["dtype"], _dtype_name(like.dtype)
    if saved == wanted:
        return None
    narrowed = jax_dtype(saved).name == wanted and not isinstance(like, (np.ndarray, np.generic))
    if narrowed and reader.allow_downcast:
        return None
    why = (" (it was saved with jax_enable_x64: enable it before building `like`, or pass "
           "allow_downcast=True)" if narrowed else "")
    return f"dtype {saved} in file, {wanted} in like{why}"


def _restore_array(like: Any, leaf: dict, reader: Reader, where: str) -> tuple[Any, str | None]:
    """An array leaf restored into array-like `like`: (value, None) or (None, what differs)."""
    diffs = []
    if tuple(leaf["shape"]) != tuple(like.shape):
        diffs.append(f"shape {tuple(leaf['shape'])} in file, {tuple(like.shape)} in like")
    dtype_diff = _dtype_difference(leaf, like, reader)
    if dtype_diff:
        diffs.append(dtype_diff)
    if diffs:
        return None, "; ".join(diffs)
    if isinstance(like, np.ndarray):
        return reader.numpy(leaf), None
    if isinstance(like, np.generic):
        return reader.numpy(leaf)[()], None
    return _place(reader.jax_array(leaf, where), like), None


def _restore_leaf(like: Any, leaf: dict, reader: Reader, where: str) -> tuple[Any, str | None]:
    """(value, None) when the saved `leaf` fits `like`, else (None, what differs)."""
    kind = leaf["leaf"]
    differs = f"file has {leaf_summary(leaf)}, like expects {_like_summary(like)}"
    if like is None or (isinstance(like, (bool, int, float, str))
                        and not isinstance(like, np.generic)):
        expected = ("none" if like is None else "str" if isinstance(like, str) else "scalar")
        if kind != expected or (kind == "scalar" and isinstance(like, (bool, int, float))
                                and leaf["type"] != scalar_type(like).__name__):
            return None, differs
        return reader.value(leaf, where), None
    if is_key(like):
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
    return _restore_array(like, leaf, reader, where)


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
        f"'{os.fspath(path)}' does not match `like` "
        f"({len(problems)} problem{'s' * (len(problems) != 1)}):\n" + "\n".join(lines)
        + "\nHow to fix:\n" + "\n".join(hints)
        + "\n  - build `like` from the same model and optimizer that wrote the checkpoint, "
          "or call `jnet.checkpoint.load(path)` without `like` to inspect what it holds.",
        path=path,
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
            problems.append((category, path_str(members[0]), describe(members[0])))
        else:
            side = ("missing from the file" if category == "missing"
                    else "in the file but not in like")
            problems.append((category, path_str(prefix) + "/*", f"{len(members)} entries "
                             f"{side}: " + ", ".join(path_str(m[len(prefix):]) for m in members)))
    return problems


def _restore_into(like: PyTree, description: dict, reader: Reader, path: PathLike) -> PyTree:
    saved = _leaves_by_path(description["tree"])
    flat, treedef = jax.tree_util.tree_flatten_with_path(like, is_leaf=lambda x: x is None)
    wanted = {tuple(str(key_entry(k)) for k in key_path): leaf for key_path, leaf in flat}
    values: list[Any] = []
    problems: list[tuple[str, str, str]] = []
    for where, like_leaf in wanted.items():
        if where not in saved:
            values.append(None)  # reported below, grouped by subtree
            continue
        value, differs = _restore_leaf(like_leaf, saved[where], reader, path_str(where))
        if differs:
            problems.append(("differs", path_str(where), differs))
        values.append(value)
    problems += _absent_problems(
        "missing", [w for w in wanted if w not in saved], _prefixes(saved),
        lambda w: f"missing from the file (like expects {_like_summary(wanted[w])})")
    problems += _absent_problems(
        "unexpected", sorted(set(saved) - set(wanted)), _prefixes(wanted),
        lambda w: f"in the file ({leaf_summary(saved[w])}) but not in like")
    if problems:
        raise _mismatch_error(path, problems)
    return jax.tree.unflatten(treedef, values)


@public("jnet.checkpoint.load")
def load(path: PathLike, like: PyTree = None, *, verify: bool = True,
         allow_downcast: bool = False) -> PyTree:
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
        verify: check the header's checksum and each tensor's as it is read (default; about
            40 ms per 100 MiB). False skips the checks, e.g. to salvage a damaged file.
        allow_downcast: what to do with a 64-bit array (int64, uint64, float64, complex128,
            saved with ``jax_enable_x64``) that comes back as a jax array while 64-bit types
            are off. False (default): raise, naming the array, rather than let jax narrow it
            silently (2**40 + 7 would become 7). True: narrow it to int32 / uint32 / float32 /
            complex64 (and accept such a `like` leaf); floats are rounded, while an integer
            that does not fit or a float that would overflow to inf still raises. With
            ``jax_enable_x64`` on, 64-bit arrays load exactly either way; NumPy leaves always
            keep their dtype.

    Returns:
        The tree, with arrays bit-identical to the saved ones.

    Raises:
        CheckpointNotFoundError: there is no file at `path` (a `FileNotFoundError`).
        CorruptCheckpointError: the file is damaged (a checksum mismatch names the tensor),
            truncated, malformed, or not a checkpoint at all.
        CheckpointError: the file is not a jnet checkpoint, cannot be read, does not match
            `like` (the message lists every mismatch by path), or holds a 64-bit array that
            64-bit-less jax would narrow (see `allow_downcast`).
        ArgumentTypeError: `path` is not a path, or `verify` / `allow_downcast` not a bool.
    """
    path = fspath(path, "path")
    verify = check_bool(verify, "verify")
    allow_downcast = check_bool(allow_downcast, "allow_downcast")
    description, tensors = read(path, verify)
    reader = Reader(path, tensors, verify, allow_downcast)
    if like is None:
        return rebuild(description["tree"], reader)
    return _restore_into(like, description, reader, path)
