"""Self-explanations of every class logit, for every example of a batch: input gradients and Grad-CAM.

**Why inference mode.** In training mode BatchNorm normalises with the statistics of the batch, so
logit z_c of example i depends on every other example j, and the batch gradient d(sum_i z_ic)/dx_j
mixes in cross-example terms: it is not the per-example saliency dz_jc/dx_j. In inference mode each
example is processed on its own (moving statistics), so the summed gradient is exactly the
per-example one, the same explanation the exported model gives at test time. `training=True` is kept
as an option for experiments; tests check that inference-mode explanations of one example do not
depend on the rest of the batch.

Three equivalent graph implementations of the exact all-class gradient are offered: `"loop"` (one
forward pass, then one backward pass per class, unrolled in the graph from a persistent tape),
`"batch_jacobian"` and `"pfor"` (`tape.jacobian` of the batch-summed logits with
`experimental_use_pfor=True`); both of the latter vectorise the backward pass over classes. Which is
fastest was measured on a 2-core CPU (`python -m introspective_tf.tools.benchmark`, docs/fast_introspection.md).

Explanation kinds (`EXPLAINERS`, one `Explainer` class each):

* `gradient`          E_c = dz_c/dx                      (the paper's self-explanation)
* `gradient_x_input`  E_c = x * dz_c/dx                  (x in the model's input units, pixels [0, 255])
* `gradcam`           E_c = relu(sum_k a_ck A_k), a_ck = mean_hw dz_c/dA_k, at a layer's output A
                      (Selvaraju et al. 2017; the same maps as tf-keras-vis' `Gradcam` without resizing
                      or normalisation). Backward passes stop at A, so at the last block it is cheap.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from introspective_tf.errors import ConfigError

IMPLEMENTATIONS = ("loop", "batch_jacobian", "pfor")
# Layers that compute differently in training and inference mode (nested models conservatively too).
_MODE_DEPENDENT = (
    keras.layers.BatchNormalization,
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.Model,
)


def _as_float(images) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    return images if images.dtype.is_floating else tf.cast(images, tf.float32)


def input_gradients_from_tape(
    tape: tf.GradientTape, logits: tf.Tensor, images: tf.Tensor, implementation: str = "loop"
) -> tf.Tensor:
    """dz_c/dx for all c from a forward pass already recorded on the persistent `tape` (images watched).

    The number of classes is read from the logits' static shape, so the loop is unrolled once at
    trace time and costs no Python work per step.
    """
    with tape:  # ops on the logits must be recorded too
        logits = tf.cast(logits, tf.float32)  # mixed precision: float32 logits
        per_class = [logits[:, c] for c in range(logits.shape[-1])] if implementation == "loop" else None
        # pfor: gradients of the batch-summed logits -- per example exactly when examples are
        # independent (inference mode), the same summed gradient as the loop otherwise.
        summed = tf.reduce_sum(logits, axis=0) if implementation == "pfor" else None  # [C]
    if implementation == "loop":
        return tf.stack([tape.gradient(z_c, images) for z_c in per_class], axis=1)
    if implementation == "batch_jacobian":
        return tape.batch_jacobian(logits, images)
    if implementation == "pfor":
        jacobian = tape.jacobian(summed, images, experimental_use_pfor=True)  # [C, B, ...]
        return tf.transpose(jacobian, [1, 0, *range(2, jacobian.shape.rank)])
    raise ValueError(f"unknown explanation implementation '{implementation}': use one of {IMPLEMENTATIONS}")


def all_class_input_gradients(
    model: keras.Model, images: tf.Tensor, *, training: bool = False, implementation: str = "loop"
) -> tf.Tensor:
    """Returns dz_c/dx for all classes c: shape [batch, classes, *image_shape], in the images' dtype."""
    return InputGradient(model, implementation=implementation).explain(images, training=training)


DEFAULT_LAYER = "last_conv_block"  # this project's backbones name their last block so (models.py)
AUTO_LAYER = "auto"


def _ancestors(tensor) -> list[tuple[keras.layers.Layer, Any]]:
    """(layer, its output) for the layer that made `tensor` and every layer it depends on, the nearest
    first, in the graph `tensor` belongs to (a nested model is one layer, with its output out there)."""
    found, seen, queue = [], set(), [tensor]
    while queue:
        tensor = queue.pop(0)
        history = getattr(tensor, "_keras_history", None)
        if history is None or id(history.operation) in seen:
            continue
        seen.add(id(history.operation))
        found.append((history.operation, tensor))
        queue.extend(history.operation._inbound_nodes[history.node_index].input_tensors)
    return found


def _layers_towards_logits(model: keras.Model) -> list[tuple[keras.layers.Layer, Any]]:
    return _ancestors(model.outputs[0]) if getattr(model, "outputs", None) else []


def feature_map_layers(model: keras.Model) -> list[str]:
    """The layers on the path to the logits whose output is a spatial feature map [batch, h, w, channels]
    made by learned layers (not the input or its preprocessing), the nearest to the logits first: where
    Grad-CAM can explain."""
    return [
        layer.name
        for layer, output in _layers_towards_logits(model)
        if len(output.shape) == 4 and any(below.weights for below, _ in _ancestors(output))
    ]


def resolve_layer(model: keras.Model, layer_name: str) -> tuple[str, bool]:
    """(the layer to explain at, whether it was found automatically). `auto`, or the default
    `last_conv_block` on a model without such a layer (any Keras model that is not this project's):
    the last spatial feature map before the logits (`feature_map_layers`)."""
    names = {layer.name for layer in model.layers}
    if layer_name != AUTO_LAYER and (layer_name in names or layer_name != DEFAULT_LAYER):
        return layer_name, False
    candidates = feature_map_layers(model)
    if not candidates:
        raise ConfigError(
            f"model '{model.name}' has no spatial feature map [batch, h, w, channels] before its logits for "
            "Grad-CAM: use explanation=gradient (input gradients), or name a layer with explanation_layer"
        )
    return candidates[0], True


def with_layer_output(model: keras.Model, layer_name: str) -> keras.Model:
    """A model sharing `model`'s weights that returns (output of `layer_name`, logits), for Grad-CAM."""
    outputs = {layer.name: output for layer, output in _layers_towards_logits(model)}
    if layer_name not in outputs:
        candidates = ", ".join(feature_map_layers(model)[:8]) or "none"
        raise ConfigError(
            f"model '{model.name}' has no layer '{layer_name}' before its logits to explain at: set "
            f"explanation_layer to one of its feature maps ({candidates}) or to auto"
        )
    if len(outputs[layer_name].shape) != 4:
        raise ConfigError(
            f"layer '{layer_name}' gives shape {tuple(outputs[layer_name].shape)}; "
            "Grad-CAM needs a [batch, h, w, channels] feature map"
        )
    return keras.Model(model.inputs, [outputs[layer_name], model.outputs[0]], name=f"{model.name}_with_{layer_name}")


def head_above(model: keras.Model, layer_name: str) -> keras.Model | None:
    """The part of `model` above `layer_name` as a model (features -> logits), when that is well defined.

    None when the layer's output is not a cut of the graph (e.g. a residual branch skips it) or when
    the head behaves differently in training and inference mode (BatchNorm, Dropout): Grad-CAM then
    differentiates the whole recorded pass instead.
    """
    outputs = {layer.name: output for layer, output in _layers_towards_logits(model)}
    try:
        head = keras.Model(outputs[layer_name], model.outputs[0], name=f"{model.name}_head")
    except Exception:  # noqa: BLE001 -- Keras raises various errors for a graph that is not cut there
        return None
    if any(isinstance(layer, _MODE_DEPENDENT) for layer in head.layers):
        return None
    return head


def gradcam_channel_weights(head: keras.Model, features: tf.Tensor) -> tf.Tensor:
    """a_ck = mean_hw dz_c/dA_hwk, [batch, classes, k], without the [batch, classes, h, w, k] Jacobian.

    The sum over positions of dz_c/dA_hwk is the derivative of z_c with respect to a shift of channel
    k at every position, so one small backward pass per class through the head, with respect to a
    [batch, k] shift, gives that class's weights. The per-class passes are unrolled at trace time:
    measured faster than `batch_jacobian` here (whose vectorised max-pooling gradient is slow).
    """
    shift = tf.zeros([tf.shape(features)[0], features.shape[-1]], features.dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(shift)
        logits = tf.cast(head(tf.stop_gradient(features) + shift[:, tf.newaxis, tf.newaxis, :]), tf.float32)
        per_class = [logits[:, c] for c in range(logits.shape[-1])]
    weights = tf.stack([tf.cast(tape.gradient(z_c, shift), tf.float32) for z_c in per_class], axis=1)  # [B, C, k]
    return weights / float(features.shape[1] * features.shape[2])


def gradcam_from_tape(
    tape: tf.GradientTape, logits: tf.Tensor, features: tf.Tensor, head: keras.Model | None = None
) -> tf.Tensor:
    """Grad-CAM maps of all classes, [batch, classes, h, w], from a pass recorded on the persistent `tape`.

    Only the part of the network above A is differentiated (at the last block: pooling and the dense
    layer), one class at a time: through `head` (`head_above`) when given, else through the recorded pass.
    """
    if head is not None:
        weights = gradcam_channel_weights(head, features)
    else:
        with tape:
            logits = tf.cast(logits, tf.float32)
            per_class = [logits[:, c] for c in range(logits.shape[-1])]
        weights = tf.stack(
            [tf.reduce_mean(tf.cast(tape.gradient(z_c, features), tf.float32), axis=[1, 2]) for z_c in per_class],
            axis=1,
        )  # [B, C, k]
    return tf.nn.relu(tf.einsum("bhwk,bck->bchw", tf.cast(features, tf.float32), weights))


class Explainer:
    """How one kind of self-explanation explains every class of a backbone.

    An explainer says which forward model a pass runs (`forward_model`), where that pass's logits are
    (`logits`), and how every class is explained from a pass recorded on a persistent tape
    (`from_tape`): that is what lets a training step explain its own pass (`explanation_mode="shared"`)
    and a tool explain with a pass of its own (`explain`). A new kind is a subclass and a line in
    `EXPLAINERS`.
    """

    # explanation_mode="auto": explain the training pass itself ("shared") or a separate inference pass.
    default_mode = "inference"

    def __init__(self, backbone: keras.Model, *, layer: str = DEFAULT_LAYER, implementation: str = "loop"):
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"unknown explanation implementation '{implementation}': use one of {IMPLEMENTATIONS}")
        self.backbone, self.layer, self.implementation = backbone, layer, implementation
        self.forward_model = backbone

    def logits(self, outputs) -> tf.Tensor:
        return outputs

    def from_tape(self, tape: tf.GradientTape, images: tf.Tensor, outputs) -> tf.Tensor:
        """E_c for every class, [batch, classes, ...], from `forward_model`'s `outputs` recorded on `tape`
        (persistent; `images` watched)."""
        raise NotImplementedError

    # images -> d, for a kind that is E_c = d * dz_c/dx: then `jvp_similarity` can estimate its
    # similarities with forward-mode products. None: not linear in the input gradient.
    input_weight = None

    def explained_pass(self, images, training: bool = False) -> tuple[Any, tf.Tensor]:
        """(`forward_model`'s outputs, E_c for every class) from one forward pass recorded on a persistent
        tape: the pass a tool explains, or the training pass itself (`explanation_mode="shared"`, where
        the training step's own tape records the same ops, so explaining adds no forward pass)."""
        images = _as_float(images)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(images)
            outputs = self.forward_model(images, training=training)
        explained = self.from_tape(tape, images, outputs)
        del tape
        return outputs, explained

    def explain(self, images, training: bool = False) -> tf.Tensor:
        """E_c for every class: [batch, classes, ...], from a forward pass of its own."""
        return self.explained_pass(images, training)[1]


class InputGradient(Explainer):
    """E_c = dz_c/dx, the paper's self-explanation: one backward pass per class through the whole network."""

    def from_tape(self, tape, images, outputs):
        return input_gradients_from_tape(tape, outputs, images, self.implementation)

    @staticmethod
    def input_weight(images):
        return tf.ones_like(images)


class GradientTimesInput(Explainer):
    """E_c = x * dz_c/dx (x in the model's input units, pixels [0, 255])."""

    def from_tape(self, tape, images, outputs):
        return images[:, tf.newaxis] * input_gradients_from_tape(tape, outputs, images, self.implementation)

    @staticmethod
    def input_weight(images):
        return images


class GradCAM(Explainer):
    """Grad-CAM maps at `layer`: the forward model also returns that layer's output A, and only the part
    of the network above A is differentiated per class (through the head above it, when it is a cut)."""

    default_mode = "shared"  # its per-class part is only the small head: a separate pass would dominate

    def __init__(self, backbone: keras.Model, *, layer: str = DEFAULT_LAYER, implementation: str = "loop"):
        layer, found = resolve_layer(backbone, layer)
        if found:  # once, when a method or tool is built: at the start of training
            print(
                f"Grad-CAM explains model '{backbone.name}' at layer '{layer}', its last spatial feature map "
                "before the logits (explanation_layer chooses another)",
                flush=True,
            )
        super().__init__(backbone, layer=layer, implementation=implementation)
        self.forward_model = with_layer_output(backbone, layer)
        self.head = head_above(backbone, layer)

    def logits(self, outputs):
        return outputs[1]

    def from_tape(self, tape, images, outputs):
        features, logits = outputs
        return gradcam_from_tape(tape, logits, features, self.head)


EXPLAINERS: dict[str, type[Explainer]] = {
    "gradient": InputGradient,
    "gradient_x_input": GradientTimesInput,
    "gradcam": GradCAM,
}


def explainer(
    name: str, backbone: keras.Model, *, layer: str = DEFAULT_LAYER, implementation: str = "loop"
) -> Explainer:
    """The registered explainer `name` for `backbone`."""
    if name not in EXPLAINERS:
        raise ConfigError(f"unknown explanation '{name}': use one of {', '.join(EXPLAINERS)}")
    return EXPLAINERS[name](backbone, layer=layer, implementation=implementation)


def all_class_explanations(
    model: keras.Model, images: tf.Tensor, *, explanation: str = "gradient", training: bool = False, **settings
) -> tf.Tensor:
    """E_c for every class of `model`: [batch, classes, ...], with the registered explainer `explanation`
    (`settings`: its `layer`, `implementation`)."""
    return explainer(explanation, model, **settings).explain(images, training=training)
