"""Faults around jnet.checkpoint: full and read-only disks, bad paths, kill -9 of a writer,
umask, flipped bits in tensors and headers, malformed descriptions, two managers in one
directory, bad arguments. The references are independent of the code under test: the bytes
on disk, `zlib.crc32`, the safetensors layout (8-byte length, JSON header, data)."""

import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

import jnet
from jnet import checkpoint
from jnet.checkpoint import (
    CheckpointError,
    CheckpointManager,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    writing,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tree():
    return {"params": {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.ones(4, jnp.bfloat16)},
            "step": 7, "lr": 0.5, "name": "run", "nothing": None, "key": jax.random.key(3),
            "mean": np.array([1.5, -2.0])}


def _assert_same(a, b):
    """Same structure and leaf types, bit-identical arrays (keys by their key data)."""
    flat_a, tree_a = jax.tree_util.tree_flatten(a, is_leaf=lambda x: x is None)
    flat_b, tree_b = jax.tree_util.tree_flatten(b, is_leaf=lambda x: x is None)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b, strict=True):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array))
        if hasattr(x, "dtype"):
            assert x.dtype == y.dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        else:
            assert repr(x) == repr(y)


def _header(data: bytes) -> tuple[int, dict]:
    """The safetensors header length and JSON, read from the raw bytes."""
    n = struct.unpack("<Q", data[:8])[0]
    return n, json.loads(data[8:8 + n])


def _only(directory) -> list[str]:
    return sorted(os.listdir(directory))


# ----------------------------------------------------------------------------------------
# The error class.


def test_checkpoint_errors_are_jnet_errors():
    assert issubclass(CheckpointError, jnet.Error) and issubclass(CheckpointError, ValueError)
    assert issubclass(CorruptCheckpointError, CheckpointError)
    assert issubclass(CheckpointNotFoundError, CheckpointError)
    assert issubclass(CheckpointNotFoundError, FileNotFoundError)


# ----------------------------------------------------------------------------------------
# Write failures: the old file stays, no temporary remains, the message names path and fix.


def _can_mount() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0


@pytest.fixture
def tmpfs(tmp_path):
    """Mount small tmpfs file systems under tmp_path (root only); unmounted afterwards."""
    mounted = []

    def mount(name: str, options: str):
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True)
        if done.returncode != 0:
            return None
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _big_tree(megabytes: float):
    return {"w": np.random.default_rng(0).standard_normal(int(megabytes * 2**20) // 8)}


@pytest.mark.skipif(not _can_mount(), reason="mounting a tmpfs needs root on Linux; "
                    "test_disk_full_by_file_size_limit covers the same failure")
def test_disk_full_on_a_small_tmpfs(tmpfs):
    fs = tmpfs("full", "size=1m")
    if fs is None:
        pytest.skip("mount -t tmpfs failed (no CAP_SYS_ADMIN in this container)")
    path = fs / "ckpt.safetensors"
    small = {"w": np.arange(1000.0)}
    checkpoint.save(path, small)
    before = path.read_bytes()
    with pytest.raises(CheckpointError) as err:
        checkpoint.save(path, _big_tree(2))
    msg = str(err.value)
    assert msg.startswith("jnet.checkpoint.save: could not write the checkpoint")
    assert str(path) in msg and "ENOSPC" in msg and "free some space" in msg
    assert err.value.path == str(path)
    assert path.read_bytes() == before and _only(fs) == ["ckpt.safetensors"]
    _assert_same(small, checkpoint.load(path))


@pytest.mark.skipif(not _can_mount(), reason="mounting a tmpfs needs root on Linux; "
                    "test_checkpoint_checks.py checks check_space with a faked free space")
def test_check_space_agrees_with_a_small_tmpfs(tmpfs):
    fs = tmpfs("space", "size=1m")
    if fs is None:
        pytest.skip("mount -t tmpfs failed (no CAP_SYS_ADMIN in this container)")
    free = shutil.disk_usage(fs).free
    # The largest uint8 array whose checkpoint check_space accepts: the file fits for real.
    fits = {"w": np.zeros(free - 4096, np.uint8)}
    assert checkpoint.check_space(fs, fits) <= free
    checkpoint.save(fs / "fits.safetensors", fits)
    os.remove(fs / "fits.safetensors")
    # One block more is refused up front, and saving it would indeed fill the disk.
    too_big = {"w": np.zeros(free, np.uint8)}
    with pytest.raises(CheckpointError, match=f"'{fs}' has {free:,} bytes free"):
        checkpoint.check_space(fs, too_big)
    with pytest.raises(CheckpointError, match="ENOSPC"):
        checkpoint.save(fs / "too_big.safetensors", too_big)
    assert _only(fs) == []


_FSIZE_SCRIPT = r"""
import json, os, resource, signal, sys
import numpy as np
from jnet import checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so write() fails with EFBIG, not a signal
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
path = os.path.join(sys.argv[1], "ckpt.safetensors")
checkpoint.save(path, {"w": np.arange(1000.0)})
before = open(path, "rb").read()
try:
    checkpoint.save(path, {"w": np.zeros(100_000)})
    out = {"raised": None}
except checkpoint.CheckpointError as e:
    out = {"raised": type(e).__name__, "msg": str(e)}
out.update(same=open(path, "rb").read() == before, files=sorted(os.listdir(sys.argv[1])),
           loads=bool((checkpoint.load(path)["w"] == np.arange(1000.0)).all()))
print(json.dumps(out))
"""


def _run_python(script: str, *args: str, timeout: float = 120) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
               JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_disk_full_by_file_size_limit(tmp_path):
    out = json.loads(_run_python(_FSIZE_SCRIPT, str(tmp_path)).splitlines()[-1])
    assert out["raised"] == "CheckpointError"
    assert "EFBIG" in out["msg"] and str(tmp_path / "ckpt.safetensors") in out["msg"]
    assert "raise the limit" in out["msg"]
    assert out["same"] and out["loads"] and out["files"] == ["ckpt.safetensors"]


def test_bad_target_paths(tmp_path):
    tree = {"w": jnp.ones(3)}
    # A missing parent directory: not created behind the caller's back.
    with pytest.raises(CheckpointError, match="does not exist: create it first") as err:
        checkpoint.save(tmp_path / "nope" / "c.safetensors", tree)
    assert "ENOENT" in str(err.value) and not (tmp_path / "nope").exists()
    # A directory given as the path, with something inside that must survive.
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "keep.txt").write_text("x")
    with pytest.raises(CheckpointError, match="is a directory: give a file name inside it"):
        checkpoint.save(tmp_path / "dir", tree)
    assert _only(tmp_path / "dir") == ["keep.txt"]
    # A path under a regular file.
    (tmp_path / "file.txt").write_text("data")
    with pytest.raises(CheckpointError, match="regular file, not a directory") as err:
        checkpoint.save(tmp_path / "file.txt" / "c.safetensors", tree)
    assert str(tmp_path / "file.txt" / "c.safetensors") in str(err.value)
    assert (tmp_path / "file.txt").read_text() == "data"
    assert _only(tmp_path) == ["dir", "file.txt"]  # no temporary anywhere


def test_unwritable_directory(tmp_path, tmpfs):
    """A read-only file system as root (root ignores permission bits), else chmod 0o500."""
    fs = tmpfs("ro", "size=1m") if _can_mount() else None
    if fs is not None:
        checkpoint.save(fs / "c.safetensors", {"w": jnp.arange(3.0)})
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        expected = "read-only"
    else:
        fs = tmp_path / "locked"
        fs.mkdir()
        checkpoint.save(fs / "c.safetensors", {"w": jnp.arange(3.0)})
        fs.chmod(0o500)
        expected = "not writable"
    try:
        before = (fs / "c.safetensors").read_bytes()
        assert checkpoint.load(fs / "c.safetensors")["w"].shape == (3,)  # reading still works
        with pytest.raises(CheckpointError, match=expected):
            checkpoint.save(fs / "c.safetensors", {"w": jnp.arange(5.0)})
        with pytest.raises(CheckpointError, match=expected):
            checkpoint.check_writable(fs)
        with pytest.raises(CheckpointError, match=expected):
            CheckpointManager(fs)
        assert (fs / "c.safetensors").read_bytes() == before
        assert _only(fs) == ["c.safetensors"]
    finally:
        if expected == "not writable":
            fs.chmod(0o700)


def test_check_writable(tmp_path):
    deep = tmp_path / "a" / "b" / "c"
    assert checkpoint.check_writable(deep) == str(deep)
    assert deep.is_dir() and _only(deep) == []  # its probe file is gone
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(CheckpointError, match=r"jnet.checkpoint.check_writable: could not"):
            checkpoint.check_writable(bad)
    with pytest.raises(CheckpointError, match="regular file"):
        CheckpointManager(tmp_path / "file")


# ----------------------------------------------------------------------------------------
# kill -9 of a writer, and stale temporaries.

# Runs in a fresh interpreter that never starts a JAX backend (NumPy trees only), so it can
# fork safely: each child saves A and B alternately into one path until it is killed.
_KILL_SCRIPT = r"""
import json, os, random, signal, sys, time
import numpy as np
from jnet import checkpoint
directory, kills = sys.argv[1], int(sys.argv[2])
path = os.path.join(directory, "ckpt.safetensors")
rng = np.random.default_rng(0)
trees = [{"w": rng.standard_normal(2**18), "step": i} for i in range(2)]
checkpoint.save(path, trees[0])
pick, report = random.Random(1), []
for _ in range(kills):
    pid = os.fork()
    if pid == 0:
        try:
            for i in range(10**9):
                checkpoint.save(path, trees[i % 2])
        finally:
            os._exit(0)
    time.sleep(pick.uniform(0.0, 0.08))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    loaded = checkpoint.load(path)  # the previous file still loads, whole
    same = any(loaded["step"] == t["step"] and loaded["w"].tobytes() == t["w"].tobytes()
               for t in trees)
    temps = [n for n in os.listdir(directory) if n.startswith(".jnet-tmp-")]
    report.append({"loads": same, "temps": len(temps)})
print(json.dumps(report))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the writer is forked (POSIX only)")
def test_kill_9_during_save_keeps_a_loadable_file_and_next_save_cleans_up(tmp_path):
    report = json.loads(_run_python(_KILL_SCRIPT, str(tmp_path), "20").splitlines()[-1])
    assert len(report) == 20 and all(r["loads"] for r in report)
    left = [r["temps"] for r in report]
    assert max(left) >= 1, left  # some kills landed mid-write and left a temporary
    assert all(name.startswith(".jnet-tmp-") or name == "ckpt.safetensors"
               for name in os.listdir(tmp_path))
    tree = {"w": jnp.arange(4.0)}
    checkpoint.save(tmp_path / "ckpt.safetensors", tree)  # removes the dead writers' files
    assert _only(tmp_path) == ["ckpt.safetensors"]
    _assert_same(tree, checkpoint.load(tmp_path / "ckpt.safetensors"))


def test_only_stale_temporaries_are_removed(tmp_path):
    host = writing.HOST
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid is free
    try:
        names = {
            "live": f".jnet-tmp-{sleeper.pid}@{host}-{'a' * 16}.tmp",
            "dead": f".jnet-tmp-{dead.pid}@{host}-{'b' * 16}.tmp",
            "other_host_fresh": f".jnet-tmp-{dead.pid}@elsewhere-{'c' * 16}.tmp",
            "other_host_old": f".jnet-tmp-{sleeper.pid}@elsewhere-{'d' * 16}.tmp",
            "unrelated": "notes.tmp",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        two_hours_ago = time.time() - 7200
        os.utime(tmp_path / names["other_host_old"], (two_hours_ago, two_hours_ago))
        checkpoint.save(tmp_path / "c.safetensors", {"w": jnp.ones(2)})
        kept = set(os.listdir(tmp_path))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert kept == {"c.safetensors", names["live"], names["other_host_fresh"],
                    names["unrelated"]}


# ----------------------------------------------------------------------------------------
# Permissions.


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_umask_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        checkpoint.save(tmp_path / "c.safetensors", {"w": jnp.ones(2)})
        CheckpointManager(tmp_path / "run").save(1, {"w": jnp.ones(2)})
    finally:
        os.umask(old)
    for path in (tmp_path / "c.safetensors", tmp_path / "run" / "ckpt_000001.safetensors"):
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


# ----------------------------------------------------------------------------------------
# Integrity.


def test_a_flipped_tensor_byte_is_reported_as_corrupt(tmp_path):
    path = tmp_path / "c.safetensors"
    tree = _tree()
    checkpoint.save(path, tree)
    data = bytearray(path.read_bytes())
    n, header = _header(bytes(data))
    begin, end = header["params/w"]["data_offsets"]
    data[8 + n + (begin + end) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError) as err:
        checkpoint.load(path)
    msg = str(err.value)
    assert f"'{path}' is corrupt: tensor 'params/w' does not match its checksum" in msg
    with pytest.raises(CorruptCheckpointError, match="'params/w'"):
        checkpoint.load(path, like=tree)
    # verify=False skips the check: the damage is then visible in the values.
    loaded = checkpoint.load(path, verify=False)
    assert not np.array_equal(loaded["params"]["w"], tree["params"]["w"])
    np.testing.assert_array_equal(loaded["params"]["b"], tree["params"]["b"])


def _rewrite(path, tensors: dict, jnet_description, user="null", crc=True, extra=None):
    """A safetensors file with a hand-made jnet header, its checksum computed here."""
    jnet_json = json.dumps(jnet_description)
    meta = {"jnet": jnet_json, "user": user, **(extra or {})}
    if crc:
        meta["jnet_crc32"] = str(zlib.crc32(f"{jnet_json}\0{user}".encode()))
    safetensors.numpy.save_file(tensors, path, metadata=meta)


def test_version_1_files_still_load(tmp_path):
    """A file as jnet 0.1 wrote it: no checksums, version 1."""
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    description = {"format": "jnet.checkpoint", "version": 1, "tree": {
        "node": "dict", "type": "dict", "keys": ["w", "n"], "children": [
            {"leaf": "array", "tensor": "w", "dtype": "float32", "shape": [2, 3],
             "stored": "native", "origin": "numpy"},
            {"leaf": "scalar", "type": "int", "value": 4}]}}
    _rewrite(tmp_path / "v1.safetensors", {"w": w}, description, user='{"epoch": 2}', crc=False)
    _assert_same({"w": w, "n": 4}, checkpoint.load(tmp_path / "v1.safetensors"))
    assert checkpoint.read_metadata(tmp_path / "v1.safetensors") == {"epoch": 2}
    # Version 2 requires the header checksum: without it the file is corrupt.
    description["version"] = 2
    _rewrite(tmp_path / "v2.safetensors", {"w": w}, description, crc=False)
    with pytest.raises(CorruptCheckpointError, match="no 'jnet_crc32' checksum"):
        checkpoint.load(tmp_path / "v2.safetensors")


def _good_description():
    return {"format": "jnet.checkpoint", "version": 2, "tree": {
        "node": "dict", "type": "dict", "keys": ["w", "k", "s"], "children": [
            {"leaf": "array", "tensor": "w", "dtype": "float32", "shape": [3],
             "stored": "native", "origin": "jax", "crc32": zlib.crc32(np.ones(3, "<f4"))},
            {"leaf": "key", "tensor": "k", "impl": "threefry2x32", "dtype": "key<fry>",
             "shape": [], "crc32": zlib.crc32(np.zeros(2, "<u4"))},
            {"leaf": "scalar", "type": "float", "value": 0.5}]}}


def _mutations():
    """(name, change of the description) pairs; each leaves it malformed."""
    def leaf(i):
        return lambda d: d["tree"]["children"][i]
    return [
        ("unknown leaf kind", lambda d: leaf(0)(d).update(leaf="tensor")),
        ("unknown dtype", lambda d: leaf(0)(d).update(dtype="float33")),
        ("object dtype", lambda d: leaf(0)(d).update(dtype="object")),
        ("missing tensor", lambda d: leaf(0)(d).pop("tensor")),
        ("missing dtype", lambda d: leaf(0)(d).pop("dtype")),
        ("shape of wrong type", lambda d: leaf(0)(d).update(shape="3")),
        ("negative shape", lambda d: leaf(0)(d).update(shape=[-3])),
        ("shape not matching bytes", lambda d: leaf(0)(d).update(shape=[4])),
        ("unknown storage", lambda d: leaf(0)(d).update(stored="zip")),
        ("unknown origin", lambda d: leaf(0)(d).update(origin="torch")),
        ("tensor not in file", lambda d: leaf(0)(d).update(tensor="v")),
        ("missing crc32", lambda d: leaf(0)(d).pop("crc32")),
        ("crc32 of wrong type", lambda d: leaf(0)(d).update(crc32="abc")),
        ("unknown key impl", lambda d: leaf(1)(d).update(impl="nope")),
        ("key shape wrong", lambda d: leaf(1)(d).update(shape=[2])),
        ("scalar of wrong type", lambda d: leaf(2)(d).update(value="0.5")),
        ("unknown scalar type", lambda d: leaf(2)(d).update(type="complex")),
        ("scalar without value", lambda d: leaf(2)(d).pop("value")),
        ("leaf not an object", lambda d: d["tree"]["children"].__setitem__(2, [1])),
        ("keys and children differ", lambda d: d["tree"]["keys"].pop()),
        ("keys not a list", lambda d: d["tree"].update(keys="wks")),
        ("key of wrong type", lambda d: d["tree"]["keys"].__setitem__(0, 1.5)),
        ("unknown node kind", lambda d: d["tree"].update(node="set")),
        ("no tree", lambda d: d.pop("tree")),
        ("tree not an object", lambda d: d.update(tree=None)),
        ("no version", lambda d: d.pop("version")),
        ("version of wrong type", lambda d: d.update(version="2")),
        ("version zero", lambda d: d.update(version=0)),
        ("other format", lambda d: d.update(format="orbax")),
    ]


def test_malformed_descriptions_are_checkpoint_errors(tmp_path):
    tensors = {"w": np.ones(3, np.float32), "k": np.zeros(2, np.uint32)}
    path = tmp_path / "c.safetensors"
    _rewrite(path, tensors, _good_description())
    good = checkpoint.load(path)  # the unmutated description is valid
    np.testing.assert_array_equal(good["w"], np.ones(3, np.float32))
    like = {"w": jnp.zeros(3), "k": jax.random.key(0), "s": 0.0}
    for name, mutate in _mutations():
        description = _good_description()
        mutate(description)
        _rewrite(path, tensors, description)
        for kwargs in ({}, {"like": like}):
            with pytest.raises(CorruptCheckpointError, match="is corrupt") as err:
                checkpoint.load(path, **kwargs)
            assert str(path) in str(err.value), name
    # Newer versions are not corrupt: they need a newer jnet.
    description = _good_description()
    description["version"] = 99
    _rewrite(path, tensors, description)
    with pytest.raises(CheckpointError, match="version 99; this jnet reads versions up to 2"):
        checkpoint.load(path)
    # Metadata that is not JSON, or JSON that is not an object.
    for user in ("{not json", "[" * 100_000):
        _rewrite(path, tensors, _good_description(), user=user)
        with pytest.raises(CorruptCheckpointError, match="user metadata is not valid JSON"):
            checkpoint.read_metadata(path)
    # A stale header checksum.
    _rewrite(path, tensors, _good_description(), crc=False, extra={"jnet_crc32": "123"})
    with pytest.raises(CorruptCheckpointError, match="header does not match its checksum"):
        checkpoint.read_metadata(path)
    # A header whose jnet entry is gone but which is clearly jnet's is corrupt, not foreign.
    _rewrite(path, tensors, _good_description(), crc=False)
    data = path.read_bytes().replace(b'"jnet":', b'"jnat":')
    path.write_bytes(data)
    with pytest.raises(CorruptCheckpointError, match="no 'jnet' metadata entry"):
        checkpoint.load(path)


def _flip_bits(path, data: bytes, positions, original, metadata):
    """Load `data` with each bit position flipped; count CheckpointErrors and exact loads."""
    raised = equal = 0
    for bit in positions:
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(flipped))
        try:
            loaded = checkpoint.load(path)
        except CheckpointError:
            raised += 1
            continue
        _assert_same(original, loaded)  # anything that loads must be the original exactly
        assert checkpoint.read_metadata(path) == metadata
        equal += 1
    return raised, equal


def test_header_bit_flips_raise_or_load_the_original(tmp_path):
    tree = {"w": jnp.arange(3.0), "b": jnp.ones(2, jnp.bfloat16), "n": 3, "s": "run",
            "none": None, "key": jax.random.key(1), "mean": np.array([0.5])}
    metadata = {"epoch": 3}
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, tree, metadata=metadata)
    data = path.read_bytes()
    n, _ = _header(data)
    header_bits = (8 + n) * 8
    positions = np.random.default_rng(0).choice(header_bits, size=1500, replace=False)
    raised, equal = _flip_bits(tmp_path / "flipped.safetensors", data, positions, tree,
                               metadata)
    print(f"header of {8 + n} bytes: {raised} of 1500 flips raised CheckpointError, "
          f"{equal} loaded the original")
    assert raised + equal == 1500
    # The header checksum covers jnet's JSON and the safetensors entries must match the
    # description, so in fact every flip is detected.
    assert raised == 1500


@pytest.mark.slow
def test_every_header_bit_flip_raises_or_loads_the_original(tmp_path):
    tree = {"w": jnp.arange(3.0), "n": 3, "key": jax.random.key(1)}
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, tree, metadata={"epoch": 3})
    data = path.read_bytes()
    n, _ = _header(data)
    raised, equal = _flip_bits(tmp_path / "flipped.safetensors", data, range((8 + n) * 8),
                               tree, {"epoch": 3})
    print(f"all {(8 + n) * 8} header bits: {raised} raised, {equal} loaded the original")
    assert raised + equal == (8 + n) * 8 and raised == (8 + n) * 8


# ----------------------------------------------------------------------------------------
# Two managers in one directory.


def test_two_managers_in_one_directory_never_raise(tmp_path):
    errors, saves_each = [], 60

    def job(offset: int):
        manager = CheckpointManager(tmp_path, keep_last=2, keep_best=1, monitor="val_loss")
        for i in range(saves_each):
            step = 2 * i + offset
            try:
                manager.save(step, {"w": jnp.full(64, float(step))},
                             metrics={"val_loss": 1.0 / (1 + step)})
            except Exception as e:
                errors.append(repr(e))

    def reader(stop: threading.Event):
        manager = CheckpointManager(tmp_path)
        while not stop.is_set():
            try:
                if manager.latest_step() is not None:
                    manager.restore()
                manager.best_step()
            except Exception as e:
                errors.append(repr(e))

    stop = threading.Event()
    watcher = threading.Thread(target=reader, args=(stop,))
    jobs = [threading.Thread(target=job, args=(offset,)) for offset in (0, 1)]
    watcher.start()
    for t in jobs:
        t.start()
    for t in jobs:
        t.join()
    stop.set()
    watcher.join()
    assert errors == []
    manager = CheckpointManager(tmp_path)
    last = manager.latest_step()
    assert last == 2 * saves_each - 1
    np.testing.assert_array_equal(manager.restore()["w"], np.full(64, float(last)))


# ----------------------------------------------------------------------------------------
# Bad arguments.


def test_bad_arguments_are_clear_jnet_errors(tmp_path):
    tree = {"w": jnp.ones(2)}
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, tree)
    cases = [
        (lambda: checkpoint.save(3, tree), jnet.ArgumentTypeError, "path must be"),
        (lambda: checkpoint.save("", tree), jnet.ArgumentTypeError, "non-empty"),
        (lambda: checkpoint.load(None), jnet.ArgumentTypeError, "got None"),
        (lambda: checkpoint.load(b"c.safetensors"), jnet.ArgumentTypeError, "path must be"),
        (lambda: checkpoint.load(path, verify="yes"), jnet.ArgumentTypeError, "verify"),
        (lambda: checkpoint.read_metadata(1.5), jnet.ArgumentTypeError, "path must be"),
        (lambda: checkpoint.check_writable(None), jnet.ArgumentTypeError, "directory must be"),
        (lambda: checkpoint.load(path, like={"v": jnp.ones(2)}), CheckpointError,
         "does not match `like`"),
        (lambda: checkpoint.load(path, like=[jnp.ones(2)]), CheckpointError,
         "does not match `like`"),
        (lambda: checkpoint.load(tmp_path / "none.safetensors"), CheckpointNotFoundError,
         "no checkpoint at"),
        (lambda: CheckpointManager(None), jnet.ArgumentTypeError, "directory must be"),
        (lambda: CheckpointManager(tmp_path, monitor=3), jnet.ArgumentTypeError, "monitor"),
        (lambda: CheckpointManager(tmp_path, mode="lowest"), jnet.ArgumentError, "mode"),
    ]
    for bad in (0, -1, True, 1.5, "3"):
        cases.append((lambda bad=bad: CheckpointManager(tmp_path, keep_last=bad),
                      jnet.ArgumentError, "keep_last must be an int >= 1"))
    cases.append((lambda: CheckpointManager(tmp_path, keep_best=-1), jnet.ArgumentError,
                  "keep_best must be an int >= 0"))
    manager = CheckpointManager(tmp_path / "run")
    for bad in (-1, True, "3", 1.0):
        cases.append((lambda bad=bad: manager.save(bad, tree), jnet.ArgumentError,
                      "step must be an int >= 0"))
    cases += [
        (lambda: manager.save(1, tree, metrics={"val_loss": "low"}), jnet.ArgumentError,
         "metrics must be"),
        (lambda: manager.restore(-2), jnet.ArgumentError, "step must be"),
        (lambda: manager.restore(5), CheckpointNotFoundError, "no checkpoint for step 5"),
    ]
    for call, error, text in cases:
        with pytest.raises(error, match=text) as err:
            call()
        assert isinstance(err.value, jnet.Error)
        assert str(err.value).startswith("jnet.checkpoint."), str(err.value)
