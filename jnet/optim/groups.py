"""Parameter groups and freezing: `partition` (one optimizer per group of arrays), `masked`
(an optimizer on some arrays, the others frozen) and `freeze` (arrays that never move).

All three return ordinary `Optimizer`s (`jnet.fit` and `jnet.make_train_step` take them as
they are) whose stages `chain` can extend. A frozen array is bit-identical after any number of
updates, whatever the rule and wherever `freeze` sits in a chain: its final update is exactly
-0.0, so decoupled weight decay (`adamw`, `lion`) cannot move it either.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax

from jnet.optim.base import (
    EmptyState,
    GradientTransformation,
    Optimizer,
    OptimizerError,
    PyTree,
    Schedule,
    api,
)
from jnet.optim.chain import build, frozen_mask, hold_frozen, logged_schedule, run_stages
from jnet.optim.masks import Labels, Mask, resolve_labels, resolve_mask

Stages = tuple[GradientTransformation, ...]


def _split(tree: PyTree, marks: list, key: Hashable, treedef: Any) -> PyTree:
    """`tree` with the arrays outside group `key` replaced by None (an empty subtree)."""
    flat = treedef.flatten_up_to(tree)
    return jax.tree.unflatten(treedef, [x if m == key else None
                                        for x, m in zip(flat, marks, strict=True)])


def grouped(groups: dict[Hashable, Stages], marks_of: Callable[[PyTree], PyTree],
             schedule: Schedule) -> GradientTransformation:
    """One stage running each group's stages on its own arrays.

    `marks_of(params)` gives each array's group key, as a pytree shaped like the params.
    """

    def layout(params):
        treedef = jax.tree.structure(params)
        return treedef, treedef.flatten_up_to(marks_of(params))

    def init(params):
        treedef, marks = layout(params)
        return {key: tuple(t.init(_split(params, marks, key, treedef)) for t in stages)
                for key, stages in groups.items()}

    def update(updates, state, params, step):
        treedef, marks = layout(params)
        merged = treedef.flatten_up_to(updates)
        new_state = {}
        for key, stages in groups.items():
            out, new_state[key] = run_stages(stages, _split(updates, marks, key, treedef),
                                             state[key], _split(params, marks, key, treedef), step)
            for i, x in enumerate(treedef.flatten_up_to(out)):
                if marks[i] == key:
                    merged[i] = x
        return jax.tree.unflatten(treedef, merged), new_state

    def frozen(params):
        treedef, marks = layout(params)
        flags = [False] * len(marks)
        for key, stages in groups.items():
            mask = frozen_mask(stages, _split(params, marks, key, treedef))
            if mask is None:
                continue
            for i, flag in enumerate(treedef.flatten_up_to(mask)):
                if marks[i] == key:
                    flags[i] = flag
        return jax.tree.unflatten(treedef, flags)

    return GradientTransformation(init, update, schedule, frozen)


def check_optimizer(where: str, opt: Any) -> None:
    """Raise `OptimizerError` unless `opt` is an `Optimizer` (wrappers and groups take one)."""
    if not isinstance(opt, Optimizer):
        raise OptimizerError(f"{where} must be an Optimizer such as jnet.optim.adam(1e-3), got "
                             f"{type(opt).__name__} {opt!r:.60}. Build it first (freeze() for "
                             "a group that must not move).")


@api("jnet.optim.partition")
def partition(optimizers: Mapping[str, Optimizer], labels: Labels) -> Optimizer:
    """Parameter groups: each array is updated by the optimizer of its label.

        opt = partition({"body": adamw(1e-3), "head": adam(1e-2), "frozen": freeze()},
                        lambda path, p: "head" if path[0] == "head" else "body")

    Every group keeps its own state (only for its arrays) and counts the same updates. The
    learning rate is per group: `current_learning_rate(opt_state)` returns `{label: lr}`
    (`jnet.fit` logs `history["lr/<label>"]`; a `freeze()` group reports 0). This is
    PyTorch's param groups and optax's `multi_transform`.

    Args:
        optimizers: `{label: Optimizer}`, at least one; `freeze()` for a frozen group.
        labels: one label per array: a pytree of strings shaped like the params, a function
            `params -> that pytree`, or a function `(path, param) -> label` of each array's
            key path (a tuple of keys such as `("dense", "w")`). Checked at `init`.

    Returns:
        An `Optimizer` (its `OptState.learning_rate` is the dict `{label: float32 scalar}`).

    Raises:
        OptimizerError: an empty dict, a non-string label or a value that is not an Optimizer;
            at `init`, labels of the wrong structure or a label without an optimizer.
    """
    if not isinstance(optimizers, Mapping) or not optimizers:
        raise OptimizerError(f"optimizers must be a non-empty dict {{label: Optimizer}}, got "
                             f"{type(optimizers).__name__} {optimizers!r:.60}. E.g. "
                             "{'body': adamw(1e-3), 'head': adam(1e-2)}.")
    for label, opt in optimizers.items():
        if not isinstance(label, str):
            raise OptimizerError(f"optimizers: labels must be strings, got "
                                 f"{type(label).__name__} {label!r}.")
        check_optimizer(f"optimizers[{label!r}]", opt)
    groups: dict[Hashable, Stages] = {label: opt.transforms for label, opt in optimizers.items()}
    rates = {label: logged_schedule(stages) for label, stages in groups.items()}
    names = tuple(optimizers)

    def schedule(step):
        return {label: rate(step) for label, rate in rates.items()}

    return build("partition", (grouped(groups, lambda p: resolve_labels(labels, p, names),
                                        schedule),))


def _freeze_stage(mask: Mask) -> GradientTransformation:
    def frozen(params):
        return resolve_mask(mask, params)

    def init(params):
        frozen(params)
        return EmptyState()

    def update(updates, state, params, step):
        # Later stages of the chain see a zero gradient (no moments build up for the array).
        return jax.tree.map(hold_frozen, updates, frozen(params)), state

    return GradientTransformation(init, update, None, frozen)


@api("jnet.optim.freeze")
def freeze(mask: Mask = None) -> Optimizer:
    """Freeze arrays: they stay bit-identical, whatever else the chain does.

        θ_t = θ_{t-1}        where the mask is True (every array when mask=None)

        opt = chain(adamw(1e-3), freeze(lambda path, p: path[0] == "encoder"))
        opt = partition({"train": adam(1e-3), "frozen": freeze()}, labels)

    Anywhere in a chain: the chain's final update of a frozen array is exactly -0.0 (the
    identity of floating-point addition), so no later stage, decoupled weight decay included,
    moves it; stages after it see a zero gradient. Alone it freezes everything (learning rate 0).

    Args:
        mask: which arrays freeze: None (all), a pytree of bools shaped like the params, a
            function `params -> that pytree`, or a function `(path, param) -> bool` of each
            array's key path. Checked at `init`.

    Returns:
        An `Optimizer` (chain it with a rule, or use it as a `partition` group).

    Raises:
        OptimizerError: at `init`, a mask of the wrong structure or with a non-bool value.
    """
    return build("freeze", (_freeze_stage(mask),))


@api("jnet.optim.masked")
def masked(optimizer: Optimizer, mask: Mask) -> Optimizer:
    """`optimizer` on the arrays where `mask` is True; the others are frozen (bit-identical).

        θ_t = optimizer's update     where the mask is True
        θ_t = θ_{t-1}                elsewhere

    Its state holds `optimizer`'s state for the masked arrays only. Unlike optax's `masked`,
    which passes the raw gradient through for the other arrays, nothing moves them.

    Args:
        optimizer: an `Optimizer`.
        mask: True where `optimizer` applies: a pytree of bools shaped like the params, a
            function `params -> that pytree`, or a function `(path, param) -> bool` of each
            array's key path. Checked at `init`.

    Returns:
        An `Optimizer` logging `optimizer`'s learning rate.

    Raises:
        OptimizerError: `optimizer` is not an Optimizer; at `init`, a bad mask.
    """
    check_optimizer("optimizer", optimizer)
    # String group names: the state is a dict that checkpoints can name.
    groups: dict[Hashable, Stages] = {"masked": optimizer.transforms,
                                      "frozen": (_freeze_stage(None),)}

    def marks(params):
        return jax.tree.map(lambda on: "masked" if on else "frozen", resolve_mask(mask, params))

    return build("masked", (grouped(groups, marks, logged_schedule(optimizer.transforms)),))
