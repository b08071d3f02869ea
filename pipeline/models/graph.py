"""A Keras application's functional graph as Thaw needs it: every block boundary a layer.

Thaw freezes a backbone's first n layers and caches the activations at a layer's output
(freezing.py, train/activations.py), so a cut can only sit after a layer of
`model.layers`. Two constructions of keras.applications hide block boundaries from that
list: ConvNeXt joins each residual block with a bare `inputs + x` (an operation, not a
layer), and wraps its stem and downsampling convolutions in nested Sequential models
(whose fixed input shape also stops `clone_model` from resizing the backbone). `flat`
rebuilds the graph with the same layers and weights and both undone; any other model
comes back as it is.
"""

from __future__ import annotations

import collections
import contextlib

_NAME_COUNTERS = "object_name_uids"  # keras.src.utils.naming's session-wide counters


@contextlib.contextmanager
def fresh_names():
    """Keras names an unnamed layer by a session-wide counter (`add_11`, `activation_17`):
    counted from zero here, a backbone's layer names (cut points, by_name patterns, the
    activation cache's keys) are the same whatever the process built before. Afterwards
    the counters go on from the higher of the two counts, so no later name repeats one."""
    from keras.src.backend.common import global_state

    before = global_state.get_global_attribute(
        _NAME_COUNTERS, default=collections.defaultdict(int), set_to_default=True
    )
    fresh: collections.defaultdict[str, int] = collections.defaultdict(int)
    global_state.set_global_attribute(_NAME_COUNTERS, fresh)
    try:
        yield
    finally:
        merged = collections.defaultdict(int, before)
        for name, count in fresh.items():
            merged[name] = max(merged[name], count)
        global_state.set_global_attribute(_NAME_COUNTERS, merged)


def _is_bare_join(operation, args, kwargs) -> bool:
    """`x + y` of two tensors written as an operation: a residual join with no layer."""
    import keras
    from keras.src.ops.numpy import Add

    tensors = all(isinstance(a, keras.KerasTensor) for a in args)
    return isinstance(operation, Add) and len(args) == 2 and tensors and not kwargs


def needs_flattening(model) -> bool:
    """Whether the graph has a nested Sequential or a bare two-tensor join."""
    import keras

    if any(isinstance(layer, keras.Sequential) for layer in model.layers):
        return True
    return any(
        _is_bare_join(node.operation, node.arguments.args, node.arguments.kwargs)
        for operation in model.operations
        for node in operation._inbound_nodes
    )


def flat(model):
    """The same layers and weights in a graph whose joins are Add layers and whose nested
    Sequentials are inlined; `model` itself when it has neither."""
    import keras

    if not isinstance(model, keras.Model) or not needs_flattening(model):
        return model
    used = {layer.name for layer in model.layers}

    def call(operation, *args, **kwargs):
        if isinstance(operation, keras.Sequential):
            x = args[0]
            for layer in operation.layers:
                x = layer(x)
            return x
        if _is_bare_join(operation, args, kwargs):
            return keras.layers.Add(name=_join_name(args[1], operation.name, used))(list(args))
        return operation(*args, **kwargs)

    return _rebuilt(model, call)


def insert_after(model, name: str, layer):
    """The same layers and weights with `layer` applied to the output of the layer `name`."""

    def call(operation, *args, **kwargs):
        out = operation(*args, **kwargs)
        return layer(out) if operation.name == name else out

    return _rebuilt(model, call)


def _rebuilt(model, call):
    """`model`'s graph traced again, each node computed by `call(operation, *args,
    **kwargs)`, then cloned onto layers of its own with the same weights: a layer called in
    two graphs answers `layer.output` with the first one's tensor, and the activation
    cache cuts the backbone at `layers[i].output`."""
    import keras

    def named_input():
        return keras.Input(model.input_shape[1:], name=model.layers[0].name)

    traced = keras.models.clone_model(
        model, input_tensors=named_input(), clone_function=lambda layer: layer, call_function=call
    )
    rebuilt = keras.models.clone_model(traced, input_tensors=named_input())
    copy_weights(traced, rebuilt)
    return rebuilt


def copy_weights(source, target) -> None:
    """`source`'s weights into `target`, a clone of it. set_weights alone leaves a
    Normalization layer dividing by the statistics it was built with (it reads its
    variables in finalize_state, which only loading a file calls): EfficientNet's ImageNet
    mean and variance would be lost."""
    target.set_weights(source.get_weights())
    for layer in target.layers:
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()


def _join_name(branch, fallback: str, used: set[str]) -> str:
    """ConvNeXt's `<block>_identity` (or `_stochastic_depth`, `_layer_scale`) branch joins
    as `<block>_add`, as Keras names ResNet's joins; the operation's own name otherwise."""
    source = branch._keras_history[0].name
    for suffix in ("_identity", "_stochastic_depth", "_layer_scale"):
        if source.endswith(suffix):
            name = source.removesuffix(suffix) + "_add"
            if name not in used:
                used.add(name)
                return name
    return fallback
