"""Checks that turn silent checkpoint failures into errors: trees `load` could not read back as
written are refused by `save`, 64-bit arrays are never narrowed silently, `restore()` is
bounded whatever the directory holds, and `check_space` measures a checkpoint before training.
References: the bytes on disk, Python ints and NumPy float64 arithmetic, the file size `save`
actually produced."""

import collections
import contextlib
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnet.checkpoint import (
    CheckpointError,
    CheckpointManager,
    CheckpointNotFoundError,
    check_space,
    load,
    manager,
    save,
)


@contextlib.contextmanager
def _deadline(seconds: float):
    """Fail (instead of hanging the suite) when the block runs longer than `seconds`."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------------------
# save refuses what load could not give back.

_UNREADABLE = {
    "strings": (np.array(["cat", "dog"]), "holds strings"),
    "bytes": (np.array([b"ab"]), "holds bytes"),
    "dates": (np.array(["2026-01-01"], "datetime64[D]"), "`x.astype('int64')`"),
    "spans": (np.array([3], "timedelta64[s]"), "`x.astype('int64')`"),
    "date_scalar": (np.datetime64("2026-01-01"), "holds dates"),
    "objects": (np.array([1, "a"], dtype=object), "holds Python objects"),
    "records": (np.zeros(2, [("x", "i4"), ("y", "f4")]), "store each field as its own array"),
}


@pytest.mark.parametrize("kind", sorted(_UNREADABLE))
def test_save_refuses_arrays_load_cannot_restore(tmp_path, kind):
    leaf, fix = _UNREADABLE[kind]
    path = tmp_path / "c.safetensors"
    good = {"params": {"w": jnp.arange(3.0)}}
    save(path, good)
    before = path.read_bytes()
    with pytest.raises(CheckpointError) as err:
        save(path, {"params": {"w": jnp.arange(3.0)}, "labels": {"names": leaf}})
    msg = str(err.value)
    assert msg.startswith("jnet.checkpoint.save: cannot store the array at 'labels/names'")
    assert str(leaf.dtype) in msg and fix in msg and "Nothing was written" in msg
    # Nothing was written: the previous file is intact and still loads, no temporary remains.
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.safetensors"]
    np.testing.assert_array_equal(load(path)["params"]["w"], [0.0, 1.0, 2.0])


@pytest.mark.parametrize("key, shown", [
    ((0, 1), "(0, 1) is of type tuple"),
    (1.5, "1.5 is of type float"),
    (True, "True is of type bool"),
    (None, "None is of type NoneType"),
    (np.int64(3), "use `int(k)`"),
])
def test_save_refuses_dict_keys_that_would_load_as_strings(tmp_path, key, shown):
    tree = {"params": {"blocks": {key: jnp.ones(2)}}}
    with pytest.raises(CheckpointError) as err:
        save(tmp_path / "c.safetensors", tree)
    msg = str(err.value)
    assert "cannot store the dict at 'params/blocks'" in msg and shown in msg
    assert f"would load back as the str {str(key)!r}" in msg
    assert os.listdir(tmp_path) == []


def test_save_refuses_dicts_mixing_str_and_int_keys(tmp_path):
    with pytest.raises(CheckpointError, match=r"dict at 'a': its keys mix str and int"):
        save(tmp_path / "c.safetensors", {"a": {1: jnp.ones(1), "b": jnp.ones(1)}})
    assert os.listdir(tmp_path) == []


def test_str_and_int_keys_and_numeric_arrays_still_round_trip(tmp_path):
    tree = {"by_name": {"a": np.arange(3, dtype=np.int16)}, "by_id": {0: np.float32(2.5),
                                                                        7: np.ones(2, bool)}}
    save(tmp_path / "c.safetensors", tree)
    back = load(tmp_path / "c.safetensors")
    assert set(back["by_id"]) == {0, 7} and set(back["by_name"]) == {"a"}
    assert back["by_name"]["a"].dtype == np.int16 and back["by_id"][0] == np.float32(2.5)


# ----------------------------------------------------------------------------------------
# 64-bit arrays: exact with jax_enable_x64, an error (or an explicit downcast) without.

_BIG_INT = 2**40 + 7  # int32 would keep its low 32 bits: 7


def _save_x64(path, leaf_values: dict):
    with jax.enable_x64(True):
        tree = {"params": {name: jnp.asarray(np.asarray(v)) for name, v in leaf_values.items()}}
        assert all(a.dtype.itemsize == 8 or a.dtype == np.complex128
                   for a in jax.tree.leaves(tree))
        save(path, tree)


def test_64_bit_arrays_load_exactly_with_x64(tmp_path):
    ints = np.array([_BIG_INT, -(2**62)], np.int64)
    floats = np.array([1 + 2**-40, 1e300], np.float64)
    values = {"i": ints, "u": np.array([2**63 + 5], np.uint64), "f": floats,
              "c": np.array([1 + 2**-40 + 1j], np.complex128)}
    path = tmp_path / "c.safetensors"
    _save_x64(path, values)
    with jax.enable_x64(True):
        like = {"params": {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in values.items()}}
        for back in (load(path), load(path, like=like)):
            for name, expected in values.items():
                got = back["params"][name]
                assert isinstance(got, jax.Array) and got.dtype == expected.dtype
                assert np.asarray(got).tobytes() == expected.tobytes(), name
        assert int(load(path)["params"]["i"][0]) == _BIG_INT


@pytest.mark.parametrize("dtype, value", [
    (np.int64, _BIG_INT), (np.uint64, 2**33), (np.float64, 1 + 2**-40),
    (np.complex128, 1 + 2**-40 + 0j),
])
def test_64_bit_arrays_without_x64_are_an_error_naming_the_leaf(tmp_path, dtype, value):
    path = tmp_path / "c.safetensors"
    _save_x64(path, {"x": np.array([value], dtype)})
    assert not jax.config.jax_enable_x64
    like = {"params": {"x": jax.ShapeDtypeStruct((1,), dtype)}}
    for kwargs in ({}, {"like": like}):
        with pytest.raises(CheckpointError) as err:
            load(path, **kwargs)
        msg = str(err.value)
        assert f"the array at 'params/x' is {np.dtype(dtype).name}" in msg
        assert "jax_enable_x64" in msg and "allow_downcast=True" in msg
    # A `like` built without x64 holds the 32-bit dtype: the mismatch says why.
    narrow = {"params": {"x": jnp.zeros(1, jax.dtypes.canonicalize_dtype(dtype))}}
    with pytest.raises(CheckpointError, match="it was saved with jax_enable_x64"):
        load(path, like=narrow)


def test_allow_downcast_narrows_what_fits_and_refuses_what_does_not(tmp_path):
    path = tmp_path / "c.safetensors"
    fits = {"i": np.array([2**31 - 1, -(2**31)], np.int64),
            "f": np.array([1 + 2**-40, 1e30], np.float64)}
    _save_x64(path, fits)
    like = {"params": {"i": jnp.zeros(2, jnp.int32), "f": jnp.zeros(2, jnp.float32)}}
    for back in (load(path, allow_downcast=True), load(path, like=like, allow_downcast=True)):
        i, f = back["params"]["i"], back["params"]["f"]
        assert i.dtype == jnp.int32 and f.dtype == jnp.float32
        assert [int(v) for v in i] == [2**31 - 1, -(2**31)]
        np.testing.assert_array_equal(np.asarray(f), fits["f"].astype(np.float32))
    for name, value, shown in (("i", _BIG_INT, str(_BIG_INT)), ("f", 1e300, "1e+300")):
        _save_x64(path, {name: np.array([0, value])})
        with pytest.raises(CheckpointError) as err:
            load(path, allow_downcast=True)
        assert f"at 'params/{name}' holds {shown}" in str(err.value)


def test_numpy_64_bit_leaves_keep_their_dtype_without_x64(tmp_path):
    tree = {"step": np.array(_BIG_INT, np.int64), "mean": np.array([1 + 2**-40])}
    save(tmp_path / "c.safetensors", tree)
    back = load(tmp_path / "c.safetensors")
    assert back["step"].dtype == np.int64 and int(back["step"]) == _BIG_INT
    assert back["mean"].dtype == np.float64 and back["mean"][0] == 1 + 2**-40


# ----------------------------------------------------------------------------------------
# CheckpointManager.restore() terminates, whatever the directory holds.


def _tree(step):
    return {"w": jnp.full((2,), float(step)), "step": step}


def test_restore_reports_a_dangling_symlink_instead_of_hanging(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=None)
    m.save(3, _tree(3))
    link = tmp_path / "ckpt_000009.safetensors"
    os.symlink(tmp_path / "gone.safetensors", link)
    assert m.steps() == [3, 9]
    with _deadline(30):
        for call in (m.restore, lambda: m.restore(9)):
            with pytest.raises(CheckpointError) as err:
                call()
            assert not isinstance(err.value, CheckpointNotFoundError)
            msg = str(err.value)
            assert f"'{link}' is a symbolic link to '{tmp_path / 'gone.safetensors'}'" in msg
            assert "remove the link" in msg
    link.unlink()
    assert m.restore()["step"] == 3


def test_restore_ignores_oddly_numbered_files(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=1)
    m.save(3, _tree(3))
    real = (tmp_path / "ckpt_000003.safetensors").read_bytes()
    odd = ["ckpt_12.safetensors", "ckpt_0000015.safetensors", "ckpt_\u0661\u0662.safetensors"]
    for name in odd:
        (tmp_path / name).write_bytes(real)  # loadable, but not named as the manager names
    with _deadline(30):
        assert m.steps() == [3] and m.restore()["step"] == 3
        m.save(4, _tree(4))  # rotation removes step 3, never the odd files
        assert m.steps() == [4] and m.restore()["step"] == 4
    assert sorted(os.listdir(tmp_path)) == sorted(["ckpt_000004.safetensors", *odd])
    os.remove(tmp_path / "ckpt_000004.safetensors")
    with _deadline(30), pytest.raises(CheckpointNotFoundError) as err:
        m.restore()
    assert "rename ckpt_0000015.safetensors to ckpt_000015.safetensors" in str(err.value)


def test_restore_gives_up_on_a_latest_file_that_keeps_vanishing(tmp_path, monkeypatch):
    m = CheckpointManager(tmp_path)
    m.save(1, _tree(1))
    opened = []

    def vanishing(path, **kwargs):  # as if another manager removed it each time
        opened.append(path)
        raise CheckpointNotFoundError(f"no checkpoint at '{path}'", path=path)

    monkeypatch.setattr(manager, "load", vanishing)
    with _deadline(30), pytest.raises(CheckpointError, match="vanished 100 times in a row"):
        m.restore()
    assert len(opened) == 100


# ----------------------------------------------------------------------------------------
# check_space: one checkpoint of the tree must fit before training starts.


def _model_tree():
    rng = np.random.default_rng(0)
    return {"params": {"dense_0": {"w": jnp.asarray(rng.normal(size=(64, 32)), jnp.float32),
                                   "b": jnp.zeros(32)},
                       "dense_1": {"w": jnp.ones((32, 10), jnp.bfloat16)}},
            "opt_state": {"count": jnp.array(3, jnp.int32)}, "key": jax.random.key(0),
            "epoch": 4, "name": "run", "mean": np.arange(5.0)}


_Usage = collections.namedtuple("_Usage", "total used free")


def _fake_free(monkeypatch, free: int):
    total = 10 * 2**30
    monkeypatch.setattr(shutil, "disk_usage", lambda path: _Usage(total, total - free, free))


def test_check_space_counts_the_file_save_writes(tmp_path):
    tree, meta = _model_tree(), {"epoch": 4, "metrics": {"val_loss": 0.5}}
    needed = check_space(tmp_path, tree, metadata=meta)
    save(tmp_path / "c.safetensors", tree, metadata=meta)
    actual = os.path.getsize(tmp_path / "c.safetensors")
    block = os.statvfs(tmp_path).f_frsize
    assert needed % block == 0
    bound = -(-(actual + 8 + 16 * 6) // block) * block  # 6 tensors, digits counted widest
    assert actual <= needed <= bound
    # Shapes and dtypes are enough: the same bound from jax.eval_shape's structs.
    structs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)
                           if isinstance(x, jax.Array) else x, tree)
    assert actual <= check_space(tmp_path, structs, metadata=meta) <= bound
    # A directory not created yet is measured on its parent's file system, and not created.
    assert check_space(tmp_path / "runs" / "a", tree, metadata=meta) == needed
    assert not (tmp_path / "runs").exists()


def test_check_space_raises_when_one_checkpoint_does_not_fit(tmp_path, monkeypatch):
    tree = _model_tree()
    needed = check_space(tmp_path, tree)
    _fake_free(monkeypatch, needed)
    assert check_space(tmp_path, tree) == needed  # exactly enough
    _fake_free(monkeypatch, needed - 1)
    with pytest.raises(CheckpointError) as err:
        check_space(tmp_path, tree)
    msg = str(err.value)
    assert msg.startswith(f"jnet.checkpoint.check_space: the file system of '{tmp_path}'")
    assert f"{needed - 1:,} bytes free" in msg and f"needs {needed:,} bytes" in msg
    assert "Free at least 1 bytes" in msg and err.value.path == str(tmp_path)


def test_check_space_refuses_trees_save_would_refuse(tmp_path):
    with pytest.raises(CheckpointError, match="cannot store the array at 'names'"):
        check_space(tmp_path, {"names": np.array(["a"])})
    with pytest.raises(CheckpointError, match="cannot store the dict at '<root>'"):
        check_space(tmp_path, {(1, 2): jnp.ones(1)})
