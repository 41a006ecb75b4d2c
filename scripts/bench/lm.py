"""The language-model rows: the character-level GPT of `scripts/train_lm.py` trained with AdamW
on random token batches (jnet, the floor of `floors.floor_gpt_step`, torch eager and
torch.compile, all from jnet's initial weights), and greedy decoding with jnet's key / value
cache against a hand-written torch cache loop over the same weights."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from bench import torch_side
from bench.floors import OPTIMIZERS, floor_gpt_step


@dataclass(frozen=True)
class GPTConfig:
    layers: int
    width: int
    heads: int
    kv_heads: int
    context: int
    batch: int
    rope: float = 10000.0

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.context


# train_lm.py's defaults are 4 layers, width 128, context 128, batch 32; the bench halves the
# layers and the batch so a CPU step takes tens of ms (the same blocks, fewer of them)
FULL = GPTConfig(layers=2, width=128, heads=4, kv_heads=2, context=128, batch=16)
QUICK = GPTConfig(layers=1, width=32, heads=2, kv_heads=1, context=16, batch=4)


def build_model(c: GPTConfig):
    """(model, stack, state, params) of train_lm.build with dropout 0 (its default)."""
    import train_lm

    model, stack = train_lm.build(c.layers, c.width, c.heads, c.kv_heads, 0.0)
    _, params, state = jax.jit(lambda k: model.init(k, (c.context,)))(jax.random.key(0))
    return model, stack, state, params


def floor_params(params) -> dict:
    """jnet's GPT params as the floor's (and torch's) plain dict."""
    body = params["body"]
    return {"table": params["embedding"]["embedding"], "blocks": body["repeat_0"],
            "final": body["rmsnorm_1"]}


def token_batches(n: int, c: GPTConfig, vocab: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, vocab, (c.batch, c.context + 1)).astype(np.int32) for _ in range(n)]


def gpt_workload(n_batches: int, quick: bool):
    """The `gpt` training workload (see the module docstring)."""
    import train_lm

    import jnet
    from bench.workloads import Impl, Workload, _fresh, _keys

    c = QUICK if quick else FULL
    model, _, state, params = build_model(c)
    jnet_opt, floor_rule, _ = OPTIMIZERS["adamw"]
    optimizer, rule = jnet_opt(jnet.optim), floor_rule()
    host = token_batches(n_batches, c, train_lm.VOCAB)
    batches = [jax.device_put(b) for b in host]

    def jnet_make():
        def step(carry, ids, key):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(lambda p: train_lm.next_char_loss(
                model, p, state, ids, key, True))(params)
            params, opt_state = optimizer.update(grads, opt_state, params)
            return (params, opt_state), loss

        return step

    fp = floor_params(params)
    impls = {"jnet": Impl(jnet_make, _fresh((params, optimizer.init(params)))),
             "floor": Impl(lambda: floor_gpt_step(c.heads, c.kv_heads, c.rope, rule),
                           _fresh((fp, rule[0](fp))))}
    runner = None
    if torch_side.available():
        spec = torch_side.TorchSpec(torch_side.gpt(c.heads, c.kv_heads, c.rope, c.context),
                                    "adamw", integer_inputs=True)
        pairs = [(b[:, :-1], b[:, 1:].reshape(-1)) for b in host]
        host_params = jax.tree.map(np.asarray, fp)
        runner = lambda compiled: torch_side.Runner(spec, host_params, [], pairs,  # noqa: E731
                                                    compiled)
    return Workload("gpt", "train", impls, batches, _keys(n_batches), 2e-4,
                    {"optimizer": "adamw", "params": int(jnet.layers.count_params(params)),
                     "batch": (c.batch, c.context), "config": vars(c),
                     "tokens_per_step": c.tokens_per_step, "compute_dtype": "float32"},
                    runner,
                    decode=lambda cfg, meter, log: decode_row(quick, cfg.rounds, meter, log))


def jnet_generate(model, stack, length: int):
    """A jitted ``(params, prompt) -> (tokens (length,), logits (length − 1, V))``: greedy
    decoding with the key / value cache, the prompt forced (train_lm's sampler, argmax)."""
    from jnet import layers as L

    norm = L.RMSNorm()

    @jax.jit
    def generate(params, prompt):
        table, body = params["embedding"]["embedding"], params["body"]
        cache = stack.init_cache(body["repeat_0"], 1, length)

        def step(carry, position):
            cache, token = carry
            h, cache = stack.decode_step(body["repeat_0"], cache, table[token], position)
            h, _ = norm.apply(body["rmsnorm_1"], {}, h)
            logits = h @ table.T
            forced = position + 1 < prompt.shape[0]
            token = jnp.where(forced, prompt[jnp.minimum(position + 1, prompt.shape[0] - 1)],
                              jnp.argmax(logits, -1).astype(prompt.dtype))
            return (cache, token), (token, logits[0])

        _, (tokens, logits) = jax.lax.scan(step, (cache, prompt[:1]), jnp.arange(length - 1))
        return jnp.concatenate([prompt[:1], tokens[:, 0]]), logits

    return generate


def decode_row(quick: bool, rounds: int, meter, log) -> dict:
    """tokens/s of greedy decoding (batch 1, the prompt "def ", `context` tokens in all):
    jnet's `decode_step` inside one jitted `lax.scan` against torch's cached loop; the tokens
    must be equal and the first step's logits agree."""
    import train_lm

    c = QUICK if quick else FULL
    model, stack, _, params = build_model(c)
    prompt = train_lm.encode("def ")
    generate = jnet_generate(model, stack, c.context)
    with meter:
        t0 = time.perf_counter()
        tokens, logits = jax.block_until_ready(generate(params, jnp.asarray(prompt)))
        first_call = time.perf_counter() - t0
    result = {"name": "gpt decode", "info": {"config": vars(c),
              "prompt": "def ", "tokens": c.context, "batch": 1},
              "impls": {"jnet": {"compile_s": meter.total, "first_call_s": first_call}}}
    timings: dict[str, list[float]] = {"jnet": []}
    runs = {"jnet": lambda: jax.block_until_ready(generate(params, jnp.asarray(prompt)))}
    if torch_side.available():
        decoder = torch_side.Decoder(jax.tree.map(np.asarray, floor_params(params)), c.heads,
                                     c.kv_heads, c.rope, c.context)
        t_tokens, t_logits = decoder.generate(prompt)
        timings["torch"] = []
        runs["torch"] = lambda: decoder.generate(prompt)
        diff = float(np.max(np.abs(t_logits[0] - np.asarray(logits[0]))))
        result["agreement_torch"] = {
            "tokens_equal": bool(np.array_equal(t_tokens, np.asarray(tokens))),
            "first_logits_max_abs_diff": diff, "rtol": 1e-4,
            "ok": bool(np.array_equal(t_tokens, np.asarray(tokens)) and diff <= 1e-4)}
    for r in range(max(rounds, 1)):
        for name in list(runs) if r % 2 == 0 else list(runs)[::-1]:
            reps = []
            for _ in range(3):
                t0 = time.perf_counter()
                runs[name]()
                reps.append(time.perf_counter() - t0)
            timings[name].append(statistics.median(reps))
        log(f"  gpt decode: round {r + 1}/{rounds} done")
    generated = c.context - 1  # decoding steps per call (prompt positions included)
    for name, times in timings.items():
        impl = result["impls"].setdefault(name, {})
        impl |= {"call_median_s": statistics.median(times),
                 "tokens_per_s": generated / statistics.median(times)}
    result["tokens"] = np.asarray(tokens).tolist()
    if "torch" in timings:
        result["ratio"] = {"tokens_per_s_vs_torch": result["impls"]["jnet"]["tokens_per_s"]
                           / result["impls"]["torch"]["tokens_per_s"]}
    return result
