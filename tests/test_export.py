"""jnet.export: StableHLO through jax.export, serialised, loaded back in a fresh process with
identical outputs."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_refs import randn

import jnet
from jnet import layers as L

KEY = jax.random.key(0)
ROOT = Path(__file__).resolve().parent.parent


def small_lm():
    body = L.serial(L.TransformerDecoderLayer(2, 16, dropout=0.1, rope=True), L.LayerNorm())
    return L.tied_embedding(L.Embedding(13, 8), body)


def test_roundtrip_in_a_fresh_process(tmp_path):
    """The model's outputs up to compilation's rounding; the loaded program's bit for bit."""
    model = small_lm()
    _, params, state = model.init(KEY, (6,))
    ids = np.random.default_rng(0).integers(0, 13, (3, 6)).astype(np.int32)
    want = np.asarray(model.apply(params, state, jnp.asarray(ids))[0])
    exported = jnet.export(model, params, state, ids)
    np.testing.assert_allclose(exported(ids), want, rtol=1e-5, atol=1e-5)  # compiled vs eager
    want = np.asarray(exported(ids))
    path = tmp_path / "lm.jax"
    exported.save(path)
    np.save(tmp_path / "ids.npy", ids)
    code = ("import sys, numpy as np, jnet; run = jnet.load_exported(sys.argv[1]); "
            "np.save(sys.argv[3], np.asarray(run(np.load(sys.argv[2]))))")
    subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "ids.npy"),
                    str(tmp_path / "out.npy")], check=True, cwd=ROOT,
                   env={**os.environ, "JAX_PLATFORMS": "cpu",
                        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                "")])})
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), want)
    # plain JAX reads the same bytes, no jnet needed
    plain = jax.export.deserialize(bytearray(path.read_bytes()))
    np.testing.assert_array_equal(plain.call(ids), want)


def test_dynamic_batch_and_bytes():
    model = L.serial(L.Input((5, 4)), L.Dense(8), L.MultiHeadAttention(2, causal=True),
                     L.GlobalAvgPool1D(), L.Dense(3))
    _, params, state = model.init(KEY)
    exported = jnet.export(model, params, state, jnp.zeros((1, 5, 4)), dynamic_batch=True)
    loaded = jnet.load_exported(exported.serialize())
    for n in (1, 7):
        x = jnp.asarray(randn(n, (n, 5, 4)))
        np.testing.assert_allclose(loaded(x), model.apply(params, state, x)[0], rtol=1e-6,
                                   atol=1e-6)
    assert loaded.platforms == (jax.default_backend(),)
    assert "ExportedModel" in repr(loaded)


def test_errors(tmp_path):
    with pytest.raises(jnet.ArgumentTypeError, match=r"jnet\.export: model must be a jnet Layer"):
        jnet.export(lambda x: x, {}, {}, jnp.zeros(3))
    with pytest.raises(jnet.ArgumentTypeError, match="example must be an input batch"):
        jnet.export(L.Dense(2), {}, {}, [1.0, 2.0])
    with pytest.raises(jnet.ArgumentError, match=r"jnet\.load_exported: cannot read"):
        jnet.load_exported(tmp_path / "missing.jax")
    with pytest.raises(jnet.ArgumentError, match="not an exported model"):
        jnet.load_exported(b"not a model")
