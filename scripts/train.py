"""Train a small network on scikit-learn's digits (8x8x1 images, 10 classes) with jnet.

    python scripts/train.py                          # the README's CNN, Adam
    python scripts/train.py --model mlp --optimizer sgd --lr 0.1 --batch-size 1
    python scripts/train.py --checkpoint-dir ckpt --epochs 5
    python scripts/train.py --checkpoint-dir ckpt --epochs 10 --resume   # continues exactly

The data is split once with a fixed seed into train / validation / test; the progress bar shows
the training and validation metrics, and the script ends with the accuracy on the test split.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import jnet
from jnet import layers as L


def digits(seed: int = 0):
    """(train, validation, test) splits of the digits, images scaled to [0, 1], NHWC float32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images[..., None] / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, random_state=seed,
                                                      stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.1,
                                                      random_state=seed, stratify=y_rest)
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def build_model(name: str) -> jnet.layers.Layer:
    """``cnn``: the README's usage model; ``mlp``: one hidden layer of 64 ReLUs."""
    if name == "cnn":
        return L.serial(
            L.Input((8, 8, 1)),
            L.Conv2D(16, (3, 3), padding="SAME"), L.BatchNorm(), L.ReLU(), L.MaxPool2D((2, 2)),
            L.Flatten(), L.Dropout(0.2), L.Dense(10), L.ClassificationOutput(),
        )
    if name == "mlp":
        return L.serial(L.Input((8, 8, 1)), L.Flatten(), L.Dense(64), L.ReLU(), L.Dense(10),
                        L.ClassificationOutput())
    raise ValueError(f"unknown model {name!r}; choose cnn or mlp")


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    parser.add_argument("--optimizer", choices=list(jnet.optim.RULES), default="adam")
    parser.add_argument("--lr", type=float, default=1e-2, help="learning rate (default 1e-2)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64,
                        help="0 = full batch (GD), 1 = per-example SGD, k = mini-batches")
    parser.add_argument("--checkpoint-dir", default=None, help="save a checkpoint every epoch")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    parser.add_argument("--seed", type=int, default=0, help="seeds init, shuffling, dropout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    (x, y), (xv, yv), (xt, yt) = digits()
    model = build_model(args.model)
    print(jnet.summary(model))
    optimizer = jnet.optim.get(args.optimizer, learning_rate=args.lr)
    if args.resume and args.checkpoint_dir is None:
        parser.error("--resume needs --checkpoint-dir (where to resume from)")
    callbacks = [] if args.checkpoint_dir is None else [
        jnet.callbacks.Checkpoint(args.checkpoint_dir, resume=args.resume)]
    start = time.perf_counter()
    result = jnet.fit(
        model, optimizer, x, y,
        epochs=args.epochs, batch_size=args.batch_size or None, key=args.seed,
        validation_data=(xv, yv), callbacks=callbacks, verbose=0 if args.quiet else 1,
    )
    seconds = time.perf_counter() - start
    test = jnet.evaluate(model, result.params, result.state, xt, yt)
    print(f"trained {result.epoch} epochs ({result.step} steps) in {seconds:.1f} s "
          f"({result.timing.compile_s:.1f} s compiling); "
          f"test accuracy {test['accuracy']:.4f} (test loss {test['loss']:.4f}, "
          f"{len(yt)} held-out images)")
    return test["accuracy"]


if __name__ == "__main__":
    main()
