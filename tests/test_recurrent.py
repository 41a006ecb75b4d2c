"""Recurrent layers against NumPy loops written from the textbook equations, gradients by finite
differences, masking against unpadded runs, compile time against T, and a memory task."""

from __future__ import annotations

import re
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jnet
from jnet import layers as L
from jnet.layers.recurrent import gru_scan, gru_step, lstm_scan, lstm_step

pytestmark = pytest.mark.usefixtures("fast_compiling_prng")

N, T, F, H = 3, 6, 4, 5
RNG = np.random.default_rng(0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------------------
# NumPy references: one matrix per gate, as the papers write them. jnet packs the gates along
# the last axis in PyTorch's order; `pack` is that (documented) layout and nothing more.


def random_gates(names, in_features=F, hidden=H, scale=0.5):
    """Per-gate weights W_x (F, H), W_h (H, H), biases b_x, b_h (H,) in float64."""
    return {g: dict(W=RNG.normal(0, scale, (in_features, hidden)),
                    U=RNG.normal(0, scale, (hidden, hidden)),
                    bx=RNG.normal(0, scale, hidden), bh=RNG.normal(0, scale, hidden))
            for g in names}


def pack(gates, order, biases):
    cat = lambda k: np.concatenate([gates[g][k] for g in order], -1).astype(np.float32)  # noqa: E731
    params = {"w_ih": cat("W"), "w_hh": cat("U")}
    if biases == "one":
        params["b"] = (cat("bx") + cat("bh")).astype(np.float32)
    elif biases == "x_only":
        params["b"] = cat("bx")
    else:
        params["b_ih"], params["b_hh"] = cat("bx"), cat("bh")
    return jax.tree.map(jnp.asarray, params)


def np_lstm(g, x, h0=None, c0=None):
    """Hochreiter & Schmidhuber with the Gers forget gate; returns (hs (N, T, H), h, c)."""
    n, t, _ = x.shape
    hidden = g["i"]["U"].shape[0]
    h = np.zeros((n, hidden)) if h0 is None else np.asarray(h0, np.float64)
    c = np.zeros((n, hidden)) if c0 is None else np.asarray(c0, np.float64)
    pre = lambda k, xt, h: xt @ g[k]["W"] + h @ g[k]["U"] + g[k]["bx"] + g[k]["bh"]  # noqa: E731
    hs = []
    for s in range(t):
        xt = x[:, s]
        i, f = sigmoid(pre("i", xt, h)), sigmoid(pre("f", xt, h))
        cand, o = np.tanh(pre("g", xt, h)), sigmoid(pre("o", xt, h))
        c = f * c + i * cand
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), h, c


def np_gru(g, x, reset_after, h0=None):
    """Cho et al.; reset_after applies r to (U_n h + b_hn), else to h before the matmul."""
    n, t, _ = x.shape
    hidden = g["r"]["U"].shape[0]
    h = np.zeros((n, hidden)) if h0 is None else np.asarray(h0, np.float64)
    hs = []
    for s in range(t):
        xt = x[:, s]
        r = sigmoid(xt @ g["r"]["W"] + g["r"]["bx"] + h @ g["r"]["U"] + g["r"]["bh"])
        z = sigmoid(xt @ g["z"]["W"] + g["z"]["bx"] + h @ g["z"]["U"] + g["z"]["bh"])
        if reset_after:
            n_ = np.tanh(xt @ g["n"]["W"] + g["n"]["bx"] + r * (h @ g["n"]["U"] + g["n"]["bh"]))
        else:  # Cho et al. v3 has one bias per gate: b_hn is zero in this convention
            n_ = np.tanh(xt @ g["n"]["W"] + g["n"]["bx"] + (r * h) @ g["n"]["U"])
        h = (1 - z) * n_ + z * h
        hs.append(h)
    return np.stack(hs, 1), h


def gru_case(reset_after):
    g = random_gates("rzn")
    if not reset_after:  # one bias per gate: fold b_h of r and z into b_x, none for n
        for k in "rz":
            g[k]["bx"], g[k]["bh"] = g[k]["bx"] + g[k]["bh"], np.zeros(H)
        g["n"]["bh"] = np.zeros(H)
    return g, pack(g, "rzn", "two" if reset_after else "x_only")


def lstm_case():
    g = random_gates("ifgo")
    return g, pack(g, "ifgo", "one")


def data(n=N, t=T, f=F):
    return RNG.normal(size=(n, t, f)).astype(np.float32)


# ----------------------------------------------------------------------------------------
# Forward values


class TestForward(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @pytest.mark.filterwarnings("ignore")
    def test_lstm_matches_numpy(self):
        g, params = lstm_case()
        x = data()
        ref_hs, ref_h, ref_c = np_lstm(g, x.astype(np.float64))
        for hoist in (True, False):
            layer = L.LSTM(H, return_sequences=True, return_state=True, hoist=hoist)
            (hs, (h, c)), _ = self.variant(lambda p, x, layer=layer: layer.apply(p, {}, x))(
                params, x)
            np.testing.assert_allclose(hs, ref_hs, atol=2e-5)
            np.testing.assert_allclose(h, ref_h, atol=2e-5)
            np.testing.assert_allclose(c, ref_c, atol=2e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_gru_matches_numpy_both_reset_conventions(self):
        x = data()
        for reset_after in (True, False):
            g, params = gru_case(reset_after)
            ref_hs, ref_h = np_gru(g, x.astype(np.float64), reset_after)
            for hoist in (True, False):
                layer = L.GRU(H, return_sequences=True, reset_after=reset_after, hoist=hoist)
                hs, _ = self.variant(lambda p, x, layer=layer: layer.apply(p, {}, x))(params, x)
                np.testing.assert_allclose(hs, ref_hs, atol=2e-5)
                last, _ = L.GRU(H, reset_after=reset_after).apply(params, {}, x)
                np.testing.assert_allclose(last, ref_h, atol=2e-5)

    def test_the_two_gru_conventions_differ(self):
        g, _ = gru_case(True)
        x = data().astype(np.float64)
        assert np.abs(np_gru(g, x, True)[1] - np_gru(g, x, False)[1]).max() > 1e-2

    def test_initial_state_keyword(self):
        g, params = lstm_case()
        x = data()
        h0, c0 = RNG.normal(size=(2, N, H)).astype(np.float32)
        ref_hs, ref_h, ref_c = np_lstm(g, x, h0, c0)
        layer = L.LSTM(H, return_state=True)
        h, (h_last, c_last) = layer.apply(params, {}, x, initial_state=(h0, c0))[0]
        np.testing.assert_allclose(h, ref_h, atol=2e-5)
        np.testing.assert_allclose(h_last, ref_h, atol=2e-5)
        np.testing.assert_allclose(c_last, ref_c, atol=2e-5)
        ys, (h2, _) = lstm_scan(params, x, (h0, c0))
        np.testing.assert_allclose(ys, ref_hs, atol=2e-5)
        np.testing.assert_allclose(h2, ref_h, atol=2e-5)

        gg, gparams = gru_case(True)
        ref = np_gru(gg, x, True, h0)[1]
        out, _ = L.GRU(H).apply(gparams, {}, x, initial_state=h0)
        np.testing.assert_allclose(out, ref, atol=2e-5)

    def test_reverse_is_forward_on_the_flipped_sequence(self):
        g, params = lstm_case()
        x = data()
        ref_hs, ref_h, _ = np_lstm(g, x[:, ::-1].astype(np.float64))
        hs, _ = L.LSTM(H, return_sequences=True, reverse=True).apply(params, {}, x)
        np.testing.assert_allclose(hs, ref_hs[:, ::-1], atol=2e-5)  # aligned with the input
        last, _ = L.LSTM(H, reverse=True).apply(params, {}, x)
        np.testing.assert_allclose(last, ref_h, atol=2e-5)

    def test_unroll_changes_nothing(self):
        _, params = lstm_case()
        x = data()
        a, _ = L.LSTM(H, return_sequences=True).apply(params, {}, x)
        b, _ = L.LSTM(H, return_sequences=True, unroll=3).apply(params, {}, x)
        np.testing.assert_allclose(a, b, atol=1e-6)

    def test_cells_in_a_user_loop_match_the_layer(self):
        for cell, layer, (_, params) in (
            (L.LSTMCell(H), L.LSTM(H, return_sequences=True), lstm_case()),
            (L.GRUCell(H), L.GRU(H, return_sequences=True), gru_case(True)),
            (L.GRUCell(H, reset_after=False), L.GRU(H, return_sequences=True,
                                                     reset_after=False), gru_case(False)),
        ):
            x = data()
            first, _ = cell.apply(params, {}, (None, x[:, 0]))  # None: zero carry
            carry0 = first[0]

            def step(carry, x_t, cell=cell, params=params):
                return cell.apply(params, {}, (carry, x_t))[0]

            _, hs = jax.lax.scan(step, carry0, jnp.swapaxes(x[:, 1:], 0, 1))
            want, _ = layer.apply(params, {}, x)
            np.testing.assert_allclose(first[1], want[:, 0], atol=1e-5)
            np.testing.assert_allclose(jnp.swapaxes(hs, 0, 1), want[:, 1:], atol=1e-5)

    def test_step_functions(self):
        g, params = lstm_case()
        x = data(t=1)
        _, ref_h, ref_c = np_lstm(g, x)
        zeros = jnp.zeros((N, H))
        h, c = lstm_step(params, (zeros, zeros), x[:, 0])
        np.testing.assert_allclose(h, ref_h, atol=2e-5)
        np.testing.assert_allclose(c, ref_c, atol=2e-5)
        gg, gparams = gru_case(False)
        np.testing.assert_allclose(gru_step(gparams, zeros, x[:, 0]), np_gru(gg, x, False)[1],
                                   atol=2e-5)


# ----------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize("which", ["lstm", "gru_after", "gru_before"])
@pytest.mark.parametrize("hoist", [True, False])
def test_gradients_by_finite_differences(which, hoist):
    x = jnp.asarray(RNG.normal(size=(2, 4, 3)), jnp.float32)
    mask = jnp.array([[True, True, True, True], [True, True, False, False]])
    if which == "lstm":
        _, params = lstm_case()
        scan = lstm_scan
    else:
        _, params = gru_case(which == "gru_after")
        scan = gru_scan
    params = jax.tree.map(lambda p: p[:3] if p.shape[0] == F else p, params)  # F = 3 here

    def loss(params, x):
        ys, _ = scan(params, x, mask=mask, hoist=hoist)
        return jnp.sum(jnp.sin(ys))

    check_grads(loss, (params, x), order=1, modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-2)


# ----------------------------------------------------------------------------------------
# Masks


def padded_batch(lengths, t=T):
    seqs = [RNG.normal(size=(n, F)).astype(np.float32) for n in lengths]
    x = np.zeros((len(lengths), t, F), np.float32)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
        x[i, len(s):] = 100.0  # garbage in the padding: must not leak
    return seqs, x


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("reverse", [False, True])
def test_masked_batch_equals_unpadded_runs(kind, reverse):
    lengths = [T, 2, 4]
    seqs, x = padded_batch(lengths)
    make = getattr(L, kind)
    _, params, _ = make(H).init(jax.random.key(0), (T, F))
    seq_layer = make(H, return_sequences=True, return_state=True, reverse=reverse)
    mask = np.arange(T)[None, :] < np.array(lengths)[:, None]
    (ys, carry), _ = seq_layer.apply(params, {}, x, mask=mask)
    chex.assert_trees_all_close((ys, carry), jax.jit(seq_layer.apply)(params, {}, x,
                                                                      mask=mask)[0])
    for i, s in enumerate(seqs):
        (want_ys, want_carry), _ = seq_layer.apply(params, {}, s[None])
        np.testing.assert_allclose(ys[i, : len(s)], want_ys[0], atol=1e-5)
        np.testing.assert_array_equal(ys[i, len(s):], 0.0)
        chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: a[i], carry),
                                    jax.tree.map(lambda a: a[0], want_carry), atol=1e-5)
    last, _ = make(H, reverse=reverse).apply(params, {}, x, mask=mask)
    np.testing.assert_allclose(last, jax.tree.leaves(carry)[0], atol=1e-6)


def test_mask_holes_in_the_middle_skip_those_steps():
    _, params = lstm_case()
    x = data(n=1, t=8)
    keep = np.array([True, False, True, True, False, False, True, True])
    ys, (h, c) = lstm_scan(params, x, mask=keep[None])
    ys_ref, (h_ref, c_ref) = lstm_scan(params, x[:, keep])
    np.testing.assert_allclose(h, h_ref, atol=1e-5)
    np.testing.assert_allclose(c, c_ref, atol=1e-5)
    np.testing.assert_allclose(ys[0, keep], ys_ref[0], atol=1e-5)


def test_bidirectional_concat_and_masks():
    lengths = [T, 3]
    seqs, x = padded_batch(lengths)
    bi = L.Bidirectional(L.GRU(H, return_sequences=True))
    out_shape, params, state = bi.init(jax.random.key(1), (T, F))
    assert out_shape == (T, 2 * H) and state == {"forward": {}, "backward": {}}
    assert set(params) == {"forward", "backward"}
    assert not np.allclose(params["forward"]["w_ih"], params["backward"]["w_ih"])
    mask = np.arange(T)[None, :] < np.array(lengths)[:, None]
    ys, _ = bi.apply(params, state, x, mask=mask)
    for i, s in enumerate(seqs):
        fw, _ = L.GRU(H, return_sequences=True).apply(params["forward"], {}, s[None])
        bw, _ = L.GRU(H, return_sequences=True).apply(params["backward"], {}, s[None, ::-1])
        np.testing.assert_allclose(ys[i, : len(s), :H], fw[0], atol=1e-5)
        np.testing.assert_allclose(ys[i, : len(s), H:], bw[0, ::-1], atol=1e-5)


def test_bidirectional_last_state_merges_and_state():
    x = data()
    bi = L.Bidirectional(L.LSTM(H, return_state=True), merge="sum")
    out_shape, params, state = bi.init(jax.random.key(2), (T, F))
    assert out_shape == ((H,), (((H,), (H,)), ((H,), (H,))))
    (y, (carry_f, carry_b)), _ = bi.apply(params, state, x)
    fw, _ = L.LSTM(H).apply(params["forward"], {}, x)
    bw, _ = L.LSTM(H, reverse=True).apply(params["backward"], {}, x)
    np.testing.assert_allclose(y, fw + bw, atol=1e-5)
    np.testing.assert_allclose(carry_f[0], fw, atol=1e-6)
    np.testing.assert_allclose(carry_b[0], bw, atol=1e-6)
    h0 = (jnp.ones((N, H)), jnp.zeros((N, H)))
    (y0, _), _ = bi.apply(params, state, x, initial_state=(h0, h0))
    assert not np.allclose(y0, y)


def test_bidirectional_takes_two_different_layers():
    """Bidirectional(LSTM, GRU): the backward layer runs on the time-reversed input."""
    x = data()
    bi = L.Bidirectional(L.LSTM(H, return_sequences=True), L.GRU(2, return_sequences=True))
    out_shape, params, _ = bi.init(jax.random.key(5), (T, F))
    assert out_shape == (T, H + 2)
    ys, _ = bi.apply(params, {"forward": {}, "backward": {}}, x)
    fw, _ = L.LSTM(H, return_sequences=True).apply(params["forward"], {}, x)
    bw, _ = L.GRU(2, return_sequences=True, reverse=True).apply(params["backward"], {}, x)
    np.testing.assert_allclose(ys[..., :H], fw, atol=1e-5)
    np.testing.assert_allclose(ys[..., H:], bw, atol=1e-5)


# ----------------------------------------------------------------------------------------
# Init, composition, shapes


def test_default_init_orthogonal_blocks_and_forget_bias():
    _, p, _ = L.LSTM(8).init(jax.random.key(0), (T, 3))
    assert p["w_ih"].shape == (3, 32) and p["w_hh"].shape == (8, 32) and p["b"].shape == (32,)
    for k in range(4):
        block = np.asarray(p["w_hh"][:, 8 * k: 8 * (k + 1)])
        np.testing.assert_allclose(block.T @ block, np.eye(8), atol=1e-5)
    np.testing.assert_array_equal(p["b"], np.r_[np.zeros(8), np.ones(8), np.zeros(16)])
    limit = np.sqrt(6 / (3 + 8))  # Glorot uniform on each gate's (F, H) block
    assert np.abs(p["w_ih"]).max() <= limit and np.abs(p["w_ih"]).max() > 0.5 * limit

    _, p, _ = L.LSTM(8, unit_forget_bias=False, b_init="ones").init(jax.random.key(0), (T, 3))
    np.testing.assert_array_equal(p["b"], np.ones(32))
    _, p, _ = L.GRU(4, w_hh_init=jnet.initializers.constant(0.5)).init(jax.random.key(0), (T, 3))
    assert sorted(p) == ["b_hh", "b_ih", "w_hh", "w_ih"]
    np.testing.assert_array_equal(p["w_hh"], np.full((4, 12), 0.5))
    _, p, _ = L.GRU(4, reset_after=False).init(jax.random.key(0), (T, 3))
    assert sorted(p) == ["b", "w_hh", "w_ih"]


def test_composes_with_serial_and_eval_shape():
    model = L.serial(L.Input((T, F)), L.LSTM(8, return_sequences=True), L.GRU(H),
                     L.Dense(2))
    params = jax.eval_shape(lambda k: model.init(k)[1], jax.random.key(0))
    assert set(params) >= {"lstm_1", "gru_2"}
    assert params["lstm_1"]["w_hh"].shape == (8, 32) and params["gru_2"]["w_ih"].shape == (8, 15)
    out_shape, params, state = model.init(jax.random.key(0))
    assert out_shape == (2,)
    y, _ = jax.jit(model.apply)(params, state, data())
    assert y.shape == (N, 2)
    assert repr(L.GRU(4, reset_after=False)) == "GRU(hidden=4, reset_after=False)"


def test_output_shapes():
    cases = [
        (L.LSTM(H), (H,)),
        (L.LSTM(H, return_sequences=True), (T, H)),
        (L.LSTM(H, return_state=True), ((H,), ((H,), (H,)))),
        (L.GRU(H, True, True), ((T, H), (H,))),
        (L.Bidirectional(L.LSTM(H, return_sequences=True)), (T, 2 * H)),
        (L.LSTMCell(H), (((H,), (H,)), (H,))),
    ]
    for layer, want in cases:
        in_shape = (F,) if layer.kind.endswith("Cell") else (T, F)
        out_shape, params, state = layer.init(jax.random.key(0), in_shape)
        assert out_shape == want, layer
        if not layer.kind.endswith("Cell"):
            y, _ = layer.apply(params, state, data())
            got = jax.tree.map(lambda a: tuple(a.shape[1:]), y)
            assert got == want, layer


# ----------------------------------------------------------------------------------------
# Errors


def test_errors_are_clear():
    _, params, _ = L.LSTM(H).init(jax.random.key(0), (T, F))
    layer = L.LSTM(H)
    cases = [
        (lambda: layer.apply(params, {}, data()[:, 0]), "rank 3"),
        (lambda: layer.apply(params, {}, data(f=F + 1)), f"expected inputs with {F} features"),
        (lambda: layer.apply(params, {}, data().astype(np.int32)), "floating-point"),
        (lambda: layer.apply(params, {}, data(), mask=np.ones((N, T + 1), bool)),
         f"mask= as a boolean array of shape (N, T) = {(N, T)}"),
        (lambda: layer.apply(params, {}, data(), mask=np.ones((N, T), np.int32)),
         "mask.astype(bool)"),
        (lambda: layer.apply(params, {}, data(), initial_state=jnp.zeros((N, H))),
         "initial_state (h, c)"),
        (lambda: layer.apply(params, {}, data(), lengths=2), "does not take"),
        (lambda: L.GRU(H).apply(params, {}, data()), "expected params with keys"),
        (lambda: L.LSTM(0), "positive int"),
        (lambda: L.Bidirectional(L.LSTM), "expected a Layer as forward"),
        (lambda: L.Bidirectional(L.LSTM(3), merge="max"), "merge must be"),
        (lambda: L.Bidirectional(L.Dense(3)), "expected a recurrent layer (LSTM, GRU) as forward"),
        (lambda: L.Bidirectional(L.GRU(3), L.Conv1D(3, 2)), "as backward, got Conv1D"),
        (lambda: layer.apply(params, {}, (data(), np.ones((N, T), bool))),
         "call `layer.apply(params, state, x, mask=mask)`"),
        (lambda: layer.apply(params, {}, data(), mask=np.ones((N + 1,), bool)),
         f"a boolean (N,) = ({N},) example mask"),
        (lambda: L.LSTMCell(H).apply(params, {}, data()[:, 0]), "pair (carry, x_t)"),
        (lambda: L.LSTM(H).init(jax.random.key(0), (F,)), "rank 2 (T, F)"),
        (lambda: L.Bidirectional(layer).apply({"forward": params, "backward": params},
                                              {"forward": {}, "backward": {}},
                                              data(f=F + 1)), "LSTM layer 'forward'"),
        (lambda: L.Bidirectional(layer).apply({"forward": params}, {}, data()),
         "missing ['backward']"),
        (lambda: L.serial(L.Input((T, F)), layer).apply(
            {"input_0": {}, "lstm_1": params}, {"input_0": {}, "lstm_1": {}},
            (data(), np.ones((N, T), bool))), "A sequence mask is a keyword"),
    ]
    for fn, message in cases:
        with pytest.raises(jnet.layers.LayerError, match=re.escape(message)):
            fn()


# ----------------------------------------------------------------------------------------
# Compile time does not grow with T


def compile_seconds(t):
    layer = L.LSTM(16, return_sequences=True)
    _, params, _ = layer.init(jax.random.key(0), (t, 8))
    x = jnp.zeros((4, t, 8))
    loss = lambda p, x: jnp.sum(layer.apply(p, {}, x)[0])  # noqa: E731
    start = time.perf_counter()
    jax.jit(jax.value_and_grad(loss)).lower(params, x).compile()
    return time.perf_counter() - start


def test_compile_time_does_not_grow_with_sequence_length():
    compile_seconds(8)  # warm up the tracing caches both share
    short, long = compile_seconds(16), compile_seconds(512)
    # An unrolled Python loop over 512 steps compiles ~30x longer; a scan takes about as long.
    assert long < 3 * short + 1.0, (short, long)


# ----------------------------------------------------------------------------------------
# A task that needs memory: which of two marker tokens came first in a noisy sequence.


def marker_task(key, n, t=20, noise_tokens=4):
    """Sequences of random noise tokens with markers A and B at two random distinct steps;
    label 1 when A comes before B. One-hot features (noise_tokens + 2)."""
    k_noise, k_pos = jax.random.split(key)
    tokens = jax.random.randint(k_noise, (n, t), 0, noise_tokens)
    pos = jax.vmap(lambda k: jax.random.choice(k, t, (2,), replace=False))(
        jax.random.split(k_pos, n))
    rows = jnp.arange(n)
    tokens = tokens.at[rows, pos[:, 0]].set(noise_tokens).at[rows, pos[:, 1]].set(
        noise_tokens + 1)
    x = jax.nn.one_hot(tokens, noise_tokens + 2)
    return x, (pos[:, 0] < pos[:, 1]).astype(jnp.int32)


@pytest.mark.parametrize("rnn", [L.LSTM(16), L.GRU(16)], ids=["LSTM", "GRU"])
def test_learns_a_task_that_needs_memory(rnn):
    model = L.serial(rnn, L.Dense(2))
    _, params, state = model.init(jax.random.key(0), (20, 6))
    opt = jnet.optim.adam(1e-2)

    def loss_fn(params, x, y):
        logits, _ = model.apply(params, state, x)
        return jnp.mean(jnet.losses.softmax_cross_entropy(logits, y))

    def train_step(carry, key):
        params, opt_state = carry
        x, y = marker_task(key, 64)
        grads = jax.grad(loss_fn)(params, x, y)
        return opt.update(grads, opt_state, params), None

    train = jax.jit(lambda p, s, keys: jax.lax.scan(train_step, (p, s), keys)[0])
    params, _ = train(params, opt.init(params), jax.random.split(jax.random.key(1), 150))
    x, y = marker_task(jax.random.key(2), 1000)
    logits, _ = model.apply(params, state, x)
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == y))
    assert accuracy > 0.95, accuracy


def test_stacked_layers_pass_the_mask_on():
    """serial(LSTM(return_sequences), GRU): the mask keyword reaches both; each padded row
    gives what its sequence gives alone; the per-step output is a plain array."""
    lengths = [T, 3, 1]
    seqs, x = padded_batch(lengths)
    mask = np.arange(T)[None, :] < np.array(lengths)[:, None]
    model = L.serial(L.LSTM(H, return_sequences=True), L.GRU(4))
    out_shape, params, state = model.init(jax.random.key(3), (T, F))
    assert out_shape == (4,)
    y, _ = model.apply(params, state, x, mask=mask)
    for i, s in enumerate(seqs):
        want, _ = model.apply(params, state, s[None])
        np.testing.assert_allclose(y[i], want[0], atol=1e-5)
    per_step = L.serial(L.Input((T, F)), L.LSTM(H, return_sequences=True), L.Dense(2))
    _, p2, s2 = per_step.init(jax.random.key(4))
    out, _ = per_step.apply(p2, s2, x, mask=mask)
    assert out.shape == (3, T, 2)
    np.testing.assert_allclose(out[2, 1:], np.broadcast_to(p2["dense_2"]["b"], (T - 1, 2)))
    bi = L.Bidirectional(L.GRU(2, return_sequences=True))
    _, p_bi, s_bi = bi.init(jax.random.key(0), (T, F))
    ys_bi, _ = bi.apply(p_bi, s_bi, x, mask=mask)
    assert ys_bi.shape == (3, T, 4)
    np.testing.assert_array_equal(ys_bi[1, 3:], 0.0)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_low_precision_inputs_run_in_their_dtype(kind):
    """bfloat16 inputs with the float32 params init made: the layer computes in bfloat16 (as
    Dense and Conv2D do), close to the float32 result; a float32 initial state is fine too."""
    make = getattr(L, kind)
    layer = make(H, return_sequences=True, return_state=True)
    _, params, _ = layer.init(jax.random.key(0), (T, F))
    x = data()
    (ys32, _), _ = layer.apply(params, {}, x)
    h0 = jnp.zeros((N, H), jnp.float32)
    carry0 = (h0, h0) if kind == "LSTM" else h0
    x16 = jnp.asarray(x, jnp.bfloat16)
    mask = np.arange(T)[None, :] < np.array([T, 2, 4])[:, None]
    for kw in ({}, {"mask": mask}, {"initial_state": carry0}):
        (ys, carry), _ = jax.jit(lambda p, x, kw: layer.apply(p, {}, x, **kw))(params, x16, kw)
        assert ys.dtype == jnp.bfloat16
        assert {a.dtype for a in jax.tree.leaves(carry)} == {jnp.dtype(jnp.bfloat16)}
    np.testing.assert_allclose(np.asarray(layer.apply(params, {}, x16)[0][0], np.float32), ys32,
                               atol=0.05)
    cell = getattr(L, kind + "Cell")(H)
    (_, h), _ = cell.apply(params, {}, (None, x16[:, 0]))
    assert h.dtype == jnp.bfloat16


@pytest.mark.parametrize("make", [lambda: L.LSTM(H, return_sequences=True),
                                  lambda: L.GRU(H, return_state=True),
                                  lambda: L.GRU(H, reset_after=False)],
                         ids=["lstm", "gru", "gru_before"])
def test_example_mask_of_shape_n_pads_no_step(make):
    """A boolean (N,) mask marks the real examples of a padded batch (for batch statistics):
    it pads no step, so the output equals the unmasked one, and the unmasked fast path runs."""
    layer = make()
    _, params, _ = layer.init(jax.random.key(0), (T, F))
    x = data()
    example_mask = jnp.array([True, False, True])
    want = layer.apply(params, {}, x)[0]
    got = layer.apply(params, {}, x, mask=example_mask)[0]
    jax.tree.map(np.testing.assert_array_equal, got, want)
    grad = jax.grad(lambda p, m: jnp.sum(jax.tree.leaves(layer.apply(p, {}, x, mask=m)[0])[0]))
    fused = layer.config.get("reset_after", True)
    assert ("jnet_linear_call" in str(jax.make_jaxpr(grad)(params, example_mask))) == fused
