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


TINY = ["--small", "--quiet", "--max-chars", "40000", "--steps", "8", "--eval-every", "2",
        "--eval-windows", "4", "--sample-length", "8"]


@pytest.mark.slow  # three short runs, ~30 s on a loaded 2-core machine
def test_resumed_run_is_bit_identical_to_the_uninterrupted_one(tmp_path):
    lm = _script()
    whole = lm.train(lm.parse([*TINY, "--plot", str(tmp_path / "curve.png")]))
    ckpt = ["--checkpoint-dir", str(tmp_path / "ckpt")]
    first = lm.train(lm.parse([*TINY, *ckpt, "--stop-at", "4"]))
    assert first["state"]["step"] == 4 and [p[0] for p in first["curve"]] == [2, 4]
    resumed = lm.train(lm.parse([*TINY, *ckpt, "--resume"]))
    assert resumed["state"]["step"] == 8
    for a, b in zip(jax.tree.leaves((whole["state"]["params"], whole["state"]["opt_state"])),
                    jax.tree.leaves((resumed["state"]["params"],
                                     resumed["state"]["opt_state"])), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the resumed curve carries the first half's points from the checkpoint
    assert [p[0] for p in resumed["curve"]] == [2, 4, 6, 8]
    np.testing.assert_array_equal(np.asarray(resumed["curve"]), np.asarray(whole["curve"]))
    assert resumed["held_out_bits_per_char"] == whole["held_out_bits_per_char"]
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_without_a_directory_and_a_stop_past_the_end_are_refused(capsys):
    lm = _script()
    for argv in (["--resume"], ["--steps", "10", "--stop-at", "11"]):
        with pytest.raises(SystemExit):
            lm.parse(argv)
    assert "--checkpoint-dir" in capsys.readouterr().err


def test_batches_depend_on_the_step_alone():
    lm = _script()
    data = np.arange(1000, dtype=np.int32)
    a = lm.windows(data, 0, 7, 4, 9)
    assert a.shape == (4, 9) and np.array_equal(a, lm.windows(data, 0, 7, 4, 9))
    assert np.all(np.diff(a, axis=1) == 1)  # consecutive characters
    assert not np.array_equal(a, lm.windows(data, 0, 8, 4, 9))
