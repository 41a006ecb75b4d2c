"""Output layers: the last layer of a model, carrying its loss and its prediction link.

An output layer's `apply` is the identity: a model ending in one returns raw outputs (logits
for classification), as in PyTorch. What the layer adds is a `Head(task, loss, link)` (see
`jnet.layers.base.Head`), which `serial` hands on to the model as `model.head`:

    logits, state = model.apply(params, state, x)      # raw outputs
    per_example = model.head.loss(logits, y)           # what training minimises (mean of it)
    probs = model.head.link(logits)                    # what `jnet.predict` returns

So `jnet.fit` / `jnet.make_train_step` need no loss argument for such a model, and
`jnet.predict` returns probabilities (classification) or values (regression). MATLAB's
`softmaxLayer` + `classificationLayer` pair is `ClassificationOutput` alone here: keeping the
softmax out of `apply` lets the loss work from logits, which is stable for any logit.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jnet import activations, losses
from jnet.layers.activations import elementwise_layer
from jnet.layers.base import Head, Layer, LayerError


def _mean_over_non_batch(x: jax.Array) -> jax.Array:
    """(N, ...) -> (N,): one loss per example (e.g. the mean over the pixels of a segmentation)."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim))) if x.ndim > 1 else x


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy, shape (N,): `losses.softmax_cross_entropy` with
    ``reduction="none"``, averaged over any axes between the batch and the classes.

    `labels` are integer class indices of shape ``logits.shape[:-1]`` or one-hot / soft targets
    of shape ``logits.shape``.
    """
    return _mean_over_non_batch(losses.softmax_cross_entropy(logits, labels, reduction="none"))


def regression_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Per-example mean squared error, shape (N,): the mean over all non-batch axes.

    Targets of shape (N,) are accepted for predictions of shape (N, 1) (a `Dense(1)` output).
    """
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    if pred.ndim == target.ndim + 1 and pred.shape[-1] == 1 and pred.shape[:-1] == target.shape:
        target = target[..., None]
    return _mean_over_non_batch(losses.mse(pred, target, reduction="none"))


def _identity(x: jax.Array) -> jax.Array:
    return x


def _softmax_last(logits: jax.Array) -> jax.Array:
    return activations.softmax(logits, axis=-1)


def _output_layer(kind: str, head: Head, check_shape, name: str | None) -> Layer:
    layer = elementwise_layer(kind, _identity, name=name, check_shape=check_shape)
    return dataclasses.replace(layer, head=head)


def ClassificationOutput(name: str | None = None) -> Layer:
    """Classification head: softmax + cross-entropy. `apply` returns its input (the logits).

    - loss: `classification_loss(logits, labels)` -> (N,), the per-example cross-entropy
      −log softmax(logits)[label] (integer labels) or −Σ p·log softmax(logits) (targets).
    - link: softmax over the last axis, so `jnet.predict` returns class probabilities.

    Needs per-example inputs with at least 2 classes on the last axis (the logits of a
    `Dense(num_classes)`).
    """

    def check_shape(in_shape):
        if len(in_shape) == 0 or in_shape[-1] < 2:
            raise LayerError(
                "ClassificationOutput",
                f"expected per-example logits (..., C) with C >= 2 classes on the last axis, "
                f"got in_shape {tuple(in_shape)}. End the model in Dense(num_classes); for a "
                "single yes/no output use Dense(2) here or a sigmoid with "
                "jnet.losses.sigmoid_binary_cross_entropy.",
            )

    head = Head("classification", classification_loss, _softmax_last)
    return _output_layer("ClassificationOutput", head, check_shape, name)


def RegressionOutput(name: str | None = None) -> Layer:
    """Regression head: identity + mean squared error. `apply` returns its input.

    - loss: `regression_loss(pred, target)` -> (N,), the per-example MSE (mean over all
      non-batch axes).
    - link: the identity, so `jnet.predict` returns the values.
    """
    head = Head("regression", regression_loss, _identity)
    return _output_layer("RegressionOutput", head, None, name)
