"""Train a character-level GPT on the Python standard library's own source files.

    python scripts/train_lm.py                         # 4 layers, width 128, context 128
    python scripts/train_lm.py --steps 300 --layers 2  # shorter
    python scripts/train_lm.py --small                 # seconds: the settings the tests use
    python scripts/train_lm.py --checkpoint-dir runs/lm --plot curve.png
    python scripts/train_lm.py --checkpoint-dir runs/lm --resume   # after an interruption

The corpus is every ``.py`` file under ``sysconfig.get_paths()["stdlib"]`` (site-packages
excluded), sorted by path; every 10th file is held out. Characters are the printable ASCII
ones plus newline and tab; anything else maps to one "other" id. The model is a pre-norm
decoder-only transformer (`TransformerDecoderLayer` with grouped-query attention and rotary
embeddings, repeated with `jnet.layers.repeat`, a final `RMSNorm`, the output projection tied
to the embedding). It reports the held-out bits per character against a unigram baseline
(the training split's character frequencies, add-one smoothed), the training throughput in
characters (tokens) per second, and a sample drawn with the key / value cache.

A tqdm bar counts the steps. Every ``--eval-every`` steps the held-out loss on
``--eval-windows`` fixed windows joins the curve (``--plot PATH`` saves it as a PNG) and, with
``--checkpoint-dir``, a `jnet.checkpoint.CheckpointManager` saves params, optimizer state,
step and key (the curve so far in the metadata). Batches and dropout keys depend on the seed
and the step alone, so ``--resume`` continues bit for bit as the uninterrupted run would;
``--stop-at`` stops early, as an interruption would. ``notebooks/language_model.ipynb`` walks
through the same functions.
"""

from __future__ import annotations

import argparse
import functools
import math
import sysconfig
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import TqdmWarning

import jnet
from jnet import layers as L

CHARS = "\n\t" + "".join(chr(c) for c in range(32, 127))
OTHER = len(CHARS)  # the id of every character outside CHARS
VOCAB = len(CHARS) + 1


def encode(text: str) -> np.ndarray:
    """Character ids (int32): a CHARS index, or OTHER."""
    table = np.full(128, OTHER, np.int32)
    table[[ord(c) for c in CHARS]] = np.arange(len(CHARS))
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    return np.where(codes < 128, table[np.minimum(codes, 127)], OTHER).astype(np.int32)


def decode(ids: np.ndarray) -> str:
    return "".join(CHARS[i] if i < OTHER else "?" for i in ids)


def corpus(max_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, held-out ids): the stdlib's .py files, every 10th held out, each split cut
    at `max_chars` (held out: a tenth of that)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    parts: tuple[list[str], list[str]] = ([], [])
    sizes = [0, 0]
    for i, path in enumerate(files):
        split = int(i % 10 == 9)
        if sizes[split] >= (max_chars if split == 0 else max_chars // 10):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        parts[split].append(text)
        sizes[split] += len(text)
    return encode("".join(parts[0])[:max_chars]), encode("".join(parts[1])[:max_chars // 10])


def unigram_bits(train: np.ndarray, held_out: np.ndarray) -> float:
    """Cross-entropy (bits / char) of held-out characters under the training frequencies."""
    counts = np.bincount(train, minlength=VOCAB) + 1.0
    return float(-np.mean(np.log2(counts / counts.sum())[held_out]))


def build(layers: int, width: int, heads: int, kv_heads: int, dropout: float):
    block = L.TransformerDecoderLayer(heads, 4 * width, dropout=dropout, activation="gelu",
                                      norm_first=True, num_kv_heads=kv_heads, rope=10000.0)
    stack = L.repeat(block, layers)
    # GPT-2's N(0, 0.02) table: the tied output starts near uniform
    embedding = L.Embedding(VOCAB, width, embedding_init=jnet.initializers.normal(0.02))
    return L.tied_embedding(embedding, L.serial(stack, L.RMSNorm())), stack


def windows(data: np.ndarray, seed: int, step: int, batch: int, length: int) -> np.ndarray:
    """The training batch of `step`: (batch, length) random windows, drawn from the seed and
    the step alone, so a resumed run draws the batches the uninterrupted one would."""
    starts = np.random.default_rng((seed, step)).integers(0, len(data) - length, batch)
    return data[starts[:, None] + np.arange(length)]


def next_char_loss(model, params, state, ids, key, train):
    """Mean cross-entropy (nats) of predicting ids[:, 1:] from ids[:, :-1]."""
    logits, _ = model.apply(params, state, ids[:, :-1], key=key, train=train)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(logp, ids[:, 1:, None], -1))


def held_out_windows(data: np.ndarray, context: int, count: int | None = None) -> np.ndarray:
    """(n, context + 1) windows of held-out ids: all consecutive ones, or `count` of them
    spread evenly over the split (a prefix would be one file, not the split)."""
    n = (len(data) - 1) // context
    chosen = np.arange(n) if count is None else np.linspace(0, n - 1, min(count, n)).astype(int)
    return data[(chosen * context)[:, None] + np.arange(context + 1)]


def held_out_bits(loss, params, ids: np.ndarray, batch: int) -> float:
    """Bits / char on held-out windows `ids` (n, context + 1); `loss` is the jitted
    ``(params, ids) -> mean nats`` (built once, so repeated validation never recompiles)."""
    total = sum(float(loss(params, jnp.asarray(ids[i:i + batch]))) * len(ids[i:i + batch])
                for i in range(0, len(ids), batch))
    return total / len(ids) / math.log(2)


def sampler(model, stack, length: int, temperature: float):
    """A jitted ``(params, key, prompt ids) -> ids``: the prompt is fed through the cached
    decode steps, then each next character is drawn from softmax(logits / temperature)."""
    norm = L.RMSNorm()

    @jax.jit
    def sample(params, key, prompt):
        table = params["embedding"]["embedding"]
        body = params["body"]
        cache = stack.init_cache(body["repeat_0"], 1, length)

        def step(carry, position):
            cache, token, key = carry
            h, cache = stack.decode_step(body["repeat_0"], cache, table[token], position)
            h, _ = norm.apply(body["rmsnorm_1"], {}, h)
            key, draw = jax.random.split(key)
            drawn = jax.random.categorical(draw, (h @ table.T) / temperature)
            forced = position + 1 < prompt.shape[0]
            token = jnp.where(forced, prompt[jnp.minimum(position + 1, prompt.shape[0] - 1)],
                              drawn)
            return (cache, token, key), token

        _, tokens = jax.lax.scan(step, (cache, prompt[:1], key), jnp.arange(length - 1))
        return jnp.concatenate([prompt[:1], tokens[:, 0]])

    return sample


def make_step(model, state, optimizer):
    """The jitted training step ``(params, opt_state, ids, key) -> (params, opt_state, loss)``,
    built once per run (one compilation)."""
    @jax.jit
    def step(params, opt_state, ids, key):
        loss, grads = jax.value_and_grad(
            lambda p: next_char_loss(model, p, state, ids, key, True))(params)
        params, opt_state = optimizer.update(grads, opt_state, params)
        return params, opt_state, loss

    return step


def start_or_resume(args, params, optimizer, manager):
    """(run state, curve): the run state ``{"params", "opt_state", "step", "key"}`` fresh from
    `args.seed`, or with ``--resume`` the latest checkpoint in `manager`'s directory (the
    curve so far rides in its metadata)."""
    fresh = {"params": params, "opt_state": optimizer.init(params), "step": 0,
             "key": jax.random.key(args.seed + 1)}
    if not args.resume or manager is None or manager.latest_step() is None:
        return fresh, []
    tree = manager.restore(like=fresh)
    curve = jnet.checkpoint.read_metadata(manager.path(int(tree["step"])))["metadata"]
    return tree, [tuple(point) for point in curve]


def progress_bar(args, initial: int):
    with warnings.catch_warnings():
        # jnet.fit's bar: a widget in Jupyter, text elsewhere (and without ipywidgets, where
        # tqdm.auto warns that it falls back to text, which is the right thing then)
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.auto import tqdm

    return tqdm(total=args.steps, initial=initial, unit="step", dynamic_ncols=True,
                desc="training", disable=args.quiet)


def run(args, step, run_state, train_ids, validate, manager):
    """Train from ``run_state["step"]`` to ``args.stop_at or args.steps``: every
    ``args.eval_every`` steps (and at the end) append (step, train bits, validation bits) to
    the curve and save a checkpoint. Returns the final run state, the curve and the seconds
    spent in training steps after the first (compilation) one."""
    tree, curve = run_state
    params, opt_state, key = tree["params"], tree["opt_state"], tree["key"]
    first, stop = int(tree["step"]), args.stop_at or args.steps
    bar, seconds, clock = progress_bar(args, first), 0.0, None
    for i in range(first, stop):
        ids = jnp.asarray(windows(train_ids, args.seed, i, args.batch_size, args.context + 1))
        params, opt_state, loss = step(params, opt_state, ids, jax.random.fold_in(key, i))
        bar.update(1)
        if clock is None:  # throughput without the compilation
            loss.block_until_ready()
            clock = time.perf_counter()
        if (i + 1) % args.eval_every == 0 or i + 1 == stop:
            loss.block_until_ready()
            seconds += time.perf_counter() - clock
            curve.append((i + 1, float(loss) / math.log(2), validate(params)))
            bar.set_postfix(train=f"{curve[-1][1]:.3f}", val=f"{curve[-1][2]:.3f}")
            if manager is not None:
                manager.save(i + 1, {"params": params, "opt_state": opt_state, "step": i + 1,
                                     "key": key}, metrics={"val_loss": curve[-1][2]},
                             metadata=curve)
            clock = time.perf_counter()
    bar.close()
    return {"params": params, "opt_state": opt_state, "step": stop, "key": key}, curve, seconds


def plot_curve(curve, baseline: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    steps, train_bits, val_bits = zip(*curve, strict=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, train_bits, label="training batch")
    ax.plot(steps, val_bits, label="held-out windows")
    ax.axhline(baseline, color="gray", linestyle="--", label="unigram baseline")
    ax.set(xlabel="step", ylabel="bits / character", title="character-level GPT, Python stdlib")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(args: argparse.Namespace) -> dict:
    """Train (or resume) as `args` says; returns the numbers `main` prints, the curve, the
    final run state (params, opt_state, step, key) and a sample."""
    train_ids, held_ids = corpus(args.max_chars)
    model, stack = build(args.layers, args.width, args.heads, args.kv_heads, args.dropout)
    schedule = jnet.optim.warmup_cosine_decay_schedule(0.0, args.lr, max(args.steps // 10, 1),
                                                       args.steps + 1, args.lr / 10)
    optimizer = jnet.optim.adamw(schedule, weight_decay=0.01)
    manager = (jnet.checkpoint.CheckpointManager(args.checkpoint_dir, keep_last=2)
               if args.checkpoint_dir else None)
    _, params, state = model.init(jax.random.key(args.seed), (args.context,))
    run_state = start_or_resume(args, params, optimizer, manager)
    loss = jax.jit(lambda p, ids: next_char_loss(model, p, state, ids, None, False))
    validate = functools.partial(held_out_bits, loss, batch=args.batch_size,
                                 ids=held_out_windows(held_ids, args.context, args.eval_windows))
    tree, curve, seconds = run(args, make_step(model, state, optimizer), run_state,
                               train_ids, validate, manager)
    done = tree["step"] - int(run_state[0]["step"])
    params = tree["params"]
    baseline = unigram_bits(train_ids, held_ids)
    if args.plot and curve:
        plot_curve(curve, baseline, args.plot)
    prompt = jnp.asarray(encode("def "))
    text = decode(np.asarray(sampler(model, stack, args.sample_length, args.temperature)(
        params, jax.random.key(args.seed + 2), prompt)))
    bits = held_out_bits(loss, params, held_out_windows(held_ids, args.context), args.batch_size)
    return {"held_out_bits_per_char": bits,
            "unigram_bits_per_char": baseline,
            "tokens_per_s": max(done - 1, 0) * args.batch_size * args.context / max(seconds, 1e-9),
            "train_chars": len(train_ids), "held_out_chars": len(held_ids),
            "params": int(L.count_params(params)), "curve": curve, "state": tree,
            "sample": text}


SMALL = {"layers": 1, "width": 32, "heads": 2, "kv_heads": 1, "context": 32, "batch_size": 16,
         "steps": 150, "lr": 1e-2, "max_chars": 200_000, "sample_length": 40}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--max-chars", type=int, default=5_000_000,
                        help="training characters kept (held out: a tenth)")
    parser.add_argument("--sample-length", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=None,
                        help="steps between validation points (default: a tenth of --steps)")
    parser.add_argument("--eval-windows", type=int, default=64,
                        help="held-out windows of --context characters each validation uses")
    parser.add_argument("--plot", default=None, help="save the loss curve as this PNG")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="save params, optimizer state, step and key at each validation")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in --checkpoint-dir")
    parser.add_argument("--stop-at", type=int, default=None,
                        help="stop after this step, as if interrupted (--resume continues)")
    parser.add_argument("--small", action="store_true",
                        help="tiny settings for tests: 1 layer, width 32, context 32, 150 steps")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.small:  # what the command line gives explicitly wins
        for name, value in SMALL.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    args.eval_every = args.eval_every or max(args.steps // 10, 1)
    if args.resume and not args.checkpoint_dir:
        parser.error("--resume continues from --checkpoint-dir DIR: give the directory")
    if args.stop_at is not None and not 0 < args.stop_at <= args.steps:
        parser.error(f"--stop-at must be a step in 1 ... --steps ({args.steps}), "
                     f"got {args.stop_at}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    result = train(args)
    print(f"parameters {result['params']:,}; training chars {result['train_chars']:,}, "
          f"held out {result['held_out_chars']:,}")
    print(f"held-out {result['held_out_bits_per_char']:.3f} bits/char (unigram baseline "
          f"{result['unigram_bits_per_char']:.3f}); {result['tokens_per_s']:,.0f} tokens/s "
          f"on {jax.default_backend()}")
    print("sample:\n" + result["sample"])
    return result


if __name__ == "__main__":
    main()
