"""`jnet.training.Options(compilation_cache=DIR)`: JAX's persistent compilation cache, on
before `fit` compiles. A second process with the same DIR finds entries there and trains to
the same result; bad values are named before any training."""

import os
import subprocess
import sys

import numpy as np
import pytest

import jnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import sys
import jax
import numpy as np
import jnet
from jnet import layers as L

x = np.random.default_rng(0).standard_normal((64, 5)).astype(np.float32)
y = (x.sum(1) > 0).astype(np.int32)
model = L.serial(L.Input((5,)), L.Dense(8), L.ReLU(), L.Dense(2), L.ClassificationOutput())
result = jnet.fit(model, "adam", x, y, epochs=2, batch_size=16, key=0, verbose=0,
                  options=jnet.training.Options(compilation_cache=sys.argv[1]))
leaves = [np.asarray(a) for a in jax.tree.leaves(result.params)]
np.savez(sys.argv[2], *leaves, loss=np.asarray(result.history["loss"]))
"""


def _run(cache, out):
    env = os.environ | {"PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(cache), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


def _entries(cache):
    return {os.path.join(d, f) for d, _, files in os.walk(cache) for f in files}


def test_second_process_reads_the_cache_and_trains_the_same(tmp_path):
    cache = tmp_path / "xla-cache"  # fit creates it
    first = _run(cache, tmp_path / "first.npz")
    entries = _entries(cache)
    assert entries, "fit wrote no compiled program to the cache directory"
    second = _run(cache, tmp_path / "second.npz")
    assert second.keys() == first.keys()
    for name in first:
        np.testing.assert_array_equal(second[name], first[name], err_msg=name)
    # the same programs: the second run found every one and wrote nothing new
    assert _entries(cache) == entries


@pytest.mark.parametrize("value", [3, b"/tmp/cache", ["/tmp/cache"]])
def test_a_value_that_is_no_path_is_named(value):
    with pytest.raises(jnet.ArgumentTypeError) as err:
        jnet.training.Options(compilation_cache=value)
    text = str(err.value)
    assert text.startswith("jnet.training.Options: compilation_cache must be a directory")
    assert repr(value)[:20] in text and "compilation_cache='~/.cache/jnet-xla'" in text


def test_an_unwritable_directory_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    seen = []
    x = np.zeros((8, 3), np.float32)
    y = np.zeros(8, np.int32)
    model = jnet.layers.serial(jnet.layers.Input((3,)), jnet.layers.Dense(2),
                               jnet.layers.ClassificationOutput())
    with pytest.raises(jnet.ArgumentError) as err:
        jnet.fit(model, "sgd", x, y, epochs=1, key=0, verbose=0,
                 callbacks=[lambda *args: seen.append(args)],
                 options=jnet.training.Options(compilation_cache=blocker / "cache"))
    assert not seen  # no epoch ran
    text = str(err.value)
    assert text.startswith("jnet.fit: compilation_cache must be a directory jnet can create")
    assert str(blocker / "cache") in text and "Pick a writable directory" in text
