"""scripts/train_lm.py: the character-level GPT learns the stdlib's source better than the
unigram baseline, and its cached sampler draws what the full forward pass predicts."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("train_lm", ROOT / "scripts" / "train_lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_encoding_round_trips_and_maps_the_rest_to_other():
    lm = _script()
    ids = lm.encode("def f():\n\treturn 'é'")
    assert ids.dtype == np.int32 and ids.max() == lm.OTHER
    assert lm.decode(ids) == "def f():\n\treturn '?'"


def test_cached_sampling_at_low_temperature_is_the_greedy_forward():
    lm = _script()
    model, stack = lm.build(2, 16, 2, 1, 0.0)
    _, params, state = model.init(jax.random.key(0), (12,))
    prompt = jnp.asarray(lm.encode("def "))
    tokens = np.asarray(lm.sampler(model, stack, 12, 1e-6)(params, jax.random.key(1), prompt))
    assert tokens[:4].tolist() == prompt.tolist()
    for i in range(4, 12):
        logits, _ = model.apply(params, state, jnp.asarray(tokens[None, :i]))
        assert tokens[i] == int(jnp.argmax(logits[0, -1])), i


@pytest.mark.slow  # ~25 s on an idle 2-core machine
def test_small_run_beats_the_unigram_baseline(capsys):
    result = _script().main(["--small", "--quiet"])
    assert result["held_out_bits_per_char"] < result["unigram_bits_per_char"] - 0.4
    assert result["tokens_per_s"] > 0 and result["held_out_chars"] > 10_000
    assert result["sample"].startswith("def ") and len(result["sample"]) == 40
    assert "bits/char (unigram baseline" in capsys.readouterr().out
