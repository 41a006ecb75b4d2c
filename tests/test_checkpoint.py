"""Tests for jnet.checkpoint: round trips, `like` checks, atomic writes, the manager."""

import dataclasses
import json
import os
import re
import struct
import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy

from jnet import checkpoint
from jnet.checkpoint import CheckpointError, CheckpointManager, CorruptCheckpointError, writing


class AdamLike(NamedTuple):
    count: jax.Array
    mu: dict
    nu: dict


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Pair:
    first: jax.Array
    second: jax.Array


def _bits(x):
    """The exact bytes of an array (bit-exact comparison, NaN payloads and -0.0 included)."""
    return np.asarray(x).tobytes()


def _every_leaf_kind():
    rng = np.random.default_rng(0)
    return {
        "params": {
            "conv2d_0": {"w": jnp.asarray(rng.normal(size=(3, 3, 1, 4)), jnp.float32),
                         "b": jnp.zeros((4,), jnp.float32)},
            "dense_1": {"w": jnp.asarray(rng.normal(size=(5, 2)), jnp.bfloat16)},
        },
        "state": {"relu_2": {}, "bn": {"mean": np.arange(3, dtype=np.float64)}},
        "ints": [jnp.array([-128, 0, 127], jnp.int8), np.array([1, 2], np.uint16),
                 jnp.array(7, jnp.int32)],
        "mask": jnp.array([True, False, True]),
        "half": np.array([1.5, -0.0, np.inf, np.nan], np.float16),
        "wide": np.array([1 + 2j, 3 - 4j], np.complex128),
        "int4": np.array([-8, 7, 0], ml_dtypes.int4),
        "scalars": (3, 2.5, True, -0.0, float("inf")),
        "np_scalar": np.float32(1.25),
        "nothing": None,
        "name": "run-1",
        "key": jax.random.key(42),
        "keys": jax.random.split(jax.random.key(1, impl="rbg"), 3),
        "legacy_key": jax.random.PRNGKey(3),
        "empty": jnp.zeros((0, 3)),
    }


def _assert_same(a, b):
    """Same structure, same leaf types, bit-identical arrays."""
    flat_a, tree_a = jax.tree_util.tree_flatten(a, is_leaf=lambda x: x is None)
    flat_b, tree_b = jax.tree_util.tree_flatten(b, is_leaf=lambda x: x is None)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b, strict=True):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert isinstance(y, jax.Array) and x.dtype == y.dtype
            assert _bits(jax.random.key_data(x)) == _bits(jax.random.key_data(y))
        elif hasattr(x, "dtype"):
            assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array))
            assert x.dtype == y.dtype and x.shape == y.shape
            assert _bits(x) == _bits(y)
        else:
            assert type(x) is type(y) and repr(x) == repr(y)


def test_round_trip_every_leaf_kind_without_like(tmp_path):
    tree = _every_leaf_kind()
    path = tmp_path / "ckpt.safetensors"
    checkpoint.save(path, tree, metadata={"epoch": 3, "note": "hello"})
    loaded = checkpoint.load(path)
    _assert_same(tree, loaded)
    assert checkpoint.read_metadata(path) == {"epoch": 3, "note": "hello"}
    # Typed keys still work as keys, and draw the same numbers.
    np.testing.assert_array_equal(jax.random.normal(loaded["key"], (3,)),
                                  jax.random.normal(tree["key"], (3,)))


def test_round_trip_with_like_is_bit_exact(tmp_path):
    tree = _every_leaf_kind()
    checkpoint.save(tmp_path / "c.safetensors", tree)
    _assert_same(tree, checkpoint.load(tmp_path / "c.safetensors", like=tree))


def test_file_is_plain_safetensors_with_readable_names(tmp_path):
    tree = _every_leaf_kind()
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, tree)
    with open(path, "rb") as f:
        assert b"pickle" not in f.read()
    with safetensors.safe_open(path, framework="np") as f:
        names = set(f.keys())
        meta = f.metadata()
    assert {"params/conv2d_0/w", "params/dense_1/w", "ints/0", "key", "keys"} <= names
    description = json.loads(meta["jnet"])
    assert description["format"] == "jnet.checkpoint" and description["version"] == 2
    # The checksums are plain CRC-32s of the tensor bytes and of the two header strings.
    w = np.asarray(tree["params"]["conv2d_0"]["w"])
    leaf = description["tree"]["children"][description["tree"]["keys"].index("params")]
    leaf = leaf["children"][leaf["keys"].index("conv2d_0")]
    leaf = leaf["children"][leaf["keys"].index("w")]
    assert leaf["crc32"] == zlib.crc32(w.astype("<f4").tobytes())
    assert int(meta["jnet_crc32"]) == zlib.crc32(f"{meta['jnet']}\0{meta['user']}".encode())
    # Other tools read the natively stored tensors directly.
    with safetensors.safe_open(path, framework="np") as f:
        np.testing.assert_array_equal(f.get_tensor("params/conv2d_0/w"),
                                      np.asarray(tree["params"]["conv2d_0"]["w"]))


def test_single_array_and_int_dict_keys(tmp_path):
    checkpoint.save(tmp_path / "a.safetensors", jnp.arange(5.0))
    np.testing.assert_array_equal(checkpoint.load(tmp_path / "a.safetensors"), jnp.arange(5.0))
    tree = {0: jnp.ones(2), 1: jnp.zeros(2)}  # int keys stay a dict, not a list
    checkpoint.save(tmp_path / "b.safetensors", tree)
    _assert_same(tree, checkpoint.load(tmp_path / "b.safetensors"))


def test_namedtuple_and_dataclass_restore_into_like(tmp_path):
    state = AdamLike(count=jnp.array(5, jnp.int32),
                     mu={"w": jnp.full((2, 3), 0.5)}, nu={"w": jnp.full((2, 3), 0.25)})
    tree = {"opt_state": state, "pair": Pair(jnp.ones(2), jnp.arange(3))}
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, tree)

    restored = checkpoint.load(path, like=tree)
    assert isinstance(restored["opt_state"], AdamLike)
    assert isinstance(restored["pair"], Pair)
    _assert_same(tree, restored)

    # Without like: NamedTuples and dataclasses come back as dicts keyed by field.
    plain = checkpoint.load(path)
    assert set(plain["opt_state"]) == {"count", "mu", "nu"}
    np.testing.assert_array_equal(plain["pair"]["second"], jnp.arange(3))


def test_shape_dtype_struct_like(tmp_path):
    tree = {"params": {"w": jnp.arange(6.0).reshape(2, 3)}, "key": jax.random.key(7),
            "step": jnp.array(3)}
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, tree)
    like = jax.eval_shape(lambda: tree)
    assert isinstance(like["params"]["w"], jax.ShapeDtypeStruct)
    _assert_same(tree, checkpoint.load(path, like=like))


def test_mismatch_reports_every_path(tmp_path):
    saved = {"params": {"dense_0": {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)},
                        "dense_1": {"w": jnp.zeros((4, 2))}},
             "extra": jnp.zeros(1), "step": 3}
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, saved)
    like = {"params": {"dense_0": {"w": jnp.zeros((4, 3)), "b": jnp.zeros(4, jnp.bfloat16)},
                       "dense_2": {"w": jnp.zeros((4, 2))}},
            "step": 3.0}
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(path, like=like)
    msg = str(err.value)
    assert str(path) in msg and "6 problems" in msg
    assert "params/dense_0/w: shape (3, 4) in file, (4, 3) in like" in msg
    assert "params/dense_0/b: dtype float32 in file, bfloat16 in like" in msg
    assert "params/dense_2/w: missing from the file" in msg
    assert "params/dense_1/w: in the file (float32[4, 2]) but not in like" in msg
    assert "extra: in the file" in msg
    assert "step: file has Python int, like expects Python float" in msg
    assert "How to fix" in msg


def test_mismatch_groups_a_subtree_present_on_one_side_only(tmp_path):
    w = jnp.zeros(2)
    checkpoint.save(tmp_path / "c.safetensors",
                    {"params": {"w": w}, "opt_state": {"mu": {"w": w}, "nu": {"w": w}}})
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(tmp_path / "c.safetensors", like={"params": {"w": w}})
    msg = str(err.value)
    assert "(1 problem)" in msg
    assert "opt_state/*: 2 entries in the file but not in like: mu/w, nu/w" in msg


def test_key_mismatch_is_reported(tmp_path):
    checkpoint.save(tmp_path / "c.safetensors", {"key": jax.random.key(0)})
    with pytest.raises(CheckpointError, match="key: file has PRNG key key<fry>"):
        checkpoint.load(tmp_path / "c.safetensors", like={"key": jax.random.key(0, impl="rbg")})
    with pytest.raises(CheckpointError, match="like expects uint32"):
        checkpoint.load(tmp_path / "c.safetensors", like={"key": jax.random.PRNGKey(0)})


def test_unsupported_leaf_and_metadata_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match=r"'a/0' of type object"):
        checkpoint.save(tmp_path / "c.safetensors", {"a": [object()]})
    with pytest.raises(CheckpointError, match="metadata must be JSON"):
        checkpoint.save(tmp_path / "c.safetensors", {"a": 1}, metadata={"x": object()})
    assert not os.listdir(tmp_path)


class _Crash(RuntimeError):
    pass


@pytest.mark.parametrize("when", ["write", "fsync", "interrupt"])
def test_interrupted_save_keeps_the_old_checkpoint(tmp_path, monkeypatch, when):
    path = tmp_path / "ckpt.safetensors"
    old = {"w": jnp.arange(4.0)}
    checkpoint.save(path, old)
    before = path.read_bytes()

    def half_write(f, data):
        f.write(data[: len(data) // 2])
        raise KeyboardInterrupt if when == "interrupt" else _Crash("disk full")

    def failing_fsync(fd):
        raise _Crash("fsync failed")

    if when == "fsync":
        monkeypatch.setattr(os, "fsync", failing_fsync)
    else:
        monkeypatch.setattr(writing, "write_file", half_write)
    with pytest.raises((_Crash, KeyboardInterrupt)):
        checkpoint.save(path, {"w": jnp.arange(1000.0)})
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]  # no temp file left behind
    _assert_same(old, checkpoint.load(path))


def test_truncated_and_foreign_files_give_clear_errors(tmp_path):
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, {"w": jnp.arange(100.0)})
    data = path.read_bytes()

    cases = {
        "cut.safetensors": data[: len(data) - 50],  # tensor data cut short
        "head.safetensors": data[:20],  # header cut short
        "tiny.safetensors": b"abc",
        "text.safetensors": b"hello, this is not a checkpoint at all",
        "badjson.safetensors": struct.pack("<Q", 4) + b"{{{{",
    }
    for name, content in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        expected = re.escape(f"jnet.checkpoint.load: '{bad}' is corrupt")
        with pytest.raises(CorruptCheckpointError, match=expected):
            checkpoint.load(bad)

    foreign = tmp_path / "foreign.safetensors"
    safetensors.numpy.save_file({"w": np.ones(2, np.float32)}, foreign)
    with pytest.raises(CheckpointError, match=r"not written by jnet\.checkpoint\.save"):
        checkpoint.load(foreign)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="is a directory"):
        checkpoint.load(tmp_path)


def _tree(step):
    return {"params": {"w": jnp.full((2,), float(step))}, "step": step}


def test_manager_rotation_keeps_last_and_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2, keep_best=1, monitor="val_loss")
    losses = {10: 0.9, 20: 0.3, 30: 0.5, 40: 0.6, 50: 0.7}
    for step, loss in losses.items():
        manager.save(step, _tree(step), metrics={"val_loss": loss})
    assert manager.steps() == [20, 40, 50]  # last two + the best (20)
    assert manager.latest_step() == 50 and manager.best_step() == 20
    assert sorted(os.listdir(tmp_path)) == ["ckpt_000020.safetensors", "ckpt_000040.safetensors",
                                            "ckpt_000050.safetensors"]
    assert manager.restore()["step"] == 50
    best = manager.restore(manager.best_step(), like=_tree(0))
    np.testing.assert_array_equal(best["params"]["w"], [20.0, 20.0])
    assert manager.metrics(20) == {"val_loss": 0.3}


def test_manager_mode_max_default_keep_best_and_resume(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=1, monitor="acc", mode="max")
    for step, acc in [(1, 0.5), (2, 0.9), (3, 0.7)]:
        manager.save(step, _tree(step), metrics={"acc": acc})
    assert manager.steps() == [2, 3]  # keep_best=None still keeps the best
    # A fresh manager on the same directory sees the same state (no in-memory index).
    again = CheckpointManager(tmp_path, keep_last=1, monitor="acc", mode="max")
    assert again.latest_step() == 3 and again.best_step() == 2


def test_manager_without_metrics_and_errors(tmp_path):
    manager = CheckpointManager(tmp_path / "run", keep_last=2)
    assert manager.latest_step() is None and manager.best_step() is None
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        manager.restore()
    for step in range(5):
        manager.save(step, _tree(step))
    assert manager.steps() == [3, 4] and manager.best_step() is None
    with pytest.raises(FileNotFoundError, match=r"holds steps \[3, 4\]"):
        manager.restore(1)
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointManager(tmp_path, keep_last=0)
    with pytest.raises(ValueError, match="mode"):
        CheckpointManager(tmp_path, mode="lowest")
    strict = CheckpointManager(tmp_path / "s", keep_best=2, monitor="val_loss")
    with pytest.raises(ValueError, match="val_loss"):
        strict.save(0, _tree(0), metrics={"loss": 1.0})


def test_training_tree_round_trip(tmp_path):
    """The tree `jnet.fit` saves: params, state, opt_state, step, key, history."""
    key = jax.random.key(0)
    tree = {
        "params": {"conv2d_0": {"w": jax.random.normal(key, (3, 3, 1, 16)),
                                "b": jnp.zeros(16)}},
        "state": {"batch_norm_1": {"mean": jnp.zeros(16), "var": jnp.ones(16)}, "relu_2": {}},
        "opt_state": AdamLike(jnp.array(120, jnp.int32), {"w": jnp.ones(3)}, {"w": jnp.ones(3)}),
        "step": 120,
        "key": jax.random.fold_in(key, 120),
        "history": {"loss": [0.9, 0.5, 0.25], "val_loss": [1.0, 0.6, 0.4]},
    }
    manager = CheckpointManager(tmp_path)
    manager.save(120, tree, metrics={"val_loss": 0.4})
    arrays = ("params", "state", "opt_state", "key")
    like = jax.eval_shape(lambda: {k: tree[k] for k in arrays})  # nothing allocated
    like.update(step=0, history={"loss": [0.0] * 3, "val_loss": [0.0] * 3})  # matched by type
    _assert_same(tree, manager.restore(like=like))


def test_version_1_file_of_jnet_0_1_loads():
    """tests/fixtures/checkpoint_v1.safetensors: `_every_leaf_kind()` saved by jnet 0.1's
    `checkpoint.save` (format version 1: no checksums, 0-d arrays stored as shape [1])."""
    path = os.path.join(os.path.dirname(__file__), "fixtures", "checkpoint_v1.safetensors")
    with safetensors.safe_open(path, framework="np") as f:
        assert json.loads(f.metadata()["jnet"])["version"] == 1
        assert "jnet_crc32" not in f.metadata()
    tree = _every_leaf_kind()
    _assert_same(tree, checkpoint.load(path))
    _assert_same(tree, checkpoint.load(path, like=tree))
    assert checkpoint.read_metadata(path) == {"a": 1}
